"""Batched cutouts and augmentations, all random draws from one explicit `torch.Generator`.

Every cutout is one affine map (crop box, rotation, flip) of the image; they are taken with one
`F.grid_sample` call per level of an average-pooling pyramid (no Python loop per cutout), so
large crops are antialiased and the cost per cutout does not grow with the image size. Colour jitter and noise follow,
batched too.

Crop sizes follow the VQGAN+CLIP notebooks' `MakeCutouts`: side = u ** cut_pow * (max - min) + min
with min = the model's input size (or the image's short side if smaller), max = the short side.

The random stream is consumed identically whatever the image values and the augmentation
settings (every draw happens every call, with fixed shapes), so runs that differ only in the
clamp see identical cutouts: the A/B fairness rule of DEVELOPERS.md.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    flip: bool = True      # random horizontal flips
    rotate: float = 5.0    # max rotation, degrees
    jitter: float = 0.05   # brightness / contrast / saturation jitter strength
    noise: float = 0.1     # max std of additive Gaussian noise (per cutout, uniform in [0, noise])


def _pyramid(image: torch.Tensor, cut_size: tuple) -> list:
    """image (1, C, H, W) and its 2x average-pooled reductions while they still cover 2x cut_size."""
    levels = [image]
    while min(levels[-1].shape[-2] / cut_size[0], levels[-1].shape[-1] / cut_size[1]) >= 2 \
            and min(levels[-1].shape[-2:]) % 2 == 0:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return levels


def _levels(theta: torch.Tensor, height: int, width: int, cut_size: tuple, n_levels: int):
    """(level, k) per view, both (N,): the pyramid level at which the view spans r x cut_size
    pixels with r nearest 1 (r in [0.71, 1.41), as in mip-mapping), and a supersampling factor
    k, 1 unless the view is larger than the coarsest level allows."""
    side = torch.maximum(theta[:, 0, :2].norm(dim=-1) * width / cut_size[1],
                         theta[:, 1, :2].norm(dim=-1) * height / cut_size[0])  # (N,) view side / cut
    level = side.clamp(min=1).log2().round().clamp(max=n_levels - 1)         # r in [0.71, 1.41)
    k = (side / 2 ** level / 2 ** 0.5).sub(1e-4).ceil().clamp(1, 4)        # > 1 only past the top
    return level.long(), k.long()


def sample_views(image: torch.Tensor, theta: torch.Tensor, cut_size: tuple) -> torch.Tensor:
    """Views of image (1, C, H, W) through affine maps theta (N, 2, 3) -> (N, C, h, w).

    Antialiased at any image size for a fixed cost per view: each view is sampled bilinearly from
    the level of an average-pooling pyramid where its scale is nearest 1:1 (mip-mapping).
    Identity views and exact 2^n downscales are exact. Views keep their order."""
    levels = _pyramid(image, cut_size)
    level, ks = _levels(theta, image.shape[-2], image.shape[-1], cut_size, len(levels))
    n, c = theta.shape[0], image.shape[1]
    parts, order = [], []
    for key in (level * 8 + ks).unique().tolist():  # a few groups: one per (level, k)
        i, k = divmod(key, 8)
        idx = (level * 8 + ks == key).nonzero().flatten()
        grid = F.affine_grid(theta[idx].to(image.dtype), (len(idx), c, cut_size[0] * k, cut_size[1] * k),
                             align_corners=False)                          # (n_i, h*k, w*k, 2)
        views = F.grid_sample(levels[i].expand(len(idx), -1, -1, -1), grid, mode='bilinear',
                              padding_mode='reflection', align_corners=False)
        parts.append(F.avg_pool2d(views, k) if k > 1 else views)           # (n_i, C, h, w)
        order.append(idx)
    inverse = torch.empty(n, dtype=torch.long, device=theta.device)
    inverse[torch.cat(order)] = torch.arange(n, device=theta.device)
    return torch.cat(parts)[inverse]                                       # (N, C, h, w)


def crop_theta(side, cx, cy, angle, flip, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) affine maps for square crops of `side` pixels centred at (cx, cy) in [-1, 1]
    coordinates, rotated by angle (radians) and mirrored where flip is -1."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = side / width, side / height  # half-extent of the crop in normalised coordinates
    theta = torch.stack([
        torch.stack([sx * cos * flip, -sx * sin, cx], dim=-1),
        torch.stack([sy * sin * flip, sy * cos, cy], dim=-1),
    ], dim=1)                                                              # (N, 2, 3)
    return theta


def random_theta(n: int, height: int, width: int, cut_size: tuple, cut_pow: float,
                 aug: Augment, rng: torch.Generator, overhang: float = 0.0) -> torch.Tensor:
    """(N, 2, 3) random crop boxes (notebook size law), rotations and flips.

    overhang > 0 lets a crop extend past the image edge by up to overhang * its side (filled
    by reflection): with 0, as in the notebooks, a border pixel is only inside crops that touch
    the edge, gets few gradients and stays at its initial value (a grey frame)."""
    u = torch.rand((n, 5), generator=rng, device=rng.device)  # size, x, y, flip, angle
    short = min(height, width)
    min_side = min(short, min(cut_size))
    side = u[:, 0] ** cut_pow * (short - min_side) + min_side           # (N,) pixels
    margin = overhang * side                                            # (N,) pixels
    cx = (u[:, 1] * (width - side + 2 * margin) - margin + side / 2) / width * 2 - 1   # [-1, 1]
    cy = (u[:, 2] * (height - side + 2 * margin) - margin + side / 2) / height * 2 - 1
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0) if aug.flip else torch.ones_like(side)
    angle = (u[:, 4] * 2 - 1) * math.radians(aug.rotate)
    return crop_theta(side, cx, cy, angle, flip, height, width)


def augment_colors(views: torch.Tensor, aug: Augment, rng: torch.Generator) -> torch.Tensor:
    """Brightness, contrast (around 0.5), saturation jitter and Gaussian noise, per view."""
    n = views.shape[0]
    u = torch.rand((n, 4, 1, 1, 1), generator=rng, device=rng.device).to(views) * 2 - 1
    noise = torch.randn(views.shape, generator=rng, device=rng.device).to(views)  # (N, C, h, w)
    views = views + aug.jitter * u[:, 0]                                  # brightness
    views = (views - 0.5) * (1 + aug.jitter * u[:, 1]) + 0.5              # contrast
    gray = views.mean(dim=1, keepdim=True)                                # (N, 1, h, w)
    views = gray + (views - gray) * (1 + aug.jitter * u[:, 2])            # saturation
    return views + aug.noise * (u[:, 3] + 1) / 2 * noise                  # noise std in [0, noise]


def make_cutouts(image: torch.Tensor, cutn: int, cut_size: tuple, cut_pow: float,
                 aug: Augment, rng: torch.Generator, overhang: float = 0.0) -> torch.Tensor:
    """cutn random augmented views of image (1, C, H, W) -> (cutn, C, h, w)."""
    theta = random_theta(cutn, image.shape[-2], image.shape[-1], cut_size, cut_pow, aug, rng,
                         overhang)
    views = sample_views(image, theta.to(image.device), cut_size)
    return augment_colors(views, aug, rng)


def eval_theta(height: int, width: int) -> torch.Tensor:
    """(6, 2, 3) fixed views for the evaluation loss: the whole image (squashed), its centre
    square, and the four quadrants of that square. No randomness, no augmentation."""
    short = min(height, width)
    full = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    q = 0.5 * short / width, 0.5 * short / height  # quadrant centres' offsets
    side = torch.tensor([short, short / 2, short / 2, short / 2, short / 2], dtype=torch.float32)
    cx = torch.tensor([0.0, -q[0], q[0], -q[0], q[0]])
    cy = torch.tensor([0.0, -q[1], -q[1], q[1], q[1]])
    zeros, ones = torch.zeros(5), torch.ones(5)
    crops = crop_theta(side, cx, cy, zeros, ones, height, width)
    return torch.cat([full[None], crops])


def eval_views(image: torch.Tensor, cut_size: tuple) -> torch.Tensor:
    """The fixed evaluation views of image (1, C, H, W) -> (6, C, h, w)."""
    theta = eval_theta(image.shape[-2], image.shape[-1]).to(image.device)
    return sample_views(image, theta, cut_size)
