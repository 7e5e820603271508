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
from clampgen.checkpoint import CheckpointWriter
from clampgen.config import COMPILE_MODES, INITS, LR_SCHEDULES, GenerateConfig
from clampgen.devices import resolve_device
from clampgen.guides import build_guides, load_bundles, model_specs, schedule
from clampgen.judges import check_judge, load_judges
from clampgen.keepers import get_keeper, list_variants
from clampgen.loop import OPTIMIZERS, make_optimizer, optimize, trainable
from clampgen.prompts import phase_starts, slug
from clampgen.starts import describe_start, parse_colour, start_image
from clampgen.video import write_progress_video
from clampgen.writers import (
    FrameWriter,
    JudgeWriter,
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
    cfg = generators.with_defaults(cfg)  # (an unknown generator is a ValueError here)
    phases, shared = schedule(cfg)
    if not any(phases) and not shared:
        raise ValueError("no prompt: give a text PROMPT and/or --image-prompt FILE")
    for prompt in [p for phase in phases for p in phase] + shared:
        if prompt.image:
            _check_image(prompt.text, "image prompt")
    phase_starts(len(phases), cfg.steps, cfg.change_every)
    model_specs(cfg)
    if cfg.init not in INITS:
        _check_image(cfg.init, f"--init (not one of {', '.join(INITS)})")
    positive = {
        "steps": cfg.steps,
        "cutn": cfg.cutn,
        "log_every": cfg.log_every,
        "width": cfg.width,
        "height": cfg.height,
        "lr": cfg.lr,
        "fps": cfg.fps,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    for name in (
        "eval_every",
        "save_every",
        "tv_weight",
        "init_weight",
        "cut_overhang",
        "cut_whole",
    ):
        if not getattr(cfg, name) >= 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.threads < 0:
        raise ValueError(f"threads must be >= 0 (0: torch's default), got {cfg.threads}")
    if not cfg.cut_pow >= 0:
        raise ValueError(
            f"cut_pow must be >= 0 (0: every cutout the image's short side), got {cfg.cut_pow}"
        )
    for what, value, choices in (
        ("clamp", cfg.clamp, list_variants()),
        ("optimizer", cfg.optimizer, list(OPTIMIZERS)),
        ("compile mode", cfg.compile, list(COMPILE_MODES)),
        ("lr schedule", cfg.lr_schedule, list(LR_SCHEDULES)),
        ("generator", cfg.generator, generators.list_generators()),
    ):
        if value not in choices:
            raise ValueError(f"unknown {what} '{value}' (choose from: {', '.join(choices)})")
    generators.check_generator(cfg)
    _check_keeper(cfg)
    check_judge(cfg)
    parse_colour(cfg.init_colour)
    parse_colour(cfg.init_centre, "--init-centre")
    generators.check_memory(cfg, resolve_device(cfg.device))


def _check_keeper(cfg):
    """The clamp or keeper must apply to the generator and the optimizer."""
    why_not = get_keeper(cfg.clamp).why_not(cfg.generator, cfg.optimizer)
    if why_not:
        raise ValueError(why_not)
    if cfg.step_sizes and cfg.generator != "pixel":
        raise ValueError(
            "--step-sizes measures the pixel generator's pixels: use --generator pixel"
        )


def _check_image(path, what):
    """A file that exists, or a URL that can be fetched (ValueError in one line if not)."""
    if generators.is_url(path):
        generators.fetch_url(path)
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file not found: {path}")


def complete(cfg: GenerateConfig) -> GenerateConfig:
    """cfg with every choice made: a seed (a fresh random one if None) and the generator's
    defaults where cfg leaves them to it (generators.with_defaults)."""
    cfg = generators.with_defaults(cfg)
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
    first = schedule(cfg)[0][0]
    return rundir.timestamped_dir(slug(name or (first[0].text if first else "image-prompt")), root)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import open_clip

    try:
        own = version("clampgen")
    except PackageNotFoundError:
        own = "unknown"
    return {
        "clampgen": own,
        "torch": str(torch.__version__),
        "open_clip": str(open_clip.__version__),
    }


def _names(bundles, field: str) -> str:
    """The models' names (or pretrained weights) as --model takes them: a comma list."""
    return ",".join(str(getattr(b, field)) for b in bundles)


def _metadata(cfg, bundles, summary) -> dict:
    """PNG text chunks of final.png."""
    return {
        "prompt": cfg.prompt,
        "image_prompts": " | ".join(cfg.image_prompts),
        "seed": cfg.seed,
        "clamp": cfg.clamp,
        "generator": cfg.generator,
        "model": _names(bundles, "name"),
        "pretrained": _names(bundles, "pretrained"),
        "steps": summary["steps_done"],
        "version": versions()["clampgen"],
        "software": "clampgen",
    }


def prepare(cfg: GenerateConfig, bundle=None) -> dict:
    """Everything optimize() needs for cfg (completed first: see complete):
    {'generator', 'guides', 'rng', 'init_image'}, so that from Python

        optimize(**prepare(cfg), cfg=cfg, callback=my_callback)

    runs exactly what `run_one` runs, without files. bundle: already loaded CLIP models (one
    ClipBundle, or a list in --model's order), else cfg's are loaded."""
    if cfg.seed is None:
        raise ValueError("prepare() needs a seed: cfg = complete(cfg) first")
    missing = [k for k in generators.GENERATOR_DEFAULTS if getattr(cfg, k) is None]
    if missing:
        raise ValueError(f"prepare() needs {', '.join(missing)}: cfg = complete(cfg) first")
    check_config(cfg)
    if bundle is None:
        bundle = load_bundles(cfg, resolve_device(cfg.device))
    guides = build_guides(cfg, bundle if isinstance(bundle, list) else [bundle])
    device = guides[0].bundle.device
    gen = generators.build_generator(cfg, device)
    init_rng, cut_rng = seeded_streams(cfg.seed, device)
    start = None
    if cfg.init == "noise":
        start, (colour, centre) = start_image(
            cfg.init_colour, cfg.init_centre, guides, gen.height, gen.width
        )
        if start is not None:
            log.info(describe_start(colour, centre))
    init_image = generators.initialise(gen, cfg.init, init_rng, cfg.init_scale, start).clamp(0, 1)
    keeper = get_keeper(cfg.clamp)
    if keeper.start is not None:  # every keeper starts from the same (clamped) image
        keeper.start(gen)
    return {"generator": gen, "guides": guides, "rng": cut_rng, "init_image": init_image}


def bundles_of(parts: dict) -> list:
    """The CLIP models of prepare()'s parts, in --model's order."""
    return [guide.bundle for guide in parts["guides"]]


RESULT_NEUTRAL = ("progress",)  # options a resumed run may change: they touch no number


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch on `threads` CPU threads for the block (0: as it is), then back to the count before.
    The thread count changes a run's pixels (reductions split differently), so a run records it
    (resolved_config) and a resumed run uses it again."""
    before = torch.get_num_threads()
    if threads > 0 and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def resolved_config(cfg: GenerateConfig, bundles, run_dir) -> GenerateConfig:
    """cfg as the run really runs it: torch's thread count (`threads 0` is the machine's
    default), the device and model that `auto` chose, its directory. run.json and the checkpoint
    record it, and --resume restores it, so a run resumed on another machine (or without the
    flags it was started with) computes what it would have."""
    model, pretrained, bundle = cfg.model, cfg.pretrained, bundles[0]
    if cfg.model == "auto":  # the bundled weights by name, so that a moved install still finds them
        model = bundle.name
        pretrained = cfg.pretrained if bundle.name == "shapes" else bundle.pretrained
    return dataclasses.replace(
        cfg,
        model=model,
        pretrained=pretrained,
        device=str(bundle.device) if cfg.device == "auto" else cfg.device,
        threads=torch.get_num_threads(),
        out=str(run_dir),
    )


def run_one(
    cfg: GenerateConfig, run_dir, bundle=None, progress: bool = True, judges=None, callback=None
) -> dict:
    """Runs cfg into the new directory run_dir; returns the summary also stored in run.json
    (plus 'history': the reported steps' step, loss, eval_loss, out_of_range, seconds).
    judges: already loaded clampgen.judges.Judges (a comparison's), else cfg's are loaded.

    callback: called with each reported step's info (the loop's, plus 'run_dir') once the
    writers have written it; a KeyboardInterrupt raised there ends the run as Ctrl-C does (the
    work kept, resumable). A web page follows and stops runs through it.

    rundir.OutputError when the directory cannot be written any more (disk full, read-only):
    its message says which checkpoint is intact and how to resume."""
    cfg = complete(cfg)
    with torch_threads(cfg.threads):
        parts = prepare(cfg, bundle)
        run_dir = rundir.create_run_dir(run_dir)
        log.info(f"seed: {cfg.seed}  clamp: {cfg.clamp}  generator: {cfg.generator}  -> {run_dir}")
        record = resolved_config(cfg, bundles_of(parts), run_dir)
        with rundir.locked(run_dir):
            return run_with_writers(
                record,
                parts,
                run_dir,
                progress,
                asked=cfg.to_dict(),
                judges=judges,
                callback=callback,
            )


HISTORY_KEYS = ("step", "loss", "eval_loss", "out_of_range", "seconds")


def history_rows(metrics: dict) -> list:
    """metrics.csv columns (rundir.read_metrics) as history rows; NaN (not measured) as None."""
    rows = zip(*(metrics.get(k, []) for k in HISTORY_KEYS))
    return [
        dict(zip(HISTORY_KEYS, (int(r[0]), *(None if math.isnan(v) else v for v in r[1:]))))
        for r in rows
    ]


def _output_hint(run_dir, saved_step, last_step) -> str:
    """What to do after the run directory could not be written."""
    if saved_step is None:
        return "nothing was computed: once there is space, run the same command again"
    stopped = f"stopped at step {last_step}; " if last_step is not None else ""
    return (
        f"the run {stopped}its checkpoint of step {saved_step} is intact: once there is space "
        f"(or the directory is writable), python generate.py --resume {run_dir} continues it"
    )


def run_with_writers(
    cfg,
    parts,
    run_dir,
    progress,
    asked,
    resumed=None,
    optimizer=None,
    history=None,
    judges=None,
    callback=None,
) -> dict:
    """The loop with every writer as a callback, then the run directory's final files.

    cfg: the run's record (resolved_config); asked: the config as the caller gave it; resumed:
    the checkpoint a resumed run continues from; judges: loaded clampgen.judges.Judges (else
    cfg's are loaded); callback: see run_one. The first file a new run writes is its step-0
    checkpoint, so a killed run always leaves one."""
    bundles, generator = bundles_of(parts), parts["generator"]
    judge = (judges or load_judges(cfg, bundles)).for_prompt(cfg.prompt)
    optimizer = optimizer or make_optimizer(trainable(generator), cfg.optimizer, cfg.lr)
    start_step = resumed["step"] if resumed else 0
    offset = float(resumed.get("seconds") or 0.0) if resumed else 0.0
    # the checkpoint's step was reported before it was taken: its frame and rows are on disk
    done_step = start_step if resumed and resumed.get("reported") else None
    record = {"config": cfg.to_dict(), "asked": asked, "versions": versions()}
    checkpoints = CheckpointWriter(run_dir, generator, optimizer, record, cfg.save_every)
    checkpoints.saved_step = start_step if resumed else None
    history, guard, bar, files = list(history or []), FiniteGuard(), None, []
    try:
        if resumed is None:
            checkpoints.save(0, parts["rng"].get_state(), 0.0, reported=False)
        frames = FrameWriter(run_dir, cfg.save_every)
        files.append(
            MetricsWriter(run_dir, len(parts["guides"][0].targets.labels), len(parts["guides"]))
        )
        judged = JudgeWriter(run_dir, judge)
        files.append(judged)
        if cfg.step_sizes:
            files.append(StepSizeWriter(run_dir, generator, get_keeper(cfg.clamp)))
            if resumed and "step_sizes" in (resumed.get("writers") or {}):
                files[-1].load_state_dict(resumed["writers"]["step_sizes"])
            checkpoints.writers = {"step_sizes": files[-1]}
        checkpoints.files = files
        bar = ProgressBar(cfg.steps, desc=cfg.clamp, initial=start_step) if progress else None
        writers = compose(frames, *files, checkpoints, bar, lambda info: history.append(_row(info)))
        if callback is not None:  # the caller's, last: it sees the step's files written
            writers = compose(writers, _with_run_dir(callback, run_dir))

        def callback(info):  # a non-finite step is never written
            info = {**info, "seconds": info["seconds"] + offset}
            if info["step"] == done_step:
                frames.last_image = info["image"]
                return False
            return guard(info) or writers(info)

        start, result, interrupted = time.perf_counter(), {}, False
        try:
            with _sigterm_as_interrupt():
                result = optimize(
                    **parts, cfg=cfg, callback=callback, optimizer=optimizer, start_step=start_step
                )
        except KeyboardInterrupt:
            interrupted = True
        _close(files, bar)
        stopped = result.get("stopped", False) and guard.reason is None
        wall = offset + time.perf_counter() - start
        summary = _summary(cfg, run_dir, bundles, history, wall, interrupted or stopped)
        summary.update(stop_reason=guard.reason, judges=judge.notes, judged=judged.last)
        _write_final_files(cfg, run_dir, bundles, frames.last_image, summary)
    except rundir.OutputError as e:
        last = history[-1]["step"] if history else None
        raise e.with_hint(_output_hint(run_dir, checkpoints.saved_step, last)) from None
    finally:
        _close(files, bar)
    if interrupted:
        raise KeyboardInterrupt(str(run_dir))
    if not stopped:
        checkpoints.remove()
    return summary


def _with_run_dir(callback, run_dir):
    return lambda info: callback({**info, "run_dir": run_dir})


def _close(files, bar):
    for f in files:
        f.close()
    if bar is not None:
        bar.close()


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


def _summary(cfg, run_dir, bundles, history, wall, interrupted) -> dict:
    """run.json's content: cfg is the run's record (resolved_config)."""
    evals = [h["eval_loss"] for h in history if h["eval_loss"] is not None]
    last = history[-1] if history else {}
    return {
        "run_dir": str(run_dir),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "model": _names(bundles, "name"),
        "pretrained": _names(bundles, "pretrained"),
        "device": str(bundles[0].device),
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


def _write_final_files(cfg, run_dir, bundles, image, summary) -> None:
    """final.png, progress.gif, progress.mp4 (with PyAV), loss.png and run.json (history left
    out of run.json)."""
    if image is not None:
        save_png(image, run_dir / rundir.FINAL_PNG, _metadata(cfg, bundles, summary))
    write_gif(run_dir)
    if cfg.video:
        write_progress_video(run_dir, cfg.fps)
    phases = schedule(cfg)[0]
    plot_metrics(
        run_dir,
        title=f"{cfg.prompt[:60]}  ({cfg.clamp}, {cfg.generator}, seed {cfg.seed})",
        switches=phase_starts(len(phases), cfg.steps, cfg.change_every)[1:],
    )
    rundir.write_json(
        run_dir / rundir.RUN_JSON, {k: v for k, v in summary.items() if k != "history"}
    )
