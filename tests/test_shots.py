"""few_shot: size, proportions, determinism, nesting, every class present."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv.core.errors import TPVError
from tpv.data import few_shot, load_split

pools = st.lists(st.integers(1, 40), min_size=1, max_size=6).map(
    lambda sizes: [{"label": c, "id": f"{c}-{i}"} for c, n in enumerate(sizes) for i in range(n)]
)


def _counts(shots):
    return Counter(ex["label"] for ex in shots)


@settings(max_examples=150, deadline=None)
@given(pools, st.integers(0, 10_000), st.data())
def test_size_determinism_and_nesting(pool, seed, data):
    k = data.draw(st.integers(0, len(pool)))
    shots = few_shot(pool, k, seed)
    assert len(shots) == k
    assert len({ex["id"] for ex in shots}) == k  # no example twice
    assert few_shot(pool, k, seed) == shots
    bigger = data.draw(st.integers(k, len(pool)))
    assert few_shot(pool, bigger, seed)[:k] == shots


@settings(max_examples=150, deadline=None)
@given(pools, st.integers(0, 10_000), st.data())
def test_proportions_and_presence(pool, seed, data):
    k = data.draw(st.integers(0, len(pool)))
    sizes = _counts(pool)
    counts = _counts(few_shot(pool, k, seed))
    if k >= len(sizes):
        assert set(counts) == set(sizes)
    for label, size in sizes.items():
        exact = k * size / len(pool)
        # Never more than one above the exact quota; never more than one below once every class's exact
        # quota is at least one (below that, giving each class a seat has to take seats from the big ones).
        assert counts[label] - exact <= 1 + 1e-9
        if min(k * n / len(pool) for n in sizes.values()) >= 1:
            assert exact - counts[label] <= 1 + 1e-9


def test_seeds_differ_and_input_not_mutated():
    pool = [{"label": i % 2, "id": i} for i in range(100)]
    before = [dict(ex) for ex in pool]
    assert few_shot(pool, 10, seed=0) != few_shot(pool, 10, seed=1)
    assert pool == before


def test_real_split_keeps_proportions_and_regression_is_one_class():
    cola = load_split("cola", "train")  # 591 unacceptable, 1409 acceptable
    assert _counts(few_shot(cola, 10, seed=3)) == {1: 7, 0: 3}
    stsb = load_split("stsb", "train")
    assert len(few_shot(stsb, 7, seed=0)) == 7
    assert few_shot(stsb, 5, seed=0) == few_shot(stsb, 7, seed=0)[:5]


def test_errors():
    pool = [{"label": 0}, {"label": 1}]
    with pytest.raises(TPVError, match=r"k=3 shots cannot be drawn from 2 examples; use 0 <= k <= 2"):
        few_shot(pool, 3, seed=0)
    with pytest.raises(TPVError, match=r"k=-1 shots"):
        few_shot(pool, -1, seed=0)
    with pytest.raises(TPVError, match=r"example 1 has no label key 'label'"):
        few_shot([{"label": 0}, {"text": "x"}], 1, seed=0)
    assert len(few_shot([{"text": "x"}, {"text": "y"}], 1, seed=0, label_key=None)) == 1
