"""Read run directories and summarise a comparison of clamp variants.

    from clampgen.report import find_runs, write_report
    write_report("results/cmp", find_runs("results/cmp"))   # comparison.png, grid.png, summary.*, index.html

`runs` everywhere is `{seed: {variant: run_dir}}`: one seed is the layout `<out>/<variant>/`,
several are `<out>/seed_<s>/<variant>/` (see clampgen.compare). Variants are compared on
`eval_loss` (fixed views, identical for every variant) where a run logged it, else on the noisy
training `loss`. matplotlib draws through `Figure` objects only (Agg, no pyplot state).
"""

import csv
import json
import math
from pathlib import Path

from clampgen import stats

BASELINE = "clamp_with_grad"  # paired differences are taken against this clamp
METRICS = ("final_loss", "best_loss", "step_90", "final_out_of_range", "wall_seconds")


def read_metrics(run_dir):
    """metrics.csv as `{column: [float, ...]}`; empty cells (eval_loss not measured) become NaN."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in rows[0]}


def read_run_json(run_dir):
    """run.json as a dict, or {} when the run has not written it (yet)."""
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_finished(run_dir):
    """True when the run directory holds a run.json that says the run was not interrupted."""
    try:
        return read_run_json(run_dir).get("interrupted") is False
    except (OSError, ValueError):
        return False


def loss_column(metrics):
    """'eval_loss' when any step measured it, else 'loss'."""
    values = metrics.get("eval_loss", [])
    return "eval_loss" if any(not math.isnan(v) for v in values) else "loss"


def loss_series(metrics, column=None):
    """(steps, values) of the comparison loss, NaN rows dropped."""
    column = column or loss_column(metrics)
    pairs = [(int(s), v) for s, v in zip(metrics["step"], metrics[column]) if not math.isnan(v)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _wall_seconds(run, metrics):
    for key in ("wall_seconds", "wall_time", "wall_time_s", "seconds"):
        if isinstance(run.get(key), (int, float)):
            return float(run[key])
    return metrics["seconds"][-1] if metrics.get("seconds") else math.nan


def summarize_run(run_dir, column=None):
    """Per-run numbers: final/best loss, step at 90% of the improvement, final out-of-range, wall time."""
    metrics = read_metrics(run_dir)
    column = column or loss_column(metrics)
    steps, values = loss_series(metrics, column)
    return {
        "loss_kind": column,
        "final_loss": values[-1] if values else math.nan,
        "best_loss": min(values) if values else math.nan,
        "step_90": stats.step_at_fraction(steps, values, 0.9),
        "final_out_of_range": metrics["out_of_range"][-1] if metrics.get("out_of_range") else math.nan,
        "wall_seconds": _wall_seconds(read_run_json(run_dir), metrics),
        "last_step": int(metrics["step"][-1]) if metrics.get("step") else None,
    }


def find_runs(out_dir):
    """Discover the finished runs `{seed: {variant: run_dir}}` under a comparison directory (either layout)."""
    out_dir = Path(out_dir)
    seed_dirs = sorted(d for d in out_dir.glob("seed_*") if d.is_dir())
    if seed_dirs:
        return {int(d.name[5:]): _variant_dirs(d) for d in seed_dirs}
    variants = _variant_dirs(out_dir)
    first = next(iter(variants.values()), None)
    seed = _config(read_run_json(first)).get("seed", 0) if first else 0
    return {seed: variants} if variants else {}


def _variant_dirs(parent):
    dirs = {d.name: d for d in sorted(Path(parent).iterdir()) if d.is_dir() and run_finished(d)}
    return {v: dirs[v] for v in order_variants(dirs)}


def _config(run):
    return run.get("config", run)


def _registry():
    try:
        from clampgen.clamps import list_clamps
    except ImportError:
        return []
    return list(list_clamps())


def order_variants(names):
    """Registry order (clampgen.clamps.list_clamps) for known names, then the rest alphabetically."""
    registry = _registry()
    return [n for n in registry if n in names] + sorted(n for n in names if n not in registry)


def _clean(x):
    """Replace NaN by None so summary.json is strict JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _num(x):
    return math.nan if x is None else float(x)


def summarize_comparison(runs, baseline=BASELINE, confidence=0.95, root=None):
    """Summary dict of a comparison: per-run numbers, per-variant mean ± CI, paired differences vs `baseline`.

    Run paths are stored relative to `root` when given (the comparison directory)."""
    seeds = list(runs)
    variants = order_variants({v for by_variant in runs.values() for v in by_variant})
    per_run = {s: {v: summarize_run(d) for v, d in runs[s].items()} for s in seeds}
    if not any(runs.values()):
        raise ValueError("no runs to summarise")
    first_run = read_run_json(next(d for by_variant in runs.values() for d in by_variant.values()))
    per_variant = {}
    for v in variants:
        have = [s for s in seeds if v in per_run[s]]
        entry = {m: stats.mean_ci([_num(per_run[s][v][m]) for s in have], confidence) for m in METRICS}
        paired = [s for s in have if baseline in per_run[s]]
        if baseline in variants and v != baseline and paired:
            diffs = {m: stats.paired_differences([_num(per_run[s][v][m]) for s in paired],
                                                 [_num(per_run[s][baseline][m]) for s in paired])
                     for m in ("final_loss", "best_loss", "step_90")}
            entry["vs_baseline"] = {m: stats.mean_ci(d, confidence) for m, d in diffs.items()}
            entry["vs_baseline"]["win_rate"] = stats.win_rate(diffs["final_loss"])
            entry["vs_baseline"]["n_pairs"] = len(paired)
        per_variant[v] = entry
    return _clean({
        "prompt": _config(first_run).get("prompt"),
        "baseline": baseline,
        "confidence": confidence,
        "loss_kind": "/".join(sorted({r["loss_kind"] for by_v in per_run.values() for r in by_v.values()})),
        "seeds": seeds,
        "variants": variants,
        "eval_every": _config(first_run).get("eval_every"),
        "runs": {str(s): {v: dict(r, path=_rel(runs[s][v], root) if root else str(runs[s][v]))
                          for v, r in per_run[s].items()} for s in seeds},
        "per_variant": per_variant,
    })


def fmt_ci(ci, digits=4, signed=False):
    """'1.2345' for one sample, '1.2345 ± 0.0123' for several, '–' when missing; `signed` adds '+'."""
    if ci is None or ci.get("mean") is None:
        return "–"
    text = f"{ci['mean']:{'+' if signed else ''}.{digits}g}"
    return text if ci.get("half_width") is None else f"{text} ± {ci['half_width']:.2g}"


def summary_rows(summary):
    """Header and rows of the per-variant table, as strings (shared by summary.md and index.html)."""
    n = len(summary["seeds"])
    kind = summary["loss_kind"] or "loss"
    header = ["variant", f"final {kind}", f"best {kind}", "step @90%", "final out-of-range", "wall s",
              f"Δ final vs {summary['baseline']}", "win rate"]
    rows = []
    for v in summary["variants"]:
        e = summary["per_variant"][v]
        vs = e.get("vs_baseline", {})
        win = vs.get("win_rate")
        rows.append([v] + [fmt_ci(e[m], 3 if m in ("step_90", "wall_seconds") else 4) for m in METRICS]
                    + [fmt_ci(vs.get("final_loss"), signed=True) if vs else "(baseline)" if v == summary["baseline"] else "–",
                       f"{win:.2f} ({vs['n_pairs']})" if win is not None else "–"])
    note = (f"{n} seed(s): {', '.join(map(str, summary['seeds']))}. "
            + (f"Values are mean ± half-width of the {summary['confidence']:.0%} Student-t confidence interval "
               f"over seeds; Δ is the paired difference (same seed) against {summary['baseline']}, "
               "negative = lower loss; win rate = share of seeds with a lower final loss (ties half)."
               if n > 1 else "One seed: no confidence intervals."))
    return header, rows, note


def markdown_table(header, rows):
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def summary_markdown(summary):
    """summary.md text of one comparison."""
    header, rows, note = summary_rows(summary)
    title = f"# Clamp comparison: {summary['prompt']!r}" if summary.get("prompt") else "# Clamp comparison"
    every = summary.get("eval_every")
    loss_note = (f"Loss compared: `{summary['loss_kind']}`"
                 + (f" (fixed views, measured every {every} steps and at the last)" if every and
                    summary["loss_kind"] == "eval_loss" else "")
                 + ". Step @90% = first measured step at which 90% of the improvement from the first to the "
                 "final value was reached. Wall time is as measured by each run (runs sharing a machine "
                 "slow each other).")
    return "\n\n".join([title, markdown_table(header, rows), note, loss_note]) + "\n"


def write_summary(summary, out_dir):
    """Write summary.json and summary.md into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(summary))
    return out_dir / "summary.json", out_dir / "summary.md"


def write_report(out_dir, runs=None, baseline=BASELINE):
    """Everything a comparison writes beside its run directories; returns the summary dict."""
    out_dir = Path(out_dir)
    runs = runs if runs is not None else find_runs(out_dir)
    runs = {s: by_variant for s, by_variant in runs.items() if by_variant}
    summary = summarize_comparison(runs, baseline, root=out_dir)
    write_summary(summary, out_dir)
    plot_comparison(runs, out_dir / "comparison.png", summary["variants"], baseline)
    plot_grid(runs[summary["seeds"][0]], out_dir / "grid.png", summary["variants"])
    write_index(out_dir, summary, runs)
    return summary


def _band(rows, confidence=0.95):
    """Pointwise mean and Student-t CI half-width over seeds (rows); half-width 0 for one seed."""
    import numpy as np
    a = np.asarray(rows, dtype=float)  # (seeds, steps)
    mean = a.mean(axis=0)
    if len(a) < 2:
        return mean, np.zeros_like(mean)
    return mean, stats.t_critical(len(a) - 1, confidence) * a.std(axis=0, ddof=1) / math.sqrt(len(a))


def _aligned(runs, variant, column):
    """Steps common to every seed of `variant` and the (seeds, steps) values of `column` there."""
    series = []
    for by_variant in runs.values():
        if variant in by_variant:
            m = read_metrics(by_variant[variant])
            series.append(dict(zip(*loss_series(m, column))))
    steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return steps, [[s[k] for k in steps] for s in series]


def variant_color(variant):
    """A fixed matplotlib colour per clamp (its registry position), the same in every plot."""
    registry = _registry()
    i = registry.index(variant) if variant in registry else len(registry) + sum(map(ord, variant))
    return f"C{i % 10}"


def _curve(ax, steps, rows, color, label, confidence):
    mean, half = _band(rows, confidence)
    ax.plot(steps, mean, color=color, lw=1.6, label=label)
    if len(rows) > 1:
        ax.fill_between(steps, mean - half, mean + half, color=color, alpha=0.18, lw=0)


def plot_comparison(runs, path, variants=None, baseline=BASELINE, confidence=0.95):
    """comparison.png, panels sharing the step axis, mean with a Student-t CI band over seeds:
    loss, paired loss difference against `baseline` (when there are several seeds), out-of-range fraction."""
    from matplotlib.figure import Figure
    variants = variants or order_variants({v for r in runs.values() for v in r})
    column = "eval_loss" if all(loss_column(read_metrics(d)) == "eval_loss"
                                for r in runs.values() for d in r.values()) else "loss"
    paired = len(runs) > 1 and baseline in variants and len(variants) > 1
    fig = Figure(figsize=(8, 8.5 if paired else 6.5), dpi=100, layout="constrained")
    axes = fig.subplots(3 if paired else 2, 1, sharex=True)
    ax_loss, ax_oor = axes[0], axes[-1]
    base_steps, base_rows = _aligned(runs, baseline, column) if paired else ([], [])
    for v in variants:
        color = variant_color(v)
        for ax, col in ((ax_loss, column), (ax_oor, "out_of_range")):
            steps, rows = _aligned(runs, v, col)
            if steps:
                _curve(ax, steps, rows, color, v if ax is ax_loss else None, confidence)
        if paired:
            steps, rows = _aligned(runs, v, column)
            both = [k for k in steps if k in base_steps]
            diffs = [[r[steps.index(k)] - b[base_steps.index(k)] for k in both] for r, b in zip(rows, base_rows)]
            if both and len(rows) == len(base_rows):
                _curve(axes[1], both, diffs, color, None, confidence)
    band = f"mean and {confidence:.0%} CI band over {len(runs)} seeds" if len(runs) > 1 else "one seed"
    ax_loss.set_title(f"{column} against step ({band})", fontsize=10)
    ax_loss.set_ylabel(column)
    ax_loss.legend(fontsize=8)
    if paired:
        axes[1].set_ylabel(f"{column} − {baseline}\n(paired, same seed)", fontsize=9)
        axes[1].axhline(0, color="k", lw=0.6)
    ax_oor.set_ylabel("out-of-range fraction")
    ax_oor.set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def frame_steps(run_dir):
    """`{step: path}` of the frames a run saved (frames/step_00000.png ...)."""
    return {int(p.stem[5:]): p for p in sorted((Path(run_dir) / "frames").glob("step_*.png"))}


def pick_steps(steps, rows):
    """At most `rows` steps spread evenly over `steps`, always the first and the last."""
    steps = sorted(steps)
    if len(steps) <= rows:
        return steps
    idx = sorted({round(i * (len(steps) - 1) / (rows - 1)) for i in range(rows)})
    return [steps[i] for i in idx]


def plot_grid(by_variant, path, variants=None, rows=5):
    """grid.png: variants as labelled columns, frames at a few common steps as rows (one seed)."""
    from matplotlib.figure import Figure
    from PIL import Image
    variants = [v for v in (variants or list(by_variant)) if v in by_variant]
    frames = {v: frame_steps(by_variant[v]) for v in variants}
    common = set.intersection(*(set(f) for f in frames.values())) if frames else set()
    steps = pick_steps(common, rows)
    fig = Figure(figsize=(1.9 * max(len(variants), 1), 1.9 * max(len(steps), 1) + 0.3), dpi=100,
                 layout="constrained")
    axes = fig.subplots(max(len(steps), 1), max(len(variants), 1), squeeze=False)
    for r, step in enumerate(steps):
        for c, v in enumerate(variants):
            with Image.open(frames[v][step]) as im:
                axes[r][c].imshow(im.convert("RGB"), interpolation="nearest")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c, v in enumerate(variants):
        axes[0][c].set_title(v, fontsize=8)
    for r, step in enumerate(steps):
        axes[r][0].set_ylabel(f"step {step}", fontsize=9)
    if not steps:
        axes[0][0].text(0.5, 0.5, "no common frames", ha="center", va="center")
    fig.savefig(path)
    return path


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
img{max-width:100%}.gifs{display:flex;flex-wrap:wrap;gap:12px}.gifs figure{margin:0;text-align:center;
font-size:12px}.gifs img{width:200px;image-rendering:pixelated}.note{font-size:13px;color:#555}"""


def html_table(header, rows):
    """An HTML table; cells are escaped unless they are already markup (start with '<a ')."""
    from html import escape
    cell = lambda x: x if str(x).startswith("<a ") else escape(str(x))  # noqa: E731
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title, body):
    """A self-contained page: inline CSS, no scripts, no external resources."""
    from html import escape
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def _rel(path, start):
    import os
    return Path(os.path.relpath(path, start)).as_posix()


def write_index(out_dir, summary, runs):
    """index.html of one comparison: summary table, curves, grid and each variant's progress.gif."""
    from html import escape
    out_dir = Path(out_dir)
    header, rows, note = summary_rows(summary)
    seed = summary["seeds"][0]
    gifs = "".join(
        f"<figure><a href='{_rel(d, out_dir)}/'><img src='{_rel(d, out_dir)}/progress.gif' alt='{escape(v)}'></a>"
        f"<figcaption>{escape(v)}<br><a href='{_rel(d, out_dir)}/final.png'>final</a> · "
        f"<a href='{_rel(d, out_dir)}/metrics.csv'>metrics</a> · <a href='{_rel(d, out_dir)}/run.json'>run.json"
        f"</a></figcaption></figure>" for v, d in runs[seed].items())
    title = f"Clamp comparison: {summary['prompt']}" if summary.get("prompt") else "Clamp comparison"
    body = (f"<h1>{escape(title)}</h1>{html_table(header, rows)}<p class='note'>{escape(note)} "
            f"Loss compared: {escape(str(summary['loss_kind']))}. <a href='summary.md'>summary.md</a> · "
            f"<a href='summary.json'>summary.json</a></p><h2>Curves</h2><img src='comparison.png' alt='curves'>"
            f"<h2>Frames (seed {seed})</h2><img src='grid.png' alt='grid'>"
            f"<h2>Progress (seed {seed})</h2><div class='gifs'>{gifs}</div>")
    (out_dir / "index.html").write_text(html_page(title, body))
    return out_dir / "index.html"


def _pairs(summaries, variant, baseline):
    """(variant_run, baseline_run) per-run dicts over every prompt×seed of the suite."""
    return [(r[variant], r[baseline]) for s in summaries.values() for r in s["runs"].values()
            if variant in r and baseline in r]


def summarize_suite(summaries, baseline=BASELINE, confidence=0.95):
    """Aggregate of `{name: comparison summary}`: per variant, mean ± CI of the paired difference in final
    loss against `baseline` over all prompt×seed pairs (taken as independent samples) and the win rate."""
    variants = order_variants({v for s in summaries.values() for v in s["variants"]})
    per_variant = {}
    for v in variants:
        runs = [r[v] for s in summaries.values() for r in s["runs"].values() if v in r]
        entry = {m: stats.mean_ci([_num(r[m]) for r in runs], confidence) for m in METRICS}
        pairs = _pairs(summaries, v, baseline)
        if v != baseline and pairs:
            diffs = {m: stats.paired_differences([_num(a[m]) for a, _ in pairs], [_num(b[m]) for _, b in pairs])
                     for m in ("final_loss", "best_loss", "step_90")}
            entry["vs_baseline"] = {m: stats.mean_ci(d, confidence) for m, d in diffs.items()}
            entry["vs_baseline"].update(win_rate=stats.win_rate(diffs["final_loss"]), n_pairs=len(pairs),
                                        final_loss_differences=diffs["final_loss"])
        per_variant[v] = entry
    per_prompt = {name: {"prompt": s["prompt"], "seeds": s["seeds"],
                         "final_loss": {v: s["per_variant"][v]["final_loss"]["mean"] for v in s["variants"]},
                         "vs_baseline": {v: e["vs_baseline"]["final_loss"]["mean"]
                                         for v, e in s["per_variant"].items() if "vs_baseline" in e}}
                  for name, s in summaries.items()}
    kinds = sorted({str(s["loss_kind"]) for s in summaries.values()})
    return _clean({"baseline": baseline, "confidence": confidence, "loss_kind": "/".join(kinds),
                   "n_prompts": len(summaries), "variants": variants, "per_variant": per_variant,
                   "per_prompt": per_prompt})


def suite_rows(suite):
    """Aggregate table (header, rows, note) and per-prompt table (header, rows) of a suite summary."""
    b = suite["baseline"]
    header = ["variant", f"final {suite['loss_kind']}", f"Δ final vs {b}", "win rate (pairs)", "Δ step @90%", "final out-of-range"]
    rows = []
    for v in suite["variants"]:
        e = suite["per_variant"][v]
        vs = e.get("vs_baseline")
        rows.append([v, fmt_ci(e["final_loss"]),
                     fmt_ci(vs["final_loss"], signed=True) if vs else "(baseline)",
                     f"{vs['win_rate']:.2f} ({vs['n_pairs']})" if vs and vs["win_rate"] is not None else "–",
                     fmt_ci(vs["step_90"], 3, signed=True) if vs else "–", fmt_ci(e["final_out_of_range"])])
    note = (f"{suite['n_prompts']} prompt(s). Loss: {suite['loss_kind']}. Δ = variant − {b} on the same prompt "
            f"and seed (negative = lower loss), mean ± half-width of the {suite['confidence']:.0%} Student-t "
            "interval over prompt×seed pairs taken as independent; win rate = share of pairs with a lower "
            "final loss (ties half).")
    p_header = ["comparison", "prompt", f"{b} final"] + [f"Δ {v}" for v in suite["variants"] if v != b]
    p_rows = [[name, str(p["prompt"]), _fmt(p["final_loss"].get(b))]
              + [_fmt(p["vs_baseline"].get(v), signed=True) for v in suite["variants"] if v != b]
              for name, p in suite["per_prompt"].items()]
    return (header, rows, note), (p_header, p_rows)


def _fmt(x, signed=False):
    return "–" if x is None else f"{x:{'+' if signed else ''}.4g}"


def suite_markdown(suite):
    """summary.md text of a suite."""
    (header, rows, note), (p_header, p_rows) = suite_rows(suite)
    return "\n\n".join(["# Clamp suite", markdown_table(header, rows), note,
                        "## Per prompt (mean over seeds of the final loss; Δ as above)",
                        markdown_table(p_header, p_rows)]) + "\n"


def _forest(ax, suite):
    """Every prompt×seed paired difference in final loss per variant (dots), mean with CI (diamond)."""
    others = [v for v in suite["variants"] if "vs_baseline" in suite["per_variant"][v]]
    for i, v in enumerate(others):
        vs = suite["per_variant"][v]["vs_baseline"]
        d = [x for x in vs["final_loss_differences"] if x is not None]
        ax.scatter(d, [i] * len(d), s=12, alpha=0.5, color=variant_color(v))
        ci = vs["final_loss"]
        if ci["half_width"] is not None:
            ax.errorbar(ci["mean"], i, xerr=ci["half_width"], fmt="D", color="k", ms=5, capsize=4)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(others)), others, fontsize=8)
    ax.set_ylim(len(others) - 0.5, -0.5)  # table order, top to bottom
    ax.grid(alpha=0.3, axis="x")
    return len(others)


def plot_suite(suite, path):
    """suite.png: every prompt×seed paired difference in final loss per variant, with mean and CI."""
    from matplotlib.figure import Figure
    n = len(suite["variants"])
    fig = Figure(figsize=(8, 1.0 + 0.6 * max(n - 1, 1)), dpi=100, layout="constrained")
    ax = fig.subplots()
    _forest(ax, suite)
    ax.set_xlabel(f"final {suite['loss_kind']} − {suite['baseline']} (paired; ◆ mean with "
                  f"{suite['confidence']:.0%} CI)")
    fig.savefig(path)
    return path


def write_suite_report(out_dir, comparisons, baseline=BASELINE):
    """Per-comparison reports, then the suite's summary.json/.md, suite.png and index.html.

    `comparisons` is `{subdir name: runs}`; returns the suite summary dict.
    """
    from html import escape
    out_dir = Path(out_dir)
    summaries = {name: write_report(out_dir / name, runs, baseline)
                 for name, runs in comparisons.items() if any(runs.values())}
    suite = summarize_suite(summaries, baseline)
    (out_dir / "summary.json").write_text(json.dumps(suite, indent=2) + "\n")
    (out_dir / "summary.md").write_text(suite_markdown(suite))
    plot_suite(suite, out_dir / "suite.png")
    (header, rows, note), (p_header, p_rows) = suite_rows(suite)
    for r in p_rows:
        r[0] = f"<a href='{escape(r[0])}/index.html'>{escape(r[0])}</a>"
    figs = "".join(f"<figure><a href='{escape(n)}/index.html'><img src='{escape(n)}/comparison.png' "
                   f"style='width:360px'></a><figcaption>{escape(str(s['prompt']))}</figcaption></figure>"
                   for n, s in summaries.items())
    body = (f"<h1>Clamp suite</h1>{html_table(header, rows)}<p class='note'>{escape(note)} "
            "<a href='summary.md'>summary.md</a> · <a href='summary.json'>summary.json</a></p>"
            f"<img src='suite.png' alt='paired differences'><h2>Per prompt</h2>{html_table(p_header, p_rows)}"
            f"<div class='gifs'>{figs}</div>")
    (out_dir / "index.html").write_text(html_page("Clamp suite", body))
    return suite


STUDY_KEYS = ("generator", "init", "init_scale", "optimizer", "lr", "steps", "size", "cutn", "model")


def find_suites(out_dir):
    """`{name: suite summary}` of the subdirectories holding a suite's summary.json (a study)."""
    found = {}
    for d in sorted(p for p in Path(out_dir).iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((d / "summary.json").read_text())
        if "per_prompt" in summary:
            found[d.name] = summary
    return found


def _plan_config(suite_dir):
    path = Path(suite_dir) / "plan.json"
    if not path.exists():
        return None
    plan = json.loads(path.read_text())
    return {**{k: plan.get("config", {}).get(k) for k in STUDY_KEYS}, "prompts": len(plan.get("prompts", [])),
            "seeds": len(plan.get("seeds", []))}


def study_markdown(out_dir, suites):
    """summary.md of a study: the conditions (from each suite's plan.json), then one row per condition×variant."""
    conds = {name: _plan_config(Path(out_dir) / name) for name in suites}
    keys = list(STUDY_KEYS) + ["prompts", "seeds"]
    c_rows = [[name] + [str(c[k]) for k in keys] for name, c in conds.items() if c]
    parts = ["# Clamp study"] + (["## Conditions", markdown_table(["condition"] + keys, c_rows)] if c_rows else [])
    for name, suite in suites.items():
        (header, rows, note), _ = suite_rows(suite)
        parts += [f"## {name}", markdown_table(header, rows)]
    parts.append(note + " Each condition's own summary.md has the per-prompt table.")
    return "\n\n".join(parts) + "\n"


def write_study_report(out_dir):
    """summary.md and study.png of a directory of suites (one per condition); returns the suites found."""
    from matplotlib.figure import Figure
    out_dir = Path(out_dir)
    suites = find_suites(out_dir)
    if not suites:
        raise ValueError(f"{out_dir}: no suite summaries in its subdirectories")
    (out_dir / "summary.md").write_text(study_markdown(out_dir, suites))
    heights = [max(len(s["variants"]) - 1, 1) for s in suites.values()]
    fig = Figure(figsize=(8, 0.8 + 0.5 * sum(heights) + 0.5 * len(suites)), dpi=100, layout="constrained")
    axes = fig.subplots(len(suites), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (name, suite) in zip(axes, suites.items()):
        _forest(ax, suite)
        ax.set_title(name, fontsize=9, loc="left")
    first = next(iter(suites.values()))
    axes[-1].set_xlabel(f"final loss − {first['baseline']} (paired per prompt×seed; ◆ mean with "
                        f"{first['confidence']:.0%} CI)")
    fig.savefig(out_dir / "study.png")
    return suites


def main(argv=None):
    """python -m clampgen.report DIR: rewrite the report of a comparison, a suite, or a study (dir of suites)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m clampgen.report", description=main.__doc__)
    parser.add_argument("dir", help="a comparison, suite or study directory")
    parser.add_argument("--baseline", default=BASELINE, help="clamp the paired differences are taken against")
    args = parser.parse_args(argv)
    out = Path(args.dir)
    if find_runs(out):
        write_report(out, baseline=args.baseline)
        kind = "comparison"
    elif any(find_runs(d) for d in out.iterdir() if d.is_dir()):
        comps = {d.name: find_runs(d) for d in sorted(out.iterdir()) if d.is_dir() and find_runs(d)}
        write_suite_report(out, comps, args.baseline)
        kind = "suite"
    else:
        write_study_report(out)
        kind = "study"
    print(f"wrote the {kind} report in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
