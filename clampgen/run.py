"""One run directory end to end: check the config, load CLIP, build the generator, run the loop
with the writers, and finish final.png, progress.gif, loss.png and run.json.

    from clampgen.config import GenerateConfig
    from clampgen.run import run_one
    summary = run_one(GenerateConfig(prompt="a red circle", steps=50, seed=0), "results/red")

`run_one` takes an already loaded `bundle` (clip_loader.load_clip) so that a comparison runs
every clamp variant without reloading the model. A run owns two `torch.Generator`s derived from
`cfg.seed`: one for the initial image (on the CPU, so every device starts from the same pixels)
and one for the cutouts/augmentations (on the run's device).
"""

import contextlib
import dataclasses
import logging
import math
import os
import secrets
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from clampgen import generators, rundir
from clampgen.checkpoint import CheckpointWriter, load_checkpoint, restore
from clampgen.clip_loader import load_clip
from clampgen.config import COMPILE_MODES, INITS, GenerateConfig, merge_config
from clampgen.cutouts import eval_views
from clampgen.devices import resolve_device
from clampgen.keepers import get_keeper, list_variants
from clampgen.loop import OPTIMIZERS, Targets, make_optimizer, optimize, trainable
from clampgen.prompts import parse_image_prompt, parse_prompts, slug
from clampgen.writers import (
    FrameWriter,
    MetricsWriter,
    ProgressBar,
    StepSizeWriter,
    compose,
    plot_metrics,
    save_png,
    write_gif,
)

log = logging.getLogger(__name__)


def check_config(cfg: GenerateConfig) -> None:
    """Raises ValueError / FileNotFoundError for any option that cannot work (before any output)."""
    if not parse_prompts(cfg.prompt) and not cfg.image_prompts:
        raise ValueError("no prompt: give a text PROMPT and/or --image-prompt FILE")
    for spec in cfg.image_prompts:
        _check_file(parse_image_prompt(spec).text, "image prompt")
    if cfg.init not in INITS:
        _check_file(cfg.init, f"--init (not one of {', '.join(INITS)})")
    positive = {
        "steps": cfg.steps,
        "cutn": cfg.cutn,
        "log_every": cfg.log_every,
        "width": cfg.width,
        "height": cfg.height,
        "lr": cfg.lr,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    for name in ("eval_every", "save_every"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0")
    for what, value, choices in (
        ("clamp", cfg.clamp, list_variants()),
        ("optimizer", cfg.optimizer, list(OPTIMIZERS)),
        ("compile mode", cfg.compile, list(COMPILE_MODES)),
        ("generator", cfg.generator, generators.list_generators()),
    ):
        if value not in choices:
            raise ValueError(f"unknown {what} '{value}' (choose from: {', '.join(choices)})")
    generators.check_generator(cfg)
    _check_keeper(cfg)
    resolve_device(cfg.device)


def _check_keeper(cfg):
    """The clamp or keeper must apply to the generator and the optimizer."""
    why_not = get_keeper(cfg.clamp).why_not(cfg.generator, cfg.optimizer)
    if why_not:
        raise ValueError(why_not)
    if cfg.step_sizes and cfg.generator != "pixel":
        raise ValueError(
            "--step-sizes measures the pixel generator's pixels: use --generator pixel"
        )


def _check_file(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file not found: {path}")


def with_seed(cfg: GenerateConfig) -> GenerateConfig:
    """cfg with a concrete seed (a fresh random one if cfg.seed is None)."""
    if cfg.seed is not None:
        return cfg
    return dataclasses.replace(cfg, seed=secrets.randbelow(2**31))


def seeded_streams(seed: int, device) -> tuple:
    """(init_rng on CPU, cutout_rng on device): independent torch.Generators from one seed."""
    init_seed, cut_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    init_rng = torch.Generator("cpu").manual_seed(int(init_seed) >> 1)
    cut_rng = torch.Generator(torch.device(device)).manual_seed(int(cut_seed) >> 1)
    return init_rng, cut_rng


def default_run_dir(cfg: GenerateConfig, root="results", name: str = "") -> Path:
    """results/<YYYYmmdd-HHMMSS>-<name, default the first prompt's slug>, with -2, -3, ... if
    that already exists."""
    first = parse_prompts(cfg.prompt)
    return rundir.timestamped_dir(slug(name or (first[0].text if first else "image-prompt")), root)


def build_targets(cfg: GenerateConfig, bundle) -> Targets:
    """Embeds the text and image prompts: one Targets row per prompt, text prompts first."""
    texts, images = parse_prompts(cfg.prompt), [parse_image_prompt(s) for s in cfg.image_prompts]
    embeds = [bundle.encode_text([p.text for p in texts])] if texts else []
    with torch.no_grad():
        for p in images:  # mean embedding of the fixed views of the image
            img = generators.load_image(p.text, height=cfg.height, width=cfg.width)
            img = img.to(bundle.device)
            emb = bundle.encode_image(eval_views(img, bundle.input_size)).mean(0, keepdim=True)
            embeds.append(torch.nn.functional.normalize(emb, dim=-1))
    prompts = texts + images
    return Targets(
        torch.cat(embeds),
        torch.tensor([p.weight for p in prompts], device=bundle.device),
        torch.tensor([p.stop for p in prompts], device=bundle.device),
        [p.text for p in prompts],
    )


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import open_clip

    try:
        own = version("clampgen")
    except PackageNotFoundError:
        own = "unknown"
    return {"clampgen": own, "torch": torch.__version__, "open_clip": open_clip.__version__}


def _metadata(cfg, bundle, summary) -> dict:
    """PNG text chunks of final.png."""
    return {
        "prompt": cfg.prompt,
        "image_prompts": " | ".join(cfg.image_prompts),
        "seed": cfg.seed,
        "clamp": cfg.clamp,
        "generator": cfg.generator,
        "model": bundle.name,
        "pretrained": bundle.pretrained,
        "steps": summary["steps_done"],
        "version": versions()["clampgen"],
        "software": "clampgen",
    }


def prepare(cfg: GenerateConfig, bundle=None) -> dict:
    """Everything optimize() needs for cfg (seed resolved first, see with_seed):
    {'generator', 'bundle', 'targets', 'rng', 'init_image'}, so that from Python

        optimize(**prepare(cfg), cfg=cfg, callback=my_callback)

    runs exactly what `run_one` runs, without files."""
    if cfg.seed is None:
        raise ValueError("prepare() needs a seed: cfg = with_seed(cfg) first")
    check_config(cfg)
    if bundle is None:
        bundle = load_clip(cfg.model, cfg.pretrained, resolve_device(cfg.device))
        log.info(bundle.reason)
    targets = build_targets(cfg, bundle)
    gen = generators.build_generator(cfg, bundle.device)
    init_rng, cut_rng = seeded_streams(cfg.seed, bundle.device)
    init_image = generators.initialise(gen, cfg.init, init_rng, cfg.init_scale).clamp(0, 1)
    keeper = get_keeper(cfg.clamp)
    if keeper.start is not None:  # every keeper starts from the same (clamped) image
        keeper.start(gen)
    return {
        "generator": gen,
        "bundle": bundle,
        "targets": targets,
        "rng": cut_rng,
        "init_image": init_image,
    }


def run_one(cfg: GenerateConfig, run_dir, bundle=None, progress: bool = True) -> dict:
    """Runs cfg into the new directory run_dir; returns the summary also stored in run.json
    (plus 'history': the reported steps' step, loss, eval_loss, out_of_range, seconds)."""
    cfg = with_seed(cfg)
    parts = prepare(cfg, bundle)
    run_dir = rundir.create_run_dir(run_dir)
    log.info(f"seed: {cfg.seed}  clamp: {cfg.clamp}  generator: {cfg.generator}  -> {run_dir}")
    return _run_with_writers(cfg, parts, run_dir, progress)


def resume_run(run_dir, bundle=None, progress: bool = True) -> dict:
    """Continues the interrupted run in run_dir from its last checkpoint (clampgen.checkpoint)."""
    state = load_checkpoint(run_dir)
    cfg = merge_config(GenerateConfig(), state["config"])
    parts = prepare(cfg, bundle)
    optimizer = make_optimizer(trainable(parts["generator"]), cfg.optimizer, cfg.lr)
    restore(parts["generator"], optimizer, parts["rng"], state)
    run_dir, step = Path(run_dir), state["step"]
    history = _history(rundir.truncate_csv(run_dir / rundir.METRICS_CSV, step))
    if cfg.step_sizes and (run_dir / rundir.STEP_SIZES_CSV).exists():
        rundir.truncate_csv(run_dir / rundir.STEP_SIZES_CSV, step)
    log.info(f"resuming {run_dir} at step {step} of {cfg.steps} (seed {cfg.seed})")
    return _run_with_writers(
        cfg, parts, run_dir, progress, start_step=step, optimizer=optimizer, history=history
    )


HISTORY_KEYS = ("step", "loss", "eval_loss", "out_of_range", "seconds")


def _history(metrics: dict) -> list:
    """metrics.csv columns (rundir.read_metrics) as history rows; NaN (not measured) as None."""
    rows = zip(*(metrics.get(k, []) for k in HISTORY_KEYS))
    return [
        dict(zip(HISTORY_KEYS, (int(r[0]), *(None if math.isnan(v) else v for v in r[1:]))))
        for r in rows
    ]


def _run_with_writers(
    cfg, parts, run_dir, progress, start_step=0, optimizer=None, history=None
) -> dict:
    """The loop with every writer as a callback, then the run directory's final files."""
    bundle, n_prompts = parts["bundle"], len(parts["targets"].labels)
    optimizer = optimizer or make_optimizer(trainable(parts["generator"]), cfg.optimizer, cfg.lr)
    frames = FrameWriter(run_dir, cfg.save_every)
    metrics = MetricsWriter(run_dir, n_prompts)
    sizes = (
        StepSizeWriter(run_dir, parts["generator"], get_keeper(cfg.clamp))
        if cfg.step_sizes
        else None
    )
    checkpoints = CheckpointWriter(
        run_dir, parts["generator"], optimizer, cfg.to_dict(), cfg.save_every
    )
    bar = ProgressBar(cfg.steps, desc=cfg.clamp, initial=start_step) if progress else None
    history, guard = list(history or []), FiniteGuard()
    writers = compose(
        frames, metrics, sizes, checkpoints, bar, lambda info: history.append(_row(info))
    )

    def callback(info):  # a non-finite step is never written
        return guard(info) or writers(info)

    start, result, interrupted = time.perf_counter(), {}, False
    try:
        with _sigterm_as_interrupt():
            result = optimize(
                **parts, cfg=cfg, callback=callback, optimizer=optimizer, start_step=start_step
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        metrics.close()
        if sizes is not None:
            sizes.close()
        if bar is not None:
            bar.close()
    stopped = result.get("stopped", False) and guard.reason is None
    summary = _summary(
        cfg, run_dir, bundle, history, time.perf_counter() - start, interrupted or stopped
    )
    summary["stop_reason"] = guard.reason
    _write_final_files(cfg, run_dir, bundle, frames.last_image, summary)
    if interrupted:
        raise KeyboardInterrupt(str(run_dir))
    if not stopped:
        checkpoints.remove()
    return summary


class FiniteGuard:
    """Loop callback that stops the run at the first reported non-finite loss (and says why)."""

    def __init__(self):
        self.reason = None

    def __call__(self, info) -> bool:
        if not math.isfinite(info["loss"]):
            self.reason = f"non-finite loss ({info['loss']}) at step {info['step']}"
            return True
        return False


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While a run is in progress, SIGTERM is handled as Ctrl-C (the work is kept)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _row(info) -> dict:
    return {k: info[k] for k in HISTORY_KEYS}


def _summary(cfg, run_dir, bundle, history, wall, interrupted) -> dict:
    evals = [h["eval_loss"] for h in history if h["eval_loss"] is not None]
    last = history[-1] if history else {}
    return {
        "run_dir": str(run_dir),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "model": bundle.name,
        "pretrained": bundle.pretrained,
        "device": str(bundle.device),
        "versions": versions(),
        "wall_seconds": round(wall, 3),
        "interrupted": interrupted,
        "steps_done": last.get("step", 0),
        "final_loss": last.get("loss"),
        "best_loss": min((h["loss"] for h in history), default=None),
        "final_eval_loss": evals[-1] if evals else None,
        "best_eval_loss": min(evals, default=None),
        "final_out_of_range": last.get("out_of_range"),
        "history": history,
    }


def _write_final_files(cfg, run_dir, bundle, image, summary) -> None:
    """final.png, progress.gif, loss.png and run.json (history left out of run.json)."""
    if image is not None:
        save_png(image, run_dir / rundir.FINAL_PNG, _metadata(cfg, bundle, summary))
    write_gif(run_dir)
    plot_metrics(
        run_dir, title=f"{cfg.prompt[:60]}  ({cfg.clamp}, {cfg.generator}, seed {cfg.seed})"
    )
    rundir.write_json(
        run_dir / rundir.RUN_JSON, {k: v for k, v in summary.items() if k != "history"}
    )
