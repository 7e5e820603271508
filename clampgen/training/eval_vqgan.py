"""
Held-out figures of a shapes VQGAN, read through the project's own taming-format loader.

    python -m clampgen.training.eval_vqgan                      # the bundled VQGAN, 500 scenes
    python -m clampgen.training.eval_vqgan --config my.yaml --checkpoint my.ckpt --grid g.png

Held-out scenes come from --seed (training never uses it), rendered at 64 and 128 px (the
generator's default size). Per size: reconstruction PSNR (mean, median, 10th percentile), the
independent judges on originals and on reconstructions (clampgen.models.judge: the shape
classifier, and the background / shape colour read from pixel colour shares), the share of the
codebook used and its perplexity, and the share of decoded values outside [0, 1] (what a clamp
acts on). --grid saves originals above their reconstructions.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clampgen.models import shapes_data
from clampgen.models.judge import judge_shapes, load_shape_judge, scene_colours
from clampgen.models.shapes_vqgan import SHAPES_VQGAN_CHECKPOINT, SHAPES_VQGAN_CONFIG
from clampgen.options import option, parse_options
from clampgen.vqgan import load_vqgan

EVAL_SEED = 12345


@torch.no_grad()
def reconstruct(model, images, batch: int = 50):
    """images (N, 3, H, W) in [0, 1] -> (decoded images unclamped (N, 3, H, W), code indices
    (N, H/f, W/f)), through the loader's path: encode to the nearest codes, decode."""
    decoded, codes = [], []
    for x in images.split(batch):
        h = model.quant_conv(model.encoder(x * 2 - 1))  # (B, D, h, w)
        idx = model.quantize.indices(h)  # (B, h, w)
        decoded.append((model.decode(model.quantize.codebook[idx].movedim(-1, 1)) + 1) / 2)
        codes.append(idx)
    return torch.cat(decoded), torch.cat(codes)


def psnr(a, b):
    """(N,) PSNR in dB of images in [0, 1]."""
    return -10 * torch.log10((a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10))


def _percent(correct) -> float:
    return 100 * correct.float().mean().item()


@torch.no_grad()
def evaluate(model, n: int = 500, sizes=(64, 128), seed: int = EVAL_SEED) -> dict:
    """{size: figures} on n held-out scenes (see the module docstring)."""
    scenes = shapes_data.sample_scenes(n, torch.Generator().manual_seed(seed))
    judge, n_codes = load_shape_judge(), model.quantize.codebook.shape[0]
    result = {}
    for size in sizes:
        images = shapes_data.render(scenes, size=size)
        decoded, codes = reconstruct(model, images)
        recon = decoded.clamp(0, 1)
        db = psnr(recon, images)
        counts = torch.bincount(codes.flatten(), minlength=n_codes).float()
        p = counts[counts > 0] / counts.sum()
        (bg, colour), (bg_r, colour_r) = scene_colours(images), scene_colours(recon)
        shape, shape_r = judge_shapes(judge, images).argmax(1), judge_shapes(judge, recon).argmax(1)
        result[size] = {
            "psnr_mean": db.mean().item(),
            "psnr_median": db.median().item(),
            "psnr_p10": db.quantile(0.1).item(),
            "shape_judge": _percent(shape == scenes.shape),
            "shape_judge_recon": _percent(shape_r == scenes.shape),
            "background": _percent(bg == scenes.background),
            "background_recon": _percent(bg_r == scenes.background),
            "colour": _percent(colour == scenes.colour),
            "colour_recon": _percent(colour_r == scenes.colour),
            "codes_used": int((counts > 0).sum()),
            "code_share": (counts > 0).float().mean().item(),
            "perplexity": math.exp(-(p * p.log()).sum().item()),
            "out_of_range": ((decoded < 0) | (decoded > 1)).float().mean().item(),
        }
    return result


def format_report(result: dict) -> str:
    """One line per size."""
    lines = []
    for size, r in result.items():
        lines.append(
            f"{size}px: PSNR {r['psnr_mean']:.2f} dB (median {r['psnr_median']:.2f}, "
            f"p10 {r['psnr_p10']:.2f}); shape judge {r['shape_judge']:.1f}% -> "
            f"{r['shape_judge_recon']:.1f}%, background {r['background']:.1f}% -> "
            f"{r['background_recon']:.1f}%, colour {r['colour']:.1f}% -> {r['colour_recon']:.1f}%;"
            f" codes used {r['codes_used']} ({100 * r['code_share']:.0f}%), perplexity "
            f"{r['perplexity']:.0f}; decoded values out of [0, 1] {100 * r['out_of_range']:.2f}%"
        )
    return "\n".join(lines)


@torch.no_grad()
def save_grid(model, path, n: int = 10, sizes=(128, 64), seed: int = EVAL_SEED) -> None:
    """n held-out scenes, per size an originals row above its reconstructions row, 2 px apart
    (smaller sizes shown enlarged to the first, nearest neighbour)."""
    from torchvision.utils import save_image

    scenes = shapes_data.sample_scenes(n, torch.Generator().manual_seed(seed))
    rows = []
    for size in sizes:
        images = shapes_data.render(scenes, size=size)  # (n, 3, size, size)
        recon = reconstruct(model, images)[0].clamp(0, 1)
        rows += [F.interpolate(x, size=sizes[0], mode="nearest") for x in (images, recon)]
    save_image(torch.cat(rows), path, nrow=n, padding=2, pad_value=1.0)


@dataclass
class EvalOptions:
    config: str = option(str(SHAPES_VQGAN_CONFIG), "taming .yaml of the VQGAN")
    checkpoint: str = option(str(SHAPES_VQGAN_CHECKPOINT), "taming .ckpt of the VQGAN")
    n: int = option(500, "number of held-out scenes")
    seed: int = option(EVAL_SEED, "seed of the held-out scenes")
    grid: str = option("", "also save originals above reconstructions, 128 and 64 px, here")


def main(argv=None):
    args = parse_options(
        EvalOptions, argv, prog="python -m clampgen.training.eval_vqgan", description=__doc__
    )
    torch.set_num_threads(1)
    model = load_vqgan(args.config, args.checkpoint)
    print(format_report(evaluate(model, args.n, seed=args.seed)))
    if args.grid:
        save_grid(model, args.grid, seed=args.seed)
        print(f"saved {args.grid}")


if __name__ == "__main__":
    main()
