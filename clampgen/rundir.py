"""The run directory format: its file names, reading it back, and writing it so that a crash at
any moment (kill -9, power loss, a full disk) leaves only whole files.

One run of the generator is one directory (DEVELOPERS.md has the contract):

    final.png          the last image, with the prompt, seed, clamp ... as PNG text
    frames/step_NNNNN.png   frames at step 0, every save_every steps and the last
    progress.gif       the frames as an animation
    metrics.csv        step, loss, loss_0..loss_{k-1}, eval_loss, out_of_range, grad_norm, seconds
    loss.png           the metrics drawn
    run.json           the resolved config, versions, wall time, whether it was interrupted
    checkpoint.pt      only while a run can be resumed
    step_sizes.csv     with --step-sizes: the update sizes of pixels back in range, never out, out
    judged.csv         step, then the JUDGED scores at every eval step (empty: no judge applies)

    from clampgen.rundir import read_metrics, frame_paths, run_finished
    metrics = read_metrics("results/run")   # {column: [float, ...]}; NaN where a cell is empty

How it is written (the protocol clampgen.run and clampgen.checkpoint rely on):
- Whole files (frames, final.png, progress.gif, loss.png, run.json, checkpoint.pt, a CSV's
  header) go through `write_bytes`: a temporary `<name>.tmp` beside the file, written, fsynced,
  renamed over the file (os.replace). A reader sees the old file or the new one, never half of
  one; a crash leaves at most a `.tmp`, which `remove_leftovers` clears.
- The CSVs grow a row at a time (`AppendFile`, O_APPEND). A kill can cut the last row short;
  readers ignore a last line without its newline, and a resumed run cuts the file back to the
  size its checkpoint recorded (`cut_file`), which always ends on a row boundary.
- Every byte reaches the OS through `write_all`; an OSError there (ENOSPC, EROFS, EACCES, ...)
  becomes `OutputError`, naming the file.
- A process writing a run directory holds a lock on it (`locked`), so a second process (a
  --resume started while the run still goes, a restarted job beside an orphaned one) is refused
  instead of interleaving its writes.

Both sides use this module: the run that writes a directory and the comparisons that read it.
It needs neither torch nor matplotlib.
"""

import contextlib
import csv
import io
import json
import math
import os
from datetime import datetime
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: run directories are not locked
    fcntl = None

FINAL_PNG = "final.png"
FRAMES = "frames"
PROGRESS_GIF = "progress.gif"
METRICS_CSV = "metrics.csv"
LOSS_PNG = "loss.png"
RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.pt"
STEP_SIZES_CSV = "step_sizes.csv"  # only with --step-sizes (writers.StepSizeWriter)
JUDGED_CSV = "judged.csv"  # scores of judges that did not guide the run (clampgen.judges)
PLAN_JSON = "plan.json"  # in a comparison's directory (clampgen.compare.runner), not a run's
TMP_SUFFIX = ".tmp"  # a file being written; renamed over <name> once complete
# the judged scores, every one higher-is-better: the shapes world's judges (shape judge's
# probability of the named shape, background right, shape colour share, clean pixels), then the
# held-out CLIP's (similarity to the prompt, R-precision among distractor captions)
JUDGED = ("shape_prob", "background_ok", "colour_share", "clean", "judge_sim", "judge_rprec")
JUDGED_COLUMNS = ["step", *JUDGED]  # judged.csv: a row per eval step, empty where none judges
STEP_SIZE_COLUMNS = [
    "step",
    "n_back",
    "step_back",
    "n_never_out",
    "step_never_out",
    "n_out",
    "step_out",
]


class OutputError(OSError):
    """A run directory could not be written (disk full, read-only, no permission): the run
    stops; what was written before stays whole. `str()` is one line naming the file."""

    def __init__(self, path, error: OSError, hint: str = ""):
        super().__init__(error.errno, error.strerror)
        self.path, self.error, self.hint = str(path), error, hint
        self.message = f"cannot write {path}: {error.strerror or error}" + (
            f"; {hint}" if hint else ""
        )

    def __str__(self):
        return self.message

    def with_hint(self, hint: str) -> "OutputError":
        """The same error with what to do next appended to its message."""
        return OutputError(self.path, self.error, hint)


class RunDirBusy(ValueError):
    """Another process is writing the run directory."""


@contextlib.contextmanager
def _writing(path):
    """Turns an OSError while writing path into OutputError."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(path, e) from None


def write_all(fd: int, data: bytes) -> None:
    """Writes all of data to fd: the one place where a run's bytes reach the OS."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_dir(path) -> None:
    """fsync a directory, so that a rename or a new entry in it survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the data itself is synced
        pass
    finally:
        os.close(fd)


def write_bytes(path, data: bytes) -> None:
    """Writes data as path atomically: <path>.tmp, fsync, rename. On any error (or Ctrl-C) the
    temporary file is removed and path is untouched. The fsync before the rename means a power
    loss cannot leave an empty file under the name; the rename itself is not waited for (a
    journaling filesystem commits renames in order, so a later checkpoint's rename never
    outlives this one)."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with _writing(path):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def make_dir(path) -> Path:
    """mkdir -p path, its entry made durable in its parent."""
    path = Path(path)
    if not path.is_dir():
        with _writing(path):
            path.mkdir(parents=True, exist_ok=True)
            _sync_dir(path.parent)
    return path


class AppendFile:
    """A file that only grows (a run's CSVs): each `append` goes to the end at once, unbuffered;
    `sync` makes it durable and returns its size (what a checkpoint records)."""

    def __init__(self, path):
        self.path = Path(path)
        with _writing(self.path):
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, data: bytes) -> None:
        with _writing(self.path):
            write_all(self.fd, data)

    def sync(self) -> int:
        with _writing(self.path):
            os.fsync(self.fd)
            return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def csv_line(values: list) -> bytes:
    """One CSV row as bytes, with its line end."""
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue().encode()


def frame_name(step: int) -> str:
    """frames/ file name of a step's frame."""
    return f"step_{step:05d}.png"


def frame_paths(run_dir) -> dict:
    """`{step: path}` of the frames a run saved, in step order."""
    paths = sorted((Path(run_dir) / FRAMES).glob("step_*.png"))
    return {int(p.stem[5:]): p for p in paths}


def metrics_columns(n_prompts: int, n_models: int = 1) -> list:
    """The header of metrics.csv for n_prompts prompts (every phase's, with a schedule: a prompt
    outside the active phase has loss 0) and, with several CLIP models, each model's weighted
    loss last (loss_model0, loss_model1, ...)."""
    return [
        "step",
        "loss",
        *[f"loss_{i}" for i in range(n_prompts)],
        "eval_loss",
        "out_of_range",
        "grad_norm",
        "seconds",
        *([f"loss_model{m}" for m in range(n_models)] if n_models > 1 else []),
    ]


def _complete_text(path) -> str:
    """The text of path up to its last line end: a row cut short by a crash is not there."""
    text = Path(path).read_bytes().decode()
    return text[: text.rfind("\n") + 1]


def _read_rows(path) -> tuple:
    """(header, rows as lists of strings) of a CSV file; an unfinished last row (no line end,
    or fewer cells than the header) is left out."""
    rows = list(csv.reader(io.StringIO(_complete_text(path), newline="")))
    if not rows:
        return [], []
    header = rows[0]
    return header, [r for r in rows[1:] if len(r) == len(header)]


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
    """Drops the rows of steps >= step (and a row cut short) from a run's CSV file, atomically;
    returns the kept rows as read_metrics does. (Resuming a checkpoint that records no file
    sizes; see cut_file.)"""
    path = Path(path)
    header, rows = _read_rows(path)
    kept = [r for r in rows if int(r[0]) < step]
    write_bytes(path, b"".join(csv_line(r) for r in [header or ["step"], *kept]))
    return _columns(header, kept)


def check_size(path, size: int) -> None:
    """ValueError unless the append-only file path holds at least the `size` bytes a checkpoint
    recorded, ending a row there: else it is not the file the checkpoint was taken with."""
    path = Path(path)
    have = path.stat().st_size if path.exists() else 0
    if have < size:
        raise ValueError(
            f"--resume: {path} holds {have} bytes but its checkpoint recorded {size}: "
            "rows written before the checkpoint are gone, cannot continue consistently"
        )
    if size > 0:
        with open(path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                raise ValueError(
                    f"--resume: {path} has no row end at the {size} bytes its checkpoint "
                    "recorded: it was changed since, cannot continue consistently"
                )


def cut_file(path, size: int) -> None:
    """Cuts the append-only file path back to the size a checkpoint recorded (check_size): the
    rows written after the checkpoint, and a row cut short by a crash, go; size 0 removes it."""
    path = Path(path)
    check_size(path, size)
    with _writing(path):
        if size == 0:
            path.unlink(missing_ok=True)
        elif path.stat().st_size > size:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            finally:
                os.close(fd)


def remove_leftovers(run_dir) -> list:
    """Removes the temporary files a crash left in run_dir and its frames/ (never whole files);
    returns their paths."""
    run_dir = Path(run_dir)
    found = [*run_dir.glob("*" + TMP_SUFFIX), *(run_dir / FRAMES).glob("*" + TMP_SUFFIX)]
    for path in found:
        with _writing(path):
            path.unlink(missing_ok=True)
    return found


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


def write_json(path, obj) -> None:
    """Writes obj as indented JSON, atomically."""
    write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


@contextlib.contextmanager
def locked(run_dir):
    """Holds an exclusive lock on run_dir (flock on the directory itself) while the block runs;
    RunDirBusy when another process holds it. The kernel drops the lock when its process ends,
    however it ends (kill -9 included)."""
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunDirBusy(
                    f"{run_dir} is being written by another process (its run or a --resume "
                    "is still going): wait for it to end, or stop it first"
                ) from None
            except OSError:  # a filesystem without flock: go on unlocked
                pass
        yield
    finally:
        os.close(fd)


def in_use(run_dir) -> bool:
    """True when another process holds run_dir's lock (see locked)."""
    try:
        with locked(run_dir):
            return False
    except RunDirBusy:
        return True
    except OSError:
        return False


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
        _sync_dir(path.parent)
    except OSError as e:
        raise OSError(
            f"cannot create run directory {path} ({e.strerror}): choose a writable --out"
        ) from None
    return path
