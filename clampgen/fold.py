"""Folds eval-mode BatchNorm into the convolution before it, for a frozen image tower.

In eval mode a BatchNorm is a per-channel affine map, y = a * conv(x) + b, so it can be merged
into the convolution's weights and bias (`torch.nn.utils.fusion.fuse_conv_bn_eval`): the same
function up to float rounding, one kernel less forward and backward (docs/performance.md has
what it saves).

    from clampgen.fold import fold_batchnorm
    n = fold_batchnorm(model.visual)   # model in eval mode; returns how many were folded

Folded: a Conv2d directly followed by a BatchNorm2d inside an nn.Sequential (the bundled CNN,
ResNet downsample branches), and open_clip's ModifiedResNet (RN50 & co.) stem and Bottleneck
pairs conv1/bn1, conv2/bn2, conv3/bn3, whose forward applies bnK right after convK.
"""

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_PAIRED = ("ModifiedResNet", "Bottleneck")  # open_clip classes whose forward does bnK(convK(x))


def _foldable(conv, bn) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and conv.out_channels == bn.num_features
    )


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if not _foldable(conv, bn):
        return False
    fused = fuse_conv_bn_eval(conv, bn).requires_grad_(conv.weight.requires_grad)
    if conv.weight.is_contiguous(memory_format=torch.channels_last):
        fused = fused.to(memory_format=torch.channels_last)
    setattr(parent, conv_name, fused)
    setattr(parent, bn_name, nn.Identity())
    return True


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Folds every foldable eval-mode BatchNorm2d of module into its convolution, in place;
    returns the number folded. Modules in training mode are left alone."""
    count = 0
    for parent in module.modules():
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for conv_name, bn_name in zip(names, names[1:]):
                count += _fold_pair(parent, conv_name, bn_name)
        elif type(parent).__name__ in _PAIRED:
            for k in (1, 2, 3):
                if hasattr(parent, f"conv{k}") and hasattr(parent, f"bn{k}"):
                    count += _fold_pair(parent, f"conv{k}", f"bn{k}")
    return count
