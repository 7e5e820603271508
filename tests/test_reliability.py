"""A diverging run stops cleanly (exit 3, last finite frame kept); SIGTERM keeps the work (130)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
