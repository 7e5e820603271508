"""kill -9 at any moment, then `--resume` (or the same command for a comparison), repeated: the
result equals an uninterrupted run's, every step is in metrics.csv once, no file is half-written.

The kills are real SIGKILLs of real processes. Two kinds, at seeded (reproducible) points:
- at a random moment: once the run has logged a seeded number of further steps, after a seeded
  delay of a few milliseconds (wherever the process then is: a step, a frame, a checkpoint...);
- inside a write: the process runs generate.py's main() with rundir.write_all wrapped so that
  the n-th write to a given file hands the OS half its bytes and then SIGKILLs the process (a
  CSV row cut in half, half a checkpoint, half a frame, half a run.json).
"""

import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clampgen import rundir
from clampgen.checkpoint import load_checkpoint
from clampgen.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "clampgen-tiny", "--size", "32", "--cutn", "2", "--threads", "1"]
STEPS = 200  # room for the four random kills (at most 120 steps, plus what runs until a kill)
RUN = [*TINY, "--seed", "5", "--steps", str(STEPS), "--save-every", "5", "--eval-every", "7"]
RUN += ["--no-progress"]

# A process that imports clampgen once, then forks one child per session: each child runs
# generate.py's main(argv) (stdout and stderr to a log file) and is the process the test kills.
# Forking skips the seconds of imports per session; the parent has run no torch op (one thread),
# so forking it is safe. With "kill_at": "<file name prefix>:<n>" the child's n-th write to such
# a file hands the OS half its bytes, then the child SIGKILLs itself.
FORKER = r"""
import json, os, signal, sys
from pathlib import Path

from clampgen import rundir
from clampgen.cli import main


def run(argv, log, kill_at):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1), os.dup2(fd, 2), os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if kill_at:
        prefix, n = kill_at.rsplit(":", 1)
        seen, write_all = [0], rundir.write_all

        def dying_write(fd, data):
            if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(prefix):
                seen[0] += 1
                if seen[0] == int(n):
                    write_all(fd, data[: max(1, len(data) // 2)])
                    os.kill(os.getpid(), signal.SIGKILL)
            write_all(fd, data)

        rundir.write_all = dying_write
    code = 1
    try:
        code = main(argv)
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)


for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        run(job["argv"], job["log"], job["kill_at"])
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""


class Forker:
    """Starts sessions (generate.py's main in a child process) and reports how they ended."""

    def __init__(self, log):
        self.log, self.buffer = str(log), b""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKER],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )

    def start(self, argv, kill_at=None):
        job = {"argv": argv, "log": self.log, "kill_at": kill_at}
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        return Session(self, self.read_line(timeout=120))

    def read_line(self, timeout) -> int:
        """The next number the forker prints; fails the test after timeout seconds."""
        deadline = time.time() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0, deadline - time.time()))
            chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else b""
            assert chunk, f"the forker said nothing for {timeout} s:\n{Path(self.log).read_text()}"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return int(line)

    def close(self):
        self.proc.kill()  # between sessions: it waits for the next line
        self.proc.wait(timeout=60)


class Session:
    """One child of the Forker: poll() is None while it runs, wait() gives its exit status
    (-9 when SIGKILLed)."""

    def __init__(self, forker, pid):
        self.forker, self.pid, self.returncode = forker, pid, None

    def poll(self):
        if self.returncode is None:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    running = f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                running = False
            if not running:
                self.wait()
        return self.returncode

    def wait(self, timeout=300):
        if self.returncode is None:
            try:
                self.returncode = self.forker.read_line(timeout)
            except AssertionError:
                os.kill(self.pid, signal.SIGKILL)  # hung: do not leave it running
                raise
        return self.returncode

    def log(self):
        return Path(self.forker.log).read_text()[-3000:]


@pytest.fixture
def forker(tmp_path):
    f = Forker(tmp_path / "sessions.log")
    yield f
    f.close()


def rows(*paths) -> int:
    """Lines in the metrics.csv files (0 for a missing one)."""
    return sum(p.read_bytes().count(b"\n") for p in paths if p.exists())


def kill_when(proc, count, target, rng, signal_to=None, before=None):
    """SIGKILLs proc (or signal_to()) once count() >= target, after a random delay of up to
    30 ms (calling before() first); True if it was still running then."""
    deadline = time.time() + 300
    while proc.poll() is None and count() < target and time.time() < deadline:
        time.sleep(0.003)
    if before is not None and proc.poll() is None:
        before()
    time.sleep(rng.uniform(0, 0.03))
    if proc.poll() is not None:
        return False
    (signal_to or (lambda: os.kill(proc.pid, signal.SIGKILL)))()
    proc.wait(timeout=120)
    return True


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def assert_whole_files(run_dir):
    """Every file under its own name is whole: PNGs decode, JSON parses, the checkpoint loads.
    Only a CSV's last row may be cut short (readers skip it; --resume cuts it off)."""
    for png in [*run_dir.glob("*.png"), *(run_dir / "frames").glob("*.png")]:
        with Image.open(png) as im:
            im.load()
    if (run_dir / "progress.gif").exists():
        with Image.open(run_dir / "progress.gif") as im:
            im.seek(im.n_frames - 1)
    if (run_dir / "run.json").exists():
        json.loads((run_dir / "run.json").read_text())
    assert load_checkpoint(run_dir)["step"] >= 0  # a killed run always has one
    rundir.read_metrics(run_dir)


def metrics_without_seconds(run_dir):
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    return [line.rsplit(",", 1)[0] for line in lines]


def assert_same_run(run_dir, reference):
    """The killed-and-resumed run equals the uninterrupted one, file by file."""
    assert np.array_equal(pixels(run_dir / "final.png"), pixels(reference / "final.png"))
    got, want = metrics_without_seconds(run_dir), metrics_without_seconds(reference)
    steps = [int(line.split(",")[0]) for line in got[1:]]
    assert steps == list(range(STEPS + 1)), "every step exactly once"
    assert got == want
    for name in ("step_sizes.csv",):
        if (reference / name).exists():
            assert (run_dir / name).read_text() == (reference / name).read_text()
    frames, ref_frames = rundir.frame_paths(run_dir), rundir.frame_paths(reference)
    assert list(frames) == list(ref_frames)
    for step, path in frames.items():
        assert np.array_equal(pixels(path), pixels(ref_frames[step])), step
    run = json.loads((run_dir / "run.json").read_text())
    assert run["interrupted"] is False and run["steps_done"] == STEPS
    assert run["config"]["threads"] == 1
    with Image.open(run_dir / "progress.gif") as a, Image.open(reference / "progress.gif") as b:
        assert a.n_frames == b.n_frames
    assert not (run_dir / "checkpoint.pt").exists()
    assert not list(run_dir.rglob("*.tmp"))


def test_sigkill_at_random_moments_then_resume(tmp_path, capsys, forker):
    """Four kills at seeded random moments of one run (fft), each followed by --resume; while it
    runs, a second --resume of it is refused (the directory is locked)."""
    argv = ["a red circle:1 | a blue square:-0.3", *RUN]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    out, rng = tmp_path / "run", random.Random(1234)
    metrics = out / "metrics.csv"
    command, kills, refused = [*argv, "--out", str(out)], 0, []

    def resume_while_running():
        capsys.readouterr()
        refused.append(main(["--resume", str(out), "--no-progress"]))
        assert "another process" in capsys.readouterr().err

    for session in range(4):
        proc = forker.start(command)
        target = rows(metrics) + rng.randint(5, 30)
        before = resume_while_running if session == 0 else None
        kills += kill_when(proc, lambda: rows(metrics), target, rng, before=before)
        assert proc.returncode == -signal.SIGKILL, proc.log()
        assert_whole_files(out)
        command = ["--resume", str(out), "--no-progress"]
    assert refused == [2]
    assert kills == 4
    proc = forker.start(command)
    assert proc.wait() == 0, proc.log()
    assert_same_run(out, tmp_path / "reference")


KILL_POINTS = [  # (file name prefix, which write to it), for one chain of kills
    ("metrics.csv", 40),  # a row cut in half
    ("checkpoint.pt", 3),  # half a checkpoint (its .tmp)
    ("step_0", 4),  # half a frame
    ("step_sizes.csv", 20),  # a row cut in half
    ("run.json", 1),  # the last file of the run, half written
]


def test_sigkill_inside_each_kind_of_write_then_resume(tmp_path, forker):
    """Kills inside a metrics row, a checkpoint, a frame, a step_sizes row and run.json, in one
    run (pixel generator with --step-sizes), each followed by --resume."""
    argv = ["a red circle", *RUN, "--generator", "pixel", "--init-scale", "3", "--step-sizes"]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    out = tmp_path / "run"
    command = [*argv, "--out", str(out)]
    for prefix, n in KILL_POINTS:
        proc = forker.start(command, kill_at=f"{prefix}:{n}")
        assert proc.wait() == -signal.SIGKILL, (prefix, proc.log())
        assert_whole_files(out)
        command = ["--resume", str(out), "--no-progress"]
    assert main(command) == 0
    assert_same_run(out, tmp_path / "reference")


# ---------------------------------------------------------------- comparisons and suites

COMPARE = [*TINY, "--generator", "pixel", "--init-scale", "4", "--save-every", "5", "--seed", "0"]
COMPARE += ["--no-progress", "--clamp", "clamp,clamp_with_grad"]


def without_wall_times(x):
    """A summary.json without its wall times (the one thing a restart changes)."""
    if isinstance(x, dict):
        return {k: without_wall_times(v) for k, v in x.items() if "wall" not in k}
    if isinstance(x, list):
        return [without_wall_times(v) for v in x]
    return x


def assert_same_report(out, reference):
    summaries = sorted(p.relative_to(reference) for p in reference.rglob("summary.json"))
    assert summaries == sorted(p.relative_to(out) for p in out.rglob("summary.json"))
    for rel in summaries:
        got, want = (json.loads((d / rel).read_text()) for d in (out, reference))
        assert without_wall_times(got) == without_wall_times(want), rel
    for run_json in reference.rglob("run.json"):
        rel = run_json.parent.relative_to(reference)
        final = [pixels(d / rel / "final.png") for d in (out, reference)]
        assert np.array_equal(*final), rel
        assert metrics_without_seconds(out / rel) == metrics_without_seconds(reference / rel)
    assert not list(out.rglob("checkpoint.pt")) and not list(out.rglob("*.tmp"))


def all_rows(out):
    return rows(*out.rglob("metrics.csv"))


def test_comparison_killed_then_same_command_resumes_its_runs(tmp_path, forker):
    """A comparison (2 clamps x 2 seeds) killed with SIGKILL three times at seeded moments, then
    the same command again: the killed runs resume from their checkpoints, the report is the
    uninterrupted one's."""
    argv = ["a red circle", *COMPARE, "--steps", "40", "--seeds", "2"]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    out, rng = tmp_path / "cmp", random.Random(99)
    for _ in range(3):
        proc = forker.start([*argv, "--out", str(out)])
        target = all_rows(out) + rng.randint(10, 40)
        assert kill_when(proc, lambda: all_rows(out), target, rng), proc.log()
    proc = forker.start([*argv, "--out", str(out)])
    assert proc.wait() == 0, proc.log()
    assert "resuming" in Path(forker.log).read_text()  # not run again from the start
    assert_same_report(out, tmp_path / "reference")


def children(pid) -> list:
    """(pid, environment) of the processes whose parent is pid."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            parent = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if d.name.isdigit() and parent == pid:
                found.append((int(d.name), (d / "environ").read_bytes().split(b"\0")))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_torchrun_worker_killed_then_same_command_finishes_the_suite(tmp_path):
    """A suite under torchrun (2 processes, 2 prompts x 2 clamps): rank 1 is SIGKILLed mid-job
    (torchrun then stops rank 0), the same command again finishes it: the same report."""
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    argv = ["--prompts", str(tmp_path / "prompts.txt"), *COMPARE, "--steps", "60"]
    assert main([*argv, "--out", str(tmp_path / "reference")]) == 0
    out, log = tmp_path / "suite", tmp_path / "torchrun.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["generate.py", *argv, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def launch():
        with open(log, "ab") as f:
            return subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=f, stderr=f, start_new_session=True
            )

    job = launch()
    try:

        def kill_rank_1():
            (pid,) = [p for p, env in children(job.pid) if b"RANK=1" in env]
            os.kill(pid, signal.SIGKILL)

        target = random.Random(7).randint(20, 80)
        assert kill_when(job, lambda: all_rows(out), target, random.Random(7), kill_rank_1)
        assert job.returncode != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
    job = launch()
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert_same_report(out, tmp_path / "reference")
