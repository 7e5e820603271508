"""clampgen.report on run directories written to disk (tests/fake_runs.py and hand-written CSVs)."""

import json
import re
from pathlib import Path

import pytest
from fake_runs import make_run
from PIL import Image

from clampgen import rundir
from clampgen.compare import plots, report
from clampgen.compare.stats import cluster_bootstrap
from clampgen.compare.summary import find_runs, loss_column, summarize_comparison, summarize_run

HEADER = "step,loss,loss_0,eval_loss,out_of_range,grad_norm,seconds\n"


def write_run(run_dir, rows, run=None):
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text(
        HEADER + "".join(",".join(map(str, r)) + "\n" for r in rows)
    )
    if run is not None:
        (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


def test_summarize_run_hand_computed(tmp_path):
    rows = [
        (0, 1.2, 1.2, 1.0, 0.5, 1, 0.1),
        (1, 0.9, 0.9, "", 0.4, 1, 0.2),
        (2, 0.7, 0.7, 0.4, 0.2, 1, 0.3),
        (3, 0.6, 0.6, "", 0.1, 1, 0.4),
        (4, 0.65, 0.65, 0.5, 0.05, 1, 0.5),
    ]
    d = write_run(
        tmp_path / "r", rows, {"config": {"seed": 3}, "wall_seconds": 7.5, "interrupted": False}
    )
    s = summarize_run(d)
    # eval_loss 1.0, 0.4, 0.5 at steps 0, 2, 4: improvement 0.5, 90% of it (0.45) reached at step 2
    assert s["loss_kind"] == "eval_loss"
    assert (s["final_loss"], s["best_loss"], s["step_90"]) == (0.5, 0.4, 2)
    assert s["final_out_of_range"] == 0.05 and s["wall_seconds"] == 7.5 and s["last_step"] == 4


def test_training_loss_when_no_eval(tmp_path):
    d = write_run(tmp_path / "r", [(0, 1.0, 1.0, "", 0, 1, 0.1), (1, 0.0, 0.0, "", 0, 1, 0.2)])
    m = rundir.read_metrics(d)
    assert loss_column(m) == "loss"
    s = summarize_run(d)
    assert (s["final_loss"], s["step_90"], s["wall_seconds"]) == (0.0, 1, 0.2)  # wall from metrics


def test_run_finished(tmp_path):
    assert rundir.run_finished(make_run(tmp_path / "a", "clamp"))
    assert not rundir.run_finished(make_run(tmp_path / "b", "clamp", interrupted=True))
    assert not rundir.run_finished(write_run(tmp_path / "c", [(0, 1, 1, 1, 0, 1, 0.1)]))
    (tmp_path / "c" / "run.json").write_text("{trunc")
    assert not rundir.run_finished(tmp_path / "c")


def test_find_runs_both_layouts(tmp_path):
    make_run(tmp_path / "one" / "clamp_with_grad", "clamp_with_grad", seed=7)
    make_run(tmp_path / "one" / "clamp", "clamp", seed=7)
    assert find_runs(tmp_path / "one") == {
        7: {
            "clamp": tmp_path / "one" / "clamp",
            "clamp_with_grad": tmp_path / "one" / "clamp_with_grad",
        }
    }
    for s in (1, 2):
        make_run(tmp_path / "many" / f"seed_{s}" / "clamp", "clamp", seed=s)
    assert list(find_runs(tmp_path / "many")) == [1, 2]


def test_paired_summary_hand_computed(tmp_path):
    # final eval losses per seed: baseline 0.5, 0.6, 0.7; variant 0.4, 0.6, 0.5: diffs -0.1, 0, -0.2
    runs = {}
    for seed, base, var in ((0, 0.5, 0.4), (1, 0.6, 0.6), (2, 0.7, 0.5)):
        runs[seed] = {
            "clamp_with_grad": write_run(
                tmp_path / f"s{seed}" / "b", [(0, 1, 1, 1.0, 0, 1, 1), (1, 1, 1, base, 0, 1, 2)]
            ),
            "clamp": write_run(
                tmp_path / f"s{seed}" / "v", [(0, 1, 1, 1.0, 0, 1, 1), (1, 1, 1, var, 0, 1, 2)]
            ),
        }
    s = summarize_comparison(runs)
    vs = s["per_variant"]["clamp"]["vs_baseline"]
    # mean -0.1, sample std 0.1, half-width t(2) * 0.1 / sqrt(3) = 0.2484138
    assert vs["final_loss"]["mean"] == pytest.approx(-0.1)
    assert vs["final_loss"]["half_width"] == pytest.approx(0.2484138, abs=1e-6)
    assert vs["win_rate"] == pytest.approx(2.5 / 3) and vs["n_pairs"] == 3  # win, tie (half), win
    assert "vs_baseline" not in s["per_variant"]["clamp_with_grad"]
    assert s["per_variant"]["clamp_with_grad"]["final_loss"]["mean"] == pytest.approx(0.6)


def fake_comparison(
    out, seeds=(0, 1, 2), variants=("clamp", "clamp_with_grad", "clamp_with_grad_proposed")
):
    runs = {}
    for s in seeds:
        base = out / f"seed_{s}" if len(seeds) > 1 else out
        runs[s] = {
            v: make_run(base / v, v, seed=s, rate=0.1 + 0.05 * i + 0.01 * s)
            for i, v in enumerate(variants)
        }
    return runs


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_write_report_files(tmp_path, seeds):
    runs = fake_comparison(tmp_path, seeds)
    summary = report.write_report(tmp_path, runs)
    for name in ("comparison.png", "grid.png", "summary.json", "summary.md", "index.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    strict = json.loads(
        (tmp_path / "summary.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )
    assert strict["variants"] == summary["variants"] and strict["seeds"] == list(seeds)
    md = (tmp_path / "summary.md").read_text()
    assert all(f"| {v} |" in md for v in summary["variants"])
    assert ("±" in md) == (len(seeds) > 1)


def test_grid_shape(tmp_path):
    runs = fake_comparison(tmp_path, (0,))
    plots.plot_grid(runs[0], tmp_path / "g.png", rows=3)
    with Image.open(
        tmp_path / "g.png"
    ) as im:  # 3 columns and 3 rows of 1.9 in at 100 dpi (+ title room)
        assert im.size == (570, 600)
    assert plots.pick_steps([0, 5, 10, 15, 20], 3) == [0, 10, 20]
    assert plots.pick_steps([0, 20], 5) == [0, 20]


def test_index_html_is_self_contained(tmp_path):
    runs = fake_comparison(tmp_path)
    report.write_report(tmp_path, runs)
    page = (tmp_path / "index.html").read_text()
    links = re.findall(r"(?:src|href)='([^']*)'", page)
    assert "<script" not in page and "http" not in page
    assert {"comparison.png", "grid.png", "summary.md"} <= set(links)
    assert sum(link.endswith("progress.gif") for link in links) == 3
    for link in links:
        assert (tmp_path / link).exists(), link


def fake_suite(out, prompts=("a red circle", "a blue square"), seeds=(0, 1)):
    comps = {}
    for i, p in enumerate(prompts):
        comps[f"{i:02d}-p"] = {
            s: {
                v: make_run(
                    out / f"{i:02d}-p" / f"seed_{s}" / v,
                    v,
                    seed=s,
                    prompt=p,
                    rate=0.1 + 0.05 * j,
                    final=0.6 + 0.01 * s,
                )
                for j, v in enumerate(("clamp", "clamp_with_grad"))
            }
            for s in seeds
        }
    return comps


def test_suite_report_pairs_and_win_rate(tmp_path):
    suite = report.write_suite_report(tmp_path, fake_suite(tmp_path))
    vs = suite["per_variant"]["clamp"]["vs_baseline"]
    # clamp decays slower (rate 0.1 vs 0.15) towards the same final value: higher loss at step 20
    # in all 4 pairs
    assert vs["n_pairs"] == 4 and vs["win_rate"] == 0.0 and vs["final_loss"]["mean"] > 0
    assert suite["per_prompt"]["00-p"]["prompt"] == "a red circle"
    for name in (
        "summary.json",
        "summary.md",
        "suite.png",
        "index.html",
        "00-p/index.html",
        "01-p/grid.png",
    ):
        assert (tmp_path / name).is_file(), name
    page = (tmp_path / "index.html").read_text()
    assert all((tmp_path / link).exists() for link in re.findall(r"(?:src|href)='([^']*)'", page))


def test_main_rewrites_comparison_suite_and_study(tmp_path):
    fake_comparison(tmp_path / "cmp", seeds=(0, 1))
    (tmp_path / "cmp" / "clamp.unfinished").mkdir()  # moved-aside runs are not variants
    assert report.main([str(tmp_path / "cmp")]) == 0
    assert json.loads((tmp_path / "cmp" / "summary.json").read_text())["seeds"] == [0, 1]
    for cond in ("pixel", "fft"):
        fake_suite(tmp_path / "study" / cond)
        assert report.main([str(tmp_path / "study" / cond)]) == 0
        assert (tmp_path / "study" / cond / "suite.png").is_file()
    assert report.main([str(tmp_path / "study")]) == 0
    md = (tmp_path / "study" / "summary.md").read_text()
    assert "## pixel" in md and "## fft" in md and (tmp_path / "study" / "study.png").is_file()


def test_judged_outcomes_and_where_they_disagree_with_the_loss(tmp_path):
    """The seed's variant ends with a lower loss in every seed (it falls faster to 0.5 against
    the baseline's 0.6) while the shape judge gives it 0.2 against 0.9: the report says so."""
    runs = {}
    for s in (0, 1, 2):
        runs[s] = {
            "clamp_with_grad": make_run(
                tmp_path / f"seed_{s}" / "clamp_with_grad", "clamp_with_grad", seed=s,
                final=0.6, judged={"shape_prob": 0.9, "clean": 0.8},
            ),
            "clamp_with_grad_proposed": make_run(
                tmp_path / f"seed_{s}" / "clamp_with_grad_proposed", "clamp_with_grad_proposed",
                seed=s, final=0.5, judged={"shape_prob": 0.2, "clean": 0.8 + 0.01 * s},
            ),
        }  # fmt: skip
    summary = report.write_report(tmp_path, runs)
    judged = summary["judged"]
    assert judged["metrics"] == ["shape_prob", "clean"] and judged["primary"] == "shape_prob"
    proposed = summary["per_variant"]["clamp_with_grad_proposed"]
    assert proposed["shape_prob"]["mean"] == pytest.approx(0.2)
    vs = proposed["vs_baseline"]
    assert (
        vs["shape_prob"]["mean"] == pytest.approx(-0.7)
        and vs["win_rates"]["shape_prob"]["mean"] == 0.0
    )
    assert vs["clean"]["mean"] == pytest.approx(0.01)  # the clean share agrees with the loss
    (found,) = judged["disagreements"]
    assert (found["variant"], found["metric"]) == ("clamp_with_grad_proposed", "shape_prob")
    assert (found["loss_says"], found["judge_says"]) == ("better", "worse")
    assert judged["best"] == {
        "final_loss": "clamp_with_grad_proposed",
        "shape_prob": "clamp_with_grad",
        "clean": "clamp_with_grad_proposed",
    }
    md = (tmp_path / "summary.md").read_text()
    assert md.index("## Judged outcomes") < md.index("## The guide's loss")
    assert "`clamp_with_grad_proposed`: the guide's loss ranks it above `clamp_with_grad`" in md
    assert "below it: the shape judge (Δ p(shape) -0.7" in md
    assert "The lowest mean loss is `clamp_with_grad_proposed`'s; the highest mean p(shape)" in md
    page = (tmp_path / "index.html").read_text()
    assert "Judged outcomes" in page and "p(shape) 0.90" in page  # the baseline's gif caption
    assert "judged.csv" in page


def test_runs_without_judges_say_so(tmp_path):
    summary = report.write_report(tmp_path, fake_comparison(tmp_path, (0, 1)))
    assert summary["judged"]["metrics"] == [] and summary["judged"]["primary"] is None
    assert "No judge applies to these runs" in (tmp_path / "summary.md").read_text()


def test_suite_intervals_resample_prompts_with_their_seeds(tmp_path):
    """Three prompts, two seeds each: the suite's judged mean and paired Δ come with the cluster
    bootstrap over prompts of exactly these numbers, and its tables say how many of each."""
    scores = {0: (0.9, 0.8), 1: (0.3, 0.35), 2: (0.6, 0.5)}  # per prompt: the seeds' baseline
    comps = {}
    for i, p in enumerate(("a red circle", "a blue square", "a green star")):
        comps[f"{i:02d}-p"] = {
            s: {
                v: make_run(
                    tmp_path / f"{i:02d}-p" / f"seed_{s}" / v, v, seed=s, prompt=p,
                    judged={"shape_prob": scores[i][s] - 0.1 * j * (i + 1)},
                )
                for j, v in enumerate(("clamp_with_grad", "clamp"))
            }
            for s in (0, 1)
        }  # fmt: skip
    suite = report.write_suite_report(tmp_path, comps)
    base = [scores[i][s] for i in range(3) for s in (0, 1)]
    prompts = [i for i in range(3) for _ in (0, 1)]
    ci = suite["per_variant"]["clamp_with_grad"]["shape_prob"]
    expected = cluster_bootstrap(base, prompts)
    assert (ci["low"], ci["mean"], ci["high"]) == pytest.approx(
        (expected["low"], expected["mean"], expected["high"]), abs=1e-6
    )
    assert ci["clusters"] == 3 and ci["n"] == 6
    diffs = [-0.1 * (i + 1) for i in prompts]  # clamp − baseline, the same for a prompt's seeds
    delta = suite["per_variant"]["clamp"]["vs_baseline"]["shape_prob"]
    assert delta["mean"] == pytest.approx(-0.2)
    expected = cluster_bootstrap(diffs, prompts)
    assert (delta["low"], delta["high"]) == pytest.approx((expected["low"], expected["high"]))
    assert (suite["n_prompts"], suite["seeds_per_prompt"], suite["n_runs"]) == (3, [2], 6)
    md = (tmp_path / "summary.md").read_text()
    assert "3 prompt(s) × 2 seed(s) (6 runs per variant)" in md and "cluster bootstrap" in md
    assert suite["per_prompt"]["01-p"]["judged_vs_baseline"]["clamp"] == pytest.approx(-0.2)
