"""Figures of comparisons, suites and studies, drawn on matplotlib `Figure` objects (no pyplot
state, no window): loss curves with confidence bands, frame grids, forest plots of paired
differences.

    from clampgen.compare.plots import plot_comparison
    plot_comparison(runs, "comparison.png")
"""

import math

from clampgen.compare import stats
from clampgen.compare.judged import LABELS
from clampgen.compare.summary import BASELINE, loss_column, loss_series, order_variants
from clampgen.keepers import get_keeper
from clampgen.rundir import frame_paths, read_metrics

# a colour per clamp (matplotlib's first five, as before keepers existed), per keeper and per
# experiment; keepers are drawn dashed and experiments dotted (variant_style)
COLORS = {
    "clamp": "C0",
    "clamp_with_grad": "C1",
    "clamp_with_grad_proposed": "C2",
    "clamp_with_grad_scaled": "C3",
    "clamp_straight_through": "C4",
    "sigmoid": "C5",
    "tanh": "C6",
    "project": "C7",
    "range_loss": "C8",
    "proposed_adam_reset": "C9",
    "proposed_decoupled": "k",
}
LINESTYLES = {"clamps": "-", "keepers": "--", "experiments": ":"}


def variant_color(variant):
    """A fixed colour per clamp or keeper, the same in every plot (others: from their name)."""
    return COLORS.get(variant, f"C{sum(map(ord, variant)) % 10}")


def variant_style(variant) -> dict:
    """matplotlib line keywords of a variant: its colour, and its group's line style."""
    try:
        group = get_keeper(variant).group
    except ValueError:
        group = "clamps"
    return {"color": variant_color(variant), "linestyle": LINESTYLES.get(group, "-")}


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
    series = {
        s: dict(zip(*loss_series(read_metrics(r[variant]), column)))
        for s, r in runs.items()
        if variant in r
    }
    steps = sorted(set.intersection(*(set(x) for x in series.values()))) if series else []
    return steps, {s: [x[k] for k in steps] for s, x in series.items()}


def _curve(ax, steps, rows, variant, label, confidence):
    mean, half = _band(rows, confidence)
    style = variant_style(variant)
    ax.plot(steps, mean, lw=1.6, label=label, **style)
    if len(rows) > 1:
        ax.fill_between(steps, mean - half, mean + half, color=style["color"], alpha=0.18, lw=0)


def _paired_curve(ax, runs, variant, baseline, column, confidence):
    """variant − baseline per seed at the steps both logged, mean with CI band."""
    steps, rows = _aligned(runs, variant, column)
    b_steps, b_rows = _aligned(runs, baseline, column)
    both = [k for k in steps if k in b_steps]
    seeds = [s for s in rows if s in b_rows]
    diffs = [[rows[s][steps.index(k)] - b_rows[s][b_steps.index(k)] for k in both] for s in seeds]
    if both and len(seeds) > 1:
        _curve(ax, both, diffs, variant, None, confidence)


def plot_comparison(runs, path, variants=None, baseline=BASELINE, confidence=0.95):
    """comparison.png: panels sharing the step axis, mean with a Student-t CI band over seeds: the
    loss, the paired loss difference against `baseline` (several seeds), out-of-range fraction."""
    from matplotlib.figure import Figure

    variants = variants or order_variants({v for r in runs.values() for v in r})
    column = (
        "eval_loss"
        if all(
            loss_column(read_metrics(d)) == "eval_loss" for r in runs.values() for d in r.values()
        )
        else "loss"
    )
    paired = len(runs) > 1 and baseline in variants and len(variants) > 1
    fig = Figure(figsize=(8, 8.5 if paired else 6.5), dpi=100, layout="constrained")
    axes = fig.subplots(3 if paired else 2, 1, sharex=True)
    for v in variants:
        for ax, col in ((axes[0], column), (axes[-1], "out_of_range")):
            steps, rows = _aligned(runs, v, col)
            if steps:
                label = v if ax is axes[0] else None
                _curve(ax, steps, list(rows.values()), v, label, confidence)
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


def pick_steps(steps, rows):
    """At most `rows` steps spread evenly over `steps`, always the first and the last."""
    steps = sorted(steps)
    if len(steps) <= rows:
        return steps
    idx = sorted({round(i * (len(steps) - 1) / (rows - 1)) for i in range(rows)})
    return [steps[i] for i in idx]


def _two_lines(name: str, width: int = 16) -> str:
    """A long variant name broken after an underscore, for a narrow column title."""
    cut = name.rfind("_", 0, width)
    return name if len(name) <= width or cut < 0 else f"{name[: cut + 1]}\n{name[cut + 1 :]}"


def plot_grid(by_variant, path, variants=None, rows=5, side=1.9, title="", scores=None):
    """grid.png: variants as labelled columns, frames at a few common steps as rows (one seed);
    side: a frame's size in inches (at 100 dpi); scores: (label, {variant: {step: value}}), a
    judged score written under each frame judged at its step."""
    from matplotlib.figure import Figure
    from PIL import Image

    variants = [v for v in (variants or list(by_variant)) if v in by_variant]
    frames = {v: frame_paths(by_variant[v]) for v in variants}
    common = set.intersection(*(set(f) for f in frames.values())) if frames else set()
    steps = pick_steps(common, rows)
    n_rows, n_cols = max(len(steps), 1), max(len(variants), 1)
    fig = Figure(
        figsize=(side * n_cols, side * n_rows + 0.3 + 0.2 * bool(title)),
        dpi=100,
        layout="constrained",
    )
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    label, values = scores or ("", {})
    for r, step in enumerate(steps):
        for c, v in enumerate(variants):
            with Image.open(frames[v][step]) as im:
                axes[r][c].imshow(im.convert("RGB"), interpolation="nearest")
            value = values.get(v, {}).get(step)
            if value is not None and not math.isnan(value):
                axes[r][c].set_xlabel(f"{label} {value:.2f}", fontsize=7, labelpad=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c, v in enumerate(variants):
        axes[0][c].set_title(_two_lines(v), fontsize=7 if side < 1.5 else 8)
    for r, step in enumerate(steps):
        axes[r][0].set_ylabel(f"step {step}", fontsize=8)
    if not steps:
        axes[0][0].text(0.5, 0.5, "no common frames", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path)
    return path


def plot_frame_table(cells, path, title="", side=1.1):
    """A table of images: `cells` {row label: [(image path, column title, caption)]}, rows of
    equal length; the caption goes under each image (a run's loss and judged score)."""
    from matplotlib.figure import Figure
    from PIL import Image

    rows = list(cells.items())
    n_cols = max(len(r) for _, r in rows)
    fig = Figure(
        figsize=(side * n_cols + 0.6, (side + 0.3) * len(rows) + 0.5),
        dpi=100,
        layout="constrained",
    )
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (label, row) in enumerate(rows):
        for c, (image, column, caption) in enumerate(row):
            with Image.open(image) as im:
                axes[r][c].imshow(im.convert("RGB"), interpolation="nearest")
            axes[r][c].set_xlabel(caption, fontsize=6, labelpad=1)
            if r == 0:
                axes[r][c].set_title(column, fontsize=6)
        axes[r][0].set_ylabel(_two_lines(label), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.savefig(path)
    return path


def _xerr(ci):
    """errorbar's xerr of an interval: asymmetric [[below], [above]] from low and high."""
    if ci.get("low") is None or ci.get("high") is None:
        return None
    return [[ci["mean"] - ci["low"]], [ci["high"] - ci["mean"]]]


def _forest(ax, suite, metric="final_loss"):
    """Each prompt×seed paired difference of `metric` per variant (dots), mean and interval (◆)."""
    others = [v for v in suite["variants"] if "vs_baseline" in suite["per_variant"][v]]
    for i, v in enumerate(others):
        vs = suite["per_variant"][v]["vs_baseline"]
        if metric == "final_loss":
            d = vs["final_loss_differences"]
        else:
            d = (vs.get("differences") or {}).get(metric, [])
        d = [x for x in d if x is not None]
        ax.scatter(d, [i] * len(d), s=12, alpha=0.5, color=variant_color(v))
        ci = vs.get(metric) or {}
        if ci.get("mean") is not None and _xerr(ci) is not None:
            ax.errorbar(ci["mean"], i, xerr=_xerr(ci), fmt="D", color="k", ms=5, capsize=4)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(others)), others, fontsize=8)
    ax.set_ylim(len(others) - 0.5, -0.5)  # table order, top to bottom
    ax.grid(alpha=0.3, axis="x")


def _forest_label(suite, metric="final_loss"):
    interval = "Student-t" if "cluster" not in str(suite.get("interval")) else "bootstrap"
    what = f"final {suite['loss_kind']}" if metric == "final_loss" else LABELS[metric]
    better = "lower is better" if metric == "final_loss" else "higher is better"
    return (
        f"{what} − {suite['baseline']} ({better})\npaired per prompt×seed; "
        f"◆ mean with {suite['confidence']:.0%} {interval} interval"
    )


def _panels(suite):
    """The metrics a forest figure shows: the primary judged score first, then the loss."""
    primary = (suite.get("judged") or {}).get("primary")
    return ([primary] if primary else []) + ["final_loss"]


def plot_suite(suite, path):
    """suite.png: the paired differences of every prompt×seed, per variant: in the primary
    judged score (left, when the runs were judged) and in the final loss."""
    from matplotlib.figure import Figure

    panels = _panels(suite)
    fig = Figure(
        figsize=(6 * len(panels), 1.0 + 0.6 * max(len(suite["variants"]) - 1, 1)),
        dpi=100,
        layout="constrained",
    )
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, metric in zip(axes, panels):
        _forest(ax, suite, metric)
        ax.set_xlabel(_forest_label(suite, metric), fontsize=8)
    fig.savefig(path)
    return path


def plot_study(suites, path):
    """study.png: plot_suite's panels per condition, `suites` {name: suite summary}."""
    from matplotlib.figure import Figure

    heights = [max(len(s["variants"]) - 1, 1) for s in suites.values()]
    first = next(iter(suites.values()))
    panels = _panels(first)
    fig = Figure(
        figsize=(6 * len(panels), 0.8 + 0.5 * sum(heights) + 0.5 * len(suites)),
        dpi=100,
        layout="constrained",
    )
    axes = fig.subplots(len(suites), len(panels), squeeze=False, height_ratios=heights)
    for row, (name, suite) in zip(axes, suites.items()):
        for ax, metric in zip(row, panels):
            _forest(ax, suite, metric)
        row[0].set_title(name, fontsize=9, loc="left")
    for ax, metric in zip(axes[-1], panels):
        ax.set_xlabel(_forest_label(first, metric), fontsize=8)
    fig.savefig(path)
    return path


def plot_step_sizes(curves: dict, path, title: str = ""):
    """step_sizes.png: per variant, the mean over runs of the median update of pixels back in
    range (left), never out of it (middle) and out of it (right), against step, log scale."""
    from matplotlib.figure import Figure

    labels = {
        "back": "back in range (were out)",
        "never_out": "never out of range",
        "out": "out of range now",
    }
    fig = Figure(figsize=(12, 4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    for ax, group in zip(axes, labels):
        for variant, c in curves.items():
            values = [v if v > 0 else math.nan for v in c[group]]  # log scale: zero not drawn
            if any(not math.isnan(v) for v in values):
                ax.plot(c["step"], values, lw=1.4, label=variant, **variant_style(variant))
        ax.set(yscale="log", xlabel="step", title=labels[group])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("median |update| of a pixel per step\n(mean over runs)")
    seen = {}
    for ax in axes:
        seen.update({n: h for h, n in zip(*ax.get_legend_handles_labels()) if n not in seen})
    names = [v for v in curves if v in seen]  # registry order
    fig.legend([seen[n] for n in names], names, loc="outside right upper", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    return path
