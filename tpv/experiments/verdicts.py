"""Verdicts from confidence intervals and stated margins, for the findings table.

A claim is never read off raw means or off "not significant": each comparison gets a 95 % confidence interval of
its difference (paired over origins where both sides come from the same origin, else two-sample), and a margin
says how large a difference matters. Two kinds of claim:

- *at par or better* (non-inferiority, e.g. "keeps its score"): **held** when the interval lies above −margin;
  **not held** when it lies below zero and reaches past −margin (a significant loss not shown to be small);
  **inconclusive** when it spans both −margin and zero;
- *better* (superiority, e.g. "a better start than random"): **held** when the interval lies above zero;
  **not held** when it lies below +margin (any gain is smaller than the margin); **inconclusive** when it spans
  both zero and +margin.

A claim over several cells combines them with ``all_of`` (every cell held; one not held decides) or ``most_of``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tpv.core.errors import TPVError

HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE = "held", "not held", "inconclusive", "not testable here"
VERDICTS = (HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE)
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A difference (a − b), its 95 % confidence interval, and how it was computed."""

    label: str
    estimate: float
    low: float
    high: float
    n: int
    method: str

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        """``"mnli −14.0 [−27.9, −0.2]"``: the label, the difference and its interval, times ``scale``."""
        e, lo, hi = (x * scale for x in (self.estimate, self.low, self.high))
        return f"{self.label} {e:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

    def to_dict(self) -> dict:
        return asdict(self)


def _t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def paired_interval(label: str, a: Sequence[float], b: Sequence[float]) -> Interval:
    """Interval of the mean of ``a[i] − b[i]`` (Student's t, n − 1 degrees of freedom): both sides from the same
    origin i, so the origin's own effect cancels."""
    if len(a) != len(b) or len(a) < 2:
        raise TPVError(f"{label}: a paired interval needs two or more pairs of equal length, got {len(a)} and {len(b)}")
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return _from_spread(
        label,
        float(diffs.mean()),
        float(diffs.std(ddof=1)) / math.sqrt(len(diffs)),
        len(diffs) - 1,
        len(diffs),
        "paired t",
    )


def two_sample_interval(label: str, a: Sequence[float], b: Sequence[float]) -> Interval:
    """Interval of ``mean(a) − mean(b)`` for independent samples (pooled Student's t, the paper's test)."""
    if len(a) < 2 or len(b) < 2:
        raise TPVError(f"{label}: a two-sample interval needs two or more values a side, got {len(a)} and {len(b)}")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    df = len(x) + len(y) - 2
    pooled = ((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / df
    se = math.sqrt(pooled * (1 / len(x) + 1 / len(y)))
    return _from_spread(label, float(x.mean() - y.mean()), se, df, min(len(x), len(y)), "two-sample t")


def _from_spread(label: str, estimate: float, se: float, df: int, n: int, method: str) -> Interval:
    half = _t_quantile(df) * se
    return Interval(label, estimate, estimate - half, estimate + half, n, method)


def at_par_or_better(interval: Interval, margin: float) -> str:
    """Non-inferiority: held above −margin, not held below zero past −margin, else inconclusive."""
    if interval.low > -margin:
        return HELD
    return NOT_HELD if interval.high < 0 else INCONCLUSIVE


def better(interval: Interval, margin: float) -> str:
    """Superiority: held above zero, not held below +margin, else inconclusive."""
    if interval.low > 0:
        return HELD
    return NOT_HELD if interval.high < margin else INCONCLUSIVE


def all_of(verdicts: Sequence[str]) -> str:
    """A claim about every cell: held when all are held; not held when any is; else inconclusive."""
    if not verdicts:
        return NOT_TESTABLE
    if NOT_HELD in verdicts:
        return NOT_HELD
    return HELD if all(v == HELD for v in verdicts) else INCONCLUSIVE


def most_of(verdicts: Sequence[str]) -> str:
    """A claim about most cells: held when more than half are held; not held when, even with every inconclusive
    cell held, half or fewer would be; else inconclusive."""
    if not verdicts:
        return NOT_TESTABLE
    held, open_ = verdicts.count(HELD), verdicts.count(INCONCLUSIVE)
    if 2 * held > len(verdicts):
        return HELD
    return NOT_HELD if 2 * (held + open_) <= len(verdicts) else INCONCLUSIVE
