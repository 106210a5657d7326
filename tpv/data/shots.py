"""Few-shot subsets: k examples in total, class proportions kept, nested for growing k."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from tpv.core.errors import TPVError

__all__ = ["few_shot", "shot_order"]


def few_shot(examples: Sequence, k: int, seed: int, label_key: str | None = "label") -> list:
    """Sample ``k`` examples in total (not per class, as in the paper), keeping class proportions.

    Every class is present when ``k`` is at least the number of classes; beyond that each class gets its
    proportional share within one example. The result for ``k`` is the first ``k`` items of the result for any
    larger ``k`` with the same seed, so the 5-shot set is inside the 10-shot set and few-shot curves compare.
    Float labels are regression scores and form one class (a plain seeded sample); so does
    ``label_key=None``.

    Args:
        examples: the pool, e.g. from ``load_split``.
        k: how many to draw, ``0 <= k <= len(examples)``.
        seed: the random seed; equal seeds give equal samples.
        label_key: the key holding the class label in each example.

    Returns:
        ``k`` examples of the pool (the same objects), in a fixed order.

    Example:
        >>> pool = [{"label": i % 3} for i in range(30)]
        >>> [ex["label"] for ex in few_shot(pool, 6, seed=0)]
        [0, 1, 2, 0, 1, 2]
        >>> few_shot(pool, 4, seed=0) == few_shot(pool, 6, seed=0)[:4]
        True
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= len(examples):
        raise TPVError(f"k={k!r} shots cannot be drawn from {len(examples)} examples; use 0 <= k <= {len(examples)}")
    return [examples[i] for i in shot_order(examples, seed, label_key, limit=k)]


def shot_order(examples: Sequence, seed: int, label_key: str | None = "label", limit: int | None = None) -> list[int]:
    """The order in which ``few_shot`` draws the pool's indices (the first ``limit``); any prefix is a
    stratified sample."""
    labels = _labels(examples, label_key)
    classes = sorted(set(labels), key=lambda c: (type(c).__name__, c))
    members = {c: [i for i, label in enumerate(labels) if label == c] for c in classes}
    rng = np.random.default_rng(seed)
    # One seeded permutation per class: a class's j-th seat always takes the same example, whatever k is.
    queues = {c: [members[c][j] for j in rng.permutation(len(members[c]))] for c in classes}
    sizes = {c: len(members[c]) for c in classes}
    total = len(labels)
    # The first seats go one to each class, largest first, so every class is present once k >= #classes.
    order = sorted(classes, key=lambda c: (-sizes[c], classes.index(c)))
    taken = dict.fromkeys(classes, 0)
    sequence = []
    for h in range(1, total + 1 if limit is None else min(limit, total) + 1):
        if h <= len(order):
            c = order[h - 1]
        else:
            # Each later seat goes to the class furthest below its exact quota h·n_c/N: a sequential
            # largest-remainder rule, so the counts for k seats are always a prefix of those for k+1 seats
            # (plain largest-remainder can take a seat away as k grows, the Alabama paradox).
            open_classes = [c for c in classes if taken[c] < sizes[c]]
            c = max(open_classes, key=lambda c: (h * sizes[c] / total - taken[c], -classes.index(c)))
        sequence.append(queues[c][taken[c]])
        taken[c] += 1
    return sequence


def _labels(examples: Sequence, label_key: str | None) -> list:
    if label_key is None:
        return [0] * len(examples)
    labels = []
    for i, example in enumerate(examples):
        if label_key not in example:
            raise TPVError(f"example {i} has no label key {label_key!r} (keys {sorted(example)}); pass label_key=")
        label = example[label_key]
        # Regression scores are not classes: stratifying on them would put every distinct score in its own class.
        labels.append(None if isinstance(label, float) else label)
    if any(label is None for label in labels):
        return [0] * len(examples)
    try:
        hash(tuple(labels))
    except TypeError:
        raise TPVError(f"labels under {label_key!r} must be hashable (int or str) to stratify on") from None
    return labels
