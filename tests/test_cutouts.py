import pytest
import torch

from clampgen.cutouts import (
    Augment,
    cutouts_from_draws,
    draw_cutouts,
    eval_theta,
    eval_views,
    sample_views,
    theta_from_boxes,
)

NO_AUG = Augment(flip=False, rotate=0.0, jitter=0.0, noise=0.0)


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def make_cutouts(image, n, cut, cut_pow, aug, generator, overhang=0.0):
    """n random views of image: the step's two calls, the draws then the pure function."""
    draws = draw_cutouts(n, image.shape[1], cut, generator)
    return cutouts_from_draws(image, draws, cut, cut_pow, aug, overhang)


def random_theta(n, height, width, cut, cut_pow, aug, generator, overhang=0.0):
    """(n, 2, 3) crop boxes from n fresh uniform draws."""
    u = torch.rand((n, 5), generator=generator)
    return theta_from_boxes(
        u, height=height, width=width, cut_size=cut, cut_pow=cut_pow, aug=aug, overhang=overhang
    )


@pytest.mark.parametrize(
    "hw, cut", [((32, 32), (16, 16)), ((24, 40), (16, 16)), ((8, 8), (16, 16))]
)
def test_cardinality(hw, cut):
    image = torch.rand(1, 3, *hw)
    assert make_cutouts(image, 5, cut, 1.0, Augment(), rng()).shape == (5, 3, *cut)
    assert eval_views(image, cut).shape == (6, 3, *cut)


def test_cut_pow_zero_crops_the_whole_short_side():
    """--cut-pow 0, the lower end of its range: every crop's side is the image's short side."""
    theta = random_theta(8, 32, 48, (16, 16), 0.0, NO_AUG, rng())  # (N, 2, 3), no rotation
    torch.testing.assert_close(theta[:, 0, 0], torch.full((8,), 32 / 48))  # side / width
    torch.testing.assert_close(theta[:, 1, 1], torch.ones(8))  # side / height


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
    assert eval_theta(height=16, width=16).shape == (6, 2, 3)


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
    views = make_cutouts(
        image, 8, (8, 8), 2.0, Augment(flip=True, rotate=10, jitter=0, noise=0), rng()
    )
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

    def left_edges(overhang):
        theta = random_theta(2000, 64, 64, (16, 16), 1.0, NO_AUG, rng(0), overhang)
        return theta[:, 0, 2] - theta[:, 0, 0].abs()  # left edge of each crop in [-1, 1]

    assert left_edges(0.0).min() >= -1 - 1e-6
    assert (left_edges(0.25) < -1).float().mean() > 0.1


# ------------------------------------------------------------------ the atlas and the colour matrix


@pytest.mark.parametrize(
    "hw, cut",
    [
        ((256, 256), (64, 64)),
        ((96, 96), (64, 64)),
        ((75, 130), (16, 16)),
        ((33, 33), (8, 8)),
        ((8, 8), (16, 16)),
    ],
)
def test_atlas_equals_per_view_grid_sample(hw, cut):
    """One grid_sample on the atlas gives, for every view, exactly what grid_sample with
    reflection padding gives on the view's own pyramid level (odd and non-square sizes too)."""
    from clampgen.cutouts import _levels, _pyramid

    image = torch.rand(1, 3, *hw, dtype=torch.float64)
    theta = random_theta(64, *hw, cut, 1.0, Augment(), rng(1), overhang=0.25).double()
    levels = _pyramid(image, cut)
    level = _levels(theta, height=hw[0], width=hw[1], cut_size=cut, n_levels=len(levels))
    expected = torch.cat(
        [
            torch.nn.functional.grid_sample(
                levels[lv],
                torch.nn.functional.affine_grid(
                    theta[i : i + 1], (1, 3, *cut), align_corners=False
                ),
                padding_mode="reflection",
                align_corners=False,
            )
            for i, lv in enumerate(level.tolist())
        ]
    )
    torch.testing.assert_close(sample_views(image, theta, cut), expected, rtol=0, atol=1e-12)


def test_pyramid_levels_cover_every_view_without_supersampling():
    from clampgen.cutouts import _pyramid

    for side in (64, 96, 128, 255, 256, 513, 2048):
        shapes = [lv.shape[-1] for lv in _pyramid(torch.zeros(1, 3, side, side), (64, 64))]
        assert shapes[-1] < 64 * 2**0.5 <= shapes[-2] if len(shapes) > 1 else side < 64 * 2**0.5
        assert all(-(-a // 2) == b for a, b in zip(shapes, shapes[1:]))  # halves, odd rounds up


def test_views_do_not_depend_on_the_thread_split(monkeypatch):
    """grid_sample is split over CPU threads; the views are bitwise the same, the gradients equal
    up to summation order."""
    import clampgen.cutouts as C

    image = torch.rand(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    theta = random_theta(8, 64, 64, (16, 16), 1.0, Augment(), rng(2), 0.25).double()
    results = []
    for split in (1, 2, 4):
        monkeypatch.setattr(C, "_split", lambda *a, s=split: s)
        views = C.sample_views(image, theta, (16, 16))
        (grad,) = torch.autograd.grad(
            (views * torch.arange(views.numel()).view_as(views)).sum(), image
        )
        results.append((views, grad))
    for views, grad in results[1:]:
        assert torch.equal(views, results[0][0])
        torch.testing.assert_close(grad, results[0][1])


def _sequential_jitter(views, u, noise, aug):
    """The jitter as written in the notebooks' order: brightness, contrast, saturation, noise."""
    u = u.view(-1, 4, 1, 1, 1) * 2 - 1
    views = views + aug.jitter * u[:, 0]
    views = (views - 0.5) * (1 + aug.jitter * u[:, 1]) + 0.5
    gray = views.mean(dim=1, keepdim=True)
    views = gray + (views - gray) * (1 + aug.jitter * u[:, 2])
    return views + aug.noise * (u[:, 3] + 1) / 2 * noise


def test_colour_matrix_equals_the_sequential_jitter():
    from clampgen.cutouts import augment_colors, draw_cutouts

    aug = Augment(jitter=0.3, noise=0.2)
    views = torch.rand(6, 3, 5, 7, dtype=torch.float64)
    draws = draw_cutouts(6, 3, (5, 7), rng(4))
    draws = draws._replace(colors=draws.colors.double(), noise=draws.noise.double())
    expected = _sequential_jitter(views, draws.colors, draws.noise, aug)
    torch.testing.assert_close(augment_colors(views, draws, aug), expected)
    mean, std = (
        torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1),
        torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1),
    )
    torch.testing.assert_close(
        augment_colors(views, draws, aug, mean, std), (expected - mean.double()) / std.double()
    )


def test_no_jitter_no_noise_is_exactly_the_identity():
    from clampgen.cutouts import augment_colors, draw_cutouts

    views = torch.rand(4, 3, 8, 8)
    assert torch.equal(augment_colors(views, draw_cutouts(4, 3, (8, 8), rng()), NO_AUG), views)


def test_cutouts_are_draws_then_a_pure_function():
    """All randomness is in the draws: the same draws give the same views, and making the views
    touches no random stream (the draws' generator and torch's global one alike)."""
    image = torch.rand(1, 3, 40, 40)
    r = rng(5)
    draws = draw_cutouts(4, 3, (16, 16), r)
    stream, global_state = r.get_state(), torch.get_rng_state()
    a = cutouts_from_draws(image, draws, (16, 16), 1.0, Augment(), 0.25)
    b = cutouts_from_draws(image, draws, (16, 16), 1.0, Augment(), 0.25)
    assert torch.equal(a, b) and torch.equal(r.get_state(), stream)
    assert torch.equal(torch.get_rng_state(), global_state)


@pytest.fixture
def two_threads():
    """torch on 2 CPU threads for one test (conftest sets 1), so the views are split in two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_views_split_over_threads_equal_one_batch(two_threads):
    from clampgen.cutouts import _split

    image = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    theta = random_theta(4, 32, 32, (16, 16), 1.0, Augment(), rng(7), 0.25).double()
    assert _split(4, image.device, 3 * 32 * 48, 4 * 3 * 16 * 16) == 2  # this atlas: split
    split = sample_views(image, theta, (16, 16))
    (g_split,) = torch.autograd.grad(split.square().sum(), image)
    torch.set_num_threads(1)
    whole = sample_views(image, theta, (16, 16))
    (g_whole,) = torch.autograd.grad(whole.square().sum(), image)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_split, g_whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("side", [48, 32])  # 32: an atlas small enough to split over 2 threads
def test_cutouts_compile_as_one_graph(side, two_threads):
    """fullgraph capture fails on any host sync (.item(), .tolist(), nonzero) or graph break:
    the property the CUDA-graph path needs, checked here on CPU (aot_eager: no C++ compiler)."""
    image = torch.rand(1, 3, side, side, requires_grad=True)
    draws = draw_cutouts(4, 3, (16, 16), rng(6))
    fn = torch.compile(cutouts_from_draws, fullgraph=True, backend="aot_eager", dynamic=False)
    args = (draws, (16, 16), 1.0, Augment(), 0.25)
    torch.testing.assert_close(fn(image, *args), cutouts_from_draws(image, *args))
    (g1,) = torch.autograd.grad(fn(image, *args).square().sum(), image)
    (g2,) = torch.autograd.grad(cutouts_from_draws(image, *args).square().sum(), image)
    torch.testing.assert_close(g1, g2)


def test_cpu_noise_is_a_slice_of_the_fixed_table_at_one_random_offset():
    from clampgen.cutouts import NOISE_TABLE_MIN, draw_noise, noise_table

    r1, r2 = rng(3), rng(3)
    noise = draw_noise((4, 3, 8, 8), r1)
    table = noise_table(NOISE_TABLE_MIN)
    offset = int(torch.randint(table.numel() - noise.numel() + 1, (), generator=r2))  # one draw
    assert noise.shape == (4, 3, 8, 8) and noise.data_ptr() == table[offset:].data_ptr()
    assert torch.equal(r1.get_state(), r2.get_state())  # the stream moved by exactly that draw
    assert torch.equal(draw_noise((4, 3, 8, 8), rng(3)), noise)  # same rng state, same noise
    assert not torch.equal(draw_noise((4, 3, 8, 8), r1), noise)  # the next step: elsewhere


def test_noise_table_is_standard_normal_and_the_same_in_every_process():
    from clampgen.cutouts import NOISE_TABLE_MIN, NOISE_TABLE_SEED, noise_table

    table = noise_table(NOISE_TABLE_MIN)
    assert table.shape == (NOISE_TABLE_MIN,) and table.dtype == torch.float32
    assert abs(table.mean().item()) < 1e-3 and abs(table.std().item() - 1) < 1e-3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NOISE_TABLE_SEED + 1)  # the global generator plays no part
        assert torch.equal(noise_table.__wrapped__(NOISE_TABLE_MIN), table)


def test_noise_table_grows_with_the_request():
    from clampgen.cutouts import NOISE_TABLE_MIN, draw_noise

    shape = (NOISE_TABLE_MIN // 48 + 1, 3, 4, 4)  # more elements than the minimum table
    noise = draw_noise(shape, rng())
    assert noise.shape == shape and noise.isfinite().all()
