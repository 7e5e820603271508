"""Markdown tables and the notes that say what their numbers are, for comparisons, suites and
studies (summary.md), from the summaries of clampgen.compare.summary.

    from clampgen.compare.tables import summary_markdown
    text = summary_markdown(summary)
"""

import math
from pathlib import Path

from clampgen.compare.summary import BASELINE, METRICS, STUDY_KEYS, late_change, suite_condition

LATE_CHANGE_NOTE = (
    "Last quarter: the relative change of the baseline's eval loss from three quarters of the run "
    "to its end, mean over runs: how flat the runs end (the noise of one eval is a few percent)."
)


def fmt_ci(ci, digits=4, signed=False):
    """'1.2345' for one sample, '1.2345 ± 0.0123' for several, '–' when missing."""
    if ci is None or ci.get("mean") is None:
        return "–"
    text = f"{ci['mean']:{'+' if signed else ''}.{digits}g}"
    return text if ci.get("half_width") is None else f"{text} ± {ci['half_width']:.2g}"


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


def suite_note(suite):
    """What the numbers of a suite table are."""
    return (
        f"{suite['n_prompts']} prompt(s). Loss: {suite['loss_kind']}. Values are mean ± "
        f"half-width of the {suite['confidence']:.0%} Student-t interval over prompt×seed "
        "runs; "
        f"Δ = variant − {suite['baseline']} on the same prompt and seed (negative = lower), "
        "over prompt×seed pairs taken as independent; win rate = share of pairs with a lower "
        "final loss (ties count half)."
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
    return (
        "\n\n".join(
            [
                "# Clamp suite",
                markdown_table(*variant_rows(suite)),
                suite_note(suite),
                options_line(suite),
                "## Per prompt (mean over seeds of the final loss; Δ as above)",
                markdown_table(*prompt_rows(suite)),
            ]
        )
        + "\n"
    )


def study_markdown(out_dir, suites, step_sizes=None):
    """summary.md of a study: the conditions (each suite's plan.json), each suite's table, and
    the update sizes by range history of the conditions that measured them (step_sizes:
    {condition: summary.step_size_table})."""
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
    for name, suite in suites.items():
        parts += [f"## {name}", markdown_table(*variant_rows(suite))]
    note = suite_note(next(iter(suites.values())))
    parts.append(note + " Each condition's summary.md has the per-prompt table.")
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
