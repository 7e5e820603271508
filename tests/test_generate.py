import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clampgen.cli import main
from clampgen.config import GenerateConfig
from clampgen.generators import memory_estimate
from clampgen.prompts import slug
from clampgen.run import complete, default_run_dir, prepare, run_one

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "clampgen-tiny", "--size", "32", "--cutn", "4", "--no-progress"]


def generate(out, *extra, prompt="a red circle:1 | a blue square:-0.5"):
    return main(
        [
            prompt,
            *TINY,
            "--steps",
            "6",
            "--save-every",
            "2",
            "--eval-every",
            "3",
            "--out",
            str(out),
            *extra,
        ]
    )


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    assert generate(out, "--seed", "7") == 0
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == [f"step_{s:05d}.png" for s in (0, 2, 4, 6)]
    for name in ("final.png", "progress.gif", "loss.png", "metrics.csv", "run.json"):
        assert (out / name).stat().st_size > 0
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "step",
        "loss",
        "loss_0",
        "loss_1",
        "eval_loss",
        "out_of_range",
        "grad_norm",
        "seconds",
    ]
    assert [r["step"] for r in rows] == [str(s) for s in range(7)]
    assert [bool(r["eval_loss"]) for r in rows] == [True, False, False, True, False, False, True]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["seed"] == 7 and run["seed"] == 7 and run["interrupted"] is False
    assert run["model"] == "clampgen-tiny" and run["device"] == "cpu"
    assert {"torch", "open_clip", "clampgen"} <= set(run["versions"]) and run["wall_seconds"] > 0
    meta = Image.open(out / "final.png").text
    assert meta["prompt"].startswith("a red circle") and meta["seed"] == "7"
    assert meta["clamp"] == "clamp_with_grad" and meta["model"] == "clampgen-tiny"
    assert meta["steps"] == "6" and meta["software"] == "clampgen" and meta["version"]
    gif = Image.open(out / "progress.gif")
    assert gif.n_frames == 4
    assert np.array_equal(pixels(out / "final.png"), pixels(out / "frames" / "step_00006.png"))


@pytest.mark.parametrize("generator", ["pixel", "fft"])
def test_same_seed_same_pixels(tmp_path, generator):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        assert generate(out, "--seed", seed, "--generator", generator) == 0
    assert np.array_equal(pixels(a / "final.png"), pixels(b / "final.png"))
    assert not np.array_equal(pixels(a / "final.png"), pixels(c / "final.png"))


def test_random_seed_is_printed_and_recorded(tmp_path, capsys):
    assert generate(tmp_path / "r") == 0
    seed = json.loads((tmp_path / "r" / "run.json").read_text())["seed"]
    assert isinstance(seed, int) and f"seed: {seed}" in capsys.readouterr().out


def test_existing_run_directory_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert generate(out, "--seed", "1") == 0
    before = (out / "final.png").read_bytes()
    assert generate(out, "--seed", "2") == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "final.png").read_bytes() == before


def test_default_run_dir_gets_a_suffix(tmp_path, monkeypatch):
    import datetime as dt

    import clampgen.run

    class FrozenClock(dt.datetime):  # the same second for every call: the suffix must do the work
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 11, 27, 8, 0, 0)

    monkeypatch.setattr(clampgen.rundir, "datetime", FrozenClock)
    cfg = GenerateConfig(prompt="A red circle: on blue!")
    first = default_run_dir(cfg, tmp_path)
    assert first.name.endswith("-a-red-circle-on-blue") and first.parent == tmp_path
    first.mkdir()
    assert (
        default_run_dir(cfg, tmp_path).name.endswith("-2")
        or default_run_dir(cfg, tmp_path) != first
    )
    assert default_run_dir(cfg, tmp_path) == first.with_name(first.name + "-2")
    first.with_name(first.name + "-2").mkdir()
    assert default_run_dir(cfg, tmp_path) == first.with_name(first.name + "-3")
    assert slug("!!!") == "run"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--clamp", "clampy"], "unknown clamp 'clampy'"),
        (["--optimizer", "lbfgs2"], "unknown optimizer 'lbfgs2'"),
        (["--compile", "fast"], "unknown compile mode 'fast'"),
        (["--generator", "vqgam"], "unknown generator 'vqgam'"),
        (["--generator", "vqgan", "--vqgan-checkpoint", "x.ckpt"], "--vqgan-config is missing"),
        (["--model", "ViT-Q-99"], "unknown model 'ViT-Q-99'"),
        (["--steps", "0"], "steps must be > 0"),
        (["--tv-weight", "-1"], "tv_weight must be >= 0, got -1.0"),
        (["--cut-overhang", "-0.5"], "cut_overhang must be >= 0"),
        (["--init", "missing.png"], "file not found"),
        (["--image-prompt", "missing.png"], "file not found"),
        (["--image-prompt", "missing.png:1:-0.2"], "file not found: missing.png"),
        (["--image-prompt", "ref.png:"], "image prompt 'ref.png:': nothing after the last ':'"),
        (["--threads", "-3"], "threads must be >= 0 (0: torch's default), got -3"),
        (["--fps", "0"], "fps must be > 0, got 0"),
        (["--cut-pow", "-1"], "cut_pow must be >= 0"),
        (["--size", "100000", "100000"], "--size 100000 100000 needs about 2 TB of memory"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert generate(out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_empty_prompt_exit_2(tmp_path, capsys):
    assert generate(tmp_path / "run", prompt="") == 2
    assert "no prompt" in capsys.readouterr().err


def test_prompt_ending_in_a_colon_exit_2(tmp_path, capsys):
    assert generate(tmp_path / "run", prompt="a blue square | a red circle:") == 2
    err = capsys.readouterr().err
    assert "prompt 'a red circle:': nothing after the last ':'" in err and err.count("\n") == 1


def test_a_size_that_cannot_fit_is_refused_by_the_library(tmp_path):
    """The memory check is the library's (check_config, so prepare and run_one): a program that
    calls it, such as a web app, gets the ValueError before anything is allocated."""
    cfg = GenerateConfig(prompt="a red circle", model="clampgen-tiny", size=(100_000, 100_000))
    with pytest.raises(ValueError, match="needs about 2 TB of memory .* available"):
        run_one(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="needs about 2 TB"):
        prepare(complete(cfg))
    assert not (tmp_path / "run").exists()
    assert memory_estimate(complete(cfg)) > memory_estimate(complete(GenerateConfig()))


def test_image_prompt_and_init_file(tmp_path):
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    out = tmp_path / "run"
    assert (
        generate(
            out,
            "--image-prompt",
            f"{tmp_path / 'red.png'}:2",
            "--init",
            str(tmp_path / "red.png"),
            "--init-weight",
            "0.5",
            "--seed",
            "0",
        )
        == 0
    )
    first = pixels(out / "frames" / "step_00000.png")
    assert abs(int(first[..., 0].mean()) - 200) <= 2  # frame 0 is the init image
    with open(out / "metrics.csv") as f:
        assert "loss_2" in f.readline()  # 2 text prompts + 1 image prompt


def test_image_prompt_weight_and_stop_reach_the_loss(tmp_path):
    """FILE:weight:stop (--image-prompt) and [FILE]:weight:stop (in a phase) as the peers read
    them: a stop above any distance (at most 2 (pi/2)^2) floors the prompt's loss at
    |weight| * stop on every step, as for a text prompt."""
    ref = tmp_path / "red.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(ref)
    out = tmp_path / "run"
    prompt = f"a red circle | [{ref}]:2:10"
    assert generate(out, "--image-prompt", f"{ref}:0.5:10", "--seed", "0", prompt=prompt) == 0
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["loss_1"] for r in rows} == {"20"} and {r["loss_2"] for r in rows} == {"5"}
    assert len({r["loss_0"] for r in rows}) > 1  # the text prompt still moves


def test_image_prompt_from_a_url(tmp_path, capsys):
    """An http(s):// image prompt (weight and stop after it, the port's colon kept) is fetched;
    one that cannot be is one line, exit 2, nothing written."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the server's request log would go to stderr
            pass

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert generate(tmp_path / "a", "--image-prompt", f"{url}/red.png:2:-1", "--seed", "0") == 0
        assert generate(tmp_path / "b", "--image-prompt", f"{url}/gone.png", "--seed", "0") == 2
    finally:
        server.shutdown()
        server.server_close()
    with open(tmp_path / "a" / "metrics.csv") as f:
        assert "loss_2" in f.readline()
    err = capsys.readouterr().err
    assert f"{url}/gone.png could not be fetched (HTTP 404)" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_run_one_returns_summary(tmp_path):
    cfg = GenerateConfig(
        prompt="a red circle",
        model="clampgen-tiny",
        size=(32, 32),
        steps=3,
        cutn=2,
        seed=5,
        progress=False,
    )
    summary = run_one(cfg, tmp_path / "one", progress=False)
    assert summary["seed"] == 5 and summary["steps_done"] == 3 and not summary["interrupted"]
    assert [h["step"] for h in summary["history"]] == [0, 1, 2, 3]
    assert summary["final_eval_loss"] is not None


def test_generate_py_entry_point(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "generate.py"),
            "a red circle",
            *TINY,
            "--steps",
            "1",
            "--seed",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "final.png").exists() and "seed: 0" in proc.stdout


def test_ctrl_c_keeps_the_work(tmp_path):
    """KeyboardInterrupt mid-run: final.png, metrics, loss.png and run.json are still written."""
    import _thread
    import signal
    import threading
    import time

    out = tmp_path / "run"

    def interrupt_when_started():
        deadline = time.time() + 120  # a run that failed early must not be polled forever
        while time.time() < deadline and not (
            (out / "metrics.csv").exists()
            and len((out / "metrics.csv").read_text().splitlines()) >= 3
        ):
            time.sleep(0.01)
        _thread.interrupt_main()

    # Ctrl-C is Python's SIGINT handler; a test process started in the background (`cmd &` in a
    # script, nohup) inherits SIGINT ignored, and interrupt_main then does nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_when_started, daemon=True).start()
    cfg = GenerateConfig(
        prompt="a red circle",
        model="clampgen-tiny",
        size=(32, 32),
        steps=10_000,
        cutn=2,
        seed=5,
        progress=False,
    )
    try:
        with pytest.raises(KeyboardInterrupt):
            run_one(cfg, out, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True and 0 < run["steps_done"] < 10_000
    assert (out / "final.png").exists() and (out / "loss.png").exists()
