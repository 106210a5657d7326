"""Choosing the rescaling factor λ of a (combined) task prompt vector on validation data (paper §3.4)."""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tpv.bridge.peft_io import set_prompt
from tpv.bridge.vector import TaskPromptVector
from tpv.core.errors import TPVError
from tpv.core.origin import Origin
from tpv.core.progress import progress_bar
from tpv.core.vector import combine
from tpv.data import Task, get_task, load_split
from tpv.data.loading import data_dir_from_env
from tpv.engine.evaluation import evaluate

ScoreFn = Callable[[torch.Tensor], "float | dict[str, float]"]
AGGREGATES = {"mean": lambda values: float(np.mean(values)), "min": lambda values: float(np.min(values))}
SEARCH_SPLIT = "validation"


@dataclass(frozen=True)
class ScaleSearch:
    """The outcome of :func:`search_scale`.

    Attributes:
        best_scale: the λ with the highest aggregate score (the smallest such λ on a tie).
        best_score: that aggregate score.
        curve: ``(λ, aggregate score, per-task scores)`` for every λ of the grid, in grid order.
        aggregate: how per-task scores were aggregated (``"mean"`` or ``"min"``).
    """

    best_scale: float
    best_score: float
    curve: list[tuple[float, float, dict[str, float]]] = field(repr=False)
    aggregate: str = "mean"


def search_scale(
    vector: TaskPromptVector | Sequence,
    origin: Origin | torch.Tensor,
    score_fn: ScoreFn,
    grid: Sequence[float] | np.ndarray | None = None,
    aggregate: str = "mean",
    progress: bool = True,
) -> ScaleSearch:
    """Find the λ whose prompt ``origin + λ·vector`` scores best (the paper's rescaling search).

    Args:
        vector: a vector, or a list of vectors / ``(vector, weight)`` pairs summed first.
        origin: the origin the candidate prompts are built on.
        score_fn: scores one candidate prompt on *validation* data; returns a float or a per-task dict
            (see :func:`evaluation_score_fn`). A float is recorded as ``{"score": value}``.
        grid: the λ values to try; ``np.arange(0, 1.05, 0.05)`` (0, 0.05, …, 1) by default.
        aggregate: ``"mean"`` (the paper: mean validation score across the vector's tasks) or ``"min"``
            (the worst task, for a λ that keeps every task).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`ScaleSearch`; ties go to the smaller λ.

    Example:
        >>> v = TaskPromptVector(torch.ones(1, 2), tasks={"a": 1.0})
        >>> result = search_scale(v, torch.zeros(1, 2), lambda p: -abs(p.mean().item() - 0.3), progress=False)
        >>> result.best_scale, len(result.curve)
        (0.3, 21)
    """
    if aggregate not in AGGREGATES:
        raise TPVError(f"unknown aggregate {aggregate!r}; use one of {sorted(AGGREGATES)}")
    if not callable(score_fn):
        raise TPVError(f"score_fn must be callable (prompt → float or dict), got {type(score_fn).__name__}")
    combined = vector if isinstance(vector, TaskPromptVector) else combine(vector)
    scales = _grid(np.arange(0, 1.05, 0.05) if grid is None else grid)
    curve = []
    for scale in progress_bar(scales, progress, f"λ search ({combined.name})", unit="λ", leave=True):
        scores = _scores(score_fn(combined.apply_to(origin, scale)), scale)
        curve.append((scale, AGGREGATES[aggregate](list(scores.values())), scores))
    # max() keeps the first maximum; ordering by (score, −λ) sends ties to the smaller λ whatever the grid order.
    best_scale, best_score, _ = max(curve, key=lambda point: (point[1], -point[0]))
    return ScaleSearch(best_scale=best_scale, best_score=best_score, curve=curve, aggregate=aggregate)


def evaluation_score_fn(
    peft_model,
    tokenizer,
    data_by_task: Mapping[str | Task, Sequence[Mapping] | str],
    *,
    method: str = "rank",
    batch_size: int = 32,
    adapter_name: str = "default",
    data_dir: str | os.PathLike | None = None,
    max_length: int | None = None,
    max_new_tokens: int | None = None,
    answer_match: str = "prefix",
    progress: bool = False,
) -> Callable[[torch.Tensor], dict[str, float]]:
    """A ``score_fn`` for :func:`search_scale` that scores each candidate prompt with the engine's ``evaluate``.

    One model serves every λ and task: each call writes the candidate into the soft prompt of
    ``adapter_name`` once, then evaluates every task on it.

    Args:
        peft_model: a prompt-tuned ``PeftModel`` (see :func:`tpv.init_prompt_tuning`).
        tokenizer: its tokenizer.
        data_by_task: task name (or ``Task``, e.g. one worded as a protocol words it) → validation examples, or
            the split name ``"validation"`` to load them. Test data is refused: a search that reads the test
            split makes its test scores optimistic.
        method: the ``tpv.engine.evaluation.evaluate`` scoring method: ``"rank"``, or ``"generate"`` to pick λ
            by generated answers as the official evaluator does (an invalid answer then counts wrong).
        batch_size: evaluation batch size.
        adapter_name: the adapter whose prompt is replaced.
        data_dir: where split names are loaded from (default ``TPV_DATA_DIR``).
        max_length: tokens kept per example (default: ``evaluate``'s).
        max_new_tokens: tokens generated per answer under ``method="generate"`` (default: ``evaluate``'s).
        answer_match: ``"prefix"`` or ``"exact"`` (the official code's exact match) for generated answers.
        progress: a progress bar over each evaluation's batches (one λ can take minutes on a CPU).

    Returns:
        ``score_fn(prompt) -> {task: score of the task's main metric}``.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from tpv import init_prompt_tuning, make_origin
        >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=8, n_layer=1, n_head=2))
        >>> peft_model = init_prompt_tuning(model, origin=make_origin(model, 4))
        >>> examples = [{"sentence1": "A cat sat.", "sentence2": "A cat is sitting.", "label": 0}]
        >>> score_fn = evaluation_score_fn(peft_model, None, {"rte": examples})
        >>> callable(score_fn)
        True
    """
    if not isinstance(data_by_task, Mapping) or not data_by_task:
        raise TPVError(
            f"data_by_task must be a non-empty mapping task → validation examples, got {data_by_task!r:.80}; "
            "e.g. {'rte': validation_data('rte')}"
        )
    data, tasks = {}, {}
    for task_name, examples in data_by_task.items():
        task = get_task(task_name)
        tasks[task.name] = task_name  # as given: a name, or a Task worded by the caller
        if isinstance(examples, str):
            if examples != SEARCH_SPLIT:
                raise TPVError(
                    f"the λ search of task {task.name!r} was given split {examples!r}; it reads the "
                    f"'{SEARCH_SPLIT}' split only, so test scores stay unbiased: pass 'validation'"
                )
            examples = validation_data(task.name, data_dir)
        data[task.name] = refuse_test_examples(task.name, list(examples), data_dir)

    lengths: dict[str, Any] = {"max_length": max_length} if max_length is not None else {}
    if max_new_tokens is not None:
        lengths["max_new_tokens"] = max_new_tokens

    def score_fn(prompt: torch.Tensor) -> dict[str, float]:
        set_prompt(peft_model, prompt, adapter_name)
        scores = {}
        for task_name, examples in data.items():
            metric = get_task(tasks[task_name]).metric
            result = evaluate(
                peft_model,
                tokenizer,
                tasks[task_name],
                examples,
                method=method,
                batch_size=batch_size,
                answer_match=answer_match,
                progress=progress,
                **lengths,
            )
            if metric not in result:
                raise TPVError(
                    f"evaluate returned {sorted(result)} for task {task_name!r} but not its main metric "
                    f"{metric!r}; make evaluate report it"
                )
            scores[task_name] = float(result[metric])
        return scores

    return score_fn


def validation_data(task: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """The validation examples of ``task``: the only split a λ search may read.

    Example:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())  # stands for a data folder such as $TPV_DATA_DIR
        >>> (folder / "rte").mkdir()
        >>> row = {"sentence1": "A cat sat.", "sentence2": "A cat is sitting.", "label": 0}
        >>> _ = (folder / "rte" / "validation.jsonl").write_text(json.dumps(row) + "\\n")
        >>> validation_data("rte", folder) == [row]
        True
    """
    return load_split(task, SEARCH_SPLIT, data_dir)


def refuse_test_examples(task: str, examples: list, data_dir: str | os.PathLike | None = None) -> list:
    """``examples`` unchanged, or one TPVError when any of them is in ``task``'s local test split (or there are
    none): what keeps a λ or source search from seeing test data."""
    if not examples:
        raise TPVError(f"no validation examples for task {task!r}; pass validation_data({task!r})")
    folder = data_dir if data_dir is not None else data_dir_from_env()
    if folder is None:
        return examples
    try:
        test = load_split(task, "test", folder)
    except TPVError:
        # No local test split means nothing to leak from; the check only guards against passing it by mistake.
        return examples
    test_keys = {_fingerprint(example) for example in test}
    leaked = [example for example in examples if _fingerprint(example) in test_keys]
    if leaked:
        raise TPVError(
            f"{len(leaked)} of the {len(examples)} examples given for task {task!r} are in its test split "
            f"(e.g. {leaked[0]!r:.120}); a λ search must not see test data: pass validation_data({task!r})"
        )
    return examples


def _fingerprint(example) -> str:
    return json.dumps(example, sort_keys=True, default=str)


def _grid(grid) -> list[float]:
    try:
        values = np.asarray(grid, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if isinstance(grid, (str, bytes)) or values.size == 0 or not np.isfinite(values).all():
        shown = grid if isinstance(grid, (str, bytes)) else [float(v) for v in values]
        raise TPVError(
            f"the λ grid must be a non-empty list of finite numbers, got {shown!r}; e.g. np.arange(0, 1.05, 0.05)"
        )
    # np.arange accumulates float error (0.15000000000000002); round so λ prints and compares as written.
    return [round(float(value), 10) for value in values]


def _scores(value, scale: float) -> dict[str, float]:
    scores = dict(value) if isinstance(value, Mapping) else {"score": value}
    if not scores:
        raise TPVError(f"score_fn returned an empty dict at λ={scale}; return a float or {{task: score}}")
    for name, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            raise TPVError(f"score_fn returned {score!r} for {name!r} at λ={scale}; scores must be finite numbers")
    return {str(name): float(score) for name, score in scores.items()}
