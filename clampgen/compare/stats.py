"""Small statistics for comparing clamp variants: pure functions on lists of floats.

    from clampgen.compare.stats import mean_ci, cluster_bootstrap, paired_differences, win_rate
    mean_ci([1.0, 2.0, 3.0])   # {'n': 3, 'mean': 2.0, 'std': 1.0, 'half_width': 2.484..., ...}
    cluster_bootstrap([0.1, 0.2, 0.5, 0.4], clusters=["a", "a", "b", "b"])   # prompts' seeds

Quantiles and the bootstrap come from scipy.stats: Student-t intervals where the samples are
independent (the seeds of one prompt), and a cluster bootstrap where they are nested (a suite's
prompt×seed runs: prompts are the unit of replication, a prompt's seeds are resampled together).
"""

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 9999  # scipy.stats.bootstrap's default
BOOTSTRAP_SEED = 0  # a fixed stream: the same runs always give the same intervals
BOOTSTRAP_METHOD = "BCa"  # bias-corrected and accelerated; "percentile" where BCa is undefined


def t_two_sided_mass(t, df):
    """P(|T| <= t) for Student's t with integer `df` degrees of freedom (scipy.stats.t)."""
    from scipy.stats import t as student

    _check_df(df)
    return 0.0 if t <= 0 else float(2 * student.cdf(t, df) - 1)


def t_critical(df, confidence=0.95):
    """Two-sided critical value: the t with P(|T| <= t) = `confidence`; integer df."""
    from scipy.stats import t as student

    _check_df(df)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(student.ppf((1 + confidence) / 2, df))


def _check_df(df):
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")


def mean_ci(values, confidence=0.95):
    """Mean with a Student-t confidence interval: dict n, mean, std (ddof=1), half_width, low, high.

    With one value the interval is undefined: std, half_width, low and high are NaN.
    NaN values are dropped first.
    """
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, "std": nan, "half_width": nan, "low": nan, "high": nan}
    mean = sum(xs) / n
    if n == 1:
        nan = float("nan")
        return {"n": 1, "mean": mean, "std": nan, "half_width": nan, "low": nan, "high": nan}
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_critical(n - 1, confidence) * std / math.sqrt(n)
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "half_width": half,
        "low": mean - half,
        "high": mean + half,
    }


def _clusters_of(values, clusters):
    """(sums, counts) per cluster, in order of first appearance; NaN and None values dropped."""
    sums, counts = {}, {}
    for v, c in zip(values, clusters, strict=True):
        if v is None or math.isnan(float(v)):
            continue
        sums[c] = sums.get(c, 0.0) + float(v)
        counts[c] = counts.get(c, 0) + 1
    return np.array(list(sums.values())), np.array(list(counts.values()), dtype=float)


def cluster_bootstrap(
    values,
    clusters,
    confidence=0.95,
    method=BOOTSTRAP_METHOD,
    n_resamples=BOOTSTRAP_RESAMPLES,
    seed=BOOTSTRAP_SEED,
):
    """Mean of `values` with a cluster-bootstrap confidence interval (scipy.stats.bootstrap).

    `clusters[i]` names the unit values[i] belongs to (a prompt, for prompt×seed runs): each
    resample draws whole clusters with replacement, all of a cluster's values together, and the
    statistic is the mean over the values drawn (a cluster weighs by its number of values).
    Returns dict n (values), clusters, mean, low, high, method. NaN values are dropped first;
    with fewer than two clusters the interval is undefined (low and high NaN); when every
    cluster has the same mean it is that mean. The stream is seeded: the same values always
    give the same interval. method: 'BCa' (falls back to 'percentile' where BCa is undefined),
    'percentile' or 'basic'.
    """
    sums, counts = _clusters_of(values, clusters)
    k, nan = len(sums), float("nan")
    mean = float(sums.sum() / counts.sum()) if k else nan
    out = {"n": int(counts.sum()), "clusters": k, "mean": mean, "low": nan, "high": nan}
    out["method"] = f"cluster bootstrap ({method})"
    if k < 2:
        return out
    if np.ptp(sums / counts) <= 1e-12 * max(1.0, abs(mean)):
        return {**out, "low": mean, "high": mean}
    low, high = _bootstrap_interval(sums, counts, confidence, method, n_resamples, seed)
    if method == "BCa" and not (math.isfinite(low) and math.isfinite(high)):
        low, high = _bootstrap_interval(sums, counts, confidence, "percentile", n_resamples, seed)
        out["method"] = "cluster bootstrap (percentile: BCa undefined here)"
    return {**out, "low": low, "high": high}


def _bootstrap_interval(sums, counts, confidence, method, n_resamples, seed):
    """scipy.stats.bootstrap over cluster indices: the statistic of a resample is the mean over
    the values of the clusters it drew."""
    import warnings

    from scipy.stats import bootstrap

    def statistic(index, axis=-1):  # index (..., k) of drawn clusters
        return sums[index].sum(axis) / counts[index].sum(axis)

    with warnings.catch_warnings():  # a degenerate BCa says so by returning NaN: handled above
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(
            (np.arange(len(sums)),),
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            confidence_level=confidence,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    return float(low), float(high)


def win_scores(differences, lower_is_better=True):
    """Per pair: 1 when the variant wins against the baseline, 0.5 for a tie, 0 for a loss (NaN
    stays NaN); their mean is win_rate, and cluster_bootstrap gives its interval."""
    sign = -1.0 if lower_is_better else 1.0
    return [
        math.nan
        if math.isnan(float(d))
        else 1.0
        if sign * float(d) > 0
        else 0.5
        if float(d) == 0
        else 0.0
        for d in differences
    ]


def paired_differences(values, baseline):
    """`values[i] - baseline[i]` for paired samples (same seed and prompt, different clamp)."""
    if len(values) != len(baseline):
        raise ValueError(f"paired samples differ in length: {len(values)} vs {len(baseline)}")
    return [float(v) - float(b) for v, b in zip(values, baseline)]


def win_rate(differences, lower_is_better=True):
    """Fraction of pairs the variant wins against the baseline; a tie counts as half a win.

    `differences` are `variant - baseline`; with `lower_is_better` (losses) a win is a negative
    difference. NaNs are dropped; returns NaN for no pairs.
    """
    scores = [w for w in win_scores(differences, lower_is_better) if not math.isnan(w)]
    return sum(scores) / len(scores) if scores else float("nan")


def step_at_fraction(steps, losses, fraction=0.9):
    """First step at which `fraction` of the total improvement was reached, or None.

    Total improvement is `losses[0] - losses[-1]` (first to final value, so a late rise counts
    against it); the answer is the first step with `losses[0] - loss >= fraction * total`.
    None when the run did not improve (total <= 0) or there are fewer than two points.
    NaN entries (steps where the loss was not measured) are skipped.
    """
    pairs = [(s, float(v)) for s, v in zip(steps, losses) if not math.isnan(float(v))]
    if len(pairs) < 2:
        return None
    first, final = pairs[0][1], pairs[-1][1]
    total = first - final
    if total <= 0:
        return None
    target = fraction * total
    for step, value in pairs:
        if first - value >= target - 1e-12 * abs(total):
            return int(step)
    return int(pairs[-1][0])
