"""Statistics match scipy and numpy: sample std, Student's t-test with Bonferroni, table cells."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from tpv import TPVError
from tpv.experiments.stats import TTest, format_cell, mean_std, ttest

A = [0.852, 0.861, 0.849]
B = [0.801, 0.812, 0.795]


def test_mean_std_is_the_sample_std():
    mean, std = mean_std(A)
    assert mean == pytest.approx(np.mean(A)) and std == pytest.approx(np.std(A, ddof=1))
    assert std == pytest.approx(scipy_stats.tstd(A))
    assert math.isnan(mean_std([0.5])[1])


def test_ttest_matches_scipy_with_bonferroni():
    expected = scipy_stats.ttest_ind(A, B, equal_var=True)
    result = ttest(A, B)
    assert isinstance(result, TTest)
    assert result.statistic == pytest.approx(expected.statistic) and result.p_value == pytest.approx(expected.pvalue)
    assert ttest(A, B, n_comparisons=4).p_value == pytest.approx(min(1.0, 4 * expected.pvalue))
    assert ttest([0.5, 0.6, 0.7], [0.55, 0.65, 0.7], n_comparisons=100).p_value == 1.0
    constant = ttest([0.5, 0.5], [0.5, 0.5])
    assert (constant.p_value, constant.significant) == (1.0, False)


# Nearly equal generated samples make scipy warn about precision; its values are still what we compare with.
pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(finite, min_size=2, max_size=8), b=st.lists(finite, min_size=2, max_size=8), n=st.integers(1, 20))
def test_ttest_matches_scipy_on_generated_samples(a, b, n):
    with np.errstate(all="ignore"):
        expected = scipy_stats.ttest_ind(a, b, equal_var=True)
    result = ttest(a, b, n_comparisons=n)
    if math.isnan(expected.pvalue):
        assert result.p_value == 1.0 and not result.significant
    else:
        assert result.p_value == pytest.approx(min(1.0, expected.pvalue * n), rel=1e-9, abs=1e-12)
        assert result.significant == (result.p_value < 0.05)
        assert result.statistic == pytest.approx(expected.statistic, rel=1e-9, nan_ok=True)


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(finite, min_size=2, max_size=10))
def test_mean_std_matches_numpy_on_generated_scores(scores):
    mean, std = mean_std(scores)
    assert mean == pytest.approx(np.mean(scores), abs=1e-9)
    assert std == pytest.approx(np.std(scores, ddof=1), abs=1e-9)


def test_format_cell_writes_the_papers_cells():
    assert format_cell(A) == "85.4 ± 0.6"
    assert format_cell(A, baseline=B) == "85.4 ± 0.6*"
    assert format_cell(A, baseline=B, n_comparisons=10_000) == "85.4 ± 0.6"
    assert format_cell([0.5]) == "50.0"
    assert format_cell([0.5, 0.52], scale=1, digits=3) == "0.510 ± 0.014"


def test_bad_input_is_refused():
    with pytest.raises(TPVError, match="non-empty 1-D list"):
        mean_std([])
    with pytest.raises(TPVError, match=r"holds NaN/inf: \[0.5, nan\]"):
        mean_std([0.5, float("nan")])
    with pytest.raises(TPVError, match="at least 2 scores per side, got 1 and 3"):
        ttest([0.5], A)
    with pytest.raises(TPVError, match="n_comparisons must be a positive int"):
        ttest(A, B, n_comparisons=0)


def test_missing_scipy_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(TPVError, match=r'pip install "tpv\[stats\]"'):
        ttest(A, B)
