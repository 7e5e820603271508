"""Batched cutouts and augmentations, all random draws from one explicit `torch.Generator`.

Every cutout is one affine map (crop box, rotation, flip) of the image; all are taken with one
`F.grid_sample` call on an atlas of an average-pooling pyramid (mip-mapping: no Python loop per
cutout), so large crops are antialiased and the cost per cutout does not grow with the image
size. Colour jitter is one 3x3 colour matrix per cutout (the CLIP normalisation can be folded
into it), then Gaussian noise.

    draws = draw_cutouts(cutn, 3, cut_size, rng)                    # every random number, eager
    views = cutouts_from_draws(image, draws, cut_size, cut_pow, aug)  # pure: no RNG, no host sync

The split keeps the differentiable part a pure function of tensors with fixed shapes, which
torch.compile captures as one graph (fullgraph) and CUDA graphs can replay.

Crop sizes follow the VQGAN+CLIP notebooks' `MakeCutouts`: side = u ** cut_pow * (max - min) + min
with min = the model's input size (or the image's short side if smaller), max = the short side.

The random stream is consumed identically whatever the image values and the augmentation
settings (every draw happens every call, with fixed shapes), so runs that differ only in the
clamp see identical cutouts: the A/B fairness rule of DEVELOPERS.md.
"""

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: bool = True  # random horizontal flips
    rotate: float = 5.0  # max rotation, degrees
    jitter: float = 0.05  # brightness / contrast / saturation jitter strength
    noise: float = 0.1  # max std of additive Gaussian noise (per cutout, uniform in [0, noise])

    @classmethod
    def from_config(cls, cfg) -> "Augment":
        """The augmentations of a GenerateConfig (or any object with its aug_* fields)."""
        return cls(cfg.aug_flip, cfg.aug_rotate, cfg.aug_jitter, cfg.aug_noise)


def _pyramid(image: torch.Tensor, cut_size: tuple) -> list:
    """image (1, C, H, W) and its 2x average-pooled reductions (odd sides round up) while the
    short side still exceeds sqrt(2) x the cut's: every view then has a level where it spans
    r x cut_size pixels with r < 1.41 (no view needs supersampling)."""
    levels = [image]
    while min(levels[-1].shape[-2:]) >= 2**0.5 * min(cut_size) and min(levels[-1].shape[-2:]) >= 2:
        h, w = levels[-1].shape[-2:]
        if h % 2 == 0 and w % 2 == 0:  # bilinear at exactly half scale = 2x2 average, faster
            levels.append(
                F.interpolate(
                    levels[-1], size=(h // 2, w // 2), mode="bilinear", align_corners=False
                )
            )
        else:
            levels.append(F.adaptive_avg_pool2d(levels[-1], (-(-h // 2), -(-w // 2))))
    return levels


def _atlas_boxes(shapes: tuple) -> tuple:
    """(x0, y0, w, h) of each level in the atlas: level 0 on the left, the others stacked in a
    column on its right; and the atlas's (H, W)."""
    (h0, w0), boxes, y = shapes[0], [(0, 0, shapes[0][1], shapes[0][0])], 0
    for h, w in shapes[1:]:
        boxes.append((w0, y, w, h))
        y += h
    width = w0 + (shapes[1][1] if len(shapes) > 1 else 0)
    return tuple(boxes), (max(h0, y), width)


def _atlas_rows(shapes: tuple) -> tuple:
    """Per level (L rows of 6): x/y scale and x/y offset from the level's [-1, 1] coordinates to
    the atlas's, and the x/y bound of the level's pixel centres."""
    boxes, (ha, wa) = _atlas_boxes(shapes)
    return tuple(
        (w / wa, h / ha, (w + 2 * x0) / wa - 1, (h + 2 * y0) / ha - 1, 1 - 1 / w, 1 - 1 / h)
        for x0, y0, w, h in boxes
    )


@functools.lru_cache(maxsize=128)
def _tensor(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.tensor(values), made once per (values, dtype, device)."""
    return torch.tensor(values, dtype=dtype, device=device)


def _cached(fn, *args):
    """fn(*args) from its lru_cache in eager mode (a per-step host-to-device copy would be a
    sync on CUDA); traced afresh (a graph constant) when compiling."""
    return fn.__wrapped__(*args) if torch.compiler.is_compiling() else fn(*args)


def _atlas(levels: list) -> torch.Tensor:
    """The pyramid's levels packed into one (1, C, Ha, Wa) image (see _atlas_boxes), with
    zeros in the gaps. Built with pad and cat, whose backward is only slicing."""
    if len(levels) == 1:
        return levels[0]
    boxes, (ha, wa) = _atlas_boxes(tuple(tuple(lv.shape[-2:]) for lv in levels))
    column_w = wa - boxes[0][2]
    column = torch.cat(
        [_pad_to(lv, height=lv.shape[-2], width=column_w) for lv in levels[1:]], dim=-2
    )
    return torch.cat(
        [
            _pad_to(levels[0], height=ha, width=boxes[0][2]),
            _pad_to(column, height=ha, width=column_w),
        ],
        dim=-1,
    )


def _pad_to(x: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    """x (..., h, w) zero-padded at the bottom and right to (..., height, width); x if it fits."""
    if x.shape[-2:] == (height, width):
        return x
    return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]))


@functools.lru_cache(maxsize=64)
def _pixel_centres(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n,) pixel-centre coordinates in [-1, 1] (align_corners=False), as F.affine_grid uses."""
    return (
        (torch.arange(n, dtype=torch.float64) * 2 + 1).div(n).sub(1).to(dtype=dtype, device=device)
    )


def _atlas_grid(theta: torch.Tensor, table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The grid_sample grid (N, h, w, 2) of views theta (N, 2, 3) whose levels' rows of the
    atlas table are table (N, 6): the affine map, one reflection at the level's edges, taps kept
    inside the level, then the level's place in the atlas. Both axes at once, as (N, 2, h, w)
    planes (pixel rows innermost, so the elementwise ops vectorise), interleaved at the end."""
    xs = _cached(_pixel_centres, w, theta.dtype, theta.device)[None, None, None, :]  # (1, 1, 1, w)
    ys = _cached(_pixel_centres, h, theta.dtype, theta.device)[None, None, :, None]  # (1, 1, h, 1)
    t = theta[:, :, :, None, None]  # (N, 2, 3, 1, 1)
    u = torch.addcmul(torch.addcmul(t[:, :, 2], t[:, :, 1], ys), t[:, :, 0], xs)  # (N, 2, h, w)
    u = u.clamp(-1, 1).mul_(2).sub_(u)  # reflect (one bounce)
    scale, offset, bound = table.view(-1, 3, 2, 1, 1).unbind(1)  # (N, 2, 1, 1) each
    u = torch.clamp(u, -bound, bound)  # outermost pixel centres
    return torch.addcmul(offset, u, scale).permute(0, 2, 3, 1).contiguous()  # atlas coords


def _levels(theta: torch.Tensor, *, height: int, width: int, cut_size: tuple, n_levels: int):
    """(N,) pyramid level per view: where the view spans r x cut_size pixels with r nearest 1
    (r in [0.71, 1.41), as in mip-mapping; below 1 only at level 0)."""
    side = torch.maximum(
        theta[:, 0, :2].norm(dim=-1) * width / cut_size[1],
        theta[:, 1, :2].norm(dim=-1) * height / cut_size[0],
    )  # (N,) view side / cut
    return side.clamp(min=1).log2().round().clamp(max=n_levels - 1).long()


def sample_views(image: torch.Tensor, theta: torch.Tensor, cut_size: tuple) -> torch.Tensor:
    """Views of image (1, C, H, W) through affine maps theta (N, 2, 3) -> (N, C, h, w).

    Antialiased at any image size for a fixed cost per view: each view is sampled bilinearly from
    the level of an average-pooling pyramid where its scale is nearest 1:1 (mip-mapping), with
    reflection past the edges. All views come from one `grid_sample` on an atlas of the levels,
    with shapes fixed by the image's: no host sync, one graph under torch.compile or CUDA graphs.
    Identity views and exact 2^n downscales are exact."""
    levels = _pyramid(image, cut_size)
    shapes = tuple(tuple(lv.shape[-2:]) for lv in levels)
    n, c, (h, w) = theta.shape[0], image.shape[1], cut_size
    table = _cached(_tensor, _atlas_rows(shapes), image.dtype, image.device)[
        _levels(
            theta,
            height=image.shape[-2],
            width=image.shape[-1],
            cut_size=cut_size,
            n_levels=len(levels),
        )
    ]  # (N, 6)
    grid = _atlas_grid(theta.to(image.dtype), table, h, w)  # (N, h, w, 2)
    atlas = _atlas(levels)
    split = _split(n, image.device, atlas.numel(), n * c * h * w)
    views = F.grid_sample(
        atlas.expand(split, -1, -1, -1),
        grid.view(split, -1, w, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )  # (S, C, N/S*h, w)
    return views.view(split, c, n // split, h, w).transpose(1, 2).reshape(n, c, h, w)


def _split(n: int, device: torch.device, atlas_numel: int, views_numel: int) -> int:
    """Batch items for grid_sample: its CPU kernel uses one thread per item, so the views are
    split over the CPU threads (when that divides n) unless the atlas is much larger than the
    views (each item's gradient is a zero-filled atlas); one on other devices."""
    if device.type != "cpu":
        return 1
    threads = _cpu_threads()
    small = atlas_numel <= 2 * views_numel
    return threads if small and threads > 1 and n % threads == 0 else 1


@torch.compiler.assume_constant_result
def _cpu_threads() -> int:
    """torch's CPU thread count (a constant of the graph when compiling)."""
    return torch.get_num_threads()


def crop_theta(side, cx, cy, angle, flip, *, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) affine maps for square crops of `side` pixels centred at (cx, cy) in [-1, 1]
    coordinates, rotated by angle (radians) and mirrored where flip is -1."""
    half = torch.stack([side / width, side / height], dim=-1)  # (N, 2) crop half-extent, normalised
    return _theta(half, torch.stack([cx, cy], dim=-1), angle, flip)


def _theta(half: torch.Tensor, centre: torch.Tensor, angle, flip) -> torch.Tensor:
    """(N, 2, 3) [R(angle) diag(flip, 1) scaled per row by half (N, 2) | centre (N, 2)]."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([cos * flip, -sin, sin * flip, cos], dim=-1).view(-1, 2, 2)  # (N, 2, 2)
    return torch.cat([rot * half[:, :, None], centre[:, :, None]], dim=2)


class CutoutDraws(NamedTuple):
    """Every random number of one step's cutouts, drawn in this order from the generator."""

    boxes: torch.Tensor  # (N, 5) uniform: side, x, y, flip, angle
    colors: torch.Tensor  # (N, 4) uniform: brightness, contrast, saturation, noise level
    noise: (
        torch.Tensor
    )  # (N, C, h, w) standard normal (on CPU a view of a shared table: do not modify)


NOISE_TABLE_MIN = 1 << 23  # elements in the CPU noise table at least (32 MiB of float32)
NOISE_TABLE_SEED = 20211  # the table is the same in every run, so runs stay reproducible


@functools.lru_cache(maxsize=2)
def noise_table(numel: int) -> torch.Tensor:
    """(numel,) fixed standard normal samples on the CPU, made once per size and cached."""
    return torch.randn(numel, generator=torch.Generator().manual_seed(NOISE_TABLE_SEED))


def draw_noise(shape: tuple, rng: torch.Generator) -> torch.Tensor:
    """Standard normal noise of `shape` from rng's device.

    On CPU, a slice of a fixed table of normal samples at a random offset (the "shared noise
    table" of Salimans et al. 2017, Evolution Strategies): one draw from rng instead of one per
    element, since CPU generators make one number at a time. Each sample is N(0, 1) and the
    views of a step use disjoint parts of the table; two steps reuse overlapping parts with
    probability under 2 * numel / table size.
    Elsewhere torch.randn, whose parallel generators are cheap."""
    if rng.device.type != "cpu":
        return torch.randn(shape, generator=rng, device=rng.device)
    numel = math.prod(shape)
    table = noise_table(max(NOISE_TABLE_MIN, 4 * numel))
    offset = int(torch.randint(table.numel() - numel + 1, (), generator=rng))
    return table[offset : offset + numel].view(shape)


def draw_cutouts(n: int, channels: int, cut_size: tuple, rng: torch.Generator) -> CutoutDraws:
    """The draws of n cutouts: fixed shapes, so the stream never depends on image or settings."""
    boxes = torch.rand((n, 5), generator=rng, device=rng.device)
    colors = torch.rand((n, 4), generator=rng, device=rng.device)
    return CutoutDraws(boxes, colors, draw_noise((n, channels, *cut_size), rng))


def theta_from_boxes(
    u: torch.Tensor,
    *,
    height: int,
    width: int,
    cut_size: tuple,
    cut_pow: float,
    aug: Augment,
    overhang: float = 0.0,
    whole: int = 0,
) -> torch.Tensor:
    """(N, 2, 3) crop boxes (notebook size law), rotations and flips from uniforms u (N, 5).

    overhang > 0 lets a crop extend past the image edge by up to overhang * its side (filled
    by reflection): with 0, as in the notebooks, a border pixel is only inside crops that touch
    the edge, gets few gradients and stays at its initial value. whole: the first `whole`
    crops span the image's short side (the whole of a square image), whatever their draw,
    still flipped and rotated as drawn."""
    short = min(height, width)
    min_side = min(short, min(cut_size))
    side = torch.add(min_side, u[:, 0] ** cut_pow, alpha=short - min_side)  # (N,) pixels
    if whole:
        side = torch.cat([side.new_full((min(whole, side.shape[0]),), short), side[whole:]])
    half = side[:, None] * _cached(_tensor, (1 / width, 1 / height), u.dtype, u.device)  # (N, 2)
    # the centre is uniform over the positions where the crop, grown by the overhang, fits:
    # x = u (size - side + 2 margin) - margin + side / 2 in pixels, rescaled to [-1, 1]
    centre = (u[:, 1:3] * 2 - 1) * (1 - (1 - 2 * overhang) * half)  # (N, 2)
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0) if aug.flip else torch.ones_like(side)
    angle = (u[:, 4] - 0.5) * (2 * math.radians(aug.rotate))
    return _theta(half, centre, angle, flip)


def color_matrices(u: torch.Tensor, channels: int, aug: Augment, mean=None, std=None):
    """Per view, the colour jitter as one affine map: (M (N, C, C), bias (N, C, 1), noise
    scale (N, C, 1, 1)) with jitter(v) + s n == M v + bias + scale n, from uniforms u (N, 4).

    The jitter is brightness (+b), contrast around 0.5 (x c), saturation around the channel
    mean (x s), each linear in v, so together M = c (s I + (1 - s) / C), bias = c b + 0.5 (1 - c).
    With mean and std (C,) the CLIP normalisation (x - mean) / std is folded in too."""
    j = u[:, :3] * (2 * aug.jitter) - aug.jitter  # (N, 3) in [-jitter, jitter]
    b, c = j[:, 0, None], j[:, 1, None] + 1  # (N, 1) brightness, contrast
    cs = c * (j[:, 2, None] + 1)  # (N, 1) contrast x saturation
    eye = _cached(_tensor, _identity(channels), u.dtype, u.device)  # (C, C)
    matrix = torch.addcmul(((c - cs) / channels)[:, :, None], cs[:, :, None], eye)  # (N, C, C)
    bias = (c * (b - 0.5) + 0.5).expand(-1, channels)  # (N, C)
    scale = (aug.noise * u[:, 3, None]).expand(-1, channels)  # (N, C) std in [0, noise]
    if mean is not None:
        mean, std = mean.reshape(1, channels).to(u), std.reshape(1, channels).to(u)
        matrix, bias, scale = matrix / std[..., None], (bias - mean) / std, scale / std
    return matrix, bias[..., None], scale[..., None, None]


def _identity(n: int) -> tuple:
    """The n x n identity matrix as nested tuples (a _tensor key)."""
    return tuple(tuple(float(i == j) for j in range(n)) for i in range(n))


def augment_colors(
    views: torch.Tensor, draws: CutoutDraws, aug: Augment, mean=None, std=None
) -> torch.Tensor:
    """Brightness, contrast, saturation jitter and Gaussian noise per view (N, C, h, w), in two
    batched ops; normalised for CLIP when mean and std are given."""
    n, c, h, w = views.shape
    matrix, bias, scale = color_matrices(draws.colors.to(views), c, aug, mean, std)
    out = torch.baddbmm(bias, matrix, views.reshape(n, c, h * w)).view(n, c, h, w)
    return torch.addcmul(out, scale, draws.noise.to(views))


def cutouts_from_draws(
    image: torch.Tensor,
    draws: CutoutDraws,
    cut_size: tuple,
    cut_pow: float,
    aug: Augment,
    overhang: float = 0.0,
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
    whole: int = 0,
) -> torch.Tensor:
    """The augmented views of image (1, C, H, W) that draws describe -> (N, C, h, w); the first
    `whole` of them span the whole (short side of the) image.
    A pure function (no RNG, no host sync); with mean/std, already CLIP-normalised."""
    theta = theta_from_boxes(
        draws.boxes.to(image.device),
        height=image.shape[-2],
        width=image.shape[-1],
        cut_size=cut_size,
        cut_pow=cut_pow,
        aug=aug,
        overhang=overhang,
        whole=whole,
    )
    return augment_colors(sample_views(image, theta, cut_size), draws, aug, mean, std)


def eval_theta(*, height: int, width: int) -> torch.Tensor:
    """(6, 2, 3) fixed views for the evaluation loss: the whole image (squashed), its centre
    square, and the four quadrants of that square. No randomness, no augmentation."""
    short = min(height, width)
    full = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    q = 0.5 * short / width, 0.5 * short / height  # quadrant centres' offsets
    side = torch.tensor([short, short / 2, short / 2, short / 2, short / 2], dtype=torch.float32)
    cx = torch.tensor([0.0, -q[0], q[0], -q[0], q[0]])
    cy = torch.tensor([0.0, -q[1], -q[1], q[1], q[1]])
    zeros, ones = torch.zeros(5), torch.ones(5)
    crops = crop_theta(side, cx, cy, zeros, ones, height=height, width=width)
    return torch.cat([full[None], crops])


def eval_views(image: torch.Tensor, cut_size: tuple) -> torch.Tensor:
    """The fixed evaluation views of image (1, C, H, W) -> (6, C, h, w)."""
    theta = eval_theta(height=image.shape[-2], width=image.shape[-1]).to(image.device)
    return sample_views(image, theta, cut_size)
