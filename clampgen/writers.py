"""Loop callbacks that write a run directory (clampgen.rundir), and the helpers that finish it.

    callback = compose(FrameWriter(run_dir, save_every=25), MetricsWriter(run_dir, n_prompts=2),
                       ProgressBar(total=steps))
    optimize(..., callback=callback)
    write_gif(run_dir)          # progress.gif from frames/
    plot_metrics(run_dir)       # loss.png from metrics.csv

Each callback takes the loop's info dict (DEVELOPERS.md) and returns None. Figures are drawn on
matplotlib `Figure` objects (no pyplot state, no window).
"""

import csv
import math
from pathlib import Path

import torch
from matplotlib.figure import Figure
from PIL import Image, PngImagePlugin

from clampgen import rundir


def compose(*callbacks):
    """One callback that calls each in turn; True from any of them asks the loop to stop."""

    def callback(info):
        return any([cb(info) for cb in callbacks if cb is not None])

    return callback


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> RGB PIL image (rounded to 8 bits)."""
    image = image.detach().float().cpu().reshape(-1, *image.shape[-2:])[:3]
    data = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    return Image.fromarray(data.numpy(), "RGB")


def save_png(image: torch.Tensor, path, metadata: dict = None) -> None:
    """Writes image as PNG with each metadata item as a tEXt chunk."""
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(str(key), str(value))
    to_pil(image).save(path, pnginfo=info)


class FrameWriter:
    """Saves frames/step_NNNNN.png at step 0, every save_every steps and the last step."""

    def __init__(self, run_dir, save_every: int):
        self.dir = Path(run_dir) / rundir.FRAMES
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save_every = save_every
        self.last_image = None  # the most recent reported image, for final.png on interrupt

    def __call__(self, info):
        self.last_image, step = info["image"], info["step"]
        if step == 0 or info.get("last") or (self.save_every > 0 and step % self.save_every == 0):
            save_png(info["image"], self.dir / rundir.frame_name(step))


def _fmt(x):
    if x is None:
        return ""
    return f"{x:.6g}" if isinstance(x, float) else str(x)


class _CsvRows:
    """A CSV file a row at a time, each flushed at once (a crash keeps every row written); the
    header is written when the file is new (a resumed run appends)."""

    def __init__(self, path, columns: list):
        self.path = Path(path)
        new = not self.path.exists()
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.add(columns)

    def add(self, values: list) -> None:
        self.writer.writerow([_fmt(v) for v in values])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class MetricsWriter(_CsvRows):
    """Appends one row per reported step to metrics.csv."""

    def __init__(self, run_dir, n_prompts: int):
        super().__init__(Path(run_dir) / rundir.METRICS_CSV, rundir.metrics_columns(n_prompts))

    def __call__(self, info):
        self.add(
            [
                info["step"],
                info["loss"],
                *info["losses"],
                info["eval_loss"],
                info["out_of_range"],
                info["grad_norm"],
                info["seconds"],
            ]
        )


class StepSizeWriter(_CsvRows):
    """step_sizes.csv: at each reported step s, the median size |x_s - x_r| of the update since
    the previous reported step r, over three groups of the image's own parameters (the pixel
    generator's pixels) as they were at r: back in range after having been out (or saturated)
    at an earlier reported step, never out so far, and out now. The keeper says what "out"
    is (clampgen.keepers.Keeper.outside). What it measures: whether elements that were pulled
    back move as freely as the others afterwards (the study's mechanism check)."""

    def __init__(self, run_dir, generator, keeper):
        super().__init__(Path(run_dir) / rundir.STEP_SIZES_CSV, rundir.STEP_SIZE_COLUMNS)
        (self.param,) = [p for p in generator.parameters() if p.requires_grad]
        self.keeper, self.previous, self.ever_out, self.step = keeper, None, None, None

    @torch.no_grad()
    def __call__(self, info):
        current = self.param.detach().clone()
        if self.previous is not None:
            out = self.keeper.outside(self.previous)
            self.ever_out = out if self.ever_out is None else self.ever_out | out
            moved = (current - self.previous).abs()
            groups = (self.ever_out & ~out, ~self.ever_out, out)  # back, never out, out
            row = [self.step]
            for mask in groups:
                n = int(mask.sum())
                row += [n, moved[mask].median().item() if n else None]
            self.add(row)
        self.previous, self.step = current, info["step"]


class ProgressBar:
    """tqdm bar over steps with loss, out-of-range fraction and it/s."""

    def __init__(self, total: int, desc: str = None, initial: int = 0):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, initial=initial, unit="step", dynamic_ncols=True)

    def __call__(self, info):
        self.bar.update(info["step"] - self.bar.n)
        self.bar.set_postfix(
            loss=f"{info['loss']:.4f}", oor=f"{info['out_of_range']:.3f}", refresh=False
        )

    def close(self):
        self.bar.close()


def write_gif(run_dir, duration_ms: int = 120, hold_last_ms: int = 1500) -> None:
    """progress.gif from the run's frames in step order; the last frame is held longer."""
    paths = list(rundir.frame_paths(run_dir).values())
    if not paths:
        return
    frames = [Image.open(p).convert("RGB") for p in paths]
    durations = [duration_ms] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(
        Path(run_dir) / rundir.PROGRESS_GIF,
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
    )


def plot_metrics(run_dir, title: str = "") -> None:
    """loss.png: training and evaluation loss (top), out-of-range fraction (bottom) vs step."""
    m = rundir.read_metrics(run_dir)
    if not m:
        return
    fig = Figure(figsize=(7, 5), dpi=100, layout="constrained")
    ax_loss, ax_oor = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    ax_loss.plot(m["step"], m["loss"], lw=1, alpha=0.6, label="loss (random cutouts)")
    ev = [(s, v) for s, v in zip(m["step"], m["eval_loss"]) if not math.isnan(v)]
    if ev:
        ax_loss.plot(*zip(*ev), "o-", ms=3, lw=1.5, label="eval loss (fixed views)")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.set_title(title, fontsize=9)
    ax_oor.plot(m["step"], m["out_of_range"], color="tab:red", lw=1)
    ax_oor.set_ylabel("out of [0, 1]")
    ax_oor.set_xlabel("step")
    fig.savefig(Path(run_dir) / rundir.LOSS_PNG)
