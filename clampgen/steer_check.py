"""
Judged steering check: does the bundled `shapes` CLIP steer each generator to the prompted scene?

    python -m clampgen.steer_check --generators pixel,fft,vqgan --seconds 8 --seeds 3
    python -m clampgen.steer_check --seeds 1 --steps 100           # the default generator only
    python -m clampgen.steer_check --size 64 --generator pixel --lr 0.02 --seeds 2

One prompt per shape, "a <colour> <shape> on a <background> background" (colour pairs fixed
below), is generated with the generator's own defaults (--model shapes) unless overridden. The
final images are scored by judges that are not the guiding model (clampgen.models.judge): the
most common palette colour must be the background, the second most common the shape colour,
the supervised shape classifier must name the shape, and `clean` is the share of pixels within
0.15 of the background's or the shape's palette colour (speckle and halos lower it).

With --seconds S each generator of --generators gets the same wall-clock budget per image: its
time per step is measured first (a short run of the first prompt), and its step count is S over
that, printed and recorded (give --steps to pin one count for all). Writes, in --out, the rows
(rows.json), a markdown summary (summary.md) and a labelled grid of the final images
(grid.jpg: rows generator x seed, columns prompts). Every generate.py option (--steps, --size,
--lr, --clamp, --pretrained ...) can be given.
"""

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from clampgen.config import GenerateConfig, merge_config
from clampgen.devices import resolve_device
from clampgen.generators import with_defaults
from clampgen.guides import load_bundles
from clampgen.judges import judge_scene as judge
from clampgen.loop import eval_loss, optimize
from clampgen.models import shapes_data
from clampgen.models.judge import load_shape_judge
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
LOSSES = ("eval_loss", "render_loss", "gap")  # the guide's, at the image and a clean render


def prompts(prompt_seed=None):
    """[(prompt, shape, colour, background)] one per shape: the colour pairs of PAIRS, or with
    prompt_seed, pairs drawn from the world's own law (a background, then a shape colour among
    the other nine) by a generator seeded with it: a held-out set."""
    pairs = PAIRS
    if prompt_seed is not None:
        g, n = torch.Generator().manual_seed(prompt_seed), len(shapes_data.COLOURS)
        backgrounds = torch.randint(n, (len(shapes_data.SHAPES),), generator=g)
        colours = (backgrounds + torch.randint(1, n, backgrounds.shape, generator=g)) % n
        pairs = [
            (shapes_data.COLOURS[c], shapes_data.COLOURS[b])
            for c, b in zip(colours.tolist(), backgrounds.tolist())
        ]
    return [
        (shapes_data.describe(shape=s, colour=c, background=b), s, c, b)
        for s, (c, b) in zip(shapes_data.SHAPES, pairs)
    ]


def generate(cfg, bundle=None):
    """Runs the loop for cfg without writing files; returns the final image (1, 3, H, W) and the
    guides that steered it."""
    seen, parts = {}, prepare(cfg, bundle)
    optimize(**parts, cfg=cfg, callback=lambda info: seen.update(image=info["image"]))
    return seen["image"].cpu(), parts["guides"]


def optimisation_gap(image, guides, shape, colour, background) -> dict:
    """The guide's evaluation loss (CLIP terms only, its fixed views) of image and of a clean
    render of the prompt's scene (one large object in the centre, palette colours): how far the
    optimiser stopped from an image the guide itself prefers. A gap near 0 or below says the
    optimiser reached what the guide asks for (a failure is then the guide's); a large gap is
    the optimiser's."""
    scene = shapes_data.single_scene(shape, colour, background)
    render = shapes_data.render(scene, size=image.shape[-1])[..., : image.shape[-2], :]
    device = guides[0].bundle.device
    final = eval_loss(image.to(device), guides)
    clean = eval_loss(render.to(device), guides)
    return {"eval_loss": final, "render_loss": clean, "gap": final - clean}


def run(base: GenerateConfig, seeds=1, progress=print, first_seed=0, bundle=None, prompt_seed=None):
    """Generates and judges every prompt (prompts(prompt_seed)) for seeds first_seed.. (seeds of
    them) with base's other options; returns (rows, images)."""
    bundle = bundle or load_bundles(base, resolve_device(base.device))
    shape_judge = load_shape_judge()
    rows, images = [], []
    for seed in range(first_seed, first_seed + seeds):
        for prompt, shape, colour, background in prompts(prompt_seed):
            cfg = dataclasses.replace(base, prompt=prompt, seed=seed)
            image, guides = generate(cfg, bundle)
            verdict = judge(image, shape, colour, background, shape_judge)
            rows.append(
                {
                    "generator": cfg.generator,
                    "steps": cfg.steps,
                    "prompt": prompt,
                    "seed": seed,
                    **verdict,
                    **optimisation_gap(image, guides, shape, colour, background),
                }
            )
            images.append(F.interpolate(image, size=(128, 128), mode="nearest"))
            progress(_format_row(rows[-1]))
    return rows, images


def seconds_per_step(base: GenerateConfig, bundle, steps: int = 12, warmup: int = 3) -> float:
    """base's time per step, measured on the first prompt: `steps` timed after `warmup`."""
    cfg = dataclasses.replace(
        base, prompt=prompts()[0][0], seed=0, steps=warmup + steps, eval_every=0
    )
    parts = prepare(cfg, bundle)
    marks = {}

    def clock(info):
        if info["step"] in (warmup, warmup + steps):
            marks[info["step"]] = time.perf_counter()

    optimize(**parts, cfg=cfg, callback=clock)
    return (marks[warmup + steps] - marks[warmup]) / steps


def _format_row(r):
    marks = "".join("+" if r[k] else "-" for k in VERDICTS)
    return (
        f"{marks} {r['generator']} seed {r['seed']} {r['prompt']!r}: judged {r['judged_shape']} "
        f"(p={r['shape_prob']:.2f}), shape colour share {r['colour_share']:.2f}, "
        f"top colours {r['colours_seen']}, clean {r['clean']:.2f}, guide's loss "
        f"{r['eval_loss']:.3f} (clean render {r['render_loss']:.3f}, gap {r['gap']:+.3f})"
    )


def accuracies(rows):
    """The share of rows passing each verdict, and the mean clean share."""
    return {
        **{k: sum(r[k] for r in rows) / len(rows) for k in VERDICTS},
        **{k: sum(r[k] for r in rows) / len(rows) for k in ("clean", *LOSSES)},
    }


def summary_markdown(results: dict, note: str) -> str:
    """summary.md: a row per generator (its steps, seconds per step and accuracies)."""
    header = [
        "generator",
        "steps",
        "s/step",
        "images",
        "background right",
        "shape colour 2nd",
        "shape colour top 3",
        "shape judge right",
        "clean pixels",
        "guide's loss",
        "clean render's",
        "gap",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        acc = r["accuracies"]
        cells = [name, str(r["steps"]), f"{r['seconds_per_step']:.3f}", str(len(r["rows"]))]
        cells += [f"{100 * acc[k]:.0f} %" for k in VERDICTS] + [f"{100 * acc['clean']:.0f} %"]
        cells += [f"{acc[k]:.3f}" for k in LOSSES]
        lines.append("| " + " | ".join(cells) + " |")
    return "# Judged steering\n\n" + note + "\n\n" + "\n".join(lines) + "\n"


def save_grid(images_by_generator: dict, seeds: list, path, prompt_seed=None) -> None:
    """grid.jpg: rows generator x seed, columns the prompts, each labelled."""
    from matplotlib.figure import Figure

    rows = [
        (g, s, images[i * len(PAIRS) : (i + 1) * len(PAIRS)])
        for g, images in images_by_generator.items()
        for i, s in enumerate(seeds)
    ]
    fig = Figure(figsize=(1.3 * len(PAIRS), 1.3 * len(rows) + 0.4), dpi=100, layout="constrained")
    axes = fig.subplots(len(rows), len(PAIRS), squeeze=False)
    for r, (generator, seed, images) in enumerate(rows):
        for c, image in enumerate(images):
            axes[r][c].imshow(image[0].permute(1, 2, 0).clamp(0, 1).numpy())
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(f"{generator}\nseed {seed}", fontsize=8)
    for c, (prompt, *_) in enumerate(prompts(prompt_seed)):
        axes[0][c].set_title(prompt.replace(" on a ", "\non a "), fontsize=6)
    fig.savefig(path, pil_kwargs={"quality": 88})


STEER_DEFAULTS = dict(model="shapes", progress=False, threads=1, eval_every=0, save_every=0)
PER_RUN = ("prompt", "image_prompts", "out", "seed")  # set for each image


@dataclass
class SteerOptions:
    seeds: int = option(1, "seeds per prompt")
    first_seed: int = option(0, "first seed (then +1, +2, ...)")
    prompt_seed: int = option(
        -1,
        "draw the 8 prompts' colours from the world's law with this seed (a held-out set; "
        "-1: the fixed pairs the defaults were tuned on)",
    )
    generators: str = option("", "comma list of generators to compare (default: --generator)")
    seconds: float = option(
        0.0,
        "wall-clock budget per image: each generator's steps are this "
        "over its measured time per step (0: --steps for all)",
    )
    out: str = option("results/steer", "folder for rows.json, summary.md and grid.jpg")


def main(argv=None):
    parser = new_parser("python -m clampgen.steer_check", __doc__)
    names = add_options(parser, SteerOptions)
    add_options(parser, GenerateConfig, defaults=STEER_DEFAULTS, exclude=PER_RUN, suppress=True)
    args = vars(parser.parse_args(argv))
    opts = SteerOptions(**{n: args[n] for n in names})
    given = {k: v for k, v in args.items() if k in fields_of(GenerateConfig) and k not in names}
    base = merge_config(GenerateConfig(), STEER_DEFAULTS, given)
    if base.threads > 0:
        torch.set_num_threads(base.threads)
    generators = [g.strip() for g in opts.generators.split(",") if g.strip()] or [base.generator]
    bundle = load_bundles(base, resolve_device(base.device))
    prompt_seed = None if opts.prompt_seed < 0 else opts.prompt_seed
    results, images = {}, {}
    for name in generators:
        cfg = with_defaults(dataclasses.replace(base, generator=name))
        per_step = seconds_per_step(cfg, bundle)
        if opts.seconds and "steps" not in given:
            cfg = dataclasses.replace(cfg, steps=max(1, int(opts.seconds / per_step)))
        print(f"{name}: {per_step:.3f} s/step measured, {cfg.steps} steps per image")
        rows, images[name] = run(
            cfg, opts.seeds, first_seed=opts.first_seed, bundle=bundle, prompt_seed=prompt_seed
        )
        results[name] = {
            "steps": cfg.steps,
            "seconds_per_step": per_step,
            "rows": rows,
            "accuracies": accuracies(rows),
        }
        acc = results[name]["accuracies"]
        shares = " ".join(f"{k} {100 * acc[k]:.0f}%" for k in (*VERDICTS, "clean"))
        print(name, shares, " ".join(f"{k} {acc[k]:.3f}" for k in LOSSES))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(results, indent=1) + "\n")
    steps = f"{base.steps} steps" if base.steps else "each generator's default steps"
    budget = f"{opts.seconds:g} s per image" if opts.seconds else steps
    note = (
        f"{budget}, seeds {opts.first_seed}..{opts.first_seed + opts.seeds - 1}, "
        f"prompts {'of PAIRS' if prompt_seed is None else f'drawn with seed {prompt_seed}'}, "
        f"{base.size[0]}x{base.size[1]}, {base.threads} thread(s); options given: "
        f"{given or 'none'}."
    )
    (out / "summary.md").write_text(summary_markdown(results, note))
    seeds = list(range(opts.first_seed, opts.first_seed + opts.seeds))
    save_grid(images, seeds, out / "grid.jpg", prompt_seed)
    print(f"wrote {out / 'summary.md'}, {out / 'rows.json'} and {out / 'grid.jpg'}")


if __name__ == "__main__":
    main()
