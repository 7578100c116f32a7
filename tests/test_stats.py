"""Tests of anode.lab.stats: the t distribution and the one-sided tests, checked against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anode.lab.stats import one_sample_one_sided, student_t_sf, welch_one_sided

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [0.5, 1.0, 2.0, 3.0, 4.7, 10.0, 57.0, 1e4])
def test_student_t_sf_matches_scipy(df):
    for t in np.linspace(-40, 40, 161):
        expected = scipy_stats.t.sf(t, df)
        assert student_t_sf(float(t), df) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_student_t_sf_limits_and_errors():
    assert student_t_sf(0.0, 3.0) == pytest.approx(0.5)
    assert student_t_sf(math.inf, 3.0) == 0.0 and student_t_sf(-math.inf, 3.0) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom must be positive"):
        student_t_sf(1.0, 0.0)
    with pytest.raises(ValueError, match="t is NaN"):
        student_t_sf(math.nan, 2.0)


def summary(x):
    return float(np.mean(x)), float(np.std(x, ddof=1)), len(x)


def test_welch_matches_scipy_over_random_samples():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.normal(0.0, rng.uniform(0.1, 2.0), rng.integers(2, 12))
        b = rng.normal(rng.uniform(-1, 2), rng.uniform(0.1, 2.0), rng.integers(2, 12))
        ref = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="less")
        got = welch_one_sided(summary(a), summary(b))
        assert got.p == pytest.approx(ref.pvalue, rel=1e-8)
        assert got.p + got.p_opposite == pytest.approx(1.0)
        assert got.t == pytest.approx(-ref.statistic)


def test_welch_factor_scales_the_higher_group():
    a, b = [1.0, 1.2, 0.9, 1.1], [3.0, 2.6, 3.3, 2.9]
    ref = scipy_stats.ttest_ind(np.array(a), np.array(b) / 2, equal_var=False, alternative="less")
    assert welch_one_sided(summary(a), summary(b), factor=2.0).p == pytest.approx(ref.pvalue, rel=1e-8)


def test_one_sample_matches_scipy():
    x = [0.01, 0.03, 0.02, 0.05]
    assert one_sample_one_sided(summary(x), 0.05, below=True).p == pytest.approx(
        scipy_stats.ttest_1samp(x, 0.05, alternative="less").pvalue, rel=1e-8)
    assert one_sample_one_sided(summary(x), 0.0, below=False).p == pytest.approx(
        scipy_stats.ttest_1samp(x, 0.0, alternative="greater").pvalue, rel=1e-8)


def test_zero_spread_ties_and_gaps():
    tie = welch_one_sided((20.0, 0.0, 5), (20.0, 0.0, 5))
    assert math.isnan(tie.t) and tie.p == 1.0 and tie.p_opposite == 1.0 and tie.describe() == "tie with zero spread"
    gap = welch_one_sided((14.0, 0.0, 5), (20.0, 0.0, 5))
    assert gap.p == 0.0 and gap.p_opposite == 1.0
    wrong = welch_one_sided((26.0, 0.0, 3), (20.0, 0.0, 3))
    assert wrong.p == 1.0 and wrong.p_opposite == 0.0


def test_tests_reject_bad_summaries():
    with pytest.raises(ValueError, match="n >= 2"):
        welch_one_sided((1.0, 0.0, 1), (2.0, 0.1, 3))
    with pytest.raises(ValueError, match="finite"):
        welch_one_sided((math.nan, 0.1, 3), (2.0, 0.1, 3))
    with pytest.raises(ValueError, match="factor"):
        welch_one_sided((1.0, 0.1, 3), (2.0, 0.1, 3), factor=0.0)
    with pytest.raises(ValueError, match="threshold must be finite"):
        one_sample_one_sided((1.0, 0.1, 3), math.inf, below=True)


def test_welch_with_a_margin_shifts_the_hypothesis_by_it():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = rng.normal(0.0, 1.0, 5), rng.normal(0.3, 2.0, 7)
        margin = float(rng.uniform(0, 1))
        shifted = welch_one_sided(summary(a), summary(b + margin))
        with_margin = welch_one_sided(summary(a), summary(b), margin=margin)
        assert with_margin.t == pytest.approx(shifted.t, rel=1e-12) and with_margin.p == pytest.approx(shifted.p, rel=1e-9)
    with pytest.raises(ValueError, match="margin must be a finite number"):
        welch_one_sided((0.0, 1.0, 3), (0.0, 1.0, 3), margin=math.inf)
