"""Statistics for results over several origins: mean ± std and Bonferroni-corrected Student's t-tests.

The paper averages each result over 3 origins, writes the sample standard deviation (``ddof=1``) as a
subscript, and marks with ``*`` a difference found by a two-sample Student's t-test with Bonferroni correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tpv.core.errors import TPVError

ALPHA = 0.05


@dataclass(frozen=True)
class TTest:
    """A two-sample Student's t-test; ``p_value`` is already Bonferroni-corrected and capped at 1."""

    statistic: float
    p_value: float
    significant: bool


def mean_std(scores: Sequence[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (``ddof=1``, the paper's subscripts) of per-origin scores.

    One score has no spread to estimate, so its std is ``nan``.

    Example:
        >>> [round(value, 6) for value in mean_std([0.8, 0.9, 1.0])]
        [0.9, 0.1]
    """
    values = _scores(scores, "scores")
    std = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), std


def ttest(a: Sequence[float], b: Sequence[float], n_comparisons: int = 1, alpha: float = ALPHA) -> TTest:
    """Two-sample Student's t-test (equal variances) of ``a`` vs ``b`` with Bonferroni correction.

    Args:
        a, b: per-origin scores of the two settings (two or more each).
        n_comparisons: how many tests the table makes; the p-value is multiplied by it, capped at 1.
        alpha: significance level applied to the corrected p-value.

    Returns:
        A :class:`TTest`. Two constant samples with equal means give ``p_value=1`` (no evidence of a difference).

    Example:
        >>> result = ttest([0.80, 0.81, 0.79], [0.90, 0.91, 0.89], n_comparisons=3)
        >>> round(result.p_value, 6), result.significant
        (0.000766, True)
    """
    if isinstance(n_comparisons, bool) or not isinstance(n_comparisons, int) or n_comparisons < 1:
        raise TPVError(
            f"n_comparisons must be a positive int (the number of tests in the table), got {n_comparisons!r}"
        )
    if not 0.0 < alpha < 1.0:
        raise TPVError(f"alpha must be in (0, 1), got {alpha!r}")
    first, second = _scores(a, "a"), _scores(b, "b")
    if first.size < 2 or second.size < 2:
        raise TPVError(
            f"a t-test needs at least 2 scores per side, got {first.size} and {second.size}; run more origins"
        )
    try:
        from scipy import stats
    except ImportError as error:
        raise TPVError('tpv.experiments.stats.ttest needs scipy; install it with pip install "tpv[stats]"') from error
    statistic, p_value = stats.ttest_ind(first, second, equal_var=True)
    p_value = 1.0 if math.isnan(p_value) else min(1.0, float(p_value) * n_comparisons)
    return TTest(statistic=float(statistic), p_value=p_value, significant=p_value < alpha)


def format_cell(
    scores: Sequence[float],
    baseline: Sequence[float] | None = None,
    n_comparisons: int = 1,
    scale: float = 100,
    digits: int = 1,
) -> str:
    """A table cell in the paper's style: ``mean ± std`` (×``scale``), with ``*`` when it differs significantly
    from ``baseline`` (Bonferroni over ``n_comparisons``).

    Example:
        >>> format_cell([0.853, 0.854, 0.855])
        '85.4 ± 0.1'
        >>> format_cell([0.853, 0.854, 0.855], baseline=[0.80, 0.81, 0.79])
        '85.4 ± 0.1*'
    """
    mean, std = mean_std(scores)
    cell = f"{mean * scale:.{digits}f}" + ("" if math.isnan(std) else f" ± {std * scale:.{digits}f}")
    if baseline is not None and ttest(scores, baseline, n_comparisons).significant:
        cell += "*"
    return cell


def _scores(scores, what: str) -> np.ndarray:
    try:
        values = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TPVError(f"{what} must be a list of numbers, got {scores!r:.80}") from error
    if values.ndim != 1 or values.size == 0:
        raise TPVError(f"{what} must be a non-empty 1-D list of per-origin scores, got {scores!r:.80}")
    if not np.isfinite(values).all():
        raise TPVError(f"{what} holds NaN/inf: {values.tolist()}; drop failed runs explicitly before summarising")
    return values
