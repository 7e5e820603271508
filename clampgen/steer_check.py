"""
Judged steering check: does the bundled `shapes` CLIP steer the generator to the prompted scene?

    python -m clampgen.steer_check --steps 100 --grid steer_grid.png
    python -m clampgen.steer_check --size 64 --generator pixel --lr 0.02 --seeds 2

One prompt per shape, "a <colour> <shape> on a <background> background" (colour pairs fixed
below), is generated with the generator's own defaults (--model shapes) unless overridden. The
final images are scored by judges that are not the guiding model (clampgen.models.judge): the
most common palette colour must be the background, the second most common the shape colour,
and the supervised shape classifier must name the shape. Prints one row per image and the
accuracies, and saves a grid of the images (rows: seeds, columns: shapes). Every generate.py
option (--generator, --steps, --size, --lr, --clamp, --pretrained ...) can be given.
"""

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clampgen.clip_loader import load_clip
from clampgen.config import GenerateConfig, merge_config
from clampgen.devices import resolve_device
from clampgen.loop import optimize
from clampgen.models import shapes_data
from clampgen.models.judge import colour_shares, judge_shapes, load_shape_judge
from clampgen.options import add_options, fields_of, new_parser, option
from clampgen.run import prepare

PAIRS = [
    ("red", "blue"),
    ("yellow", "black"),
    ("green", "white"),
    ("white", "purple"),
    ("orange", "grey"),
    ("blue", "yellow"),
    ("pink", "green"),
    ("black", "orange"),
]  # (shape, background)


VERDICTS = ("background_ok", "colour_ok", "colour_top3", "shape_ok")


def prompts():
    """[(prompt, shape, colour, background)] one per shape."""
    return [
        (shapes_data.describe(shape=s, colour=c, background=b), s, c, b)
        for s, (c, b) in zip(shapes_data.SHAPES, PAIRS)
    ]


def generate(cfg, bundle=None):
    """Runs the loop for cfg without writing files; returns the final image (1, 3, H, W)."""
    seen = {}
    optimize(
        **prepare(cfg, bundle), cfg=cfg, callback=lambda info: seen.update(image=info["image"])
    )
    return seen["image"].cpu()


def judge(image, shape, colour, background, shape_judge):
    """Judges one image (1, 3, H, W): dict of verdicts and what the judges saw.

    background_ok: the most common palette colour is the background; colour_ok: the second most
    common is the shape's colour (strict: noise pixels compete with a small object); colour_top3:
    the shape's colour is among the three most common after the background; shape_ok: the shape
    judge's top class is the prompted shape.
    """
    shares = colour_shares(image)[0]
    top = shares.topk(4).indices.tolist()
    probs = judge_shapes(shape_judge, image)[0]
    c = shapes_data.COLOURS.index(colour)
    return {
        "background_ok": shapes_data.COLOURS[top[0]] == background,
        "colour_ok": top[1] == c,
        "colour_top3": c in top[1:] and top[0] != c,
        "shape_ok": shapes_data.SHAPES[probs.argmax()] == shape,
        "judged_shape": shapes_data.SHAPES[probs.argmax()],
        "shape_prob": probs[shapes_data.SHAPES.index(shape)].item(),
        "colour_share": shares[c].item(),
        "colours_seen": ", ".join(f"{shapes_data.COLOURS[i]} {shares[i]:.2f}" for i in top[:3]),
    }


def run(base: GenerateConfig, seeds=1, progress=print, first_seed=0):
    """Generates and judges every prompt for seeds first_seed.. (seeds of them) with base's
    other options; returns (rows, images)."""
    bundle = load_clip(base.model, base.pretrained, resolve_device(base.device))
    shape_judge = load_shape_judge()
    rows, images = [], []
    for seed in range(first_seed, first_seed + seeds):
        for prompt, shape, colour, background in prompts():
            cfg = dataclasses.replace(base, prompt=prompt, seed=seed)
            image = generate(cfg, bundle)
            verdict = judge(image, shape, colour, background, shape_judge)
            rows.append({"prompt": prompt, "seed": seed, **verdict})
            images.append(F.interpolate(image, size=(128, 128), mode="nearest"))
            progress(_format_row(rows[-1]))
    return rows, images


def _format_row(r):
    marks = "".join("+" if r[k] else "-" for k in VERDICTS)
    return (
        f"{marks} seed {r['seed']} {r['prompt']!r}: judged {r['judged_shape']} "
        f"(p={r['shape_prob']:.2f}), shape colour share {r['colour_share']:.2f}, "
        f"top colours {r['colours_seen']}"
    )


def accuracies(rows):
    return {k: sum(r[k] for r in rows) / len(rows) for k in VERDICTS}


STEER_DEFAULTS = dict(model="shapes", progress=False, threads=1)
PER_RUN = ("prompt", "image_prompts", "out", "seed")  # set for each image


@dataclass
class SteerOptions:
    seeds: int = option(1, "seeds per prompt")
    first_seed: int = option(0, "first seed (then +1, +2, ...)")
    grid: str = option("steer_grid.png", "where to save the grid of final images")


def main(argv=None):
    parser = new_parser("python -m clampgen.steer_check", __doc__)
    names = add_options(parser, SteerOptions)
    add_options(parser, GenerateConfig, defaults=STEER_DEFAULTS, exclude=PER_RUN, suppress=True)
    args = vars(parser.parse_args(argv))
    opts = SteerOptions(**{n: args[n] for n in names})
    given = {k: v for k, v in args.items() if k in fields_of(GenerateConfig)}
    base = merge_config(GenerateConfig(), STEER_DEFAULTS, given)
    if base.threads > 0:
        torch.set_num_threads(base.threads)
    rows, images = run(base, opts.seeds, first_seed=opts.first_seed)
    acc = accuracies(rows)
    print(
        " ".join(f"{k} {100 * v:.0f}%" for k, v in acc.items()),
        f"({len(rows)} images, {given or 'defaults'})",
    )
    from torchvision.utils import save_image

    save_image(torch.cat(images), opts.grid, nrow=len(shapes_data.SHAPES), padding=2, pad_value=1.0)
    print(f"saved {opts.grid}")


if __name__ == "__main__":
    main()
