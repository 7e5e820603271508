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
from clampgen.cli import main
from clampgen.clip_loader import TINY_CONFIG, TINY_MODEL, register_tiny_model
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


# open_clip's own Hub models, `--model hf-hub:ORG/NAME`: a repository holding open_clip_config.json
# (model_cfg and preprocess_cfg) and open_clip_pytorch_model.bin, as the robust CLIPs (FARE,
# hf-hub:chs20/fare2-clip) are published
HUB_REPO = "clampgen-test/tiny-hub-clip"
HUB_MODEL = f"hf-hub:{HUB_REPO}"
HUB_CONFIG = {
    "model_cfg": {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "image_size": 24}},
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}
LOGIT_SCALE = 1.25  # not open_clip's initial value: seen only if the served weights were loaded


@pytest.fixture(scope="module")
def hub_files():
    """{filename: bytes} of HUB_REPO: the config and random weights of the model it describes."""
    model = open_clip.model.CLIP(**HUB_CONFIG["model_cfg"])
    state = model.state_dict()
    state["logit_scale"] = torch.tensor(LOGIT_SCALE)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    config = json.dumps(HUB_CONFIG).encode()
    return {"open_clip_config.json": config, "open_clip_pytorch_model.bin": buffer.getvalue()}


def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], run.stderr
    return err[0]


def test_hf_hub_model_downloads_once_then_runs_from_the_cache(hub_files, tmp_path):
    """--model hf-hub:ORG/NAME: config and weights through the Hub's protocol into HF_HOME's
    cache, the model built as the config says (its input size, its normalisation, the served
    weights), then the same run with the server gone, from the cache, pixel for pixel."""
    hub = FakeHub({HUB_REPO: hub_files}).start()
    home, first, second = tmp_path / "hf", tmp_path / "first", tmp_path / "second"
    try:
        run = app(["cli", *RUN, "--model", HUB_MODEL, "--out", str(first)], home, hub.url)
        assert run.returncode == 0, run.stderr
        assert f"model: {HUB_MODEL}" in run.stdout
        for name in hub_files:
            assert f"downloading {HUB_REPO}/{name} from {hub.url}" in run.stdout
            assert ("HEAD", name) in hub.resolved()
    finally:
        hub.stop()
    snapshot = home / "hub" / f"models--{HUB_REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert {p.name: p.read_bytes() for p in snapshot.iterdir()} == hub_files
    assert json.loads((first / "run.json").read_text())["model"] == HUB_MODEL

    run = app(["cli", *RUN, "--model", HUB_MODEL, "--out", str(second)], home, hub.url)
    assert run.returncode == 0, run.stderr
    assert "downloading" not in run.stdout
    np.testing.assert_array_equal(final_pixels(first), final_pixels(second))
    loaded = app(["load", HUB_MODEL], home, hub.url)
    assert loaded.returncode == 0, loaded.stderr
    got = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert got["name"] == HUB_MODEL and got["input_size"] == [24, 24]
    assert got["mean"] == [0.5] * 3 and got["std"] == [0.25] * 3
    assert got["logit_scale"] == LOGIT_SCALE


def test_hf_hub_model_offline_with_an_empty_cache_is_one_line(hub_files, tmp_path):
    hub = FakeHub({HUB_REPO: hub_files}).start()
    try:
        out = tmp_path / "run"
        args = ["cli", *RUN, "--model", HUB_MODEL, "--out", str(out)]
        err = one_error_line(app(args, tmp_path / "hf", hub.url, HF_HUB_OFFLINE="1"))
    finally:
        hub.stop()
    assert f"{HUB_MODEL}: open_clip_config.json is not in the Hugging Face cache" in err
    assert "HF_HUB_OFFLINE is set" in err and "--model local-dir:FOLDER" in err
    assert hub.requests == [] and not out.exists()


@pytest.mark.parametrize(
    "repos, message",
    [
        ({}, f"has no repository {HUB_REPO}"),
        (
            {HUB_REPO: {"open_clip_config.json": json.dumps(HUB_CONFIG).encode()}},
            "its weights (open_clip_model.safetensors or open_clip_pytorch_model.bin) are not in "
            "the Hugging Face cache",
        ),
    ],
)
def test_hf_hub_model_missing_on_the_hub_is_one_line(tmp_path, repos, message):
    """An unknown repository, or one without weights (open_clip would go on with random
    weights): one line naming what is missing, exit 2, nothing written."""
    hub = FakeHub(repos).start()
    try:
        out = tmp_path / "run"
        err = one_error_line(
            app(["cli", *RUN, "--model", HUB_MODEL, "--out", str(out)], tmp_path / "hf", hub.url)
        )
    finally:
        hub.stop()
    assert message in err and hub.url in err and not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "hf-hub:"], "give a Hub repository as hf-hub:ORG/NAME"),
        (["--model", "hf-hub:just-a-name"], "give a Hub repository as hf-hub:ORG/NAME"),
        (["--model", HUB_MODEL, "--pretrained", "openai"], "leave out --pretrained openai"),
        (["--model", "local-dir:nowhere"], "no open_clip_config.json in nowhere"),
    ],
)
def test_bad_scheme_names_are_one_line(tmp_path, capsys, extra, message):
    """Refused before any request (main in this process: no Hub is asked)."""
    out = tmp_path / "run"
    assert main([*RUN, *extra, "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_local_dir_model_runs(hub_files, tmp_path):
    """--model local-dir:FOLDER: the same layout in a folder, as open_clip reads it."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in hub_files.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "run"
    args = [*RUN, "--model", f"local-dir:{folder}", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "run.json").read_text())["model"] == f"local-dir:{folder}"
    (folder / "open_clip_pytorch_model.bin").unlink()  # open_clip would go on with random weights
    assert main([*args[:-1], str(tmp_path / "again")]) == 2
