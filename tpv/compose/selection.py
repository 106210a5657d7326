"""Choosing source vectors for a new task: by similarity to a briefly tuned target vector, and by a validation
rule that cannot pick noise (choose on some examples, confirm with a paired bootstrap on others, successive
halving to keep the cost down)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tpv.bridge.vector import TaskPromptVector
from tpv.core.errors import TPVError, TPVFileNotFoundError

VECTOR_SUFFIX = ".tpv.safetensors"


def select_sources(
    target: TaskPromptVector,
    library: Mapping[str, TaskPromptVector] | str | os.PathLike,
    k: int | None = 2,
    pooling: str = "mean",
) -> list[tuple[str, float]]:
    """Rank stored vectors by cosine similarity to ``target``, best first.

    ``target`` is typically a vector from a short prompt tuning on the target task's few shots (the paper's
    discussion proposes this retrieval); the best-ranked sources are then combined to initialise the target.

    Args:
        target: the target task's vector.
        library: a mapping name → vector, or a folder of ``*.tpv.safetensors`` files (named by file stem).
        k: how many to return; ``None`` returns all.
        pooling: ``"mean"`` (the paper's measure), ``"flat"`` or ``"per_token"`` (SPoT's).

    Returns:
        ``[(name, cosine), …]``, highest cosine first (ties by name).

    Example:
        >>> import torch
        >>> target = TaskPromptVector(torch.tensor([[1.0, 0.1]]), tasks={"sst5": 1.0})
        >>> library = {"sst2": TaskPromptVector(torch.tensor([[1.0, 0.0]]), tasks={"sst2": 1.0}),
        ...            "rte": TaskPromptVector(torch.tensor([[0.0, 1.0]]), tasks={"rte": 1.0})}
        >>> [name for name, _ in select_sources(target, library)]
        ['sst2', 'rte']
    """
    if not isinstance(target, TaskPromptVector):
        raise TPVError(
            f"the target must be a TaskPromptVector, got a {type(target).__name__}; tune a short prompt on the "
            "target's few shots and build it with TaskPromptVector.from_peft"
        )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise TPVError(f"k must be a positive int or None (all), got {k!r}")
    vectors = _library(library)
    ranked = sorted(
        ((name, target.cosine(vector, pooling)) for name, vector in vectors.items()),
        key=lambda item: (-item[1], item[0]),
    )
    return ranked if k is None else ranked[:k]


def _library(library) -> dict[str, TaskPromptVector]:
    if isinstance(library, (str, os.PathLike)):
        folder = Path(library)
        if not folder.is_dir():
            raise TPVFileNotFoundError(
                f"vector library '{folder}' is not a folder; pass a folder of *{VECTOR_SUFFIX} files"
            )
        files = sorted(folder.glob(f"*{VECTOR_SUFFIX}"))
        if not files:
            raise TPVError(f"no *{VECTOR_SUFFIX} files in '{folder}'; save vectors there with vector.save(path)")
        return {path.name[: -len(VECTOR_SUFFIX)]: TaskPromptVector.load(path) for path in files}
    if not isinstance(library, Mapping):
        raise TPVError(f"the library must be a mapping name → vector or a folder, got a {type(library).__name__}")
    if not library:
        raise TPVError("the vector library is empty; pass at least one named vector")
    for name, vector in library.items():
        if not isinstance(vector, TaskPromptVector):
            raise TPVError(f"library entry {name!r} is a {type(vector).__name__}; pass TaskPromptVectors")
    return {str(name): vector for name, vector in library.items()}


# ---- choosing a start on validation data without picking noise -------------------------------------------------


@dataclass(frozen=True)
class PairedInterval:
    """A paired-bootstrap comparison of two prompts' predictions on the same examples.

    Attributes:
        difference: metric(start) − metric(origin) on all the examples.
        lower: the one-sided lower confidence bound of that difference.
        confidence: the bound's level (e.g. 0.95).
        resamples: bootstrap resamples drawn.
        n: examples compared.
    """

    difference: float
    lower: float
    confidence: float
    resamples: int
    n: int

    @property
    def above_zero(self) -> bool:
        """True when the difference is positive with the stated confidence."""
        return self.lower > 0.0 and self.difference > 0.0


def paired_bootstrap(
    metric: str,
    start: Sequence,
    origin: Sequence,
    references: Sequence,
    *,
    labels: Sequence[int] | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedInterval:
    """A one-sided lower bound of ``metric(start) − metric(origin)`` by a paired bootstrap over examples.

    Each resample draws examples with replacement and recomputes the metric of both prediction lists on the
    *same* rows, so a metric that is not a per-example mean (macro-F1, Pearson) is bootstrapped correctly. The
    seed is fixed: the same predictions always give the same bound.

    Args:
        metric: a metric of :mod:`tpv.engine.metrics` (``"accuracy"``, ``"macro_f1"``, ``"pearson"``, …).
        start, origin: the two prompts' predictions on the same examples, in the same order.
        references: the examples' gold labels (label ids for classification).
        labels: the classes macro-F1 averages over (the task's label ids).
        confidence: the one-sided level of ``lower``.
        resamples: bootstrap resamples.
        seed: the resampling seed.

    Returns:
        A :class:`PairedInterval`.

    Example:
        >>> gold = [0, 1] * 20
        >>> paired_bootstrap("accuracy", gold, [0] * 40, gold).above_zero
        True
        >>> paired_bootstrap("accuracy", [0] * 40, [0] * 40, gold).lower
        0.0
    """
    if not (0.5 <= confidence < 1.0):
        raise TPVError(f"confidence must be in [0.5, 1), e.g. 0.95, got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise TPVError(f"resamples must be an int ≥ 100, got {resamples!r}")
    if not (len(start) == len(origin) == len(references)) or not references:
        raise TPVError(
            f"paired_bootstrap needs the same non-zero number of start, origin and reference values, got "
            f"{len(start)}, {len(origin)} and {len(references)}"
        )
    rows = np.random.default_rng(seed).integers(0, len(references), (resamples, len(references)))
    difference = _resampled(metric, start, references, labels, None) - _resampled(
        metric, origin, references, labels, None
    )
    spread = _resampled(metric, start, references, labels, rows) - _resampled(metric, origin, references, labels, rows)
    lower = float(np.quantile(spread, 1.0 - confidence, method="lower"))
    return PairedInterval(float(difference[0]), lower, float(confidence), resamples, len(references))


def _resampled(metric: str, predictions, references, labels, rows) -> np.ndarray:
    if rows is None:
        rows = np.arange(len(references))[None, :]
    if metric in ("accuracy", "macro_f1") and all(isinstance(r, (int, np.integer)) for r in references):
        p, g = np.asarray(predictions)[rows], np.asarray(references)[rows]
        if metric == "accuracy":
            return (p == g).mean(axis=1)
        classes = sorted(set(np.asarray(references).tolist())) if labels is None else list(labels)
        f1 = []
        for label in classes:
            tp = ((p == label) & (g == label)).sum(axis=1)
            wrong = ((p == label) != (g == label)).sum(axis=1)  # false positives + false negatives
            f1.append(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
        return np.mean(f1, axis=0)
    from tpv.engine.metrics import compute_metric

    by_label = {"labels": list(labels)} if metric == "macro_f1" and labels is not None else {}
    return np.array(
        [
            compute_metric(metric, [predictions[i] for i in row], [references[i] for i in row], **by_label)
            for row in rows
        ]
    )


def split_examples(labels: Sequence, confirm_fraction: float = 0.5, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of the examples that choose a start and of those that confirm it: disjoint, stratified by label.

    Within each label the examples are shuffled (fixed ``seed``) and dealt so that each part holds about its
    share of every label; both parts come back shuffled, so any prefix of the choosing part is a random sample
    (successive halving scores prefixes).

    Example:
        >>> choose, confirm = split_examples([0, 0, 1, 1, 0, 1, 0, 1])
        >>> len(choose), len(confirm), sorted(choose + confirm) == list(range(8))
        (4, 4, True)
    """
    if not (0.0 < confirm_fraction < 1.0):
        raise TPVError(f"confirm_fraction must be between 0 and 1 (e.g. 0.5), got {confirm_fraction!r}")
    if len(labels) < 2:
        raise TPVError(
            f"need at least 2 validation examples to choose on some and confirm on others, got {len(labels)}"
        )
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(repr(label), []).append(index)
    choose, confirm = [], []
    owed = 0.0  # confirming examples due but not yet dealt, carried across labels so the total share holds
    for key in sorted(groups):
        members = [groups[key][i] for i in rng.permutation(len(groups[key]))]
        owed += confirm_fraction * len(members)
        take = min(len(members), int(round(owed)))
        owed -= take
        confirm += members[:take]
        choose += members[take:]
    if not choose or not confirm:
        raise TPVError(
            f"{len(labels)} validation examples cannot be split into a choosing and a confirming part at "
            f"confirm_fraction={confirm_fraction}; pass more examples"
        )
    return [choose[i] for i in rng.permutation(len(choose))], [confirm[i] for i in rng.permutation(len(confirm))]


def halving_rungs(candidates: int, examples: int, min_examples: int = 8) -> list[tuple[int, int]]:
    """The successive-halving schedule: ``[(survivors, examples scored), …]`` from every candidate on a few
    examples to one candidate on all of them.

    Each rung keeps the better half of the previous one and doubles the examples, so every rung costs about the
    same and the total grows with the log of the number of candidates instead of linearly.

    Example:
        >>> halving_rungs(12, 100)
        [(12, 8), (6, 13), (3, 25), (2, 50), (1, 100)]
    """
    if candidates < 1 or examples < 1:
        raise TPVError(f"successive halving needs candidates and examples, got {candidates} and {examples}")
    rounds = math.ceil(math.log2(candidates)) if candidates > 1 else 0
    rungs = []
    for rung in range(rounds + 1):
        survivors = math.ceil(candidates / 2**rung)
        size = min(examples, max(min_examples, math.ceil(examples / 2 ** (rounds - rung))))
        rungs.append((survivors, size))
    return rungs


def successive_halving(
    candidates: Sequence[Hashable], score: Callable[[Hashable, int], float], examples: int, min_examples: int = 8
) -> list[tuple[Hashable, float, int]]:
    """Rank candidates by successive halving: all on a few examples, the better half on twice as many, ….

    Args:
        candidates: what to rank (distinct, hashable).
        score: ``score(candidate, n)`` is the candidate's score on the first ``n`` examples; a caller that caches
            per-example predictions pays only for examples not scored yet.
        examples: how many examples there are.
        min_examples: the fewest examples any candidate is scored on.

    Returns:
        ``[(candidate, score, n), …]``: those that reached more examples first, then by score, then by input order
        (ties keep the earlier candidate).

    Example:
        >>> quality = {"a": 0.2, "b": 0.9, "c": 0.5}
        >>> [c for c, _, _ in successive_halving(["a", "b", "c"], lambda c, n: quality[c], 40)]
        ['b', 'c', 'a']
    """
    order = {candidate: position for position, candidate in enumerate(candidates)}
    reached: dict[Hashable, tuple[float, int]] = {}
    alive = list(candidates)
    for survivors, size in halving_rungs(len(alive), examples, min_examples):
        alive = sorted(alive, key=lambda c: (-reached[c][0], order[c]))[:survivors] if reached else alive
        for candidate in alive:
            reached[candidate] = (float(score(candidate, size)), size)
    return sorted(
        ((c, value, n) for c, (value, n) in reached.items()), key=lambda row: (-row[2], -row[1], order[row[0]])
    )
