"""Build a vector zoo for any model: one task prompt vector per task, with the manifest tpv's own zoo has.

:func:`build_zoo` tunes one prompt per task from one recorded origin (the paper's origin 0 by default), keeps
the best checkpoint on the first validation examples (the *selection* set), then scores the kept prompt and the
untrained origin on the next validation examples (*held*, never used for selection) and on the test split. A
one-sided permutation test on the held examples decides whether the prompt left chance (``AT_CHANCE_RULE``);
a vector that did not is kept but marked ``at_chance``, and :func:`tpv.auto_init` leaves it out unless asked.

The manifest is rewritten after every task, so a killed build keeps what it finished; a rerun skips every task
whose entry was built with the same model, origin, data and budget, and builds the others.

Example:
    >>> from tpv.compose.zoo.build import budget_for
    >>> budget_for("sst2").steps, budget_for("my_reviews").learning_rate
    (100, 0.3)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tpv.bridge.vector import TaskPromptVector
from tpv.compose.selection import VECTOR_SUFFIX
from tpv.core._io import atomic_write_text
from tpv.core._version import git_commit
from tpv.core.errors import TPVError
from tpv.core.origin import Origin, make_origin

__all__ = ["AT_CHANCE_RULE", "TaskBudget", "budget_for", "build_zoo"]

FORMAT = "tpv-zoo/1"
MANIFEST = "manifest.json"
ORIGIN_FILE = "origin.safetensors"
BUDGETS_FILE = Path(__file__).resolve().parent / "budgets.json"  # a copy of docs/results/learnability/budgets.json
ALPHA = 0.01
MIN_MARGIN = 0.05
PERMUTATIONS = 2000
BOOTSTRAP = 1000
ANSWER_TOKENS = 8  # regression answers are a number such as "3.2": a few tokens
AT_CHANCE_RULE = (
    f"at_chance unless the run on the held validation examples, one-sided permutation p < {ALPHA} "
    f"({PERMUTATIONS} label shuffles) and macro-F1 at least {MIN_MARGIN} above the shuffles' mean"
)


@dataclass(frozen=True)
class TaskBudget:
    """How one task's prompt is tuned: optimiser steps (the learning rate decays over them), learning rate,
    batch size, and tokens kept per input. The best checkpoint of the run is kept, so ``steps`` is a ceiling."""

    steps: int = 100
    learning_rate: float = 0.3
    batch_size: int = 8
    max_length: int = 256

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TPVError(f"TaskBudget.{name} must be a positive int, got {value!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < float("inf")):
            raise TPVError(f"TaskBudget.learning_rate must be a positive number, got {self.learning_rate!r}")


def budget_for(task: str, num_virtual_tokens: int = 20) -> TaskBudget:
    """The budget the learnability study found for ``task`` (docs/results/learnability/budgets.json): the run
    that left chance at this prompt length (else at the other length measured), its whole schedule and learning
    rate; ``TaskBudget()`` (100 steps at 0.3) for a task it did not measure."""
    table = json.loads(BUDGETS_FILE.read_text(encoding="utf-8"))["budgets"].get(task)
    if not table:
        return TaskBudget()
    runs = [table[key] for key in sorted(table, key=lambda key: key != str(num_virtual_tokens))]
    run = next((entry for entry in runs if entry["left_chance"]), runs[0])
    return TaskBudget(steps=int(run["schedule_steps"]), learning_rate=float(run["learning_rate"]))


def build_zoo(
    model,
    tasks: Sequence,
    output_dir: str | os.PathLike,
    *,
    tokenizer=None,
    budgets: Mapping[str, TaskBudget | Mapping] | None = None,
    num_virtual_tokens: int = 20,
    origin: Origin | None = None,
    base_model: str | None = None,
    data_dir: str | os.PathLike | None = None,
    selection_examples: int = 100,
    held_examples: int = 300,
    test_examples: int = 200,
    eval_every: int = 50,
    dtype: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Tune one task prompt vector per task on ``model`` and write them with a manifest into ``output_dir``.

    Args:
        model: a model id or folder (loaded with :func:`tpv.bridge.models.load_model`; ``None``: tpv's default
            model) or a loaded transformers model (then pass ``tokenizer``).
        tasks: task names or :class:`tpv.data.Task` objects (e.g. from ``Task.from_files``); each needs a train
            and a validation split (and, optionally, a test split).
        output_dir: the zoo folder: ``<task>.tpv.safetensors`` files, ``origin.safetensors`` and ``manifest.json``.
        tokenizer: the tokenizer of a loaded ``model``.
        budgets: per task, a :class:`TaskBudget` or a dict of its fields; tasks not given use :func:`budget_for`.
        num_virtual_tokens: the prompt length of every vector.
        origin: the origin every prompt starts from; by default the paper's origin 0 (``method="paper"``).
        base_model: the name the manifest and the vectors record; by default the model's ``name_or_path``.
        data_dir: where task splits are read from (default ``TPV_DATA_DIR``).
        selection_examples: validation examples that choose the best checkpoint.
        held_examples: the validation examples after those, on which the vector is scored and tested for chance.
        test_examples: test examples scored (0: none).
        eval_every: score the selection examples every this many steps.
        dtype: the dtype a model id is loaded in (``"auto"``: tpv's choice for this machine).
        seed: the data order's seed.
        progress: progress bars.

    Returns:
        The manifest (also in ``output_dir/manifest.json``); ``auto_init(model, tokenizer, task, output_dir)``
        uses the zoo.
    """
    model, tokenizer = _loaded(model, tokenizer, dtype)
    names = _task_names(tasks)
    budgets = _budgets(budgets, names, num_virtual_tokens)
    _check_counts(selection_examples, held_examples, test_examples, eval_every, num_virtual_tokens)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    origin = origin if origin is not None else make_origin(model, num_virtual_tokens, method="paper", seed=0)
    if origin.num_virtual_tokens != num_virtual_tokens:
        raise TPVError(
            f"the origin has {origin.num_virtual_tokens} virtual tokens but num_virtual_tokens={num_virtual_tokens}; "
            "pass one or the other"
        )
    base_model = base_model or str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", ""))
    manifest = _start_manifest(folder, model, origin, base_model, names)
    from tpv.bridge.peft_io import init_prompt_tuning

    peft_model = init_prompt_tuning(model, origin=origin)
    settings = _Settings(selection_examples, held_examples, test_examples, eval_every, seed, data_dir, progress)
    for number, (name, task) in enumerate(zip(names, _tasks(tasks)), start=1):
        key = _fingerprint(task, budgets[name], origin, base_model, settings)
        if _finished(folder, manifest["tasks"].get(name), key):
            _say(progress, f"[{number}/{len(names)}] {name}: built before with these settings, kept")
            continue
        _say(progress, f"[{number}/{len(names)}] {name}: {budgets[name].steps} steps")
        entry = _build_task(peft_model, tokenizer, task, budgets[name], origin, base_model, folder, settings)
        entry["fingerprint"] = key
        manifest = _record(folder, manifest, name, entry)
        _say(
            progress,
            f"    {entry['metric']} held validation {entry['validation']:.3f} (origin "
            f"{entry['origin_validation']:.3f}){', AT CHANCE' if entry['at_chance'] else ''}",
        )
    return manifest


@dataclass(frozen=True)
class _Settings:
    selection_examples: int
    held_examples: int
    test_examples: int
    eval_every: int
    seed: int
    data_dir: Any
    progress: bool


def _loaded(model, tokenizer, dtype):
    if model is None or isinstance(model, (str, os.PathLike)):
        from tpv.bridge.models import load_model

        return load_model(model, dtype=dtype) if model is not None else load_model(dtype=dtype)
    if tokenizer is None:
        raise TPVError("build_zoo got a loaded model but no tokenizer; pass tokenizer=... or a model id")
    return model, tokenizer


def _task_names(tasks) -> list[str]:
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
        raise TPVError(f"tasks must be a non-empty list of task names or Tasks, got {tasks!r:.80}")
    names = [task if isinstance(task, str) else getattr(task, "name", None) for task in tasks]
    if any(not isinstance(name, str) for name in names):
        raise TPVError(f"tasks must be task names or tpv.data.Task objects, got {tasks!r:.120}")
    checked = [str(name) for name in names]
    if len(set(checked)) != len(checked):
        raise TPVError(f"tasks name one task twice: {checked}; list each once")
    return checked


def _tasks(tasks) -> list:
    from tpv.data.encoding import resolve_task

    return [resolve_task(task) for task in tasks]


def _budgets(budgets, names, num_virtual_tokens) -> dict[str, TaskBudget]:
    given = dict(budgets or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TPVError(f"budgets for {unknown}, which are not in tasks {names}; add them to tasks or drop them")
    out = {}
    for name in names:
        value = given.get(name)
        if value is None:
            out[name] = budget_for(name, num_virtual_tokens)
        elif isinstance(value, TaskBudget):
            out[name] = value
        elif isinstance(value, Mapping):
            fields = set(TaskBudget.__dataclass_fields__)
            if set(value) - fields:
                raise TPVError(
                    f"budget of {name!r} has unknown fields {sorted(set(value) - fields)}; use {sorted(fields)}"
                )
            out[name] = TaskBudget(**value)
        else:
            raise TPVError(f"budget of {name!r} must be a TaskBudget or a dict of its fields, got {value!r}")
    return out


def _check_counts(selection, held, test, eval_every, tokens) -> None:
    for name, value, least in (
        ("selection_examples", selection, 1),
        ("held_examples", held, 2),
        ("test_examples", test, 0),
        ("eval_every", eval_every, 1),
        ("num_virtual_tokens", tokens, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise TPVError(f"{name} must be an int ≥ {least}, got {value!r}")


def _start_manifest(folder: Path, model, origin: Origin, base_model: str, names: list[str]) -> dict:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"tasks": {}}
    if manifest["tasks"] and manifest.get("base_model") != base_model:
        raise TPVError(
            f"'{folder}' holds a zoo of {manifest.get('base_model')!r}, not of {base_model!r}; "
            "build this model's zoo in another folder"
        )
    _save_origin(origin, folder / ORIGIN_FILE)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    manifest.update(
        {
            "format": FORMAT,
            "base_model": base_model,
            "dtype": dtype,
            "cpu": _machine(),
            "torch": torch.__version__,
            "commit": git_commit(),
            "origin": {
                "recipe": origin.recipe,
                "num_virtual_tokens": origin.num_virtual_tokens,
                "file": ORIGIN_FILE,
                "sha256": hashlib.sha256(origin.tensor.float().cpu().numpy().tobytes()).hexdigest(),
            },
            "command": "tpv.compose.zoo.build.build_zoo",
            "budget_note": "per task: TaskBudget (steps, learning rate, batch, input tokens) in each entry; "
            "defaults from docs/results/learnability/budgets.json",
            "at_chance_rule": AT_CHANCE_RULE,
            "planned": sorted(set(manifest.get("planned", [])) | set(names)),
            "selection": "best checkpoint on the first validation examples (selection_examples); validation = the "
            "held examples after those, and the test split: examples the selection never saw",
        }
    )
    return manifest


def _save_origin(origin: Origin, path: Path) -> None:
    if path.is_file():
        if torch.equal(Origin.load(path).tensor, origin.tensor.cpu()):
            return
        raise TPVError(
            f"'{path.parent}' holds vectors tuned from another origin; build with that origin "
            f"(origin=tpv.Origin.load('{path}')) or in another folder"
        )
    origin.save(path)


def _fingerprint(task, budget: TaskBudget, origin: Origin, base_model: str, settings: _Settings) -> str:
    from tpv.data import load_split

    data = {split: _examples_sha(load_split(task, split, settings.data_dir)) for split in ("train", "validation")}
    record = {
        "task": task.name,
        "template": task.template,
        "budget": asdict(budget),
        "origin": hashlib.sha256(origin.tensor.float().cpu().numpy().tobytes()).hexdigest(),
        "base_model": base_model,
        "data": data,
        "settings": [
            settings.selection_examples,
            settings.held_examples,
            settings.test_examples,
            settings.eval_every,
            settings.seed,
        ],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _finished(folder: Path, entry: dict | None, key: str) -> bool:
    if not entry or entry.get("fingerprint") != key:
        return False
    path = folder / entry["file"]
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == entry.get("file_sha256")


def _build_task(peft_model, tokenizer, task, budget: TaskBudget, origin, base_model, folder, settings) -> dict:
    from tpv.data import load_split

    train = load_split(task, "train", settings.data_dir)
    validation = load_split(task, "validation", settings.data_dir)
    selection = validation[: settings.selection_examples]
    held = validation[settings.selection_examples : settings.selection_examples + settings.held_examples]
    if len(held) < 2:
        raise TPVError(
            f"task {task.name!r} has {len(validation)} validation examples: {settings.selection_examples} choose the "
            f"checkpoint and at least 2 more are needed to score it; lower selection_examples or add examples"
        )
    best_step, prompt = _tune(peft_model, tokenizer, task, train, selection, budget, origin, settings)
    vector = TaskPromptVector.from_prompts(prompt, origin, task.name, base_model=base_model or None)
    file_name = f"{task.name}{VECTOR_SUFFIX}"
    vector.save(folder / file_name)
    scores = _held_scores(peft_model, tokenizer, task, held, prompt, origin, budget)
    test = _test_scores(peft_model, tokenizer, task, prompt, budget, settings)
    return {
        "task": task.name,
        "family": task.family,
        "metric": task.metric,
        "file": file_name,
        "dtype": str(next(peft_model.parameters()).dtype).removeprefix("torch."),
        # Per entry, not only at the top: a zoo rebuilt task by task mixes machines, dtypes and commits.
        "cpu": _machine(),
        "torch": torch.__version__,
        "commit": git_commit(),
        "steps": best_step,
        "budget": budget.steps,
        "batch_size": budget.batch_size,
        "learning_rate": budget.learning_rate,
        "max_length": budget.max_length,
        "train_examples": len(train),
        "selection_examples": len(selection),
        "validation_examples": len(held),
        "test_examples": test.pop("n", 0),
        "norm": vector.norm(),
        "file_sha256": hashlib.sha256((folder / file_name).read_bytes()).hexdigest(),
        "data_sha256": {"train": _examples_sha(train), "validation": _examples_sha(validation), **test.pop("sha")},
        **scores,
        **test,
    }


def _tune(
    peft_model, tokenizer, task, train, selection, budget: TaskBudget, origin, settings
) -> tuple[int, torch.Tensor]:
    from tpv.bridge.peft_io import get_prompt, set_prompt
    from tpv.compose.tuning import tune_prompt
    from tpv.engine.evaluation import evaluate

    set_prompt(peft_model, origin.tensor)
    best: dict[str, Any] = {"score": -float("inf"), "step": 0, "prompt": origin.tensor.clone()}

    def keep_best(step: int) -> None:
        if step % settings.eval_every and step != budget.steps:
            return
        score = evaluate(
            peft_model, tokenizer, task, selection, max_length=budget.max_length, max_new_tokens=ANSWER_TOKENS
        )[task.metric]
        # Strictly better only: the earliest checkpoint reaching the best score is kept, as Trainer does.
        if score > best["score"]:
            best.update(score=score, step=step, prompt=get_prompt(peft_model))

    tune_prompt(
        peft_model,
        tokenizer,
        task,
        train,
        steps=budget.steps,
        learning_rate=budget.learning_rate,
        batch_size=budget.batch_size,
        max_length=budget.max_length,
        seed=settings.seed,
        on_step=keep_best,
        progress=settings.progress,
        desc=f"tuning {task.name}",
    )
    return best["step"], best["prompt"]


def _held_scores(peft_model, tokenizer, task, held, prompt, origin, budget: TaskBudget) -> dict:
    from tpv.engine.evaluation import evaluate

    options: dict[str, Any] = {
        "max_length": budget.max_length,
        "max_new_tokens": ANSWER_TOKENS,
        "return_predictions": True,
    }
    tuned = evaluate(peft_model, tokenizer, task, held, prompt=prompt, **options)
    untrained = evaluate(peft_model, tokenizer, task, held, prompt=origin.tensor, **options)
    gold = np.asarray([_gold(task, example) for example in held])
    statistic = metric_rows(task)
    predicted, original = _numeric(tuned["predictions"]), _numeric(untrained["predictions"])
    test = _permutation_test(statistic, predicted, gold)
    margin = tuned[task.metric] - test["null_mean"]
    return {
        "validation": tuned[task.metric],
        "origin_validation": untrained[task.metric],
        "chance_level": test["null_mean"],
        "p_value": test["p_value"],
        "margin_over_chance": margin,
        "margin_over_origin": _paired_margin(statistic, predicted, original, gold),
        "at_chance": not (test["p_value"] < ALPHA and margin >= MIN_MARGIN),
    }


def _test_scores(peft_model, tokenizer, task, prompt, budget: TaskBudget, settings) -> dict:
    from tpv.data import load_split
    from tpv.engine.evaluation import evaluate

    if not settings.test_examples:
        return {"sha": {}}
    try:
        test = load_split(task, "test", settings.data_dir)[: settings.test_examples]
    except TPVError:
        return {"sha": {}}  # no test split: the manifest says so by leaving the test scores out
    scores = evaluate(
        peft_model, tokenizer, task, test, prompt=prompt, max_length=budget.max_length, max_new_tokens=ANSWER_TOKENS
    )
    return {
        "n": len(test),
        "sha": {"test": _examples_sha(test)},
        "test": scores[task.metric],
        "test_accuracy": scores.get("accuracy"),
    }


def _record(folder: Path, manifest: dict, name: str, entry: dict) -> dict:
    path = folder / MANIFEST
    # Re-read before writing: two builds on disjoint task lists may share the folder.
    if path.is_file():
        manifest["tasks"] = json.loads(path.read_text(encoding="utf-8"))["tasks"]
    manifest["tasks"][name] = entry
    manifest["tasks"] = dict(sorted(manifest["tasks"].items()))
    manifest["total_bytes"] = sum((folder / e["file"]).stat().st_size for e in manifest["tasks"].values())
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _gold(task, example):
    label = example[task.label_key]
    return task.label_id(label) if task.is_classification else float(label)


def _numeric(predictions) -> np.ndarray:
    # As tpv.engine.evaluation: an unparseable regression answer (NaN) counts as 0, the bottom of the scale.
    return np.asarray([0.0 if isinstance(p, float) and p != p else p for p in predictions])


def metric_rows(task):
    """The task's metric of one prediction vector against each row of a gold matrix (one score per row)."""
    if task.metric == "macro_f1":
        return lambda predictions, gold: _macro_f1_rows(predictions, gold, task.num_labels)
    if task.metric == "accuracy":
        return lambda predictions, gold: (gold == predictions).mean(axis=1)
    if task.metric == "pearson":
        return _pearson_rows
    raise TPVError(
        f"build_zoo cannot test task {task.name!r} for chance: its metric {task.metric!r} has no "
        "permutation test; use a classification or regression task"
    )


def _macro_f1_rows(predictions: np.ndarray, gold: np.ndarray, num_labels: int) -> np.ndarray:
    f1 = np.zeros(gold.shape[0])
    for label in range(num_labels):
        predicted, actual = predictions == label, gold == label
        true_positive = (actual & predicted).sum(axis=1)
        denominator = predicted.sum(axis=-1) + actual.sum(axis=1)
        f1 += np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)
    return f1 / num_labels


def _pearson_rows(predictions: np.ndarray, gold: np.ndarray) -> np.ndarray:
    centred = predictions - predictions.mean()
    rows = gold - gold.mean(axis=1, keepdims=True)
    denominator = np.sqrt((centred**2).sum() * (rows**2).sum(axis=1))
    return np.where(denominator > 0, rows @ centred / np.maximum(denominator, 1e-12), 0.0)


def _permutation_test(statistic, predictions: np.ndarray, gold: np.ndarray) -> dict:
    # One-sided: how often does shuffling the labels against fixed predictions score as well as the real pairing?
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(gold) for _ in range(PERMUTATIONS)])
    observed = statistic(predictions, gold[None, :])[0]
    null = statistic(predictions, shuffled)
    return {
        "null_mean": float(null.mean()),
        "p_value": float((1 + (null >= observed - 1e-12).sum()) / (1 + PERMUTATIONS)),
    }


def _paired_margin(statistic, tuned: np.ndarray, origin: np.ndarray, gold: np.ndarray) -> dict:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(gold), (BOOTSTRAP, len(gold)))
    difference = statistic(tuned, gold[None, :])[0] - statistic(origin, gold[None, :])[0]
    spread = [statistic(tuned[r], gold[r][None, :])[0] - statistic(origin[r], gold[r][None, :])[0] for r in rows]
    return {"difference": float(difference), "se": float(np.std(spread, ddof=1))}


def _examples_sha(examples) -> str:
    return hashlib.sha256(json.dumps(list(examples), sort_keys=True, default=str).encode()).hexdigest()


def _machine() -> str:
    from tpv.bridge.precision import hardware_summary

    return f"{hardware_summary()}, {platform.machine()}"


def _say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, flush=True)
