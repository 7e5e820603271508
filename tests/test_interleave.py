"""Runs side by side (clampgen.compare.interleave) and the loop callback of run_one /
run_comparison: the same pixels and numbers as runs one after the other, a turn each per
reported step, and a stop raised from the callback kept and resumed like Ctrl-C."""

import threading

import pytest
from outcomes import assert_same, outcome

from clampgen import rundir
from clampgen.compare.interleave import Turns, run_in_turns
from clampgen.compare.runner import run_comparison
from clampgen.config import GenerateConfig
from clampgen.run import run_one

PAIR = ["clamp", "clamp_with_grad"]


@pytest.fixture(scope="module")
def cfg():
    """The bundled model, pixels starting out of range (so the two clamps differ)."""
    return GenerateConfig(
        prompt="a red circle",
        model="shapes",
        size=(32, 32),
        steps=6,
        cutn=4,
        eval_every=3,
        save_every=2,
        seed=5,
        generator="pixel",
        init_scale=4.0,
        threads=1,
        video=False,
        progress=False,
    )


@pytest.fixture(scope="module")
def one_by_one(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential") / "cmp"
    run_comparison(cfg, out, PAIR, progress=False)
    return {c: outcome(out / c) for c in PAIR}


def test_turns_hand_over_in_order():
    turns, seen = Turns(3), []

    def body(i):
        turns.wait(i)
        for step in range(2 + i):  # runs of different lengths
            seen.append((i, step))
            turns.hand_over(i)
        turns.leave(i)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert seen == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (1, 2), (2, 2), (2, 3)]


def test_run_in_turns_returns_failures_and_raises_stops():
    def run(job, callback):
        for step in range(3):
            if job == "bad" and step == 1:
                raise ValueError("broken")
            callback({"step": step})

    failures = run_in_turns(["a", "bad", "b"], run, slice=0)
    assert [(job, str(e)) for job, e in failures] == [("bad", "broken")]

    steps = []

    def stopping(job, callback):
        for step in range(5):
            steps.append((job, step))
            if job == "b" and step == 1:
                raise KeyboardInterrupt("stop")
            callback({"step": step})

    with pytest.raises(KeyboardInterrupt, match="stop"):
        run_in_turns(["a", "b"], stopping, slice=0)
    assert steps == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]  # a stopped at its next turn


def test_side_by_side_matches_one_after_the_other(cfg, one_by_one, tmp_path):
    seen = []
    out = tmp_path / "cmp"
    summary = run_comparison(
        cfg,
        out,
        PAIR,
        progress=False,
        interleave=True,
        callback=lambda info: seen.append((info["run_dir"].name, info["step"])),
    )
    assert summary["variants"] == PAIR
    for c in PAIR:
        assert_same(outcome(out / c), one_by_one[c])
    for c in PAIR:  # every step of each (in turns of interleave.SLICE seconds)
        assert [s for name, s in seen if name == c] == list(range(cfg.steps + 1))


def test_stop_from_the_callback_keeps_the_work_and_resumes(cfg, one_by_one, tmp_path):
    out = tmp_path / "cmp"

    def stop_at_3(info):
        if info["step"] == 3:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        run_comparison(cfg, out, PAIR, progress=False, interleave=True, callback=stop_at_3)
    # clamp stopped at its step 3; clamp_with_grad at its next turn (or before it started)
    run = rundir.read_run_json(out / "clamp")
    assert run["interrupted"] is True and run["steps_done"] == 3
    assert (out / "clamp" / rundir.CHECKPOINT).is_file()
    assert not rundir.run_finished(out / "clamp_with_grad")
    assert not (out / "summary.json").exists()
    run_comparison(cfg, out, PAIR, progress=False, interleave=True)  # the same call resumes
    for c in PAIR:
        assert_same(outcome(out / c), one_by_one[c])
        assert not (out / c / rundir.CHECKPOINT).exists()


def test_run_one_callback_sees_every_reported_step(cfg, tmp_path):
    seen = []
    run_one(cfg, tmp_path / "run", progress=False, callback=seen.append)
    assert [i["step"] for i in seen] == list(range(cfg.steps + 1))
    assert {i["run_dir"] for i in seen} == {tmp_path / "run"}
    assert seen[-1]["image"].shape == (1, 3, 32, 32)
