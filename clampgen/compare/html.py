"""index.html pages of comparisons and suites: self-contained (inline CSS, no scripts, no
external resources), linking the run directories' files.

    from clampgen.compare.html import write_index
    write_index("results/cmp", summary, runs)
"""

import os
from html import escape
from pathlib import Path

from clampgen.compare.judged import LABELS
from clampgen.compare.tables import (
    JUDGED_NOTE,
    comparison_note,
    disagreement_lines,
    judged_delta_rows,
    judged_rows,
    prompt_rows,
    suite_note,
    variant_rows,
)

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1150px;color:#222}"
    "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}td{white-space:nowrap}"
    "th{background:#f0f0f0}"
    "td:first-child,th:first-child{text-align:left}img,video{max-width:100%}"
    ".gifs{display:flex;flex-wrap:wrap;gap:12px}.gifs figure{margin:0;text-align:center;"
    "font-size:12px}.gifs img{width:200px;image-rendering:pixelated}"
    ".gifs img.wide{width:360px;image-rendering:auto}.note{font-size:13px;color:#555}"
)


def html_table(header, rows):
    """An HTML table; cells are escaped unless they are already markup (start with '<a ')."""

    def cell(x):
        return x if str(x).startswith("<a ") else escape(str(x))

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(title, body):
    """A self-contained page: inline CSS, no scripts, no external resources."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def _gif_figure(name, run_dir, out_dir, score=""):
    """A variant's progress.gif, its judged score, and links to the files its run has."""
    rel = Path(os.path.relpath(run_dir, out_dir)).as_posix()
    files = (("final.png", "final"), ("metrics.csv", "metrics"), ("judged.csv", "judged"))
    files += (("run.json", "run.json"),)
    links = " · ".join(
        f"<a href='{rel}/{f}'>{t}</a>" for f, t in files if (Path(run_dir) / f).exists()
    )
    score = f"<br>{escape(score)}" if score else ""
    return (
        f"<figure><a href='{rel}/'><img src='{rel}/progress.gif' alt='{escape(name)}'></a>"
        f"<figcaption>{escape(name)}{score}<br>{links}</figcaption></figure>"
    )


def _inline(text):
    """A markdown line with `code` spans as HTML (escaped)."""
    parts = escape(text.removeprefix("- ")).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def judged_html(summary):
    """The judged outcomes' tables, notes and disagreements, as HTML (empty without judges)."""
    j = summary.get("judged") or {}
    body = "<h2>Judged outcomes</h2>"
    if j.get("metrics"):
        body += html_table(*judged_rows(summary)) + html_table(*judged_delta_rows(summary))
        body += f"<p class='note'>{escape(JUDGED_NOTE)}</p>"
    if j.get("notes"):
        body += f"<p class='note'>Judges: {escape('; '.join(j['notes']))}.</p>"
    lines = "".join(f"<li>{_inline(x)}</li>" for x in disagreement_lines(summary))
    return body + f"<h2>Where the guide's loss and the judges disagree</h2><ul>{lines}</ul>"


def _final_score(summary, seed, variant):
    """'p(shape) 0.91' of the variant's run of seed, from the summary ('' without one)."""
    metric = (summary.get("judged") or {}).get("primary")
    value = (summary["runs"].get(str(seed), {}).get(variant) or {}).get(metric)
    return f"{LABELS[metric]} {value:.2f}" if metric and value is not None else ""


def _video(out_dir, seed):
    """The side-by-side video of a comparison, when it was written (it needs PyAV)."""
    if not (Path(out_dir) / "comparison.mp4").is_file():
        return ""
    return (
        f"<h2>Side by side (seed {seed})</h2><video src='comparison.mp4' controls loop "
        "muted autoplay playsinline></video>"
    )


def write_index(out_dir, summary, runs):
    """index.html of one comparison: summary table, curves, grid and each variant's progress.gif."""
    out_dir = Path(out_dir)
    seed = summary["seeds"][0]
    gifs = "".join(
        _gif_figure(v, d, out_dir, _final_score(summary, seed, v)) for v, d in runs[seed].items()
    )
    title = "Clamp comparison" + (f": {summary['prompt']}" if summary.get("prompt") else "")
    body = (
        f"<h1>{escape(title)}</h1>{judged_html(summary)}"
        f"<h2>The guide's loss</h2>{html_table(*variant_rows(summary))}"
        f"<p class='note'>{escape(comparison_note(summary))} "
        "<a href='summary.md'>summary.md</a> · <a href='summary.json'>summary.json</a></p>"
        "<h2>Curves</h2><img src='comparison.png' alt='curves'>"
        f"{_video(out_dir, seed)}"
        f"<h2>Frames (seed {seed})</h2><img src='grid.png' alt='grid'>"
        f"<h2>Progress (seed {seed})</h2><div class='gifs'>{gifs}</div>"
    )
    (out_dir / "index.html").write_text(html_page(title, body))
    return out_dir / "index.html"


def write_suite_index(out_dir, suite):
    """index.html of a suite: aggregate table, suite.png, per-prompt table and curves."""
    header, rows = prompt_rows(suite)
    for r in rows:
        r[0] = f"<a href='{escape(r[0])}/index.html'>{escape(r[0])}</a>"
    figs = "".join(
        f"<figure><a href='{escape(n)}/index.html'><img class='wide' "
        f"src='{escape(n)}/comparison.png'></a><figcaption>{escape(str(p['prompt']))}"
        "</figcaption></figure>"
        for n, p in suite["per_prompt"].items()
    )
    body = (
        f"<h1>Clamp suite</h1>{judged_html(suite)}"
        f"<h2>The guide's loss</h2>{html_table(*variant_rows(suite))}"
        f"<p class='note'>{escape(suite_note(suite))} <a href='summary.md'>summary.md</a> · "
        "<a href='summary.json'>summary.json</a></p><img src='suite.png' alt='differences'>"
        f"<h2>Per prompt</h2>{html_table(header, rows)}<div class='gifs'>{figs}</div>"
    )
    (Path(out_dir) / "index.html").write_text(html_page("Clamp suite", body))
    return Path(out_dir) / "index.html"
