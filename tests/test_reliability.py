"""A diverging run stops cleanly (exit 3, last finite frame kept); SIGTERM keeps the work (130);
--resume continues with the run's own settings (its thread count included), refuses options that
would change its result, and makes sense of whatever a kill left in the directory.
(tests/test_kill.py: kill -9; tests/test_disk_full.py: ENOSPC and read-only directories.)"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clampgen import rundir
from clampgen.clamps import CLAMPS, clamp
from clampgen.cli import main

TINY = ["--model", "clampgen-tiny", "--size", "32", "--cutn", "2", "--seed", "0", "--no-progress"]


def test_non_finite_loss_stops_with_exit_3(tmp_path, monkeypatch, capsys):
    calls = []

    def nan_after_3(x, lo, hi):  # a clamp that turns the image to NaN from its 4th call on
        calls.append(1)
        y = clamp(x, lo, hi)
        return y * float("nan") if len(calls) > 3 else y

    monkeypatch.setitem(CLAMPS, "nan_after_3", nan_after_3)
    out = tmp_path / "run"
    code = main(
        ["a red circle", *TINY, "--steps", "20", "--clamp", "nan_after_3", "--out", str(out)]
    )
    assert code == 3
    assert "non-finite loss" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["stop_reason"].startswith("non-finite loss") and run["interrupted"] is False
    rows = (out / "metrics.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == 3 and all("nan" not in r for r in rows)  # steps 0-2, all finite
    final = torch.from_numpy(np.asarray(Image.open(out / "final.png"), dtype=np.float32))
    frame = Image.open(sorted((out / "frames").glob("*.png"))[-1])
    assert (out / "loss.png").exists() and frame.size == (32, 32)
    assert final.std() > 0  # the last finite image, not NaN pixels (which would save as black)


def test_sigterm_keeps_the_work(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(Path(__file__).parents[1] / "generate.py"),
        "a red circle",
        *TINY,
        "--steps",
        "100000",
        "--save-every",
        "0",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (out / "metrics.csv").exists() and len((out / "metrics.csv").read_text().splitlines()) > 4
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-500:]
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True and run["steps_done"] > 2
    assert (out / "final.png").exists() and (out / "loss.png").exists()


def test_resume_gives_the_pixels_of_an_uninterrupted_run(tmp_path, monkeypatch):
    """Interrupted at step 10 (checkpoints every 4 steps), resumed from step 8: same pixels."""
    calls, armed = [], [False]

    def flaky(x, lo, hi):  # Ctrl-C on its 11th call (step 10) when armed, else clamp_with_grad
        calls.append(1)
        if armed[0] and len(calls) == 11:
            raise KeyboardInterrupt
        return CLAMPS["clamp_with_grad"](x, lo, hi)

    monkeypatch.setitem(CLAMPS, "flaky", flaky)
    argv = [
        "a red circle",
        *TINY,
        "--steps",
        "12",
        "--save-every",
        "4",
        "--clamp",
        "flaky",
        "--init",
        "noise",
        "--init-scale",
        "3",
        "--eval-every",
        "3",
    ]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert not (tmp_path / "a" / "checkpoint.pt").exists()  # removed once finished
    calls.clear()
    armed[0] = True
    assert main([*argv, "--out", str(tmp_path / "b")]) == 130
    assert json.loads((tmp_path / "b" / "run.json").read_text())["interrupted"] is True
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    armed[0] = False
    assert main(["--resume", str(tmp_path / "b"), "--no-progress"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / d / "final.png")) for d in "ab")
    assert np.array_equal(a, b)

    def rows(d):
        return [r.split(",")[:2] for r in (tmp_path / d / "metrics.csv").read_text().splitlines()]

    assert rows("a") == rows("b")  # steps and losses, row for row
    judged = [(tmp_path / d / "judged.csv").read_text() for d in "ab"]
    assert judged[0] == judged[1] and len(judged[0].splitlines()) == 6  # header, steps 0, 3 ... 12
    assert json.loads((tmp_path / "b" / "run.json").read_text())["interrupted"] is False


def test_resume_without_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["--resume", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, files, message",
    [
        (["a red circle:abc"], {}, "weight 'abc' is not a number"),
        (
            ["a red circle", "--init", "{tmp}/notimage.png"],
            {"notimage.png": b"not an image"},
            "notimage.png",
        ),
        (
            ["a red circle", "--image-prompt", "{tmp}/notimage.png"],
            {"notimage.png": b"plain text"},
            "notimage.png",
        ),
        (["a red circle", "--size", "0"], {}, "must be > 0"),
        (["a red circle", "--size", "32", "-5"], {}, "must be > 0"),
        (["a red circle", "--pretrained", "{tmp}/missing.pt"], {}, "missing.pt"),
        (["a red circle", "--device", "cuda"], {}, "cuda"),
        (["a red circle", "--config", "{tmp}/bad.toml"], {"bad.toml": b"steps = = 3"}, "bad.toml"),
        (["a red circle", "--config", "{tmp}/bad.toml"], {"bad.toml": b"stepz = 3"}, "stepz"),
        (["a red circle", "--config", "{tmp}/bad.toml"], {"bad.toml": b"steps = 'ten'"}, "steps"),
        (["a red circle", "--out", "{tmp}/file.txt/run"], {"file.txt": b"x"}, "file.txt"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, files, message):
    if torch.cuda.is_available() and "cuda" in argv:
        pytest.skip("this machine has a GPU")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "run")]
    before = set(tmp_path.iterdir())
    assert main([*TINY, "--steps", "2", *argv, *out]) == 2  # argv last: it overrides TINY
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert set(tmp_path.iterdir()) == before  # no half-made run directory


# ------------------------------------------------- --resume restores the run's own settings

SHAPES = ["a red circle", "--model", "shapes", "--size", "48", "--cutn", "4", "--seed", "1"]
SHAPES += ["--steps", "8", "--save-every", "4", "--no-progress"]


@pytest.fixture
def interrupted_at_6(tmp_path, monkeypatch):
    """A factory: runs SHAPES + extra into tmp_path/name with Ctrl-C at step `at` (default 6:
    the checkpoint of step 4 stays; before step 4, the run's first one, of step 0)."""
    calls, stop = [], [7]

    def ctrl_c(x, lo, hi):
        calls.append(1)
        if len(calls) == stop[0]:
            raise KeyboardInterrupt
        return CLAMPS["clamp_with_grad"](x, lo, hi)

    monkeypatch.setitem(CLAMPS, "ctrl_c_at_6", ctrl_c)

    def run(name, *extra, at=6):
        calls.clear()
        stop[0] = at + 1
        out = tmp_path / name
        assert main([*SHAPES, *extra, "--clamp", "ctrl_c_at_6", "--out", str(out)]) == 130
        stop[0] = 0  # disarmed
        return out

    return run


@pytest.fixture
def two_threads():
    """This process on torch's 2 threads (the default on a 2-core machine) for one test."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def final_pixels(run_dir):
    return np.asarray(Image.open(run_dir / "final.png"))


def test_resume_restores_the_thread_count(tmp_path, interrupted_at_6, two_threads):
    """A run started with --threads 1, resumed by a process on 2 threads without the flag,
    computes on 1 thread: the pixels of an uninterrupted --threads 1 run (which differ from a
    --threads 2 run's here, so the test can tell)."""
    grey = ["--init-colour", "none"]  # from grey noise, 8 steps on 1 or 2 threads part ways
    argv = [*SHAPES, *grey, "--clamp", "ctrl_c_at_6"]
    out = interrupted_at_6("b", *grey, "--threads", "1", at=2)  # every step is computed on resuming
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["threads"] == 1
    torch.set_num_threads(2)  # main() set 1 for the run
    assert main(["--resume", str(out), "--no-progress"]) == 0
    assert main([*argv, "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--threads", "2", "--out", str(tmp_path / "two")]) == 0
    assert np.array_equal(final_pixels(out), final_pixels(tmp_path / "one"))
    assert not np.array_equal(final_pixels(tmp_path / "one"), final_pixels(tmp_path / "two"))
    assert json.loads((out / "run.json").read_text())["config"]["threads"] == 1


def test_threads_0_records_the_count_it_used(tmp_path, two_threads):
    assert main([*SHAPES, "--steps", "1", "--out", str(tmp_path / "r")]) == 0
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["config"]["threads"] == 2 and run["config"]["device"] == "cpu"
    assert run["config"]["model"] == "shapes"


@pytest.mark.parametrize(
    "extra, refused",
    [
        (["--steps", "9"], "steps 9"),
        (["--threads", "2"], "threads 2"),
        (["--lr", "0.3"], "lr 0.3"),
        (["--seeds", "2"], "--seeds"),
        (["--out", "elsewhere"], "out elsewhere"),
        (["a blue square"], "prompt 'a blue square'"),
        (["--no-progress", "--threads", "1", "--steps", "8", "a red circle"], None),  # as recorded
        (["--progress"], None),  # touches no number
        (["--threads", "0"], None),  # what the run was asked (it resolved it to 1)
    ],
)
def test_resume_refuses_options_that_change_the_result(interrupted_at_6, capsys, extra, refused):
    out = interrupted_at_6("b")  # threads 0: torch's count in this process, 1 (conftest)
    capsys.readouterr()
    code = main(["--resume", str(out), *extra])
    err = capsys.readouterr().err
    if refused is None:
        assert code == 0, err
    else:
        assert code == 2 and refused in err and err.count("\n") == 1, err
        assert (out / "checkpoint.pt").exists()  # nothing touched


# ------------------------------------------------------ what --resume finds in a directory


def test_resume_cuts_a_torn_row_and_rows_after_the_checkpoint(tmp_path, interrupted_at_6):
    """metrics.csv as a kill can leave it: rows after the checkpoint's step, then a row cut
    short whose step cell reads "1" (of "16"): --resume keeps exactly the rows up to step 4."""
    out = interrupted_at_6("b")
    reference = tmp_path / "reference"
    assert main([*SHAPES, "--clamp", "ctrl_c_at_6", "--out", str(reference)]) == 0
    with open(out / "metrics.csv", "a") as f:
        f.write("1")  # half a row, no line end
    assert rundir.read_metrics(out)["step"] == [0, 1, 2, 3, 4, 5]  # readers skip it
    assert main(["--resume", str(out), "--no-progress"]) == 0
    got, want = ((d / "metrics.csv").read_text().splitlines() for d in (out, reference))
    assert [r.rsplit(",", 1)[0] for r in got] == [r.rsplit(",", 1)[0] for r in want]
    assert np.array_equal(final_pixels(out), final_pixels(reference))


def test_resume_refuses_files_older_than_the_checkpoint(interrupted_at_6, capsys):
    out = interrupted_at_6("b")
    rows = (out / "metrics.csv").read_text().splitlines(keepends=True)
    (out / "metrics.csv").write_text("".join(rows[:3]))  # rows lost before the checkpoint
    capsys.readouterr()
    assert main(["--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "metrics.csv" in err and "cannot continue" in err and err.count("\n") == 1


def test_resume_of_a_run_killed_before_its_first_step(tmp_path, capsys):
    """A run killed while creating its first checkpoint leaves at most checkpoint.pt.tmp:
    --resume says so in one line and empties the directory, so the same command runs again."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")
    assert main(["--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "before its first step" in err and err.count("\n") == 1
    assert not any(out.iterdir())
    assert main(["a red circle", *TINY, "--steps", "2", "--out", str(out)]) == 0


def test_resume_of_a_finished_run(tmp_path, interrupted_at_6, capsys):
    """Killed after run.json said finished but before its checkpoint was removed: --resume
    leaves the run as it is, removes the checkpoint and says so (exit 0)."""
    out = interrupted_at_6("b")
    done = tmp_path / "done"
    assert main([*SHAPES, "--clamp", "ctrl_c_at_6", "--out", str(done)]) == 0
    shutil.copy(out / "checkpoint.pt", done / "checkpoint.pt")
    before = (done / "final.png").read_bytes()
    capsys.readouterr()
    assert main(["--resume", str(done)]) == 0
    assert "had already finished" in capsys.readouterr().out
    assert (done / "final.png").read_bytes() == before and not (done / "checkpoint.pt").exists()


def test_resume_of_a_comparison_directory_says_what_to_do(tmp_path, capsys):
    (tmp_path / "plan.json").write_text("{}")
    assert main(["--resume", str(tmp_path)]) == 2
    assert "run the command that started it again" in capsys.readouterr().err


def test_every_new_run_starts_with_a_checkpoint(tmp_path, monkeypatch):
    """The first file a run writes is its step-0 checkpoint (so a kill at any later moment
    leaves one), and --save-every 0 keeps only that one."""
    written = []
    write_all = rundir.write_all

    def record(fd, data):
        written.append(Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        write_all(fd, data)

    monkeypatch.setattr(rundir, "write_all", record)
    argv = ["a red circle", *TINY, "--steps", "3", "--save-every", "0", "--out"]
    assert main([*argv, str(tmp_path / "r")]) == 0
    assert written[0] == "checkpoint.pt.tmp" and written.count("checkpoint.pt.tmp") == 1
