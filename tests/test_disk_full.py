"""A full disk (ENOSPC) or a read-only output directory in the middle of a run: one line on
stderr, exit status 4, the last checkpoint intact, and --resume once there is space again ends
with the pixels and metrics of an uninterrupted run.

ENOSPC and EROFS are real where the tests may mount filesystems (root with CAP_SYS_ADMIN: a
tmpfs that a ballast file fills mid-run, a read-only bind mount); elsewhere the read-only case
uses chmod (not as root, which ignores permissions). Everywhere, the lowest-level write that
every file of a run goes through (rundir.write_all) is made to fail at chosen writes (half the
bytes, then the error), which covers each kind of file: a CSV row, a checkpoint, a frame,
loss.png, run.json.
"""

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clampgen import rundir
from clampgen.checkpoint import load_checkpoint
from clampgen.clamps import CLAMPS
from clampgen.cli import main

TINY = ["--model", "clampgen-tiny", "--size", "32", "--cutn", "2", "--no-progress"]
ARGV = ["a red circle", *TINY, "--seed", "2", "--steps", "40", "--save-every", "5"]
ARGV += ["--generator", "pixel", "--init-scale", "3", "--step-sizes", "--clamp", "trigger"]


@pytest.fixture
def trigger(monkeypatch):
    """A clamp (clamp_with_grad) that calls `trigger.action` at its 23rd call (step 22): the
    moment the disk fills or the directory turns read-only."""

    class Trigger:
        action, calls = None, 0

    def clamp(x, lo, hi):
        Trigger.calls += 1
        if Trigger.calls == 23 and Trigger.action is not None:
            Trigger.action()
        return CLAMPS["clamp_with_grad"](x, lo, hi)

    monkeypatch.setitem(CLAMPS, "trigger", clamp)
    return Trigger


@pytest.fixture
def reference(tmp_path, trigger):
    out = tmp_path / "reference"
    assert main([*ARGV, "--out", str(out)]) == 0
    trigger.calls = 0
    return out


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def check_stopped(out, capsys, why=""):
    """After exit 4: one line naming the file, why and how to resume; whole files, a checkpoint."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Traceback" not in err, err
    assert why in err, err
    assert f"--resume {out}" in err, err
    assert load_checkpoint(out)["step"] > 0
    assert not list(out.rglob("*.tmp"))  # a write that failed took its temporary file along
    rundir.read_metrics(out)


def check_resumed(out, reference):
    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert np.array_equal(pixels(out / "final.png"), pixels(reference / "final.png"))
    for name in ("metrics.csv", "step_sizes.csv"):
        got, want = ((d / name).read_text().splitlines() for d in (out, reference))
        strip = (lambda line: line.rsplit(",", 1)[0]) if name == "metrics.csv" else str
        assert [strip(x) for x in got] == [strip(x) for x in want], name
    assert not (out / "checkpoint.pt").exists()


FAILURES = [  # (file name prefix, which write to it fails, errno)
    ("metrics.csv", 12, errno.ENOSPC),  # half a row written
    ("checkpoint.pt", 3, errno.ENOSPC),
    ("step_0", 4, errno.EROFS),  # a frame
    ("step_sizes.csv", 9, errno.EDQUOT),
    ("loss.png", 1, errno.ENOSPC),  # a file written after the loop
    ("run.json", 1, errno.EACCES),
]


@pytest.mark.parametrize("prefix, n, code", FAILURES, ids=[f[0] for f in FAILURES])
def test_write_fails_exit_4_then_resume(tmp_path, reference, monkeypatch, capsys, prefix, n, code):
    """From the n-th write to that file on, every write fails (the disk stays full) until the
    test frees it; then --resume."""
    write_all, failing = rundir.write_all, []

    def full_disk(fd, data):
        if not failing and Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(prefix):
            n_seen = getattr(full_disk, "seen", 0) + 1
            full_disk.seen = n_seen
            if n_seen == n:
                failing.append(True)
                write_all(fd, data[: len(data) // 2])
        if failing:
            raise OSError(code, os.strerror(code))
        write_all(fd, data)

    monkeypatch.setattr(rundir, "write_all", full_disk)
    out = tmp_path / "run"
    assert main([*ARGV, "--out", str(out)]) == 4
    check_stopped(out, capsys, os.strerror(code))
    monkeypatch.setattr(rundir, "write_all", write_all)  # space again
    check_resumed(out, reference)


def _can_mount(tmp_path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)]).returncode
    if ok == 0:
        subprocess.run(["umount", "-l", str(probe)])
    return ok == 0


def _mount(*args):
    subprocess.run(["mount", *map(str, args)], check=True, capture_output=True)


def _fill(disk):
    """Writes a ballast file until the filesystem is full (ENOSPC)."""
    fd = os.open(disk / "ballast", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_real_disk_full_on_a_tmpfs(tmp_path, reference, trigger, capsys):
    """The run directory on a tmpfs that a ballast file fills at step 22: a real ENOSPC from the
    kernel; the ballast removed, --resume ends the run."""
    if not _can_mount(tmp_path):
        pytest.skip("needs root with permission to mount a tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", disk)
    try:
        out = disk / "run"
        trigger.action = lambda: _fill(disk)
        assert main([*ARGV, "--out", str(out)]) == 4
        check_stopped(out, capsys)
        assert load_checkpoint(out)["step"] == 20
        (disk / "ballast").unlink()
        trigger.action = None
        check_resumed(out, reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@contextlib.contextmanager
def _read_only(path, can_mount):
    """Makes path read-only while the block runs: a read-only bind mount (root), else chmod."""
    if can_mount:
        _mount("--bind", path, path)
        try:
            _mount("-o", "remount,bind,ro", path)
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)])
    else:
        modes = [(p, p.stat().st_mode) for p in (path, path / "frames")]
        for p, _ in modes:
            p.chmod(0o555)
        try:
            yield
        finally:
            for p, mode in modes:
                p.chmod(mode)


def test_real_read_only_directory(tmp_path, reference, trigger, capsys):
    """The run directory turns read-only at step 22 (a real EROFS, or EACCES by chmod): exit 4,
    the checkpoint of step 20 intact; writable again, --resume ends the run."""
    can_mount = _can_mount(tmp_path)
    if os.geteuid() == 0 and not can_mount:
        pytest.skip("root ignores permissions and may not mount here")
    out, stack = tmp_path / "run", contextlib.ExitStack()
    trigger.action = lambda: stack.enter_context(_read_only(out, can_mount))
    with stack:
        assert main([*ARGV, "--out", str(out)]) == 4
    check_stopped(out, capsys)
    assert load_checkpoint(out)["step"] == 20
    trigger.action = None
    check_resumed(out, reference)
