"""The run directory format: its file names, reading it back, and writing files atomically.

One run of the generator is one directory (DEVELOPERS.md has the contract):

    final.png          the last image, with the prompt, seed, clamp ... as PNG text
    frames/step_NNNNN.png   frames at step 0, every save_every steps and the last
    progress.gif       the frames as an animation
    metrics.csv        step, loss, loss_0..loss_{k-1}, eval_loss, out_of_range, grad_norm, seconds
    loss.png           the metrics drawn
    run.json           the resolved config, versions, wall time, whether it was interrupted
    checkpoint.pt      only while a run can be resumed
    step_sizes.csv     with --step-sizes: the update sizes of pixels back in range, never out, out

    from clampgen.rundir import read_metrics, frame_paths, run_finished
    metrics = read_metrics("results/run")   # {column: [float, ...]}; NaN where a cell is empty

Both sides use this module: the run that writes a directory and the comparisons that read it.
It needs neither torch nor matplotlib.
"""

import csv
import json
import math
import os
from datetime import datetime
from pathlib import Path

FINAL_PNG = "final.png"
FRAMES = "frames"
PROGRESS_GIF = "progress.gif"
METRICS_CSV = "metrics.csv"
LOSS_PNG = "loss.png"
RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.pt"
STEP_SIZES_CSV = "step_sizes.csv"  # only with --step-sizes (writers.StepSizeWriter)
STEP_SIZE_COLUMNS = [
    "step",
    "n_back",
    "step_back",
    "n_never_out",
    "step_never_out",
    "n_out",
    "step_out",
]


def frame_name(step: int) -> str:
    """frames/ file name of a step's frame."""
    return f"step_{step:05d}.png"


def frame_paths(run_dir) -> dict:
    """`{step: path}` of the frames a run saved, in step order."""
    paths = sorted((Path(run_dir) / FRAMES).glob("step_*.png"))
    return {int(p.stem[5:]): p for p in paths}


def metrics_columns(n_prompts: int) -> list:
    """The header of metrics.csv for n_prompts prompts."""
    return [
        "step",
        "loss",
        *[f"loss_{i}" for i in range(n_prompts)],
        "eval_loss",
        "out_of_range",
        "grad_norm",
        "seconds",
    ]


def _read_rows(path) -> tuple:
    """(header, rows as lists of strings) of a CSV file."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if rows else ([], [])


def _columns(header, rows) -> dict:
    """`{column: [float, ...]}`; empty cells (eval_loss not measured) become NaN."""
    if not rows:
        return {}
    return {
        k: [float(r[i]) if r[i] != "" else math.nan for r in rows] for i, k in enumerate(header)
    }


def read_csv_columns(path) -> dict:
    """A run's CSV file (metrics.csv, step_sizes.csv) as `{column: [float, ...]}`, NaN for
    empty cells."""
    return _columns(*_read_rows(path))


def read_metrics(run_dir) -> dict:
    """A run directory's metrics.csv as `{column: [float, ...]}` (NaN for empty cells)."""
    return read_csv_columns(Path(run_dir) / METRICS_CSV)


def truncate_csv(path, step: int) -> dict:
    """Drops the rows of steps >= step from a run's CSV file (metrics.csv, step_sizes.csv),
    atomically; returns the kept rows as read_metrics does."""
    path = Path(path)
    header, rows = _read_rows(path)
    kept = [r for r in rows if int(r[0]) < step]

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header or ["step"], *kept])

    replace_atomically(path, write)
    return _columns(header, kept)


def read_run_json(run_dir) -> dict:
    """run.json as a dict, or {} when the run has not written it (yet)."""
    path = Path(run_dir) / RUN_JSON
    return json.loads(path.read_text()) if path.exists() else {}


def run_finished(run_dir) -> bool:
    """True when the run directory holds a run.json that says the run was not interrupted."""
    try:
        return read_run_json(run_dir).get("interrupted") is False
    except (OSError, ValueError):
        return False


def replace_atomically(path, write) -> None:
    """write(tmp) to a temporary file beside path, then rename it over path: a crash never
    leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """Writes obj as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=str) + "\n"
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def timestamped_dir(name: str, root="results") -> Path:
    """results/<YYYYmmdd-HHMMSS>-<name>, with -2, -3, ... if that already exists."""
    base = Path(root) / f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def create_run_dir(path) -> Path:
    """Creates path; an existing non-empty directory is never reused (FileExistsError)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"run directory {path} already exists and is not empty "
            "(runs are never overwritten: choose another --out)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(
            f"cannot create run directory {path} ({e.strerror}): choose a writable --out"
        ) from None
    return path
