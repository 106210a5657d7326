"""Study 4's "against the random origin" table: paired intervals over the origins both starts share."""

import numpy as np
import pytest
from scipy import stats

from tpv.experiments.studies.initialisation import against_random


def _rows(method, scores, shots=100, target="sst5"):
    return [
        {"target": target, "method": method, "shots": shots, "seed": seed, "score": score}
        for seed, score in scores.items()
    ]


def test_paired_over_shared_origins_with_a_t_interval():
    rows = _rows("random", {0: 0.30, 1: 0.20, 2: 0.25}) + _rows("sum", {0: 0.40, 1: 0.26, 2: 0.33})
    found = against_random(rows)["sst5"]["sum"][100]
    diffs = np.array([0.10, 0.06, 0.08])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert found["estimate"] == pytest.approx(diffs.mean())
    assert (found["low"], found["high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert found["n"] == 3


def test_a_start_without_two_shared_origins_or_the_random_rows_themselves_get_no_interval():
    rows = _rows("random", {0: 0.3, 1: 0.2}) + _rows("sum", {1: 0.4, 2: 0.5}) + _rows("attempt", {0: 0.5, 1: 0.1})
    found = against_random(rows)
    assert set(found["sst5"]) == {"attempt"}  # sum shares one origin with random; random is the baseline
    assert found["sst5"]["attempt"][100]["estimate"] == pytest.approx(0.05)
