"""Small statistics for comparing clamp variants: pure functions on lists of floats.

    from clampgen.stats import mean_ci, paired_differences, win_rate, step_at_fraction
    mean_ci([1.0, 2.0, 3.0])   # {'n': 3, 'mean': 2.0, 'std': 1.0, 'half_width': 2.484..., ...}

No scipy: Student-t quantiles come from the exact closed form of the t distribution for an
integer number of degrees of freedom (Abramowitz & Stegun, Handbook of Mathematical
Functions, 1964, eq. 26.7.3 and 26.7.4), inverted by bisection.
"""

import math


def t_two_sided_mass(t, df):
    """P(|T| <= t) for Student's t with integer `df` degrees of freedom (A&S 26.7.3/26.7.4)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    df = int(df)
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:  # 2/pi * (theta + sin(theta) * (cos + 2/3 cos^3 + 2*4/(3*5) cos^5 + ...))
        if df == 1:
            return 2 * theta / math.pi
        term, total = math.cos(theta), math.cos(theta)
        for k in range(1, (df - 1) // 2):  # powers cos^3 ... cos^(df-2)
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term, total = 1.0, 1.0  # sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for k in range(1, df // 2):  # powers cos^2 ... cos^(df-2)
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_critical(df, confidence=0.95):
    """Two-sided critical value: the t with P(|T| <= t) = `confidence`, by bisection; integer df."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    lo, hi = 0.0, 1.0
    while t_two_sided_mass(hi, df) < confidence:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_mass(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return (lo + hi) / 2


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
    ds = [float(d) for d in differences if not math.isnan(float(d))]
    if not ds:
        return float("nan")
    sign = -1.0 if lower_is_better else 1.0
    wins = sum(1.0 if sign * d > 0 else 0.5 if d == 0 else 0.0 for d in ds)
    return wins / len(ds)


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
