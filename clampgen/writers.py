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


class MetricsWriter:
    """Appends one row per reported step to metrics.csv, flushed at once (a crash keeps it)."""

    def __init__(self, run_dir, n_prompts: int):
        self.path = Path(run_dir) / rundir.METRICS_CSV
        self.columns = rundir.metrics_columns(n_prompts)
        new = not self.path.exists()
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.columns)
            self.file.flush()

    def __call__(self, info):
        row = [
            info["step"],
            info["loss"],
            *info["losses"],
            info["eval_loss"],
            info["out_of_range"],
            info["grad_norm"],
            info["seconds"],
        ]
        self.writer.writerow([_fmt(v) for v in row])
        self.file.flush()

    def close(self):
        self.file.close()


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
