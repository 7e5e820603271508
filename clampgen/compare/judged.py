"""Judged outcomes of run directories: the scores of judges that did not guide a run
(clampgen.judges wrote them to judged.csv), which of them a summary shows, and where they and the
guide's loss rank variants differently.

    from clampgen.compare.judged import judged_scores, disagreements
    judged_scores("results/cmp/clamp")     # {step: {'shape_prob': 0.91, ...}} at its eval steps
"""

import math
from pathlib import Path

from clampgen.rundir import JUDGED, JUDGED_CSV, read_csv_columns, read_run_json

LABELS = {  # what a table or a frame calls each score
    "shape_prob": "p(shape)",
    "background_ok": "background right",
    "colour_share": "shape colour share",
    "clean": "clean pixels",
    "judge_sim": "held-out CLIP similarity",
    "judge_rprec": "held-out CLIP R-precision",
}
WHO = {  # who judges it, in a sentence
    "shape_prob": "the shape judge",
    "background_ok": "the background colour",
    "colour_share": "the shape colour share",
    "clean": "the clean-pixel share",
    "judge_sim": "the held-out CLIP",
    "judge_rprec": "the held-out CLIP's R-precision",
}
PRIMARY = ("shape_prob", "judge_sim")  # the score frames show: the first one the runs have


def judged_scores(run_dir) -> dict:
    """{step: {JUDGED name: value, NaN where no judge applies}} from a run's judged.csv ({} when
    the run has none: it predates the judges)."""
    path = Path(run_dir) / JUDGED_CSV
    columns = read_csv_columns(path) if path.exists() else {}
    steps = [int(s) for s in columns.get("step", [])]
    return {
        s: {m: columns.get(m, [math.nan] * len(steps))[i] for m in JUDGED}
        for i, s in enumerate(steps)
    }


def final_judged(run_dir, last_step=None) -> dict:
    """{JUDGED name: value} at the run's last judged step (last_step when given and judged),
    NaN for each when nothing was judged."""
    scores = judged_scores(run_dir)
    if not scores:
        return dict.fromkeys(JUDGED, math.nan)
    step = last_step if last_step in scores else max(scores)
    return scores[step]


def judge_notes(run_dirs) -> list:
    """The distinct notes of the runs' judges (run.json 'judges'), in order of first appearance."""
    notes = {}
    for d in run_dirs:
        for note in (read_run_json(d).get("judges") or {}).values():
            notes.setdefault(note, None)
    return list(notes)


def _has(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def judged_metrics(runs) -> list:
    """The JUDGED names that at least one of `runs` (summarize_run dicts) has a value for."""
    return [m for m in JUDGED if any(_has(r.get(m)) for r in runs)]


def primary_metric(metrics) -> str:
    """The judged score a frame or a headline shows: the first of PRIMARY in metrics, else the
    first of metrics, else None."""
    return next((m for m in PRIMARY if m in metrics), metrics[0] if metrics else None)


def _excludes_zero(ci) -> bool:
    low, high = ci.get("low"), ci.get("high")
    return _has(low) and _has(high) and (low > 0 or high < 0)


def disagreements(per_variant: dict, baseline: str, metrics: list) -> list:
    """Where the guide's loss and a judge rank a variant and the baseline differently: per
    variant and judged score, a dict variant, metric, loss (the paired Δ final loss), judged (the
    paired Δ score), loss_says and judge_says ('better'/'worse' than the baseline), resolved
    (both intervals exclude zero). Lower loss is better, a higher score is."""
    found = []
    for variant, entry in per_variant.items():
        vs = entry.get("vs_baseline") or {}
        loss = vs.get("final_loss") or {}
        for m in metrics:
            judged = vs.get(m) or {}
            a, b = loss.get("mean"), judged.get("mean")
            if not (_has(a) and _has(b)) or a == 0 or b == 0 or (a < 0) == (b > 0):
                continue
            found.append(
                {
                    "variant": variant,
                    "metric": m,
                    "loss": loss,
                    "judged": judged,
                    "loss_says": "better" if a < 0 else "worse",
                    "judge_says": "better" if b > 0 else "worse",
                    "resolved": _excludes_zero(loss) and _excludes_zero(judged),
                }
            )
    return found


def best_variants(per_variant: dict, metrics: list) -> dict:
    """{'final_loss': the variant with the lowest mean final loss, m: the one with the highest
    mean of judged score m}, for the metrics with values."""
    best = {}
    for m, sign in [("final_loss", -1.0)] + [(m, 1.0) for m in metrics]:
        means = {v: e[m]["mean"] for v, e in per_variant.items() if _has(e[m]["mean"])}
        if means:
            best[m] = max(means, key=lambda v: sign * means[v])
    return best


def score_frames(by_variant: dict, metric: str) -> tuple:
    """(label, {variant: {step: value}}) of judged score `metric` for plots.plot_grid's frames
    (empty without a metric)."""
    if not metric:
        return "", {}
    return LABELS[metric], {
        v: {step: row[metric] for step, row in judged_scores(d).items()}
        for v, d in by_variant.items()
    }
