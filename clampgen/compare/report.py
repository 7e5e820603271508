"""Writes the reports of comparisons, suites and studies: summary.json/.md, plots, index.html.

    from clampgen.compare.report import write_report
    write_report("results/cmp")            # comparison.png, grid.png, summary.*, index.html
    python -m clampgen.compare.report results/cmp    # the same from the command line

The numbers come from clampgen.compare.summary, the tables from .tables, the figures from .plots
and the pages from .html; this module puts them in place.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from clampgen.compare.html import write_index, write_suite_index
from clampgen.compare.judged import LABELS, score_frames
from clampgen.compare.plots import (
    plot_comparison,
    plot_frame_table,
    plot_grid,
    plot_step_sizes,
    plot_study,
    plot_suite,
)
from clampgen.compare.summary import (
    BASELINE,
    find_runs,
    find_suites,
    step_size_curves,
    step_size_table,
    summarize_comparison,
    summarize_suite,
)
from clampgen.compare.tables import study_markdown, suite_markdown, summary_markdown
from clampgen.options import option, parse_options
from clampgen.rundir import FINAL_PNG, read_run_json, write_json
from clampgen.video import write_comparison_video


def write_report(out_dir, runs=None, baseline=BASELINE):
    """summary.json/.md, comparison.png, grid.png, comparison.mp4 (with PyAV) and index.html of
    a comparison; returns the summary dict. `runs` defaults to the finished runs found under
    `out_dir`."""
    out_dir = Path(out_dir)
    runs = runs if runs is not None else find_runs(out_dir)
    runs = {s: by_variant for s, by_variant in runs.items() if by_variant}
    summary = summarize_comparison(runs, baseline, root=out_dir)
    write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(summary_markdown(summary))
    plot_comparison(runs, out_dir / "comparison.png", summary["variants"], baseline)
    first = runs[summary["seeds"][0]]
    scores = score_frames(first, summary["judged"]["primary"])
    plot_grid(first, out_dir / "grid.png", summary["variants"], scores=scores)
    video = out_dir / "comparison.mp4"
    video.unlink(missing_ok=True)  # a rewritten report never shows an older video
    write_comparison_video({v: first[v] for v in summary["variants"] if v in first}, video)
    write_index(out_dir, summary, runs)
    return summary


def write_suite_report(out_dir, comparisons, baseline=BASELINE):
    """Each comparison's report, then the suite's summary.json/.md, suite.png and index.html.

    `comparisons` is `{subdirectory name: runs}`; returns the suite summary dict."""
    out_dir = Path(out_dir)
    summaries = {
        name: write_report(out_dir / name, runs, baseline)
        for name, runs in comparisons.items()
        if any(runs.values())
    }
    suite = summarize_suite(summaries, baseline)
    write_json(out_dir / "summary.json", suite)
    (out_dir / "summary.md").write_text(suite_markdown(suite))
    plot_suite(suite, out_dir / "suite.png")
    write_suite_index(out_dir, suite)
    return suite


def write_study_report(out_dir):
    """summary.md, study.png and the frame grids of a directory of suites (one per condition):
    grid-<condition>.png (every variant's frames of the first prompt and seed, with their judged
    score) and, where the guide's loss and the judges disagree, frames-<condition>.png; returns
    the suites."""
    out_dir = Path(out_dir)
    suites = find_suites(out_dir)
    if not suites:
        raise ValueError(f"{out_dir}: no suite summaries in its subdirectories")
    step_sizes = {}  # conditions whose runs measured their update sizes
    for name in suites:
        curves = step_size_curves(out_dir / name)
        if curves:
            step_sizes[name] = step_size_table(curves)
            plot_step_sizes(
                curves,
                out_dir / f"step_sizes-{name}.png",
                f"{name}: how far the optimizer moves pixels, by their range history",
            )
    frames = {}
    for name, suite in suites.items():
        _study_grid(out_dir, name, suite)
        shown = _disagreement_frames(out_dir, name, suite)
        if shown:
            frames[name] = shown
    (out_dir / "summary.md").write_text(study_markdown(out_dir, suites, step_sizes, frames))
    plot_study(suites, out_dir / "study.png")
    return suites


def _comparisons(out_dir, name):
    """The comparison directories of a condition's suite that hold finished runs."""
    return [d for d in sorted((out_dir / name).iterdir()) if d.is_dir() and find_runs(d)]


def _study_grid(out_dir, name, suite):
    """grid-<condition>.png: the frames of the condition's first prompt and seed, every variant
    side by side with its judged score, as a 256-colour PNG (the study's grids are committed)."""
    comparisons = _comparisons(out_dir, name)
    if not comparisons:
        return
    runs = find_runs(comparisons[0])
    seed = next(iter(runs))
    prompt = read_run_json(next(iter(runs[seed].values()))).get("config", {}).get("prompt", "")
    path = out_dir / f"grid-{name}.png"
    scores = score_frames(runs[seed], (suite.get("judged") or {}).get("primary"))
    title = f"{name}: {prompt!r}, seed {seed}"
    plot_grid(runs[seed], path, rows=4, side=1.25, title=title, scores=scores)
    _quantize(path)


def _quantize(path):
    from PIL import Image

    with Image.open(path) as im:
        quantized = im.convert("RGB").quantize(256)
    quantized.save(path, optimize=True)


def _disagreement_frames(out_dir, name, suite):
    """frames-<condition>.png when the guide's loss and a judge disagree in the condition: the
    final frame of every prompt (first seed) for the baseline and each disagreeing variant, each
    with its final loss and primary judged score; returns its name (None: no disagreement)."""
    variants = list(dict.fromkeys(d["variant"] for d in suite["judged"].get("disagreements", [])))
    primary = suite["judged"].get("primary")
    if not variants or not primary:
        return None
    cells = {v: [] for v in [suite["baseline"], *variants]}
    for comparison in _comparisons(out_dir, name):
        numbers = json.loads((comparison / "summary.json").read_text())
        seed = numbers["seeds"][0]
        runs = find_runs(comparison)[seed]
        for v in cells:
            if v not in runs:
                continue
            r = numbers["runs"][str(seed)][v]
            score = "–" if r.get(primary) is None else f"{r[primary]:.2f}"
            loss = "–" if r.get("final_loss") is None else f"{r['final_loss']:.3f}"
            caption = f"loss {loss}\n{LABELS[primary]} {score}"
            cells[v].append((runs[v] / FINAL_PNG, comparison.name[:18], caption))
    shown = f"frames-{name}.png"
    title = f"{name}: final frames (first seed)\nlower loss is better, higher {LABELS[primary]}"
    plot_frame_table({v: c for v, c in cells.items() if c}, out_dir / shown, title)
    _quantize(out_dir / shown)
    return shown


@dataclass
class ReportOptions:
    dir: str = option("", "a comparison, suite or study directory", positional=True)
    baseline: str = option(BASELINE, "the clamp paired differences are taken against")


def main(argv=None):
    """Rewrites the report of a comparison, a suite, or a study (a directory of suites) from the
    run directories on disk."""
    args = parse_options(
        ReportOptions, argv, prog="python -m clampgen.compare.report", description=main.__doc__
    )
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
