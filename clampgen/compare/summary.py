"""Run directories read back into numbers: per-run figures, per-variant statistics over seeds
and prompts, paired differences against a baseline clamp.

    from clampgen.compare.summary import find_runs, summarize_comparison
    summary = summarize_comparison(find_runs("results/cmp"))   # a dict, as in summary.json

`runs` everywhere is `{seed: {variant: run_dir}}`: one seed is the layout `<out>/<variant>/`,
several are `<out>/seed_<s>/<variant>/` (see clampgen.compare.runner). Variants are compared on
`eval_loss` (fixed views, identical for every variant) where the runs logged it, else on the
noisy training `loss`.
"""

import json
import math
import os
import warnings
from pathlib import Path

from clampgen.compare import stats
from clampgen.keepers import list_variants
from clampgen.rundir import read_csv_columns, read_metrics, read_run_json, run_finished

BASELINE = "clamp_with_grad"  # paired differences are taken against this clamp
METRICS = ("final_loss", "best_loss", "step_90", "final_out_of_range", "wall_seconds")
PAIRED = ("final_loss", "best_loss", "step_90")  # metrics also reported as paired differences
STUDY_KEYS = (
    "generator",
    "init",
    "init_scale",
    "optimizer",
    "lr",
    "steps",
    "size",
    "cutn",
    "model",
)  # the options a summary shows (and a study per condition)


def loss_column(metrics):
    """'eval_loss' when any step measured it, else 'loss'."""
    values = metrics.get("eval_loss", [])
    return "eval_loss" if any(not math.isnan(v) for v in values) else "loss"


def loss_series(metrics, column=None):
    """(steps, values) of `column` (default: loss_column), rows where it is NaN dropped."""
    column = column or loss_column(metrics)
    pairs = [(int(s), v) for s, v in zip(metrics["step"], metrics[column]) if not math.isnan(v)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _wall_seconds(run, metrics):
    if isinstance(run.get("wall_seconds"), (int, float)):
        return float(run["wall_seconds"])
    return metrics["seconds"][-1] if metrics.get("seconds") else math.nan


def summarize_run(run_dir, column=None):
    """One run's numbers: final and best loss, step at 90% of the improvement
    (stats.step_at_fraction), final out-of-range fraction, wall time."""
    metrics = read_metrics(run_dir)
    column = column or loss_column(metrics)
    steps, values = loss_series(metrics, column)
    oor = metrics.get("out_of_range")
    return {
        "loss_kind": column,
        "final_loss": values[-1] if values else math.nan,
        "best_loss": min(values) if values else math.nan,
        "step_90": stats.step_at_fraction(steps, values, 0.9),
        "final_out_of_range": oor[-1] if oor else math.nan,
        "wall_seconds": _wall_seconds(read_run_json(run_dir), metrics),
        "last_step": int(metrics["step"][-1]) if metrics.get("step") else None,
    }


def _config(run):
    return run.get("config", run)


def find_runs(out_dir):
    """The finished runs `{seed: {variant: run_dir}}` of a comparison directory (either layout)."""
    out_dir = Path(out_dir)
    seed_dirs = sorted(d for d in out_dir.glob("seed_*") if d.is_dir())
    if seed_dirs:
        found = {int(d.name[5:]): _variant_dirs(d) for d in seed_dirs}
        return {s: by_variant for s, by_variant in found.items() if by_variant}
    variants = _variant_dirs(out_dir)
    if not variants:
        return {}
    return {_config(read_run_json(next(iter(variants.values())))).get("seed", 0): variants}


def _variant_dirs(parent):
    dirs = {d.name: d for d in sorted(Path(parent).iterdir()) if d.is_dir() and run_finished(d)}
    return {v: dirs[v] for v in order_variants(dirs)}


def order_variants(names):
    """Registry order (clampgen.keepers.list_variants: clamps, then keepers) for known names,
    then the rest sorted."""
    registry = list_variants()
    return [n for n in registry if n in names] + sorted(n for n in names if n not in registry)


def _num(x):
    return math.nan if x is None else float(x)


def _clean(x):
    """NaN replaced by None, so that summary.json is strict JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _paired(pairs, confidence):
    """Paired differences (variant − baseline) of PAIRED metrics: CIs, win rate, raw values."""
    diffs = {
        m: stats.paired_differences([_num(a[m]) for a, _ in pairs], [_num(b[m]) for _, b in pairs])
        for m in PAIRED
    }
    out = {m: stats.mean_ci(d, confidence) for m, d in diffs.items()}
    return {
        **out,
        "win_rate": stats.win_rate(diffs["final_loss"]),
        "n_pairs": len(pairs),
        "final_loss_differences": diffs["final_loss"],
    }


def per_variant_stats(cells, variants, baseline=BASELINE, confidence=0.95):
    """Per variant, mean ± CI of each metric over `cells` (`{key: {variant: summarize_run dict}}`,
    a key being a seed or a prompt×seed) and, in "vs_baseline", the paired differences against
    `baseline` over the cells that hold both."""
    out = {}
    for v in variants:
        runs = [c[v] for c in cells.values() if v in c]
        out[v] = {m: stats.mean_ci([_num(r[m]) for r in runs], confidence) for m in METRICS}
        pairs = [(c[v], c[baseline]) for c in cells.values() if v in c and baseline in c]
        if v != baseline and pairs:
            out[v]["vs_baseline"] = _paired(pairs, confidence)
    return out


def summarize_comparison(runs, baseline=BASELINE, confidence=0.95, root=None):
    """Summary dict of a comparison: per-run numbers, per-variant mean ± CI over seeds, paired
    differences against `baseline`. Run paths are stored relative to `root` when given."""
    if not any(runs.values()):
        raise ValueError("no runs to summarise")
    seeds = list(runs)
    variants = order_variants({v for by_variant in runs.values() for v in by_variant})
    per_run = {s: {v: summarize_run(d) for v, d in runs[s].items()} for s in seeds}
    first = _config(read_run_json(next(d for r in runs.values() for d in r.values())))
    kinds = {r["loss_kind"] for by_v in per_run.values() for r in by_v.values()}
    path = (lambda d: Path(os.path.relpath(d, root)).as_posix()) if root else str
    return _clean(
        {
            "prompt": first.get("prompt"),
            "baseline": baseline,
            "confidence": confidence,
            "loss_kind": "/".join(sorted(kinds)),
            "eval_every": first.get("eval_every"),
            "options": {k: first.get(k) for k in STUDY_KEYS},
            "seeds": seeds,
            "variants": variants,
            "runs": {
                str(s): {v: dict(r, path=path(runs[s][v])) for v, r in per_run[s].items()}
                for s in seeds
            },
            "per_variant": per_variant_stats(per_run, variants, baseline, confidence),
        }
    )


def summarize_suite(summaries, baseline=BASELINE, confidence=0.95):
    """Aggregate of `{name: comparison summary}`: per variant, mean ± CI over all prompt×seed runs
    and, against `baseline`, the paired differences over prompt×seed pairs (taken as independent
    samples) with their CI and the win rate; plus a per-prompt digest."""
    variants = order_variants({v for s in summaries.values() for v in s["variants"]})
    cells = {
        f"{name}/{seed}": by_v for name, s in summaries.items() for seed, by_v in s["runs"].items()
    }
    per_prompt = {
        name: {
            "prompt": s["prompt"],
            "seeds": s["seeds"],
            "final_loss": {v: e["final_loss"]["mean"] for v, e in s["per_variant"].items()},
            "vs_baseline": {
                v: e["vs_baseline"]["final_loss"]["mean"]
                for v, e in s["per_variant"].items()
                if "vs_baseline" in e
            },
        }
        for name, s in summaries.items()
    }
    kinds = {str(s["loss_kind"]) for s in summaries.values()}
    return _clean(
        {
            "baseline": baseline,
            "confidence": confidence,
            "loss_kind": "/".join(sorted(kinds)),
            "n_prompts": len(summaries),
            "variants": variants,
            "options": next(iter(summaries.values())).get("options", {}),
            "per_variant": per_variant_stats(cells, variants, baseline, confidence),
            "per_prompt": per_prompt,
        }
    )


def find_suites(out_dir):
    """`{name: suite summary}` of the subdirectories holding a suite's summary.json (a study)."""
    found = {}
    for d in sorted(p for p in Path(out_dir).iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((d / "summary.json").read_text())
        if "per_prompt" in summary:
            found[d.name] = summary
    return found


def suite_condition(suite_dir):
    """The STUDY_KEYS options of a suite (from its plan.json), or None."""
    path = Path(suite_dir) / "plan.json"
    if not path.exists():
        return None
    plan = json.loads(path.read_text())
    config = {k: plan.get("config", {}).get(k) for k in STUDY_KEYS}
    return {**config, "prompts": len(plan.get("prompts", [])), "seeds": len(plan.get("seeds", []))}


STEP_GROUPS = ("back", "never_out", "out")  # the groups of step_sizes.csv (writers.StepSizeWriter)


def step_size_curves(suite_dir) -> dict:
    """{variant: {'step': [...], 'back': [...], 'never_out': [...], 'out': [...]}} over a
    suite's runs that wrote step_sizes.csv: per step, the mean over runs of each group's median
    update (NaN where no run had pixels in that group)."""
    import numpy as np

    rows = {}  # variant -> list of {column: [...]} per run
    for comparison in sorted(p for p in Path(suite_dir).iterdir() if p.is_dir()):
        for by_variant in find_runs(comparison).values():
            for variant, run_dir in by_variant.items():
                path = Path(run_dir) / "step_sizes.csv"
                if path.exists():
                    rows.setdefault(variant, []).append(read_csv_columns(path))
    curves = {}
    for variant, runs in rows.items():
        n = min(len(r["step"]) for r in runs)
        curves[variant] = {"step": runs[0]["step"][:n]}
        for group in STEP_GROUPS:
            stacked = np.array([r[f"step_{group}"][:n] for r in runs], dtype=float)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
                curves[variant][group] = np.nanmean(stacked, axis=0).tolist()
    return {v: curves[v] for v in order_variants(curves)}


def step_size_table(curves: dict, after: int = 10) -> dict:
    """{variant: {'back': b, 'never_out': n, 'ratio': b / n}}: each group's mean median update
    over the steps from `after` on (NaN steps left out), and their ratio."""
    import numpy as np

    table = {}
    for variant, c in curves.items():
        keep = np.array(c["step"]) >= after
        means = {}
        for group in ("back", "never_out"):
            values = np.array(c[group])[keep]
            values = values[~np.isnan(values)]
            means[group] = float(values.mean()) if len(values) else math.nan
        ratio = means["back"] / means["never_out"] if means["never_out"] else math.nan
        table[variant] = {**means, "ratio": ratio}
    return table


def late_change(suite_dir, variant: str = BASELINE, fraction: float = 0.75):
    """How flat a suite's runs of `variant` end: the mean over its runs of the relative change of
    the eval loss from the step at `fraction` of the run to the last step (NaN without runs)."""
    changes = []
    for comparison in sorted(p for p in Path(suite_dir).iterdir() if p.is_dir()):
        for by_variant in find_runs(comparison).values():
            if variant not in by_variant:
                continue
            steps, values = loss_series(read_metrics(by_variant[variant]))
            if len(steps) < 2:
                continue
            k = min(range(len(steps)), key=lambda i: abs(steps[i] - fraction * steps[-1]))
            changes.append((values[-1] - values[k]) / values[k])
    return sum(changes) / len(changes) if changes else math.nan
