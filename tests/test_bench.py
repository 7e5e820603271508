"""The benchmark runs and its JSON is well formed (no timing assertions: figures live in docs)."""

import json

import pytest

from clampgen import bench

KEYS = {
    "reference_ms_per_step",
    "clampgen_ms_per_step",
    "encoder_only_ms_per_step",
    "speedup",
    "peak_memory_gib",
    "around_clip_ms_per_step",
    "around_clip_share",
}


def test_bench_json(capsys, tmp_path):
    argv = [
        "--model",
        "clampgen-tiny",
        "--size",
        "32,48",
        "--cutn",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        "--plot",
        str(tmp_path / "scaling.png"),
    ]
    assert bench.main(argv) == 0
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert KEYS <= set(result)
    assert all(result[k] > 0 for k in KEYS)
    assert [r["size"] for r in result["runs"]] == [32, 48]
    assert "reference" in out[1] and "clampgen" in out[1]  # the table header
    assert result["around_clip_share"] == pytest.approx(
        result["around_clip_ms_per_step"] / result["clampgen_ms_per_step"]
    )


def test_bench_bad_model(capsys):
    assert bench.main(["--model", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


# the smallest timing the benchmark does; later flags given to run_bench override these
TINY_RUN = "--model clampgen-tiny --size 32 --cutn 2 --steps 1 --warmup 0 --json".split()


def run_bench(capsys, *argv) -> dict:
    """bench.main on TINY_RUN + argv; returns its JSON line."""
    assert bench.main([*TINY_RUN, *argv]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_generators(capsys):
    """The fft parametrisation goes through the same steps (vqgan: the next tests)."""
    assert run_bench(capsys, "--generator", "fft")["generator"] == "fft"


def test_bench_compile(capsys):
    """--compile runs clampgen's step (fullgraph, inductor) and the floor compiled; on CPU its
    MODE auto is 'default' (CUDA graphs are for CUDA)."""
    result = run_bench(capsys, "--warmup", "1", "--compile")
    assert result["compile"] == "default" and result["clampgen_ms_per_step"] > 0


def test_bench_vqgan_through_the_taming_loader(capsys, tmp_path):
    """--generator vqgan times the app's own path: taming files read by the loader (here a tiny
    random VQGAN written as --random-vqgan writes the imagenet-f16 one)."""
    from test_vqgan import TINY  # the format tests' tiny taming config

    config, checkpoint = bench.write_random_vqgan(tmp_path, TINY, n_embed=16, embed_dim=4)
    argv = ["--generator", "vqgan", "--vqgan-config", str(config)]
    result = run_bench(capsys, *argv, "--vqgan-checkpoint", str(checkpoint))
    assert result["generator"] == "vqgan" and result["clampgen_ms_per_step"] > 0


def test_bench_times_an_ensemble(capsys):
    result = run_bench(capsys, "--model", "clampgen-tiny,clampgen-tiny")
    assert result["model"] == "clampgen-tiny,clampgen-tiny" and result["clampgen_ms_per_step"] > 0
