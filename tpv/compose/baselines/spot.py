"""SPoT (Vu et al. 2022): initialise a target prompt from a source prompt tuned on one task or on several.

SPoT-single is an ordinary task prompt, so it needs nothing here. SPoT-multi tunes one prompt on the union of
the sources' data: :func:`mix_tasks` builds that data, and :class:`tpv.data.mixture.MixtureTask` lets
``train_prompt`` format each example with its own task's template and label words.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from tpv.core.errors import TPVError
from tpv.data.mixture import TASK_TAG, MixtureTask

PROPORTIONS = ("equal", "size")

__all__ = ["PROPORTIONS", "mix_tasks", "mixture_task"]


def mix_tasks(
    data_by_task: Mapping[str, Sequence[dict]],
    proportions: str = "equal",
    seed: int = 0,
    total: int | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[dict]:
    """Shuffle the examples of several tasks into one list, each tagged with its task (``TASK_TAG``).

    Args:
        data_by_task: task name → training examples.
        proportions: ``"equal"`` takes as many examples from each task (the smallest task's size, so a large
            source cannot drown a small one); ``"size"`` takes every example (tasks weigh by their size).
        seed: the shuffle's seed.
        total: cap on the number of examples returned, keeping the proportions.
        weights: with ``"size"``, the sizes to be proportional to when the data at hand are subsets (e.g. the
            full training sets' sizes, as the paper mixes them); each task then gives ``weight × c`` examples,
            ``c`` as large as the subsets allow.

    Returns:
        New dicts (the inputs are not modified), in a seeded random order.

    Example:
        >>> mixed = mix_tasks({"sst2": [{"sentence": "a", "label": 0}] * 4, "rte": [{"sentence1": "b",
        ...                    "sentence2": "c", "label": 1}] * 2})
        >>> sorted(e["tpv_task"] for e in mixed)
        ['rte', 'rte', 'sst2', 'sst2']
    """
    if proportions not in PROPORTIONS:
        raise TPVError(f"unknown proportions {proportions!r}; use one of {list(PROPORTIONS)}")
    if not isinstance(data_by_task, Mapping) or len(data_by_task) < 2:
        raise TPVError(f"mix_tasks needs two or more tasks, got {list(data_by_task or ())}; pass {{task: examples}}")
    empty = [name for name, examples in data_by_task.items() if not examples]
    if empty:
        raise TPVError(f"tasks {empty} have no examples; pass non-empty training data for every source")
    rng = random.Random(seed)
    names = sorted(data_by_task)
    sizes = {name: len(data_by_task[name]) for name in names}
    if proportions == "equal":
        share = min(sizes.values())
        if total is not None:
            share = min(share, max(1, total // len(names)))
        counts = dict.fromkeys(names, share)
    else:
        target: dict[str, float] = dict(sizes)
        if weights is not None:
            missing = [
                name for name in names if not (isinstance(weights.get(name), (int, float)) and weights[name] > 0)
            ]
            if missing:
                raise TPVError(f"weights lack a positive size for {missing}; pass {{task: size}} for every task")
            # The largest multiple of the weights that every subset can supply.
            factor = min(sizes[name] / weights[name] for name in names)
            target = {name: weights[name] * factor for name in names}
        scale = 1.0 if total is None else min(1.0, total / sum(target.values()))
        counts = {name: min(sizes[name], max(1, round(target[name] * scale))) for name in names}
    mixed: list[dict] = []
    for name in names:
        # A seeded sample rather than the head, so subsets sorted by label are not taken one-sided.
        chosen = rng.sample(range(sizes[name]), counts[name])
        mixed.extend({**data_by_task[name][i], TASK_TAG: name} for i in chosen)
    rng.shuffle(mixed)
    return mixed


def mixture_task(tasks: Sequence[str]) -> MixtureTask:
    """The task to pass to ``train_prompt`` with data from :func:`mix_tasks` (SPoT-multi)."""
    return MixtureTask.of(tasks)
