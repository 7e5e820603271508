"""Videos of runs: progress.mp4 from a run's frames, comparison.mp4 with the variants side by side.

    from clampgen.video import write_progress_video, write_comparison_video, read_video
    write_progress_video("results/run", fps=10)                 # results/run/progress.mp4
    write_comparison_video({"clamp": dir_a, "clamp_with_grad": dir_b}, "cmp/comparison.mp4")
    frames = read_video("results/run/progress.mp4")             # [(H, W, 3) uint8, ...]

H.264 in yuv420p (what browsers, phones and editors play), even dimensions (yuv420p halves the
colour resolution, so odd sides are padded by repeating the edge). Encoded in-process with PyAV,
an optional dependency (`pip install 'clampgen[video]'`); without it `available()` is False and
the writers say so once instead of writing videos.
"""

import io
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clampgen.rundir import frame_paths, read_metrics, write_bytes

log = logging.getLogger(__name__)
HOLD_LAST_SECONDS = 1.5  # the last frame stays on screen this long, as in progress.gif
LABEL_HEIGHT = 30  # pixels above each tile of a comparison video for its name and loss
MISSING = "videos need PyAV: pip install 'clampgen[video]' (or pip install av)"


def available() -> bool:
    """True when PyAV (the optional `video` extra) can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _even(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) padded by one repeated edge row/column where a side is odd."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def encode(frames, path, fps: int = 10, crf: int = 18) -> Path:
    """Writes (H, W, 3) uint8 frames as an H.264 / yuv420p MP4 at fps (atomically, through
    rundir.write_bytes: a killed run never leaves half a video); returns path."""
    import av

    path = Path(path)
    frames = [_even(np.asarray(f, dtype=np.uint8)) for f in frames]
    if not frames:
        raise ValueError("no frames to encode")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    write_bytes(path, buffer.getvalue())
    return path


def read_video(path) -> list:
    """The decoded frames of a video file as (H, W, 3) uint8 arrays."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _held(frames: list, fps: int) -> list:
    """frames with the last one repeated to stay HOLD_LAST_SECONDS on screen."""
    return frames + [frames[-1]] * max(0, math.ceil(HOLD_LAST_SECONDS * fps) - 1)


def _load(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def write_progress_video(run_dir, fps: int = 10):
    """progress.mp4 of a run directory's frames in step order; None (and a log line) when
    PyAV is missing or the run saved no frame."""
    if not available():
        log.warning(f"progress.mp4 not written: {MISSING}")
        return None
    paths = list(frame_paths(run_dir).values())
    if not paths:
        return None
    return encode(_held([_load(p) for p in paths], fps), Path(run_dir) / "progress.mp4", fps)


def _loss_at(metrics: dict, step: int):
    """The last eval loss measured at or before step (the training loss if none was), or None."""
    column = "eval_loss" if any(not math.isnan(v) for v in metrics.get("eval_loss", [])) else "loss"
    pairs = [
        (s, v)
        for s, v in zip(metrics.get("step", []), metrics.get(column, []))
        if s <= step and not math.isnan(v)
    ]
    return (column, pairs[-1][1]) if pairs else (column, None)


def _label(tile: np.ndarray, lines: list) -> np.ndarray:
    """tile (H, W, 3) with a white band of LABEL_HEIGHT px above it holding two text lines."""
    h, w = tile.shape[:2]
    canvas = Image.new("RGB", (w, h + LABEL_HEIGHT), "white")
    canvas.paste(Image.fromarray(tile), (0, LABEL_HEIGHT))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=11)
    for i, text in enumerate(lines):
        draw.text((3, 2 + 13 * i), text, fill="black", font=font)
    return np.asarray(canvas)


def comparison_frames(runs: dict, scale: int = 2) -> list:
    """The tiled frames of comparison.mp4: one per step that every run saved, the variants
    side by side (each upscaled `scale` x, nearest), each labelled with its name and its loss
    at that step. runs: {variant: run_dir} of one seed."""
    frames = {v: frame_paths(d) for v, d in runs.items()}
    steps = sorted(set.intersection(*(set(f) for f in frames.values()))) if frames else []
    metrics = {v: read_metrics(d) for v, d in runs.items()}
    tiled = []
    for step in steps:
        tiles = []
        for variant in runs:
            image = _load(frames[variant][step]).repeat(scale, 0).repeat(scale, 1)
            column, loss = _loss_at(metrics[variant], step)
            shown = "–" if loss is None else f"{loss:.4f}"
            tiles.append(_label(image, [variant, f"step {step}  {column} {shown}"]))
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        tiled.append(np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1))
    return tiled


def write_comparison_video(runs: dict, path, fps: int = 5):
    """comparison.mp4: the variants of one seed side by side, frame-synchronised and labelled
    (comparison_frames); None (and a log line) when PyAV is missing or no step is common."""
    if not available():
        log.warning(f"comparison.mp4 not written: {MISSING}")
        return None
    frames = comparison_frames(runs)
    return encode(_held(frames, fps), path, fps) if frames else None
