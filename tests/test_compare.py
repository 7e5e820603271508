"""clampgen.compare: layouts, resume, and real comparisons on a tiny random open_clip model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clampgen import rundir
from clampgen.clamps import list_clamps
from clampgen.compare import runner as compare
from clampgen.config import GenerateConfig
from clampgen.keepers import parse_keepers

ROOT = Path(__file__).resolve().parent.parent
PAIR = ["clamp", "clamp_with_grad"]
TINY = [
    "--model",
    "clampgen-tiny",
    "--size",
    "32",
    "--steps",
    "2",
    "--cutn",
    "2",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_cfg():
    """clip_loader's tiny model (deterministic random weights), pixels starting far out of range."""
    return GenerateConfig(
        prompt="a red circle",
        model="clampgen-tiny",
        size=(32, 32),
        steps=4,
        cutn=2,
        eval_every=2,
        save_every=2,
        seed=3,
        device="cpu",
        generator="pixel",
        init="noise",
        init_scale=4.0,
        progress=False,
    )


def test_parse_keepers():
    assert parse_keepers("all") == list_clamps()
    assert parse_keepers("clamp_with_grad, clamp") == ["clamp_with_grad", "clamp"]
    for bad, message in (
        ("clamp,nope", "unknown clamp 'nope'"),
        ("clamp,clamp", "distinct"),
        ("", "distinct"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_keepers(bad)


def test_read_prompts(tmp_path):
    (tmp_path / "p.txt").write_text("# a suite\na red circle\n\n  a blue square:1 | blurry:-0.5 \n")
    assert compare.read_prompts(tmp_path / "p.txt") == [
        "a red circle",
        "a blue square:1 | blurry:-0.5",
    ]
    (tmp_path / "p.toml").write_text('prompts = ["one", "two"]\n')
    assert compare.read_prompts(tmp_path / "p.toml") == ["one", "two"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError):
        compare.read_prompts(tmp_path / "empty.txt")


def test_seeds_layout_and_shards(tmp_path):
    assert compare.seed_list(5, 3) == [5, 6, 7]
    assert compare.seed_list(None, [9, 1]) == [9, 1]
    assert len(compare.seed_list(None, 2)) == 2
    assert compare.comparison_dirs(tmp_path, PAIR, [4]) == {4: {c: tmp_path / c for c in PAIR}}
    assert (
        compare.comparison_dirs(tmp_path, PAIR, [4, 5])[5]["clamp"] == tmp_path / "seed_5" / "clamp"
    )
    assert compare.suite_names(["A red circle!", "x"]) == ["00-a-red-circle", "01-x"]
    jobs = list(range(7))
    shards = [compare.shard(jobs, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == jobs and shards[1] == [1, 4]


def first_frame(run_dir):
    with Image.open(run_dir / "frames" / "step_00000.png") as im:
        return np.asarray(im)


def test_comparison_same_start_and_complete(tiny_cfg, tmp_path):
    out = tmp_path / "cmp"
    summary = compare.run_comparison(tiny_cfg, out, PAIR)
    for name in (
        "comparison.png",
        "grid.png",
        "summary.json",
        "summary.md",
        "index.html",
        "plan.json",
    ):
        assert (out / name).is_file(), name
    for c in PAIR:
        for name in (
            "final.png",
            "frames/step_00000.png",
            "progress.gif",
            "metrics.csv",
            "loss.png",
            "run.json",
        ):
            assert (out / c / name).is_file(), (c, name)
        assert rundir.run_finished(out / c)
    np.testing.assert_array_equal(first_frame(out / "clamp"), first_frame(out / "clamp_with_grad"))
    m = {c: rundir.read_metrics(out / c) for c in PAIR}
    assert m["clamp"]["loss"][0] == m["clamp_with_grad"]["loss"][0]
    assert m["clamp"]["eval_loss"][0] == m["clamp_with_grad"]["eval_loss"][0]
    assert (
        m["clamp"]["out_of_range"][0] > 0.1
    )  # init_scale puts values out of range: clamps then differ
    assert m["clamp"]["loss"][-1] != m["clamp_with_grad"]["loss"][-1]
    assert (
        summary["variants"] == PAIR
        and summary["seeds"] == [3]
        and summary["loss_kind"] == "eval_loss"
    )


def test_restart_skips_finished_and_reruns_unfinished(tiny_cfg, tmp_path):
    out, cfg = tmp_path / "cmp", GenerateConfig(**{**tiny_cfg.to_dict(), "steps": 2})
    compare.run_comparison(cfg, out, PAIR, seeds=2)
    done = out / "seed_3" / "clamp" / "run.json"
    stamp = done.stat().st_mtime_ns
    broken = out / "seed_4" / "clamp_with_grad"
    run = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps(dict(run, interrupted=True)))
    summary = compare.run_comparison(cfg, out, PAIR, seeds=2)
    assert done.stat().st_mtime_ns == stamp  # finished: not rerun
    assert rundir.run_finished(broken) and (out / "seed_4" / "clamp_with_grad.unfinished").is_dir()
    assert summary["per_variant"]["clamp"]["vs_baseline"]["n_pairs"] == 2
    with pytest.raises(ValueError, match="different comparison"):
        compare.run_comparison(cfg, out, PAIR + ["clamp_with_grad_proposed"], seeds=2)


def test_cli_comparison_and_seeds(tmp_path):
    from clampgen.cli import main

    assert (
        main(
            [
                "a red circle",
                "--clamp",
                "clamp_with_grad,clamp_straight_through",
                "--seeds",
                "2",
                "--seed",
                "0",
                *TINY,
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["variants"] == ["clamp_with_grad", "clamp_straight_through"] and summary[
        "seeds"
    ] == [0, 1]
    assert (tmp_path / "c" / "seed_1" / "clamp_straight_through" / "run.json").is_file()


def test_torchrun_two_processes(tmp_path):
    """The suite command under torchrun on CPU: 2 prompts × 2 clamps = 4 runs, 2 per rank,
    the aggregate by rank 0."""
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    out = tmp_path / "suite"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "generate.py",
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--clamp",
        "clamp,clamp_with_grad",
        "--seed",
        "0",
        "--generator",
        "pixel",
        "--init-scale",
        "4",
        *TINY,
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[0/2] run 2/2" in proc.stdout and "[1/2] run 2/2" in proc.stdout  # 4 runs, 2 per rank
    suite = json.loads((out / "summary.json").read_text())
    assert suite["per_variant"]["clamp"]["vs_baseline"]["n_pairs"] == 2
    a, b = (out / "00-a-red-circle" / c for c in PAIR)  # ran on different ranks, same start
    np.testing.assert_array_equal(first_frame(a), first_frame(b))
    assert rundir.read_metrics(a)["loss"][0] == rundir.read_metrics(b)["loss"][0]
    assert rundir.read_metrics(a)["loss"][-1] != rundir.read_metrics(b)["loss"][-1]


def test_bad_options_fail_before_any_run(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="no prompt"):
        compare.run_suite(tiny_cfg, tmp_path / "s", ["a red circle", ""], PAIR)
    with pytest.raises(ValueError, match="unknown clamp 'nope'"):
        compare.run_comparison(tiny_cfg, tmp_path / "c", "clamp,nope")
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()


def test_random_seed_resumes_from_plan(tiny_cfg, tmp_path):
    cfg = GenerateConfig(**{**tiny_cfg.to_dict(), "seed": None, "steps": 1})
    first = compare.run_comparison(cfg, tmp_path / "c", ["clamp"], seeds=2)
    again = compare.run_comparison(cfg, tmp_path / "c", ["clamp"], seeds=2)
    assert first["seeds"] == again["seeds"]


def test_cli_suite(tmp_path):
    from clampgen.cli import main

    (tmp_path / "p.toml").write_text('prompts = ["a red circle", "a green star"]\n')
    assert (
        main(
            [
                "--prompts",
                str(tmp_path / "p.toml"),
                "--clamp",
                "clamp,clamp_with_grad",
                "--seeds",
                "2",
                "--seed",
                "1",
                *TINY,
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    suite = json.loads((tmp_path / "s" / "summary.json").read_text())
    vs = suite["per_variant"]["clamp"]["vs_baseline"]
    assert vs["n_pairs"] == 4 and len(vs["final_loss_differences"]) == 4  # 2 prompts × 2 seeds
    assert list(suite["per_prompt"]) == ["00-a-red-circle", "01-a-green-star"]
    for name in (
        "summary.md",
        "suite.png",
        "index.html",
        "00-a-red-circle/index.html",
        "01-a-green-star/seed_2/clamp/run.json",
    ):
        assert (tmp_path / "s" / name).is_file(), name


def test_failed_run_reported_others_kept(tiny_cfg, tmp_path, monkeypatch):
    from clampgen.clamps import CLAMPS

    def broken(x, lo, hi):
        raise RuntimeError("this clamp is broken")

    monkeypatch.setitem(CLAMPS, "broken", broken)  # an artist's own clamp that fails
    cfg = GenerateConfig(**{**tiny_cfg.to_dict(), "steps": 1})
    with pytest.raises(compare.RunsFailed, match="1 run"):
        compare.run_comparison(cfg, tmp_path / "c", ["clamp_with_grad", "broken"])
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["variants"] == ["clamp_with_grad"]
    assert not rundir.run_finished(tmp_path / "c" / "broken")


def test_cli_failed_run_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    from clampgen.clamps import CLAMPS
    from clampgen.cli import main

    def broken(x, lo, hi):
        raise RuntimeError("this clamp is broken")

    monkeypatch.setitem(CLAMPS, "broken", broken)
    argv = [
        "a red circle",
        "--model",
        "clampgen-tiny",
        "--size",
        "32",
        "--steps",
        "1",
        "--cutn",
        "2",
        "--seed",
        "0",
        "--clamp",
        "clamp,broken",
        "--out",
        str(tmp_path / "c"),
        "--no-progress",
    ]
    assert main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: 1 run(s) failed") and "broken" in last
    assert (tmp_path / "c" / "summary.json").exists()


def test_restart_of_a_comparison_older_than_the_judge_options(tiny_cfg, tmp_path):
    """A plan.json and checkpoints written before --judge-model existed still match the same
    command (the new options at their defaults): finished runs are kept."""
    from clampgen.resume import config_conflicts

    out, cfg = tmp_path / "cmp", GenerateConfig(**{**tiny_cfg.to_dict(), "steps": 1})
    compare.run_comparison(cfg, out, PAIR)
    plan = json.loads((out / "plan.json").read_text())
    for key in ("judge_model", "judge_pretrained"):
        del plan["config"][key]
    (out / "plan.json").write_text(json.dumps(plan))
    done = out / "clamp" / "run.json"
    stamp = done.stat().st_mtime_ns
    compare.run_comparison(cfg, out, PAIR)
    assert done.stat().st_mtime_ns == stamp
    old = {"config": {k: v for k, v in cfg.to_dict().items() if not k.startswith("judge")}}
    assert config_conflicts(old, {"judge_model": "auto"}, out) == []
    refused = config_conflicts(old, {"judge_model": "none"}, out)
    assert refused == ["judge_model 'none' (the run has None)"]
