"""clampgen.stats: t quantiles against closed forms and printed tables, hand-computed samples."""

import math

import pytest

from clampgen.compare.stats import (
    mean_ci,
    paired_differences,
    step_at_fraction,
    t_critical,
    t_two_sided_mass,
    win_rate,
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
