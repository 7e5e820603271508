"""fold_batchnorm: eval BatchNorm merged into the conv before it, the same function."""

import copy

import torch
from torch import nn

from clampgen.fold import fold_batchnorm
from clampgen.models.shapes_cnn import ShapesConvNet


def _randomise_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))
    return module.eval().requires_grad_(False)


def _same_function(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    """Equal outputs and equal input gradients (float64: only rounding may differ)."""
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    torch.testing.assert_close(ya, yb)
    weight = torch.randn_like(ya)
    (ya * weight).sum().backward()
    (yb * weight).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)


def _count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


def test_bundled_cnn_folds_every_batchnorm():
    net = _randomise_bn(ShapesConvNet(width=4).double())
    original = copy.deepcopy(net)
    assert fold_batchnorm(net) == 5 and _count(net, nn.BatchNorm2d) == 0
    _same_function(original, net, torch.randn(3, 3, 16, 16, dtype=torch.float64))
    assert not any(p.requires_grad for p in net.parameters())  # frozen stays frozen


def test_modified_resnet_folds_stem_bottlenecks_and_downsamples():
    from open_clip.modified_resnet import ModifiedResNet

    net = _randomise_bn(
        ModifiedResNet(layers=(1, 1, 1, 1), output_dim=8, heads=2, image_size=32, width=8).double()
    )
    original = copy.deepcopy(net)
    # stem 3 + four bottlenecks x 3 + four downsample branches (the first block of each stage)
    assert fold_batchnorm(net) == 3 + 4 * 3 + 4 and _count(net, nn.BatchNorm2d) == 0
    _same_function(original, net, torch.randn(2, 3, 32, 32, dtype=torch.float64))


def test_training_mode_is_left_alone():
    net = ShapesConvNet(width=4).train()
    assert fold_batchnorm(net) == 0 and _count(net, nn.BatchNorm2d) == 5


def test_batchnorm_not_after_a_conv_stays():
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fold_batchnorm(net) == 0 and _count(net, nn.BatchNorm2d) == 2


def test_load_clip_folds_the_bundled_model():
    from clampgen.clip_loader import load_clip

    bundle = load_clip("shapes", "", "cpu")
    assert _count(bundle.model.visual, nn.BatchNorm2d) == 0
    conv = bundle.model.visual.trunk.features[0][0]
    assert conv.bias is not None and conv.weight.is_contiguous(memory_format=torch.channels_last)
