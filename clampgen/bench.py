"""Benchmark: clampgen's optimisation step against a notebook-style reference step, and the floor.

Four timings at identical settings, in one process, alternating step by step:
- reference: the VQGAN+CLIP notebooks' step, written here for comparison: a Python loop over
  cutouts, each sliced and resized on its own, fp32, eager; clamp, CLIP encode, spherical
  distance, Adam.
- clampgen: the project's step (batched cutouts and augmentations, the loop's objective).
- encoder_only: the CLIP image tower's forward and input-gradient backward alone on an
  already-made batch of cutouts (`bundle.encode_normalized`, the step's own encoder call, whose
  embedding normalisation is a few microseconds): what a step cannot go below.
- around_clip: clampgen's step with the image tower swapped for a linear map of each view's mean
  colour (same cutouts, loss, backward and Adam): everything around CLIP, timed by itself.

    python -m clampgen.bench                    # CPU, shapes architecture, 256², cutn 16
    python -m clampgen.bench --size 128,256,512 --cutn 8,16,32 --plot scaling.png  # growth
    python -m clampgen.bench --device cuda --model ViT-B-32 --size 512 --cutn 32 --compile --json
    python -m clampgen.bench --device cuda --model ViT-B-32 --generator vqgan --random-vqgan \
        --size 512 --cutn 32

CLIP weights are random except for the bundled shapes model (the compute is the same either
way). With --json the last line is one JSON object: the first configuration's figures at top
level, all of them under "runs".
"""

import dataclasses
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from clampgen.config import COMPILE_MODES, GenerateConfig
from clampgen.cutouts import Augment
from clampgen.generators import build_generator, list_generators, with_defaults
from clampgen.keepers import get_keeper
from clampgen.loop import (
    Guide,
    Targets,
    compile_forward,
    make_optimizer,
    spherical_dist,
    step_loss,
    trainable,
)
from clampgen.options import add_options, int_list, new_parser, option

# ------------------------------------------------------------------------------- the steps


def _reference_loss(image, bundle, target, cutn, cut_pow):
    """One model's loss the notebooks' way: cutouts sliced and resized one by one."""
    side_y, side_x = image.shape[2:4]
    max_size, min_size = min(side_x, side_y), min(side_x, side_y, bundle.input_size[0])
    cutouts = []
    for _ in range(cutn):
        size = int(torch.rand([]) ** cut_pow * (max_size - min_size) + min_size)
        ox = int(torch.randint(0, side_x - size + 1, ()))
        oy = int(torch.randint(0, side_y - size + 1, ()))
        cutout = image[:, :, oy : oy + size, ox : ox + size]
        cutouts.append(F.adaptive_avg_pool2d(cutout, bundle.input_size))
    batch = torch.cat(cutouts)  # (cutn, 3, h, w)
    batch = batch + 0.1 * torch.rand([]) * torch.randn_like(batch)
    emb = F.normalize(bundle.model.encode_image((batch - bundle.mean) / bundle.std), dim=-1)
    return spherical_dist(emb, target).mean()


def reference_step(gen, guides, opt, cutn, cut_pow, keeper):
    """The notebooks' step: per-cutout slicing and resizing in a Python loop, fp32, eager (each
    model of an ensemble in turn)."""
    image = keeper.forward(gen())  # (1, 3, H, W)
    loss = sum(_reference_loss(image, g.bundle, g.targets.embeds, cutn, cut_pow) for g in guides)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def clampgen_step(gen, guides, opt, cfg, keeper, aug, rng, forward=None):
    """The project's step: the loop's own forward (clampgen.loop.step_loss), backward, update."""
    loss = step_loss(gen, guides, cfg, keeper, aug, rng, forward=forward).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def encoder_step(batches, encodes):
    """The floor: each image tower's forward and input-gradient backward on a ready batch
    (encodes: the bundles' encode_normalized, or compiled copies)."""
    for batch, encode in zip(batches, encodes):
        batch.grad = None
        encode(batch).sum().backward()


class MeanColourTower(torch.nn.Module):
    """A stand-in image tower for the around_clip timing: views (N, 3, h, w) -> (N, D), a linear
    map of each view's mean colour (costs microseconds, so the step's time is what surrounds it)."""

    def __init__(self, dim: int, device):
        super().__init__()
        self.proj = torch.nn.Linear(3, dim, bias=False, device=device).requires_grad_(False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------- setup & timing


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t) * 1000


def make_image(cfg: GenerateConfig, size: int, device, seed: int = 0):
    """cfg's image parametrisation at size x size on device, initialised with noise (the app's
    own generator registry: a VQGAN comes from cfg's files and is loaded once per process)."""
    gen = build_generator(dataclasses.replace(cfg, size=(size, size)), device)
    gen.init_noise(torch.Generator(device).manual_seed(seed), 1.0)
    return gen


def _guide(bundle, weight: float = 1.0) -> Guide:
    """bundle with one random target prompt embedding of its width."""
    with torch.no_grad():  # the embedding width, whatever the image tower
        image = torch.zeros(1, 3, *bundle.input_size, device=bundle.device)
        dim = bundle.encode_image(image).shape[-1]
    target = F.normalize(torch.randn(1, dim, device=bundle.device), dim=-1)
    ones = torch.ones(1, device=bundle.device)
    floor = torch.full((1,), -math.inf, device=bundle.device)
    return Guide(bundle, Targets(target, ones, floor, ["t"]), weight)


def bench_one(
    bundles,
    size: int,
    cutn: int,
    steps: int,
    warmup: int,
    compile_: str = "off",
    cfg: GenerateConfig = None,
) -> dict:
    """ms/step (median) of the four steps at one size and cutn, alternating them. bundles: one
    CLIP model or a list (an ensemble: every step sums their losses). compile_: a torch.compile
    mode for clampgen's step and the floor alike, or 'off'; cfg: the generator, clamp and
    cutout options (the app's defaults otherwise)."""
    bundles = bundles if isinstance(bundles, list) else [bundles]
    device = bundles[0].device
    torch.manual_seed(0)
    guides = [_guide(b) for b in bundles]
    bare = [
        dataclasses.replace(
            g,
            bundle=dataclasses.replace(
                g.bundle, model=MeanColourTower(g.targets.embeds.shape[-1], device)
            ),
        )
        for g in guides
    ]
    cfg = with_defaults(dataclasses.replace(cfg or GenerateConfig(generator="pixel"), cutn=cutn))
    keeper = get_keeper(cfg.clamp)
    aug = Augment.from_config(cfg)
    rng = torch.Generator(device).manual_seed(0)
    ref_gen, our_gen, bare_gen = (make_image(cfg, size, device) for _ in range(3))
    ref_opt, our_opt, bare_opt = (
        make_optimizer(trainable(g), "adam", 0.05) for g in (ref_gen, our_gen, bare_gen)
    )
    bare_rng = torch.Generator(device).manual_seed(0)
    batches = [torch.rand(cutn, 3, *b.input_size, device=device).requires_grad_() for b in bundles]
    compiled = compile_ != "off"
    forward = compile_forward(compile_) if compiled else None
    bare_forward = compile_forward(compile_) if compiled else None  # its own graphs
    encodes = [
        torch.compile(b.encode_normalized, mode=compile_) if compiled else b.encode_normalized
        for b in bundles
    ]
    runs = {
        "reference": lambda: reference_step(ref_gen, guides, ref_opt, cutn, cfg.cut_pow, keeper),
        "clampgen": lambda: clampgen_step(our_gen, guides, our_opt, cfg, keeper, aug, rng, forward),
        "encoder_only": lambda: encoder_step(batches, encodes),
        "around_clip": lambda: clampgen_step(
            bare_gen, bare, bare_opt, cfg, keeper, aug, bare_rng, bare_forward
        ),
    }
    times, peaks = {k: [] for k in runs}, {k: 0.0 for k in runs}
    for i in range(warmup + steps):
        for name, fn in runs.items():  # alternate: drift in machine speed hits all alike
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            ms = _timed(fn, device)
            peaks[name] = max(peaks[name], _peak_memory_gib(device))
            if i >= warmup:
                times[name].append(ms)
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {
        "device": str(device),
        "model": ",".join(b.name for b in bundles),
        "generator": cfg.generator,
        "size": size,
        "cutn": cutn,
        "steps": steps,
        "compile": compile_,
        "reference_ms_per_step": ms["reference"],
        "clampgen_ms_per_step": ms["clampgen"],
        "encoder_only_ms_per_step": ms["encoder_only"],
        "around_clip_ms_per_step": ms["around_clip"],
        "speedup": ms["reference"] / ms["clampgen"],
        "overhead_vs_encoder": ms["clampgen"] / ms["encoder_only"],
        "around_clip_share": ms["around_clip"] / ms["clampgen"],
        "steps_per_s": 1000 / ms["clampgen"],
        "peak_memory_gib": peaks["clampgen"],  # CUDA: during clampgen's steps (weights included)
        "reference_peak_memory_gib": peaks["reference"],
        "peak_memory_kind": (
            "cuda max allocated during the step"
            if device.type == "cuda"
            else "process peak RSS (all four steps, the model and torch)"
        ),
    }


def _peak_memory_gib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ------------------------------------------------------------------------------- CLI


@dataclass
class BenchOptions:
    device: str = option("cpu", "cpu, cuda or auto")
    model: str = option(
        "shapes",
        "shapes (bundled) or an open_clip model name (random weights); a comma list times an "
        "ensemble (every step sums the models' losses)",
    )
    generator: str = option("pixel", "image parametrisation", choices=list_generators())
    size: list = option([256], "image side(s), comma-separated", type=int_list)
    cutn: list = option([16], "cutouts per step, comma-separated", type=int_list)
    steps: int = option(20, "timed steps per configuration")
    warmup: int = option(3, "untimed steps first")
    compile: str = option(
        "off",
        "torch.compile clampgen's step and the floor (fullgraph); MODE "
        "auto: reduce-overhead (CUDA graphs) on CUDA, default elsewhere",
        nargs="?",
        const="auto",
        metavar="MODE",
        choices=("auto", *COMPILE_MODES),
    )
    threads: int = option(0, "torch CPU threads (0: torch's default)")
    random_vqgan: bool = option(
        False,
        "--generator vqgan: random weights of the imagenet-f16 "
        "architecture, written as taming files to a temporary folder "
        "(the compute of vqgan_imagenet_f16_16384 without its checkpoint)",
    )
    json: bool = option(False, "print one JSON object as the last line")
    plot: str = option(
        "", "also draw ms/step against image size, a panel per cutn", metavar="FILE.png"
    )


VQGAN_FILES = ("vqgan_config", "vqgan_checkpoint")  # GenerateConfig options the bench takes too


def parse_args(argv=None) -> tuple:
    """argv -> (BenchOptions, GenerateConfig of the generator options)."""
    parser = new_parser("python -m clampgen.bench", __doc__)
    names = add_options(parser, BenchOptions)
    others = [n for n in GenerateConfig.__dataclass_fields__ if n not in VQGAN_FILES]
    add_options(parser, GenerateConfig, exclude=others)
    args = vars(parser.parse_args(argv))
    opts = BenchOptions(**{n: args[n] for n in names})
    return opts, GenerateConfig(generator=opts.generator, **{k: args[k] for k in VQGAN_FILES})


def write_random_vqgan(folder, ddconfig=None, n_embed=16384, embed_dim=256) -> tuple:
    """(config, checkpoint) paths of a random VQGAN (by default vqgan_imagenet_f16_16384's
    architecture), written in taming's format into folder."""
    from clampgen.vqgan import IMAGENET_F16, random_vqgan, save_taming

    folder, ddconfig = Path(folder), ddconfig or IMAGENET_F16
    model = random_vqgan(ddconfig, n_embed, embed_dim)
    return save_taming(model, ddconfig, folder / "random.yaml", folder / "random.ckpt")


def format_table(rows: list) -> str:
    head = (
        f"{'size':>5} {'cutn':>5} {'reference':>10} {'clampgen':>10} {'encoder':>10} "
        f"{'speedup':>8} {'step/enc':>8} {'around':>8} {'steps/s':>8} {'peak GiB':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['size']:>5} {r['cutn']:>5} {r['reference_ms_per_step']:>8.1f}ms "
            f"{r['clampgen_ms_per_step']:>8.1f}ms {r['encoder_only_ms_per_step']:>8.1f}ms "
            f"{r['speedup']:>7.2f}x {r['overhead_vs_encoder']:>7.2f}x "
            f"{r['around_clip_ms_per_step']:>6.1f}ms "
            f"{r['steps_per_s']:>8.1f} {r['peak_memory_gib']:>9.2f}"
        )
    return "\n".join(lines)


def plot_scaling(rows: list, path) -> None:
    """ms/step against image size, one panel per cutn: reference, clampgen, the floor and what
    surrounds CLIP."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    cutns = sorted({r["cutn"] for r in rows})
    fig = Figure(figsize=(3.2 * len(cutns), 3.2), layout="constrained")
    axes = fig.subplots(1, len(cutns), sharey=True, squeeze=False)[0]
    for ax, cutn in zip(axes, cutns):
        sel = sorted((r for r in rows if r["cutn"] == cutn), key=lambda r: r["size"])
        sizes = [r["size"] for r in sel]
        for key, label, style in (
            ("reference_ms_per_step", "reference (notebook)", "o--"),
            ("clampgen_ms_per_step", "clampgen", "o-"),
            ("encoder_only_ms_per_step", "floor (CLIP alone)", "s:"),
            ("around_clip_ms_per_step", "around CLIP alone", "^:"),
        ):
            ax.plot(sizes, [r[key] for r in sel], style, label=label)
        ax.set(xscale="log", yscale="log", title=f"cutn {cutn}", xlabel="image side (px)")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
    axes[0].set_ylabel("ms per step")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{rows[0]['model']} on {rows[0]['device']}: time per step")
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    opts, cfg = parse_args(argv)
    from clampgen.clip_loader import load_clip
    from clampgen.devices import resolve_device
    from clampgen.malloc import keep_freed_memory

    keep_freed_memory()  # as the CLI does: fair to all four steps, it speeds up each
    try:
        device = resolve_device(opts.device)
        # shapes: the shipped weights; others random (the compute is the same); a comma list times
        # an ensemble
        bundle = [load_clip(name.strip(), "", device) for name in opts.model.split(",")]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if opts.threads:
        torch.set_num_threads(opts.threads)
    mode = opts.compile
    if mode == "auto":
        mode = "reduce-overhead" if device.type == "cuda" else "default"
    with tempfile.TemporaryDirectory(prefix="clampgen-bench-") as tmp:
        if opts.random_vqgan:
            config, checkpoint = write_random_vqgan(tmp)
            cfg = dataclasses.replace(
                cfg, vqgan_config=str(config), vqgan_checkpoint=str(checkpoint)
            )
        rows = [
            bench_one(bundle, s, c, opts.steps, opts.warmup, mode, cfg)
            for s in opts.size
            for c in opts.cutn
        ]
    print(
        f"{opts.model}, {opts.generator} generator, on {device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads), "
        f"median of {opts.steps} steps, {rows[0]['peak_memory_kind']}"
    )
    print(format_table(rows))
    if opts.plot:
        plot_scaling(rows, opts.plot)
        print(f"wrote {opts.plot}")
    if opts.json:
        print(json.dumps({**rows[0], "runs": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
