"""Run directories read back into numbers: per-run figures, per-variant statistics over seeds
and prompts, paired differences against a baseline clamp.

    from clampgen.compare.summary import find_runs, summarize_comparison
    summary = summarize_comparison(find_runs("results/cmp"))   # a dict, as in summary.json

`runs` everywhere is `{seed: {variant: run_dir}}`: one seed is the layout `<out>/<variant>/`,
several are `<out>/seed_<s>/<variant>/` (see clampgen.compare.runner). Variants are compared on
`eval_loss` (fixed views, identical for every variant) where the runs logged it, else on the
noisy training `loss`, and on the scores of judges that did not guide the runs
(clampgen.compare.judged). A comparison's intervals are Student-t over its seeds (independent
runs); a suite's are a cluster bootstrap over prompts (a prompt's seeds resampled together:
prompts are the unit of replication, seeds are nested in them).
"""

import json
import math
import os
import warnings
from pathlib import Path

from clampgen.compare import judged, stats
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
    "cut_overhang",
    "tv_weight",
    "cut_whole",
    "init_colour",
    "init_centre",
    "lr_schedule",
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
        **judged.final_judged(run_dir, int(metrics["step"][-1]) if metrics.get("step") else None),
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


def _interval(values, clusters, confidence):
    """Mean ± Student-t interval (clusters None: independent values), else mean with a
    cluster-bootstrap interval (clusters[i]: the prompt of values[i])."""
    if clusters is None:
        return stats.mean_ci(values, confidence)
    return stats.cluster_bootstrap(values, clusters, confidence)


def _paired(pairs, confidence, clusters, metrics):
    """Paired differences (variant − baseline) of PAIRED metrics and the judged `metrics`:
    intervals, win rates (lower loss wins, a higher judged score wins), raw values."""
    diffs = {
        m: stats.paired_differences(
            [_num(a.get(m)) for a, _ in pairs], [_num(b.get(m)) for _, b in pairs]
        )
        for m in (*PAIRED, *metrics)
    }
    out = {m: _interval(d, clusters, confidence) for m, d in diffs.items()}
    win_rates = {
        m: _interval(stats.win_scores(diffs[m], m in PAIRED), clusters, confidence)
        for m in ("final_loss", *metrics)
    }
    return {
        **out,
        "win_rate": stats.win_rate(diffs["final_loss"]),
        "win_rates": win_rates,
        "n_pairs": len(pairs),
        "final_loss_differences": diffs["final_loss"],
        "differences": {m: diffs[m] for m in metrics},
    }


def per_variant_stats(
    cells, variants, baseline=BASELINE, confidence=0.95, cluster=None, metrics=()
):
    """Per variant, mean ± interval of each metric (METRICS and the judged `metrics`) over
    `cells` (`{key: {variant: summarize_run dict}}`, a key being a seed or a prompt×seed) and, in
    "vs_baseline", the paired differences against `baseline` over the cells that hold both.
    cluster: key -> the key's prompt, for a cluster bootstrap over prompts; None: Student-t
    intervals over independent cells."""
    out = {}
    for v in variants:
        keys = [k for k, c in cells.items() if v in c]
        groups = None if cluster is None else [cluster(k) for k in keys]
        out[v] = {
            m: _interval([_num(cells[k][v].get(m)) for k in keys], groups, confidence)
            for m in (*METRICS, *metrics)
        }
        both = [k for k in keys if baseline in cells[k]]
        pairs = [(cells[k][v], cells[k][baseline]) for k in both]
        if v != baseline and pairs:
            groups = None if cluster is None else [cluster(k) for k in both]
            out[v]["vs_baseline"] = _paired(pairs, confidence, groups, metrics)
    return out


def _judged_part(per_variant: dict, baseline: str, metrics: list, dirs) -> dict:
    """summary["judged"]: the judged scores shown, the primary one, the judges' notes, where
    they and the guide's loss disagree, and each ranking's best variant."""
    return {
        "metrics": metrics,
        "primary": judged.primary_metric(metrics),
        "notes": judged.judge_notes(dirs),
        "disagreements": judged.disagreements(per_variant, baseline, metrics),
        "best": judged.best_variants(per_variant, metrics),
    }


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
    metrics = judged.judged_metrics([r for by_v in per_run.values() for r in by_v.values()])
    per_variant = per_variant_stats(per_run, variants, baseline, confidence, metrics=metrics)
    dirs = [d for r in runs.values() for d in r.values()]
    return _clean(
        {
            "prompt": first.get("prompt"),
            "baseline": baseline,
            "confidence": confidence,
            "loss_kind": "/".join(sorted(kinds)),
            "eval_every": first.get("eval_every"),
            "interval": "Student-t over seeds",
            "options": {k: first.get(k) for k in STUDY_KEYS},
            "seeds": seeds,
            "variants": variants,
            "runs": {
                str(s): {v: dict(r, path=path(runs[s][v])) for v, r in per_run[s].items()}
                for s in seeds
            },
            "per_variant": per_variant,
            "judged": _judged_part(per_variant, baseline, metrics, dirs),
        }
    )


def _prompt_digest(s, primary):
    """A suite's per-prompt entry: the mean over seeds of each variant's final loss and of its
    primary judged score, and their paired differences against the baseline."""
    pv = s["per_variant"]
    digest = {
        "prompt": s["prompt"],
        "seeds": s["seeds"],
        "final_loss": {v: e["final_loss"]["mean"] for v, e in pv.items()},
        "vs_baseline": {
            v: e["vs_baseline"]["final_loss"]["mean"] for v, e in pv.items() if "vs_baseline" in e
        },
    }
    if primary:
        digest["judged"] = {v: (e.get(primary) or {}).get("mean") for v, e in pv.items()}
        digest["judged_vs_baseline"] = {
            v: (e["vs_baseline"].get(primary) or {}).get("mean")
            for v, e in pv.items()
            if "vs_baseline" in e
        }
    return digest


def summarize_suite(summaries, baseline=BASELINE, confidence=0.95):
    """Aggregate of `{name: comparison summary}`: per variant, the mean over all prompt×seed runs
    of each metric and judged score and, against `baseline`, the paired differences over
    prompt×seed pairs and the win rates, with cluster-bootstrap intervals over prompts (a
    prompt's seeds resampled together); plus a per-prompt digest."""
    variants = order_variants({v for s in summaries.values() for v in s["variants"]})
    cells = {
        f"{name}/{seed}": by_v for name, s in summaries.items() for seed, by_v in s["runs"].items()
    }
    metrics = judged.judged_metrics([r for c in cells.values() for r in c.values()])
    primary = judged.primary_metric(metrics)
    per_variant = per_variant_stats(
        cells,
        variants,
        baseline,
        confidence,
        cluster=lambda k: k.rsplit("/", 1)[0],
        metrics=metrics,
    )
    notes = {n: None for s in summaries.values() for n in (s.get("judged") or {}).get("notes", [])}
    kinds = {str(s["loss_kind"]) for s in summaries.values()}
    return _clean(
        {
            "baseline": baseline,
            "confidence": confidence,
            "loss_kind": "/".join(sorted(kinds)),
            "n_prompts": len(summaries),
            "seeds_per_prompt": sorted({len(s["seeds"]) for s in summaries.values()}),
            "n_runs": len(cells),
            "interval": f"cluster bootstrap over prompts ({stats.BOOTSTRAP_METHOD}, "
            f"{stats.BOOTSTRAP_RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED})",
            "variants": variants,
            "options": next(iter(summaries.values())).get("options", {}),
            "per_variant": per_variant,
            "judged": {**_judged_part(per_variant, baseline, metrics, []), "notes": list(notes)},
            "per_prompt": {name: _prompt_digest(s, primary) for name, s in summaries.items()},
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
