"""Weights from the Hugging Face Hub the way huggingface_hub users expect (clampgen.clip_loader):
a local server that speaks the Hub's resolve protocol stands in for the Hub (tests/fake_hub.py),
and the app runs in a subprocess with HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE or a proxy set, as a
user runs it (huggingface_hub reads them when it is imported). The tag is clampgen-tiny/fakehub:
tiny weights, size 32, 2 steps."""

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clampgen import rundir
from clampgen.clip_loader import TINY_MODEL, register_tiny_model
from tests.fake_hub import COMMIT, REPO, TAG, FakeHub

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "fake_hub.py"
RUN = ["a red circle", "--size", "32", "--steps", "2", "--cutn", "2", "--seed", "0"]
WEIGHTS = "open_clip_pytorch_model.bin"  # served; its safetensors twin is not (a 404)


@pytest.fixture(scope="module")
def weights():
    """The tiny model's random weights as the Hub would serve them."""
    register_tiny_model()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = open_clip.create_model(TINY_MODEL)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


@pytest.fixture
def hub(weights):
    hub = FakeHub({REPO: {WEIGHTS: weights}}).start()
    yield hub
    hub.stop()


def app(args: list, hf_home: Path, endpoint: str, **env) -> subprocess.CompletedProcess:
    """tests/fake_hub.py ARGS in a fresh process with HF_HOME and HF_ENDPOINT set (and no
    Hugging Face or proxy setting of this machine's environment)."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith(("HF_", "HUGGINGFACE_")) or k.lower().endswith("_proxy"))
    }
    env = {**keep, "OMP_NUM_THREADS": "1", "HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint, **env}
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def final_pixels(run_dir: Path) -> np.ndarray:
    return np.asarray(Image.open(run_dir / "final.png"))


def test_download_once_then_run_from_the_cache(hub, weights, tmp_path):
    """The first run downloads into HF_HOME's cache (huggingface_hub's layout); the second runs
    with the server stopped, and `--model auto` takes the cached weights even on CPU."""
    home, first, second = tmp_path / "hf", tmp_path / "first", tmp_path / "second"
    args = ["cli", *RUN, "--model", TINY_MODEL, "--pretrained", TAG, "--out", str(first)]
    run = app([*args, "--no-progress"], home, hub.url, TQDM_POSITION="-1")  # bars without a tty
    assert run.returncode == 0, run.stderr
    assert f"downloading {REPO}/{WEIGHTS} from {hub.url}" in run.stdout
    assert "100%|" in run.stderr and "B/s" in run.stderr  # huggingface_hub's own progress bar
    asked = hub.resolved()
    assert ("HEAD", "open_clip_model.safetensors") in asked and ("HEAD", WEIGHTS) in asked
    assert any(m == "GET" and p.startswith("/cdn/") for m, p in hub.requests)  # the redirect
    cached = home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / WEIGHTS
    assert cached.read_bytes() == weights
    assert json.loads((first / "run.json").read_text())["pretrained"] == TAG

    hub.stop()
    run = app(["cli", *RUN, "--model", "auto", "--out", str(second)], home, hub.url)
    assert run.returncode == 0, run.stderr
    assert "downloading" not in run.stdout
    reason = f"model: {TINY_MODEL}/{TAG} (auto: its weights are in the Hugging Face cache)"
    assert reason in run.stdout
    assert rundir.read_metrics(first)["loss"] == rundir.read_metrics(second)["loss"]
    np.testing.assert_array_equal(final_pixels(first), final_pixels(second))


def test_offline_with_an_empty_cache_is_one_line(hub, tmp_path):
    """HF_HUB_OFFLINE=1: no request at all, one line on stderr, exit 2, nothing written."""
    out = tmp_path / "run"
    args = ["cli", *RUN, "--model", TINY_MODEL, "--pretrained", TAG, "--out", str(out)]
    run = app(args, tmp_path / "hf", hub.url, HF_HUB_OFFLINE="1")
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], run.stderr
    assert f"weights {TINY_MODEL}/{TAG} are not in the Hugging Face cache" in err[0]
    assert "HF_HUB_OFFLINE is set" in err[0] and "--model shapes" in err[0]
    assert hub.requests == [] and not out.exists()


def test_unreachable_endpoint_is_one_line(tmp_path):
    """An endpoint nobody answers: one line naming it and saying what to do, exit 2."""
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "run"
    args = ["cli", *RUN, "--model", TINY_MODEL, "--pretrained", TAG, "--out", str(out)]
    run = app(args, tmp_path / "hf", endpoint)
    assert run.returncode == 2
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], run.stderr
    assert f"{endpoint} could not be reached" in err[0]
    for advice in ("--model shapes", "--pretrained FILE", "HF_ENDPOINT"):
        assert advice in err[0]
    assert not out.exists()


def test_auto_asks_the_hub_only_on_a_gpu(hub, tmp_path):
    """`--model auto` with an empty cache: on CPU the bundled model without a single request;
    on a GPU (only the device's name is used here, nothing runs on it) the preferred model when
    the endpoint has its weights, which a metadata request finds without downloading them."""
    home = tmp_path / "hf"
    run = app(["resolve", "cpu", "cuda"], home, hub.url, FAKE_HUB_MARK=hub.url)
    assert run.returncode == 0, run.stderr
    on_cpu, on_gpu = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    assert on_cpu[0] == "shapes" and "on CPU the bundled model is the default" in on_cpu[2]
    assert on_gpu[:2] == [TINY_MODEL, TAG]
    assert f"a GPU (cuda) is here and {hub.url} has its weights" in on_gpu[2]
    paths = [p for _, p in hub.requests if not p.startswith("/api/")]  # api: hf's own
    assert paths[0] == "/mark/cpu" and paths[-1] == "/mark/cuda"
    assert {m for m, p in hub.requests if "/resolve/" in p} == {"HEAD"}  # nothing downloaded
    assert not (home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots").exists()


def test_proxy_settings_apply(hub, tmp_path):
    """HTTP_PROXY is honoured as huggingface_hub honours it: an endpoint whose name does not
    resolve is reached through the proxy (the fake Hub answers proxy requests too)."""
    endpoint = "http://hub.clampgen.invalid"
    run = app(["resolve", "cuda"], tmp_path / "hf", endpoint, HTTP_PROXY=hub.url)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])[:2] == [TINY_MODEL, TAG]
    assert ("HEAD", f"{endpoint}/{REPO}/resolve/main/{WEIGHTS}") in hub.requests
