"""clampgen.stats: t quantiles against closed forms and printed tables, hand-computed samples,
and the cluster bootstrap against cases whose bootstrap distribution is known exactly."""

import math

import numpy as np
import pytest

from clampgen.compare.stats import (
    cluster_bootstrap,
    mean_ci,
    paired_differences,
    step_at_fraction,
    t_critical,
    t_two_sided_mass,
    win_rate,
    win_scores,
)


def test_t_critical_closed_forms():
    # df=1 is Cauchy: t = tan(0.95 * pi / 2)
    # df=2: t / sqrt(t^2 + 2) = 0.95  =>  t = sqrt(2 * 0.95^2 / (1 - 0.95^2))
    assert t_critical(1) == pytest.approx(math.tan(0.95 * math.pi / 2), rel=1e-9)
    assert t_critical(2) == pytest.approx(math.sqrt(2 * 0.95**2 / (1 - 0.95**2)), rel=1e-9)


@pytest.mark.parametrize(
    "df, table",
    [
        (3, 3.182),
        (4, 2.776),
        (5, 2.571),
        (9, 2.262),
        (10, 2.228),
        (29, 2.045),
        (30, 2.042),
        (100, 1.984),
    ],
)
def test_t_critical_matches_printed_table(df, table):
    # two-sided 95% values from the NIST/SEMATECH e-Handbook of Statistical Methods, table 1.3.6.7.2
    assert t_critical(df) == pytest.approx(table, abs=5e-4)


def test_t_critical_other_confidence():
    assert t_critical(10, 0.99) == pytest.approx(3.169, abs=5e-4)  # same table, 0.995 column
    assert t_critical(2000) == pytest.approx(1.95996, abs=2e-3)  # towards the normal quantile


def test_t_two_sided_mass_is_monotone_and_bounded():
    values = [t_two_sided_mass(t, 7) for t in (0, 0.5, 1, 2, 5, 50)]
    assert values[0] == 0 and values == sorted(values) and values[-1] < 1


def test_t_invalid():
    with pytest.raises(ValueError):
        t_critical(2.5)
    with pytest.raises(ValueError):
        t_critical(3, 1.2)


def test_mean_ci_hand_computed():
    # [1, 2, 3]: mean 2, sample std 1, half-width = t(2) * 1 / sqrt(3) = 4.302653 / 1.732051
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci["n"] == 3 and ci["mean"] == 2.0 and ci["std"] == pytest.approx(1.0)
    assert ci["half_width"] == pytest.approx(2.484138, abs=1e-6)
    assert (ci["low"], ci["high"]) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)


def test_mean_ci_small_and_nan():
    assert math.isnan(mean_ci([5.0])["half_width"]) and mean_ci([5.0])["mean"] == 5.0
    assert mean_ci([])["n"] == 0
    assert mean_ci([1.0, float("nan"), 3.0])["mean"] == 2.0


def test_paired_differences():
    assert paired_differences([3.0, 1.0], [1.0, 1.5]) == [2.0, -0.5]
    with pytest.raises(ValueError):
        paired_differences([1.0], [1.0, 2.0])


def test_win_rate_ties_count_half():
    assert win_rate([-1.0, 1.0, 0.0, -2.0]) == 0.625
    assert win_rate([-1.0, 1.0, 0.0, -2.0], lower_is_better=False) == 0.375
    assert math.isnan(win_rate([]))


def test_step_at_fraction():
    steps = [0, 10, 20, 30]
    assert step_at_fraction(steps, [1.0, 0.5, 0.2, 0.0]) == 30  # 0.8 < 0.9 at step 20
    assert step_at_fraction(steps, [1.0, 0.05, 0.2, 0.0]) == 10  # 0.95 >= 0.9 already
    assert step_at_fraction(steps, [1.0, 0.5, 0.2, 0.0], 0.5) == 10
    assert step_at_fraction(steps, [1.0, 1.1, 1.2, 1.0]) is None  # no improvement
    assert step_at_fraction(steps, [1.0, float("nan"), 0.0, 0.0]) == 20
    assert step_at_fraction([0], [1.0]) is None


def test_cluster_bootstrap_keeps_a_clusters_values_together():
    """Prompt a: seeds 0, 0; prompt b: seed 3. Resampling two prompts gives aa, ab, ba or bb:
    means over their runs 0, 1, 1, 3 with probabilities 1/4, 1/2, 1/4, so the 95% percentile
    interval is [0, 3] exactly; the estimate is the mean over runs (1), not over prompts (1.5)."""
    ci = cluster_bootstrap([0.0, 0.0, 3.0], ["a", "a", "b"], method="percentile")
    assert (ci["n"], ci["clusters"], ci["mean"]) == (3, 2, 1.0)
    assert (ci["low"], ci["high"]) == (0.0, 3.0)


def test_nested_seeds_widen_the_interval_to_the_prompts():
    """Two prompts whose three seeds agree (0, 0, 0 and 1, 1, 1): over prompts the resampled mean
    is 0, 1/2 or 1 (1/4, 1/2, 1/4), interval [0, 1]; taking the six runs as independent gives
    Binomial(6, 1/2) / 6, whose 2.5 % and 97.5 % quantiles are 1/6 and 5/6 (P(X <= 0) = 1/64 <
    0.025 < P(X <= 1) = 7/64): the narrower interval the nesting does not justify."""
    values, prompts = [0.0] * 3 + [1.0] * 3, ["a"] * 3 + ["b"] * 3
    nested = cluster_bootstrap(values, prompts, method="percentile")
    assert (nested["low"], nested["high"]) == (0.0, 1.0) and nested["clusters"] == 2
    naive = cluster_bootstrap(values, range(6), method="percentile")
    assert (naive["low"], naive["high"]) == pytest.approx((1 / 6, 5 / 6))


def test_cluster_bootstrap_of_normal_data_is_the_normal_interval():
    """400 independent N(0, 1) values (one per cluster): the BCa interval is mean ± 1.96 s / 20
    to within the bootstrap's own noise."""
    x = np.random.default_rng(1).standard_normal(400)
    ci = cluster_bootstrap(x.tolist(), range(400))
    half = 1.959964 * x.std(ddof=1) / 20
    assert ci["mean"] == pytest.approx(x.mean())
    assert (ci["low"], ci["high"]) == pytest.approx((x.mean() - half, x.mean() + half), abs=0.01)


def test_cluster_bootstrap_edges():
    assert math.isnan(cluster_bootstrap([1.0, 2.0], ["a", "a"])["low"])  # one prompt: no interval
    assert cluster_bootstrap([], [])["n"] == 0
    same = cluster_bootstrap([2.0, 2.0, 2.0, 2.0], [0, 0, 1, 1])  # every prompt's mean alike
    assert (same["low"], same["mean"], same["high"]) == (2.0, 2.0, 2.0)
    dropped = cluster_bootstrap([1.0, float("nan"), None, 3.0], ["a", "b", "b", "c"])
    assert (dropped["n"], dropped["clusters"], dropped["mean"]) == (2, 2, 2.0)


def test_cluster_bootstrap_is_reproducible_and_bca_by_default():
    x = np.random.default_rng(2).standard_normal(24).tolist()
    prompts = [i // 3 for i in range(24)]
    a, b = cluster_bootstrap(x, prompts), cluster_bootstrap(x, prompts)
    assert a == b and "BCa" in a["method"] and a["low"] < a["mean"] < a["high"]


def test_win_scores_average_to_the_win_rate():
    d = [-1.0, 1.0, 0.0, -2.0, float("nan")]
    assert win_scores(d)[:4] == [1.0, 0.0, 0.5, 1.0] and math.isnan(win_scores(d)[4])
    assert win_scores(d, lower_is_better=False)[:4] == [0.0, 1.0, 0.5, 0.0]
    assert np.nanmean(win_scores(d)) == win_rate(d) == 0.625
