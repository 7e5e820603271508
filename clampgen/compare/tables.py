"""Markdown tables and the notes that say what their numbers are, for comparisons, suites and
studies (summary.md), from the summaries of clampgen.compare.summary.

    from clampgen.compare.tables import summary_markdown
    text = summary_markdown(summary)
"""

import math
from pathlib import Path

from clampgen.compare.judged import LABELS, WHO
from clampgen.compare.summary import (
    BASELINE,
    METRICS,
    STUDY_KEYS,
    late_change,
    order_variants,
    suite_condition,
)

LATE_CHANGE_NOTE = (
    "Last quarter: the relative change of the baseline's eval loss from three quarters of the run "
    "to its end, mean over runs: how flat the runs end (the noise of one eval is a few percent)."
)


def fmt_ci(ci, digits=4, signed=False):
    """'1.2345' for one sample, '1.2345 ± 0.0123' for a Student-t interval, '1.2345 [1.1, 1.4]'
    for a bootstrap one (asymmetric), '–' when missing."""
    if ci is None or ci.get("mean") is None:
        return "–"
    text = f"{ci['mean']:{'+' if signed else ''}.{digits}g}"
    if ci.get("half_width") is not None:
        return f"{text} ± {ci['half_width']:.2g}"
    if ci.get("low") is not None and ci.get("high") is not None:
        sign = "+" if signed else ""
        return f"{text} [{ci['low']:{sign}.2g}, {ci['high']:{sign}.2g}]"
    return text


def _fmt(x, signed=False):
    missing = x is None or (isinstance(x, float) and math.isnan(x))
    return "–" if missing else f"{x:{'+' if signed else ''}.4g}"


def variant_rows(summary):
    """(header, rows) of the per-variant table of a comparison or suite summary, as strings."""
    kind, base = summary["loss_kind"] or "loss", summary["baseline"]
    header = [
        "variant",
        f"final {kind}",
        f"best {kind}",
        "step @90%",
        "final out-of-range",
        "wall s",
        f"Δ final vs {base}",
        "Δ step @90%",
        "win rate (pairs)",
    ]
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
        seeds += (
            f"Values are mean ± half-width of the {summary['confidence']:.0%} Student-t "
            "confidence interval over seeds; Δ is the paired difference (same seed) "
            f"against {summary['baseline']}, negative = lower; win rate = share of seeds "
            "with a lower final loss (ties count half)."
        )
    else:
        seeds += "One seed: no confidence intervals."
    measured = (
        f" (fixed views, measured every {every} steps and at the last)"
        if every and summary["loss_kind"] == "eval_loss"
        else ""
    )
    return (
        f"{seeds} Loss compared: {summary['loss_kind']}{measured}. Step @90% = first measured "
        "step at which 90% of the improvement from the first to the final value was reached. "
        "Wall time as measured by each run (runs sharing a machine slow each other)."
    )


def design_line(suite):
    """'8 prompt(s) × 3 seed(s) (24 runs per variant)': what the suite's intervals resample."""
    seeds = suite.get("seeds_per_prompt") or []
    each = "?" if not seeds else str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    runs = suite.get("n_runs", "?")
    return f"{suite['n_prompts']} prompt(s) × {each} seed(s) ({runs} runs per variant)"


def suite_note(suite):
    """What the numbers of a suite table are."""
    return (
        f"{design_line(suite)}. Loss: {suite['loss_kind']}. Values are means over the "
        f"prompt×seed runs with a {suite['confidence']:.0%} {suite.get('interval') or 'interval'}"
        " [low, high]: prompts are the unit of replication, each resample draws prompts with "
        "all of their seeds. "
        f"Δ = variant − {suite['baseline']} on the same prompt and seed (negative = lower), "
        "its interval from the same bootstrap of the pairs; win rate = share of pairs with a "
        "lower final loss (ties count half)."
    )


def prompt_rows(suite):
    """(header, rows) of a suite's per-prompt table: baseline final loss, Δ final per variant."""
    base = suite["baseline"]
    others = [v for v in suite["variants"] if v != base]
    header = ["comparison", "prompt", f"{base} final"] + [f"Δ {v}" for v in others]
    rows = [
        [name, str(p["prompt"]), _fmt(p["final_loss"].get(base))]
        + [_fmt(p["vs_baseline"].get(v), signed=True) for v in others]
        for name, p in suite["per_prompt"].items()
    ]
    return header, rows


JUDGED_NOTE = (
    "Judged outcomes are scores of judges that did not guide the runs, at the last step, each "
    "higher-is-better: p(shape), the shape judge's probability of the named shape; background "
    "right, 1 when the most common palette colour is the named background; shape colour share, "
    "the share of pixels nearest the named shape colour; clean pixels, the share within 0.15 of "
    "the two named palette colours; held-out CLIP similarity, its cosine between the prompt and "
    "the image's fixed views and their mirrors; held-out CLIP R-precision, 1 when it ranks the "
    "prompt above every caption that swaps the prompt's colours, shape or background. Δ = "
    "variant − baseline on the same prompt and seed (positive = the judge prefers the "
    "variant); win rate = share of pairs where the judge scores the variant higher (ties half)."
)


def _judged(summary):
    """(metrics, primary) of a summary's judged scores."""
    j = summary.get("judged") or {}
    return j.get("metrics") or [], j.get("primary")


def judged_rows(summary):
    """(header, rows) of each variant's judged scores: mean with its interval."""
    metrics, _ = _judged(summary)
    header = ["variant", *(LABELS[m] for m in metrics)]
    rows = [
        [v] + [fmt_ci(summary["per_variant"][v].get(m), 3) for m in metrics]
        for v in summary["variants"]
    ]
    return header, rows


def _win(ci, n):
    if ci is None or ci.get("mean") is None:
        return "–"
    interval = ""
    if ci.get("low") is not None and ci.get("high") is not None:
        interval = f" [{ci['low']:.2f}, {ci['high']:.2f}]"
    return f"{ci['mean']:.2f}{interval} ({n})"


def judged_delta_rows(summary):
    """(header, rows) of each variant's paired Δ of every judged score against the baseline,
    and its win rate on the primary score."""
    metrics, primary = _judged(summary)
    base = summary["baseline"]
    header = ["variant", *(f"Δ {LABELS[m]}" for m in metrics), f"win rate ({LABELS[primary]})"]
    rows = []
    for v in summary["variants"]:
        vs = summary["per_variant"][v].get("vs_baseline")
        if not vs:
            rows.append([v, *(["(baseline)" if v == base else "–"] * len(metrics)), "–"])
            continue
        cells = [fmt_ci(vs.get(m), 3, signed=True) for m in metrics]
        rows.append([v, *cells, _win((vs.get("win_rates") or {}).get(primary), vs["n_pairs"])])
    return header, rows


def _variant_line(variant, found, base):
    """One bullet: how the loss and the judges in `found` rank variant against base."""
    side = "above" if found[0]["loss_says"] == "better" else "below"
    judges = ", ".join(
        f"{WHO[d['metric']]} (Δ {LABELS[d['metric']]} {fmt_ci(d['judged'], 3, True)}"
        + (", both intervals exclude zero)" if d["resolved"] else ")")
        for d in found
    )
    return (
        f"- `{variant}`: the guide's loss ranks it {side} `{base}` (Δ final loss "
        f"{fmt_ci(found[0]['loss'], 3, True)}); {'below' if side == 'above' else 'above'} it: "
        f"{judges}."
    )


def disagreement_lines(summary, frames=""):
    """Markdown bullets, in words: each variant that the guide's loss and a judge rank on
    different sides of the baseline (the paired Δ means; in detail where both intervals exclude
    zero, or where there are no intervals, else in one line), and the two rankings' best
    variants. frames: where the frames that show who is right are (appended)."""
    metrics, primary = _judged(summary)
    j, base = summary.get("judged") or {}, summary["baseline"]
    if not metrics:
        return ["No judge applies to these runs: " + "; ".join(j.get("notes") or ["no scores"])]
    found = j.get("disagreements") or []
    intervals = any(d["loss"].get("low") is not None for d in found)
    detailed, loose = {}, {}
    for d in found:
        group = detailed if d["resolved"] or not intervals else loose
        group.setdefault(d["variant"], []).append(d)
    lines = [_variant_line(v, ds, base) for v, ds in detailed.items()]
    if loose:
        within = "; ".join(
            f"`{v}` ({', '.join(LABELS[d['metric']] for d in ds)})" for v, ds in loose.items()
        )
        lines.append(f"- Within the noise (an interval includes zero): {within}.")
    best = j.get("best") or {}
    if primary and best.get(primary) and best.get("final_loss") not in (None, best[primary]):
        lines.append(
            f"- The lowest mean loss is `{best['final_loss']}`'s; the highest mean "
            f"{LABELS[primary]} is `{best[primary]}`'s."
        )
    if not lines:
        lines.append(
            f"- None: the guide's loss and every judge put each variant on the same side of "
            f"`{base}`, and agree on the best variant."
        )
    return lines + ([frames] if frames and found else [])


def judged_sections(summary, frames=""):
    """The markdown that leads a summary: judged scores, their Δ against the baseline, the
    judges' notes, and where the guide's loss and the judges disagree."""
    parts = ["## Judged outcomes"]
    metrics, _ = _judged(summary)
    if metrics:
        parts += [
            markdown_table(*judged_rows(summary)),
            markdown_table(*judged_delta_rows(summary)),
        ]
        parts.append(JUDGED_NOTE)
    notes = (summary.get("judged") or {}).get("notes") or []
    if notes:
        parts.append("Judges: " + "; ".join(notes) + ".")
    parts += [
        "## Where the guide's loss and the judges disagree",
        "\n".join(disagreement_lines(summary, frames)),
    ]
    return parts


def options_line(summary):
    """'Options: generator pixel, init noise, ...' from the runs' config."""
    options = summary.get("options") or {}
    return "Options: " + ", ".join(f"{k} {v}" for k, v in options.items() if v is not None) + "."


def summary_markdown(summary):
    """summary.md of one comparison: judged outcomes first, the guide's loss second."""
    prompt = summary.get("prompt")
    title = f"# Clamp comparison: {prompt!r}" if prompt else "# Clamp comparison"
    frames = "- Frames with each variant's judged score: [grid.png](grid.png)."
    parts = [title, *judged_sections(summary, frames), "## The guide's loss"]
    parts += [markdown_table(*variant_rows(summary)), comparison_note(summary)]
    return "\n\n".join(parts + [options_line(summary)]) + "\n"


def judged_prompt_rows(suite):
    """(header, rows) of a suite's per-prompt table of the primary judged score: the baseline's
    mean over seeds and each variant's paired Δ."""
    _, primary = _judged(suite)
    base = suite["baseline"]
    others = [v for v in suite["variants"] if v != base]
    header = ["comparison", f"{base} {LABELS[primary]}"] + [f"Δ {v}" for v in others]
    rows = [
        [name, _fmt((p.get("judged") or {}).get(base))]
        + [_fmt((p.get("judged_vs_baseline") or {}).get(v), signed=True) for v in others]
        for name, p in suite["per_prompt"].items()
    ]
    return header, rows


def suite_markdown(suite):
    """summary.md of a suite: judged outcomes first, the guide's loss second."""
    parts = ["# Clamp suite", design_line(suite) + ".", *judged_sections(suite)]
    parts += ["## The guide's loss", markdown_table(*variant_rows(suite)), suite_note(suite)]
    parts += [options_line(suite), "## Per prompt (mean over seeds; Δ as above)"]
    _, primary = _judged(suite)
    if primary:
        parts.append(markdown_table(*judged_prompt_rows(suite)))
    parts.append(markdown_table(*prompt_rows(suite)))
    return "\n\n".join(parts) + "\n"


def overview_rows(suites, metric):
    """(header, rows): per condition, the baseline's mean of `metric` ('final_loss' or a judged
    score) and each other variant's paired Δ against it, with its interval."""
    base = next(iter(suites.values()))["baseline"]
    variants = order_variants({v for s in suites.values() for v in s["variants"]})
    others = [v for v in variants if v != base]
    label = "final loss" if metric == "final_loss" else LABELS[metric]
    header = ["condition", f"{base} {label}", *(f"`{v}`" for v in others)]
    rows = []
    for name, suite in suites.items():
        pv = suite["per_variant"]
        cells = [fmt_ci(pv.get(base, {}).get(metric), 3)]
        for v in others:
            vs = (pv.get(v) or {}).get("vs_baseline") or {}
            cells.append(fmt_ci(vs.get(metric), 2, signed=True) if metric in vs else "–")
        rows.append([name, *cells])
    return header, rows


def study_markdown(out_dir, suites, step_sizes=None, frames=None):
    """summary.md of a study: the conditions (each suite's plan.json); judged outcomes first
    (each condition's primary judged score against the baseline, and where the guide's loss and
    the judges disagree, with the frames that show it: frames {condition: png name}), the
    guide's loss second; each suite's tables; the update sizes by range history of the
    conditions that measured them (step_sizes: {condition: summary.step_size_table})."""
    keys = list(STUDY_KEYS) + ["prompts", "seeds"]
    conds = {name: suite_condition(Path(out_dir) / name) for name in suites}
    c_rows = [
        [name] + [str(c[k]) for k in keys] + [f"{100 * late_change(Path(out_dir) / name):+.1f} %"]
        for name, c in conds.items()
        if c
    ]
    parts = ["# Clamp study"]
    if c_rows:
        header = ["condition", *keys, f"last quarter ({BASELINE})"]
        parts += ["## Conditions", markdown_table(header, c_rows), LATE_CHANGE_NOTE]
    first = next(iter(suites.values()))
    note = suite_note(first) + " Each condition's summary.md has the per-prompt tables."
    primaries = {(s.get("judged") or {}).get("primary") for s in suites.values()} - {None}
    for metric in sorted(primaries):
        judged = {n: s for n, s in suites.items() if (s.get("judged") or {}).get("primary")}
        parts += [f"## Judged: Δ {LABELS[metric]} against {first['baseline']}"]
        parts += [markdown_table(*overview_rows(judged, metric)), JUDGED_NOTE]
    parts += ["## Where the guide's loss and the judges disagree"]
    for name, suite in suites.items():
        shown = (frames or {}).get(name)
        link = f"- Frames of every prompt (first seed), loss and judged score: [{shown}]({shown})."
        parts += [f"### {name}", "\n".join(disagreement_lines(suite, link if shown else ""))]
    parts += [f"## The guide's loss: Δ final loss against {first['baseline']}"]
    parts += [markdown_table(*overview_rows(suites, "final_loss")), note]
    for name, suite in suites.items():
        parts += [f"## {name}", design_line(suite) + "."]
        if (suite.get("judged") or {}).get("metrics"):
            parts += [
                markdown_table(*judged_rows(suite)),
                markdown_table(*judged_delta_rows(suite)),
            ]
        parts += [markdown_table(*variant_rows(suite)), f"![{name}](grid-{name}.png)"]
    for name, table in (step_sizes or {}).items():
        parts += [
            f"## Update sizes by range history: {name}",
            step_size_note(),
            markdown_table(*step_size_rows(table)),
            f"![{name}](step_sizes-{name}.png)",
        ]
    return "\n\n".join(parts) + "\n"


def step_size_note():
    """What the update-size table shows."""
    return (
        "Median size of one step's update to a pixel, averaged over the steps from 10 on "
        "and over runs: pixels that came back into range after being out (or saturated, "
        "for the squash keepers), and pixels that never left it. A ratio far below 1 means "
        "returned pixels hardly move any more."
    )


def step_size_rows(table):
    """(header, rows) of summary.step_size_table."""
    header = ["variant", "back in range", "never out", "ratio back / never out"]
    rows = [[v, _fmt(e["back"]), _fmt(e["never_out"]), _fmt(e["ratio"])] for v, e in table.items()]
    return header, rows
