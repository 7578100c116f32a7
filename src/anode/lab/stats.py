"""One-sided t-tests from summary statistics (mean, std, n), with no dependency beyond `math`.

The report's verdicts rest on these: `welch_one_sided` compares two groups of repeats (Welch's
unequal-variance t-test), `one_sample_one_sided` compares one group with a fixed threshold. Both
return the p-value of the stated alternative, from the Student t distribution computed here through
the regularised incomplete beta function (checked against SciPy in the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TTest", "one_sample_one_sided", "student_t_sf", "welch_one_sided"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T >= t) for Student's t distribution with `df` > 0 degrees of freedom.

    Raises:
        ValueError: `df` not positive or `t` NaN.
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@dataclass(frozen=True)
class TTest:
    """Result of a one-sided t-test: statistic, degrees of freedom and p-values of both directions.

    `p` is the p-value of the alternative under test; `p_opposite` that of the reverse alternative.
    With zero spread on both sides the statistic is +-inf (or NaN for an exact tie) and the
    p-values are 0/1 (or 1/1 for a tie).
    """

    t: float
    df: float
    p: float
    p_opposite: float

    def describe(self) -> str:
        """Short text for a report, e.g. "t = 3.12, df = 5.8, p = 0.011"."""
        if math.isnan(self.t):
            return "tie with zero spread"
        if math.isinf(self.t):
            return "zero spread on both sides"
        return f"t = {self.t:.3g}, df = {self.df:.3g}, p = {self.p:.2g}"


def _from_gap(gap: float, se: float, df: float) -> TTest:
    if se == 0.0:
        if gap == 0.0:
            return TTest(math.nan, df, 1.0, 1.0)
        return TTest(math.copysign(math.inf, gap), df, 0.0 if gap > 0 else 1.0, 1.0 if gap > 0 else 0.0)
    t = gap / se
    return TTest(t, df, student_t_sf(t, df), student_t_sf(-t, df))


def _check(name: str, mean: float, std: float, n: int, *, min_n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < min_n:
        raise ValueError(f"{name}: a t-test needs n >= {min_n} values, got n = {n!r}")
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ValueError(f"{name}: mean and std must be finite with std >= 0, got mean = {mean!r}, std = {std!r}")


def welch_one_sided(lower: tuple[float, float, int], higher: tuple[float, float, int], *, factor: float = 1.0,
                    margin: float = 0.0) -> TTest:
    """Welch's t-test of "mean(lower) < mean(higher) / factor + margin" from (mean, sample std, n) summaries.

    The statistic is t = (m_h / factor + margin - m_l) / sqrt(s_l^2 / n_l + (s_h / factor)^2 / n_h)
    with Welch–Satterthwaite degrees of freedom; `p` = P(T >= t) under "no difference". A positive
    `margin` makes it a non-inferiority test: "lower is not above higher by `margin` or more".

    Arguments:
        lower, higher: (mean, sample standard deviation, n) of each group; n >= 2.
        factor: > 0; e.g. 2 tests "lower is below half of higher".
        margin: finite, in the metric's units (0: the plain one-sided test).

    Raises:
        ValueError: n < 2, a non-finite mean/std, a non-positive factor or a non-finite margin.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite positive number, got {factor!r}")
    if not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number, got {margin!r}")
    (ml, sl, nl), (mh, sh, nh) = lower, higher
    _check("lower", ml, sl, nl, min_n=2)
    _check("higher", mh, sh, nh, min_n=2)
    vl, vh = sl * sl / nl, (sh / factor) ** 2 / nh
    se2 = vl + vh
    df = se2 * se2 / (vl * vl / (nl - 1) + vh * vh / (nh - 1)) if se2 > 0 else float(nl + nh - 2)
    return _from_gap(mh / factor + margin - ml, math.sqrt(se2), df)


def one_sample_one_sided(sample: tuple[float, float, int], threshold: float, *, below: bool) -> TTest:
    """One-sample t-test of "mean < threshold" (`below=True`) or "mean > threshold" (`below=False`).

    Arguments:
        sample: (mean, sample standard deviation, n) with n >= 2.
        threshold: the fixed value compared with.
        below: the direction of the alternative.

    Raises:
        ValueError: n < 2, a non-finite mean/std/threshold.
    """
    mean, std, n = sample
    _check("sample", mean, std, n, min_n=2)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    gap = (threshold - mean) if below else (mean - threshold)
    return _from_gap(gap, std / math.sqrt(n), float(n - 1))
