import pytest
import torch

from clampgen.cutouts import Augment, eval_theta, eval_views, make_cutouts, sample_views

NO_AUG = Augment(flip=False, rotate=0.0, jitter=0.0, noise=0.0)


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize('hw, cut', [((32, 32), (16, 16)), ((24, 40), (16, 16)), ((8, 8), (16, 16))])
def test_cardinality(hw, cut):
    image = torch.rand(1, 3, *hw)
    assert make_cutouts(image, 5, cut, 1.0, Augment(), rng()).shape == (5, 3, *cut)
    assert eval_views(image, cut).shape == (6, 3, *cut)


def test_identity_view_is_the_image():
    image = torch.rand(1, 3, 16, 16)
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    torch.testing.assert_close(sample_views(image, theta, (16, 16)), image)


def test_full_view_is_antialiased_downscale():
    image = torch.rand(1, 3, 32, 32)
    full = eval_views(image, (16, 16))[:1]
    torch.testing.assert_close(full, torch.nn.functional.avg_pool2d(image, 2))


def test_eval_quadrants():
    image = torch.zeros(1, 3, 16, 16)
    image[..., :8, :8] = 1.0  # top-left quadrant white
    views = eval_views(image, (8, 8))
    assert views[2].mean() > 0.9  # top-left quadrant view (edges blur a little)
    assert views[2, :, :6, :6].min() == 1.0
    assert views[3:].mean(dim=(1, 2, 3)).max() < 0.1  # the other three
    assert eval_theta(16, 16).shape == (6, 2, 3)


def test_same_seed_same_cutouts_and_stream_independent_of_image():
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32) * 5 - 2
    r1, r2 = rng(3), rng(3)
    ca = make_cutouts(a, 4, (8, 8), 1.0, NO_AUG, r1)
    cb = make_cutouts(a, 4, (8, 8), 1.0, NO_AUG, r2)
    assert torch.equal(ca, cb)
    r1, r2 = rng(3), rng(3)
    make_cutouts(a, 4, (8, 8), 1.0, Augment(), r1)
    make_cutouts(b, 4, (8, 8), 1.0, NO_AUG, r2)  # other image values, other augmentation settings
    assert torch.equal(r1.get_state(), r2.get_state())


def test_crop_of_constant_image_is_constant():
    image = torch.full((1, 3, 40, 30), 0.25)
    views = make_cutouts(image, 8, (8, 8), 2.0, Augment(flip=True, rotate=10, jitter=0, noise=0), rng())
    torch.testing.assert_close(views, torch.full_like(views, 0.25))


def test_augmentations_change_values():
    image = torch.full((1, 3, 16, 16), 0.5)
    views = make_cutouts(image, 8, (8, 8), 1.0, Augment(jitter=0.2, noise=0.2), rng())
    assert views.std() > 0.01


def test_gradcheck():
    image = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[[0.5, 0.1, 0.2], [-0.1, 0.5, -0.3]]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: sample_views(x, theta, (4, 4)), (image,))


def test_overhang_reaches_the_border():
    """With overhang, border pixels fall inside crops; without, only crops touching the edge."""
    from clampgen.cutouts import random_theta

    def left_edges(overhang):
        theta = random_theta(2000, 64, 64, (16, 16), 1.0, NO_AUG, rng(0), overhang)
        return theta[:, 0, 2] - theta[:, 0, 0].abs()  # left edge of each crop in [-1, 1]
    assert left_edges(0.0).min() >= -1 - 1e-6
    assert (left_edges(0.25) < -1).float().mean() > 0.1
