"""Loop callbacks that write a run directory (clampgen.rundir), and the helpers that finish it.

    callback = compose(FrameWriter(run_dir, save_every=25), MetricsWriter(run_dir, n_prompts=2),
                       ProgressBar(total=steps))
    optimize(..., callback=callback)
    write_gif(run_dir)          # progress.gif from frames/
    plot_metrics(run_dir)       # loss.png from metrics.csv

Each callback takes the loop's info dict (DEVELOPERS.md) and returns None. Figures are drawn on
matplotlib `Figure` objects (no pyplot state, no window). Every file is written through
clampgen.rundir: whole files atomically (never half a PNG), CSV rows appended one at a time.
"""

import io
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


def _encoded(save, **kwargs) -> bytes:
    """What save(file, **kwargs) writes (PIL's save, savefig), as bytes."""
    buf = io.BytesIO()
    save(buf, **kwargs)
    return buf.getvalue()


def save_png(image: torch.Tensor, path, metadata: dict = None) -> None:
    """Writes image as PNG with each metadata item as a tEXt chunk, atomically."""
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(str(key), str(value))
    rundir.write_bytes(path, _encoded(to_pil(image).save, format="PNG", pnginfo=info))


class FrameWriter:
    """Saves frames/step_NNNNN.png at step 0, every save_every steps and the last step."""

    def __init__(self, run_dir, save_every: int):
        self.dir = rundir.make_dir(Path(run_dir) / rundir.FRAMES)
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
    """A CSV file a row at a time, each handed to the OS at once (a kill keeps every row
    written; at most the row being written is cut short, see rundir). A new file starts with
    its header, written atomically; a resumed run appends to the file as its checkpoint left it.
    `sync()` makes the rows durable and returns the file's size, which a checkpoint records."""

    def __init__(self, path, columns: list):
        self.path = Path(path)
        if not self.path.exists():
            rundir.write_bytes(self.path, rundir.csv_line(columns))
        self.file = rundir.AppendFile(self.path)

    def add(self, values: list) -> None:
        self.file.append(rundir.csv_line([_fmt(v) for v in values]))

    def sync(self) -> int:
        return self.file.sync()

    def close(self) -> None:
        self.file.close()


class MetricsWriter(_CsvRows):
    """Appends one row per reported step to metrics.csv (each model's loss too, when several
    CLIP models guide the run)."""

    def __init__(self, run_dir, n_prompts: int, n_models: int = 1):
        columns = rundir.metrics_columns(n_prompts, n_models)
        super().__init__(Path(run_dir) / rundir.METRICS_CSV, columns)
        self.several = n_models > 1

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
                *(info["model_losses"] if self.several else ()),
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

    def state_dict(self) -> dict:
        """What the next rows depend on (a checkpoint keeps it, so a resumed run continues the
        groups where they were)."""
        return {"previous": self.previous, "ever_out": self.ever_out, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        def here(t):
            return None if t is None else t.to(self.param.device)

        self.previous, self.ever_out = here(state["previous"]), here(state["ever_out"])
        self.step = state["step"]

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


class JudgeWriter(_CsvRows):
    """judged.csv: at every eval step and the last, the scores of judges that did not guide the
    run (`judge`: clampgen.judges.RunJudge, image -> {rundir.JUDGED name: value or None}); an
    empty cell where no judge applies. `last` keeps the latest row, for run.json."""

    def __init__(self, run_dir, judge):
        super().__init__(Path(run_dir) / rundir.JUDGED_CSV, rundir.JUDGED_COLUMNS)
        self.judge, self.last = judge, None

    def __call__(self, info):
        if info["eval_loss"] is None and not info.get("last"):
            return
        scores = self.judge(info["image"])
        self.last = {"step": info["step"], **scores}
        self.add([info["step"], *(scores[k] for k in rundir.JUDGED)])


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
    frames = [_load_rgb(p) for p in paths]
    durations = [duration_ms] * (len(frames) - 1) + [hold_last_ms]
    data = _encoded(
        frames[0].save,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
    )
    rundir.write_bytes(Path(run_dir) / rundir.PROGRESS_GIF, data)


def _load_rgb(path) -> Image.Image:
    with Image.open(path) as im:  # closes the file (a long run has hundreds of frames)
        return im.convert("RGB")


def plot_metrics(run_dir, title: str = "", switches=()) -> None:
    """loss.png: training and evaluation loss (top), out-of-range fraction (bottom) vs step;
    a dotted line where a prompt schedule switches phase (switches: their steps). With several
    CLIP models, each one's loss too."""
    m = rundir.read_metrics(run_dir)
    if not m:
        return
    fig = Figure(figsize=(7, 5), dpi=100, layout="constrained")
    ax_loss, ax_oor = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    ax_loss.plot(m["step"], m["loss"], lw=1, alpha=0.6, label="loss (random cutouts)")
    ev = [(s, v) for s, v in zip(m["step"], m["eval_loss"]) if not math.isnan(v)]
    if ev:
        ax_loss.plot(*zip(*ev), "o-", ms=3, lw=1.5, label="eval loss (fixed views)")
    for k, column in enumerate(c for c in m if c.startswith("loss_model")):
        ax_loss.plot(m["step"], m[column], lw=1, alpha=0.8, ls="--", label=f"model {k} (weighted)")
    for ax in (ax_loss, ax_oor):
        for step in switches:
            ax.axvline(step, color="k", lw=0.8, ls=":")
    if switches:
        ax_loss.plot([], [], color="k", lw=0.8, ls=":", label="prompt phase switch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title(title, fontsize=9)
    ax_oor.plot(m["step"], m["out_of_range"], color="tab:red", lw=1)
    ax_oor.set_ylabel("out of [0, 1]")
    ax_oor.set_xlabel("step")
    rundir.write_bytes(Path(run_dir) / rundir.LOSS_PNG, _encoded(fig.savefig, format="png"))
