"""Task metrics in plain numpy/python: macro-F1, accuracy, Pearson, SQuAD F1/EM, Rouge-L.

All scores are fractions in [0, 1] (Pearson in [-1, 1]); the paper's tables show them times 100.
``compute_metric(task.metric, predictions, references)`` is the one entry point the engine needs.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from tpv.core.errors import TPVError
from tpv.data.task import NO_ANSWER

__all__ = [
    "METRICS",
    "accuracy",
    "binary_f1",
    "compute_metric",
    "exact_match",
    "macro_f1",
    "pearson",
    "rouge_l",
    "squad_f1",
]


def accuracy(predictions: Sequence, references: Sequence) -> float:
    """Fraction of predictions equal to their reference.

    Example:
        >>> accuracy([0, 1, 1], [0, 1, 0])
        0.6666666666666666
    """
    _check_lengths(predictions, references)
    return float(np.mean([p == r for p, r in zip(predictions, references)]))


def macro_f1(predictions: Sequence, references: Sequence, labels: Sequence | None = None) -> float:
    """Unweighted mean over classes of per-class F1, as ``sklearn.metrics.f1_score(average="macro")``.

    Args:
        predictions: predicted label ids (or any hashable labels).
        references: true labels.
        labels: the classes to average over; default: every label seen in either list. Pass the task's
            label ids so that an unparseable prediction (e.g. ``-1``) counts as wrong without adding a class.

    Example:
        >>> macro_f1([0, 1, 1, 2], [0, 1, 2, 2])
        0.7777777777777777
    """
    _check_lengths(predictions, references)
    if labels is None:
        labels = sorted(set(predictions) | set(references), key=lambda x: (type(x).__name__, x))
    scores = []
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references))
        fp = sum(p == label and r != label for p, r in zip(predictions, references))
        fn = sum(p != label and r == label for p, r in zip(predictions, references))
        # A class never predicted nor present has undefined F1; sklearn scores it 0, and so do we.
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def binary_f1(predictions: Sequence, references: Sequence, positive=1, negative=0) -> float:
    """F1 of the positive label of a binary task, as the official code's ``metrics.f1`` (sklearn's
    ``f1_score(pos_label=labels[1])``): a prediction that is neither label (e.g. ``-1`` for an invalid
    generation) is replaced by the label opposite to its reference, so it always counts as wrong.

    The paper's text reports macro-F1; its code reports this for binary tasks, so both are kept to set our
    numbers against the published ones.

    Example:
        >>> binary_f1([1, 1, 0, -1], [1, 0, 0, 0])
        0.5
    """
    _check_lengths(predictions, references)
    labels = (negative, positive)
    if any(r not in labels for r in references):
        raise TPVError(
            f"binary_f1 needs references in {list(labels)}, got {sorted(set(references) - set(labels))}; "
            "use macro_f1 for tasks with more than two labels"
        )
    fixed = [p if p in labels else (negative if r == positive else positive) for p, r in zip(predictions, references)]
    tp = sum(p == positive and r == positive for p, r in zip(fixed, references))
    fp = sum(p == positive and r != positive for p, r in zip(fixed, references))
    fn = sum(p != positive and r == positive for p, r in zip(fixed, references))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation, as ``scipy.stats.pearsonr``; 0.0 when either side is constant (undefined there,
    and a model that always predicts one score has shown no correlation).

    Example:
        >>> round(pearson([1.0, 2.0, 3.0], [1.0, 2.0, 3.5]), 4)
        0.9934
    """
    _check_lengths(predictions, references)
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(references, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise TPVError(
            "pearson needs finite numbers; got NaN/inf at positions "
            f"{np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))[:10].tolist()}; map unparseable predictions "
            "to a number (e.g. the mean score) first"
        )
    if len(x) < 2:
        raise TPVError(f"pearson needs at least 2 pairs, got {len(x)}")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    if denominator == 0:
        return 0.0
    return float(np.clip((dx * dy).sum() / denominator, -1.0, 1.0))


def exact_match(predictions: Sequence[str], references: Sequence) -> float:
    """SQuAD v2 exact match after answer normalisation, best over each example's reference answers.

    A reference may be a string or a list of strings; an empty list, ``""`` or ``"unanswerable"`` means no
    answer, matched only by an empty or ``"unanswerable"`` prediction.

    Example:
        >>> exact_match(["The Paris", "unanswerable"], [["Paris", "paris city"], []])
        1.0
    """
    _check_lengths(predictions, references)
    return float(
        np.mean(
            [max(float(_normalize(p) == _normalize(g)) for g in _golds(r)) for p, r in zip(predictions, references)]
        )
    )


def squad_f1(predictions: Sequence[str], references: Sequence) -> float:
    """SQuAD v2 token F1 after answer normalisation, best over each example's reference answers.

    References as in ``exact_match``; a no-answer pair scores 1 only when both sides are no-answer.

    Example:
        >>> squad_f1(["the big cat"], [["big dog"]])
        0.5
    """
    _check_lengths(predictions, references)
    return float(np.mean([max(_token_f1(p, g) for g in _golds(r)) for p, r in zip(predictions, references)]))


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean Rouge-L F-measure (longest common subsequence of tokens), tokenised like ``rouge_score``:
    lower-cased, runs of non-alphanumerics as separators, no stemming.

    Example:
        >>> round(rouge_l(["the answer is 42"], ["so the answer is 42 ."]), 4)
        0.8889
    """
    _check_lengths(predictions, references)
    scores = []
    for prediction, reference in zip(predictions, references):
        p, r = _rouge_tokens(prediction), _rouge_tokens(reference)
        lcs = _lcs_length(p, r)
        scores.append(0.0 if lcs == 0 else 2 * lcs / (len(p) + len(r)))
    return float(np.mean(scores))


METRICS: dict[str, Callable[..., float]] = {
    "macro_f1": macro_f1,
    "accuracy": accuracy,
    "binary_f1": binary_f1,
    "pearson": pearson,
    "squad_f1": squad_f1,
    "exact_match": exact_match,
    "rouge_l": rouge_l,
}


def compute_metric(name: str, predictions: Sequence, references: Sequence, **kwargs) -> float:
    """Compute the metric registered as ``name`` in ``METRICS``.

    Example:
        >>> compute_metric("accuracy", [1, 0], [1, 1])
        0.5
    """
    if name not in METRICS:
        raise TPVError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return METRICS[name](predictions, references, **kwargs)


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise TPVError(
            f"got {len(predictions)} predictions but {len(references)} references; pass one prediction per reference"
        )
    if len(predictions) == 0:
        raise TPVError("cannot score 0 predictions; pass at least one prediction and reference")


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def _normalize(text: str) -> str:
    # The official SQuAD v2 normalisation, plus tpv's no-answer word, which stands for SQuAD's "".
    text = text.strip()
    if text.lower() == NO_ANSWER:
        return ""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(reference) -> list[str]:
    if isinstance(reference, dict):
        reference = reference.get("text", [])
    if isinstance(reference, str):
        return [reference]
    # SQuAD v2 scores an unanswerable question against the empty answer.
    return [g for g in reference if _normalize(g)] or [""]


def _token_f1(prediction: str, gold: str) -> float:
    p, g = _normalize(prediction).split(), _normalize(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _rouge_tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _lcs_length(a: list[str], b: list[str]) -> int:
    # One row of the dynamic-programming table at a time: MATH solutions run to hundreds of tokens.
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
