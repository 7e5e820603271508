"""Read run directories and report comparisons of clamp variants, suites of them and studies.

    from clampgen.report import find_runs, write_report
    write_report("results/cmp", find_runs("results/cmp"))  # comparison.png, grid.png, summary.*,
                                                           # index.html
    python -m clampgen.report results/cmp                  # the same from the command line

`runs` everywhere is `{seed: {variant: run_dir}}`: one seed is the layout `<out>/<variant>/`,
several are `<out>/seed_<s>/<variant>/` (see clampgen.compare). Variants are compared on
`eval_loss` (fixed views, identical for every variant) where the runs logged it, else on the
noisy training `loss`. matplotlib draws through `Figure` objects only (Agg, no pyplot state).
"""

import csv
import json
import math
import os
from html import escape
from pathlib import Path

from clampgen.compare import stats

BASELINE = "clamp_with_grad"  # paired differences are taken against this clamp
METRICS = ("final_loss", "best_loss", "step_90", "final_out_of_range", "wall_seconds")
PAIRED = ("final_loss", "best_loss", "step_90")  # metrics also reported as paired differences
STUDY_KEYS = ("generator", "init", "init_scale", "optimizer", "lr", "steps", "size", "cutn",
              "model")  # the options a summary shows (and a study per condition)


# --- reading run directories -------------------------------------------------------------------

def read_metrics_csv(path):
    """A metrics.csv as `{column: [float, ...]}`; empty cells (eval_loss not measured) are NaN."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in rows[0]}


def read_metrics(run_dir):
    """A run directory's metrics.csv (read_metrics_csv)."""
    return read_metrics_csv(Path(run_dir) / "metrics.csv")


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


def _registry():
    try:
        from clampgen.clamps import list_clamps
    except ImportError:
        return []
    return list(list_clamps())


def order_variants(names):
    """Registry order (clampgen.clamps.list_clamps) for known names, then the rest sorted."""
    registry = _registry()
    return [n for n in registry if n in names] + sorted(n for n in names if n not in registry)


# --- statistics over runs ----------------------------------------------------------------------

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
    diffs = {m: stats.paired_differences([_num(a[m]) for a, _ in pairs],
                                         [_num(b[m]) for _, b in pairs]) for m in PAIRED}
    out = {m: stats.mean_ci(d, confidence) for m, d in diffs.items()}
    return {**out, "win_rate": stats.win_rate(diffs["final_loss"]), "n_pairs": len(pairs),
            "final_loss_differences": diffs["final_loss"]}


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
    return _clean({
        "prompt": first.get("prompt"), "baseline": baseline, "confidence": confidence,
        "loss_kind": "/".join(sorted(kinds)), "eval_every": first.get("eval_every"),
        "options": {k: first.get(k) for k in STUDY_KEYS}, "seeds": seeds, "variants": variants,
        "runs": {str(s): {v: dict(r, path=path(runs[s][v])) for v, r in per_run[s].items()}
                 for s in seeds},
        "per_variant": per_variant_stats(per_run, variants, baseline, confidence),
    })


def summarize_suite(summaries, baseline=BASELINE, confidence=0.95):
    """Aggregate of `{name: comparison summary}`: per variant, mean ± CI over all prompt×seed runs
    and, against `baseline`, the paired differences over prompt×seed pairs (taken as independent
    samples) with their CI and the win rate; plus a per-prompt digest."""
    variants = order_variants({v for s in summaries.values() for v in s["variants"]})
    cells = {f"{name}/{seed}": by_v
             for name, s in summaries.items() for seed, by_v in s["runs"].items()}
    per_prompt = {name: {
        "prompt": s["prompt"], "seeds": s["seeds"],
        "final_loss": {v: e["final_loss"]["mean"] for v, e in s["per_variant"].items()},
        "vs_baseline": {v: e["vs_baseline"]["final_loss"]["mean"]
                        for v, e in s["per_variant"].items() if "vs_baseline" in e},
    } for name, s in summaries.items()}
    kinds = {str(s["loss_kind"]) for s in summaries.values()}
    return _clean({
        "baseline": baseline, "confidence": confidence, "loss_kind": "/".join(sorted(kinds)),
        "n_prompts": len(summaries), "variants": variants,
        "options": next(iter(summaries.values())).get("options", {}),
        "per_variant": per_variant_stats(cells, variants, baseline, confidence),
        "per_prompt": per_prompt,
    })


# --- tables and text ---------------------------------------------------------------------------

def fmt_ci(ci, digits=4, signed=False):
    """'1.2345' for one sample, '1.2345 ± 0.0123' for several, '–' when missing."""
    if ci is None or ci.get("mean") is None:
        return "–"
    text = f"{ci['mean']:{'+' if signed else ''}.{digits}g}"
    return text if ci.get("half_width") is None else f"{text} ± {ci['half_width']:.2g}"


def _fmt(x, signed=False):
    return "–" if x is None else f"{x:{'+' if signed else ''}.4g}"


def variant_rows(summary):
    """(header, rows) of the per-variant table of a comparison or suite summary, as strings."""
    kind, base = summary["loss_kind"] or "loss", summary["baseline"]
    header = ["variant", f"final {kind}", f"best {kind}", "step @90%", "final out-of-range",
              "wall s", f"Δ final vs {base}", "Δ step @90%", "win rate (pairs)"]
    rows = []
    for v in summary["variants"]:
        e = summary["per_variant"][v]
        vs = e.get("vs_baseline")
        own = [fmt_ci(e[m], 3 if m in ("step_90", "wall_seconds") else 4) for m in METRICS]
        if vs:
            win = "–" if vs["win_rate"] is None else f"{vs['win_rate']:.2f} ({vs['n_pairs']})"
            paired = [fmt_ci(vs["final_loss"], signed=True), fmt_ci(vs["step_90"], 3, True), win]
        else:
            paired = ["(baseline)" if v == base else "–", "–", "–"]
        rows.append([v] + own + paired)
    return header, rows


def markdown_table(header, rows):
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def comparison_note(summary):
    """What the numbers of a comparison table are."""
    n, every = len(summary["seeds"]), summary.get("eval_every")
    seeds = f"{n} seed(s): {', '.join(map(str, summary['seeds']))}. "
    if n > 1:
        seeds += (f"Values are mean ± half-width of the {summary['confidence']:.0%} Student-t "
                  "confidence interval over seeds; Δ is the paired difference (same seed) "
                  f"against {summary['baseline']}, negative = lower; win rate = share of seeds "
                  "with a lower final loss (ties count half).")
    else:
        seeds += "One seed: no confidence intervals."
    measured = (f" (fixed views, measured every {every} steps and at the last)"
                if every and summary["loss_kind"] == "eval_loss" else "")
    return (f"{seeds} Loss compared: {summary['loss_kind']}{measured}. Step @90% = first measured "
            "step at which 90% of the improvement from the first to the final value was reached. "
            "Wall time as measured by each run (runs sharing a machine slow each other).")


def suite_note(suite):
    """What the numbers of a suite table are."""
    return (f"{suite['n_prompts']} prompt(s). Loss: {suite['loss_kind']}. Values are mean ± "
            f"half-width of the {suite['confidence']:.0%} Student-t interval over prompt×seed "
            "runs; "
            f"Δ = variant − {suite['baseline']} on the same prompt and seed (negative = lower), "
            "over prompt×seed pairs taken as independent; win rate = share of pairs with a lower "
            "final loss (ties count half).")


def prompt_rows(suite):
    """(header, rows) of a suite's per-prompt table: baseline final loss, Δ final per variant."""
    base = suite["baseline"]
    others = [v for v in suite["variants"] if v != base]
    header = ["comparison", "prompt", f"{base} final"] + [f"Δ {v}" for v in others]
    rows = [[name, str(p["prompt"]), _fmt(p["final_loss"].get(base))]
            + [_fmt(p["vs_baseline"].get(v), signed=True) for v in others]
            for name, p in suite["per_prompt"].items()]
    return header, rows


def options_line(summary):
    """'Options: generator pixel, init noise, ...' from the runs' config."""
    options = summary.get("options") or {}
    return "Options: " + ", ".join(f"{k} {v}" for k, v in options.items() if v is not None) + "."


def summary_markdown(summary):
    """summary.md of one comparison."""
    prompt = summary.get("prompt")
    title = f"# Clamp comparison: {prompt!r}" if prompt else "# Clamp comparison"
    table = markdown_table(*variant_rows(summary))
    return "\n\n".join([title, table, comparison_note(summary), options_line(summary)]) + "\n"


def suite_markdown(suite):
    """summary.md of a suite."""
    return "\n\n".join([
        "# Clamp suite", markdown_table(*variant_rows(suite)), suite_note(suite),
        options_line(suite),
        "## Per prompt (mean over seeds of the final loss; Δ as above)",
        markdown_table(*prompt_rows(suite))]) + "\n"


# --- plots -------------------------------------------------------------------------------------

def variant_color(variant):
    """A fixed matplotlib colour per clamp (its registry position), the same in every plot."""
    registry = _registry()
    i = registry.index(variant) if variant in registry else len(registry) + sum(map(ord, variant))
    return f"C{i % 10}"


def _band(rows, confidence=0.95):
    """Pointwise mean and Student-t CI half-width over seeds (rows); half-width 0 for one seed."""
    import numpy as np
    a = np.asarray(rows, dtype=float)  # (seeds, steps)
    if len(a) < 2:
        return a.mean(axis=0), np.zeros(a.shape[1])
    t = stats.t_critical(len(a) - 1, confidence)
    return a.mean(axis=0), t * a.std(axis=0, ddof=1) / math.sqrt(len(a))


def _aligned(runs, variant, column):
    """Steps common to every seed of `variant`, and `{seed: [values there]}` of `column`."""
    series = {s: dict(zip(*loss_series(read_metrics(r[variant]), column)))
              for s, r in runs.items() if variant in r}
    steps = sorted(set.intersection(*(set(x) for x in series.values()))) if series else []
    return steps, {s: [x[k] for k in steps] for s, x in series.items()}


def _curve(ax, steps, rows, color, label, confidence):
    mean, half = _band(rows, confidence)
    ax.plot(steps, mean, color=color, lw=1.6, label=label)
    if len(rows) > 1:
        ax.fill_between(steps, mean - half, mean + half, color=color, alpha=0.18, lw=0)


def _paired_curve(ax, runs, variant, baseline, column, confidence):
    """variant − baseline per seed at the steps both logged, mean with CI band."""
    steps, rows = _aligned(runs, variant, column)
    b_steps, b_rows = _aligned(runs, baseline, column)
    both = [k for k in steps if k in b_steps]
    seeds = [s for s in rows if s in b_rows]
    diffs = [[rows[s][steps.index(k)] - b_rows[s][b_steps.index(k)] for k in both] for s in seeds]
    if both and len(seeds) > 1:
        _curve(ax, both, diffs, variant_color(variant), None, confidence)


def plot_comparison(runs, path, variants=None, baseline=BASELINE, confidence=0.95):
    """comparison.png: panels sharing the step axis, mean with a Student-t CI band over seeds: the
    loss, the paired loss difference against `baseline` (several seeds), out-of-range fraction."""
    from matplotlib.figure import Figure
    variants = variants or order_variants({v for r in runs.values() for v in r})
    column = "eval_loss" if all(loss_column(read_metrics(d)) == "eval_loss"
                                for r in runs.values() for d in r.values()) else "loss"
    paired = len(runs) > 1 and baseline in variants and len(variants) > 1
    fig = Figure(figsize=(8, 8.5 if paired else 6.5), dpi=100, layout="constrained")
    axes = fig.subplots(3 if paired else 2, 1, sharex=True)
    for v in variants:
        for ax, col in ((axes[0], column), (axes[-1], "out_of_range")):
            steps, rows = _aligned(runs, v, col)
            if steps:
                label = v if ax is axes[0] else None
                _curve(ax, steps, list(rows.values()), variant_color(v), label, confidence)
        if paired and v != baseline:
            _paired_curve(axes[1], runs, v, baseline, column, confidence)
    n = len(runs)
    band = f"mean and {confidence:.0%} CI band over {n} seeds" if n > 1 else "one seed"
    axes[0].set_title(f"{column} against step ({band})", fontsize=10)
    axes[0].set_ylabel(column)
    axes[0].legend(fontsize=8)
    if paired:
        axes[1].set_ylabel(f"{column} − {baseline}\n(paired, same seed)", fontsize=9)
        axes[1].axhline(0, color="k", lw=0.6)
    axes[-1].set_ylabel("out-of-range fraction")
    axes[-1].set_xlabel("step")
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
    n_rows, n_cols = max(len(steps), 1), max(len(variants), 1)
    fig = Figure(figsize=(1.9 * n_cols, 1.9 * n_rows + 0.3), dpi=100, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
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


def _forest(ax, suite):
    """Each prompt×seed paired difference in final loss per variant (dots), mean and CI (◆)."""
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


def _forest_label(suite):
    return (f"final {suite['loss_kind']} − {suite['baseline']} (paired per prompt×seed; "
            f"◆ mean with {suite['confidence']:.0%} CI)")


def plot_suite(suite, path):
    """suite.png: the paired differences in final loss of every prompt×seed, per variant."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 1.0 + 0.6 * max(len(suite["variants"]) - 1, 1)), dpi=100,
                 layout="constrained")
    ax = fig.subplots()
    _forest(ax, suite)
    ax.set_xlabel(_forest_label(suite))
    fig.savefig(path)
    return path


# --- html --------------------------------------------------------------------------------------

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1150px;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}td{white-space:nowrap}"
    "th{background:#f0f0f0}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    ".gifs{display:flex;flex-wrap:wrap;gap:12px}.gifs figure{margin:0;text-align:center;"
    "font-size:12px}.gifs img{width:200px;image-rendering:pixelated}"
    ".gifs img.wide{width:360px;image-rendering:auto}.note{font-size:13px;color:#555}")


def html_table(header, rows):
    """An HTML table; cells are escaped unless they are already markup (start with '<a ')."""
    def cell(x):
        return x if str(x).startswith("<a ") else escape(str(x))
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title, body):
    """A self-contained page: inline CSS, no scripts, no external resources."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def _gif_figure(name, rel):
    files = (("final.png", "final"), ("metrics.csv", "metrics"), ("run.json", "run.json"))
    links = " · ".join(f"<a href='{rel}/{f}'>{t}</a>" for f, t in files)
    return (f"<figure><a href='{rel}/'><img src='{rel}/progress.gif' alt='{escape(name)}'></a>"
            f"<figcaption>{escape(name)}<br>{links}</figcaption></figure>")


def write_index(out_dir, summary, runs):
    """index.html of one comparison: summary table, curves, grid and each variant's progress.gif."""
    out_dir = Path(out_dir)
    seed = summary["seeds"][0]
    gifs = "".join(_gif_figure(v, Path(os.path.relpath(d, out_dir)).as_posix())
                   for v, d in runs[seed].items())
    title = "Clamp comparison" + (f": {summary['prompt']}" if summary.get("prompt") else "")
    body = (f"<h1>{escape(title)}</h1>{html_table(*variant_rows(summary))}"
            f"<p class='note'>{escape(comparison_note(summary))} "
            "<a href='summary.md'>summary.md</a> · <a href='summary.json'>summary.json</a></p>"
            "<h2>Curves</h2><img src='comparison.png' alt='curves'>"
            f"<h2>Frames (seed {seed})</h2><img src='grid.png' alt='grid'>"
            f"<h2>Progress (seed {seed})</h2><div class='gifs'>{gifs}</div>")
    (out_dir / "index.html").write_text(html_page(title, body))
    return out_dir / "index.html"


def write_suite_index(out_dir, suite):
    """index.html of a suite: aggregate table, suite.png, per-prompt table and curves."""
    header, rows = prompt_rows(suite)
    for r in rows:
        r[0] = f"<a href='{escape(r[0])}/index.html'>{escape(r[0])}</a>"
    figs = "".join(f"<figure><a href='{escape(n)}/index.html'><img class='wide' "
                   f"src='{escape(n)}/comparison.png'></a><figcaption>{escape(str(p['prompt']))}"
                   "</figcaption></figure>" for n, p in suite["per_prompt"].items())
    body = (f"<h1>Clamp suite</h1>{html_table(*variant_rows(suite))}"
            f"<p class='note'>{escape(suite_note(suite))} <a href='summary.md'>summary.md</a> · "
            "<a href='summary.json'>summary.json</a></p><img src='suite.png' alt='differences'>"
            f"<h2>Per prompt</h2>{html_table(header, rows)}<div class='gifs'>{figs}</div>")
    (Path(out_dir) / "index.html").write_text(html_page("Clamp suite", body))
    return Path(out_dir) / "index.html"


# --- writing reports ---------------------------------------------------------------------------

def replace_atomically(path, write) -> None:
    """write(tmp) to a temporary file beside path, then rename it over path: a crash never
    leaves half a file (JSON here, torch checkpoints in clampgen.checkpoint)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    """Writes JSON atomically (replace_atomically)."""
    replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def write_report(out_dir, runs=None, baseline=BASELINE):
    """summary.json/.md, comparison.png, grid.png and index.html of a comparison; returns the
    summary dict. `runs` defaults to the finished runs found under `out_dir`."""
    out_dir = Path(out_dir)
    runs = runs if runs is not None else find_runs(out_dir)
    runs = {s: by_variant for s, by_variant in runs.items() if by_variant}
    summary = summarize_comparison(runs, baseline, root=out_dir)
    write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(summary_markdown(summary))
    plot_comparison(runs, out_dir / "comparison.png", summary["variants"], baseline)
    plot_grid(runs[summary["seeds"][0]], out_dir / "grid.png", summary["variants"])
    write_index(out_dir, summary, runs)
    return summary


def write_suite_report(out_dir, comparisons, baseline=BASELINE):
    """Each comparison's report, then the suite's summary.json/.md, suite.png and index.html.

    `comparisons` is `{subdirectory name: runs}`; returns the suite summary dict."""
    out_dir = Path(out_dir)
    summaries = {name: write_report(out_dir / name, runs, baseline)
                 for name, runs in comparisons.items() if any(runs.values())}
    suite = summarize_suite(summaries, baseline)
    write_json(out_dir / "summary.json", suite)
    (out_dir / "summary.md").write_text(suite_markdown(suite))
    plot_suite(suite, out_dir / "suite.png")
    write_suite_index(out_dir, suite)
    return suite


def find_suites(out_dir):
    """`{name: suite summary}` of the subdirectories holding a suite's summary.json (a study)."""
    found = {}
    for d in sorted(p for p in Path(out_dir).iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((d / "summary.json").read_text())
        if "per_prompt" in summary:
            found[d.name] = summary
    return found


def _condition(suite_dir):
    """The STUDY_KEYS options of a suite (from its plan.json), or None."""
    path = Path(suite_dir) / "plan.json"
    if not path.exists():
        return None
    plan = json.loads(path.read_text())
    config = {k: plan.get("config", {}).get(k) for k in STUDY_KEYS}
    return {**config, "prompts": len(plan.get("prompts", [])), "seeds": len(plan.get("seeds", []))}


def study_markdown(out_dir, suites):
    """summary.md of a study: the conditions (each suite's plan.json), then each suite's table."""
    keys = list(STUDY_KEYS) + ["prompts", "seeds"]
    conds = {name: _condition(Path(out_dir) / name) for name in suites}
    c_rows = [[name] + [str(c[k]) for k in keys] for name, c in conds.items() if c]
    parts = ["# Clamp study"]
    if c_rows:
        parts += ["## Conditions", markdown_table(["condition"] + keys, c_rows)]
    for name, suite in suites.items():
        parts += [f"## {name}", markdown_table(*variant_rows(suite))]
    note = suite_note(next(iter(suites.values())))
    parts.append(note + " Each condition's summary.md has the per-prompt table.")
    return "\n\n".join(parts) + "\n"


def write_study_report(out_dir):
    """summary.md and study.png of a directory of suites (one per condition); returns them."""
    from matplotlib.figure import Figure
    out_dir = Path(out_dir)
    suites = find_suites(out_dir)
    if not suites:
        raise ValueError(f"{out_dir}: no suite summaries in its subdirectories")
    (out_dir / "summary.md").write_text(study_markdown(out_dir, suites))
    heights = [max(len(s["variants"]) - 1, 1) for s in suites.values()]
    fig = Figure(figsize=(8, 0.8 + 0.5 * sum(heights) + 0.5 * len(suites)), dpi=100,
                 layout="constrained")
    axes = fig.subplots(len(suites), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (name, suite) in zip(axes, suites.items()):
        _forest(ax, suite)
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1].set_xlabel(_forest_label(next(iter(suites.values()))))
    fig.savefig(out_dir / "study.png")
    return suites


def main(argv=None):
    """Rewrite the report of a comparison, a suite, or a study (a directory of suites) from the
    run directories on disk."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m clampgen.report", description=main.__doc__)
    parser.add_argument("dir", help="a comparison, suite or study directory")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the clamp paired differences are taken against")
    args = parser.parse_args(argv)
    out = Path(args.dir)
    comparisons = {d.name: find_runs(d) for d in sorted(out.iterdir()) if d.is_dir()}
    comparisons = {name: runs for name, runs in comparisons.items() if runs}
    if find_runs(out):
        kind = "comparison"
        write_report(out, baseline=args.baseline)
    elif comparisons:
        kind = "suite"
        write_suite_report(out, comparisons, args.baseline)
    else:
        kind = "study"
        write_study_report(out)
    print(f"wrote the {kind} report in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
