"""From "I have vectors" to "my new task starts well" in one call: rank sources, pick k and λ, return a start.

:func:`auto_init` scores every candidate source vector on the target task's *validation* examples (the
prompt ``origin + τ_i``, zero shots, rank scoring, one model whose soft prompt is swapped per candidate),
optionally also ranks them by cosine to a briefly tuned target vector (SPoT-style retrieval), then searches
how many of the best to sum (k) and by how much to scale the sum (λ) on the same validation examples. Test
data is never read. If no combination beats the random origin on validation, the plan says so and starts from
the origin: a start no better than noise is not worth the sources' bias.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tpv.bridge.vector import TaskPromptVector
from tpv.compose.selection import VECTOR_SUFFIX
from tpv.core._io import atomic_write_text
from tpv.core.errors import TPVError
from tpv.core.origin import Origin, make_origin
from tpv.core.progress import progress_bar
from tpv.core.vector import combine

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tpv.data import Task

__all__ = ["InitPlan", "SourceScore", "auto_init", "load_sources"]

DEFAULT_GRID = (0.25, 0.5, 0.75, 1.0)
DEFAULT_MAX_K = 3
DEFAULT_MAX_VALIDATION = 200
PLAN_FILENAME = "tpv_auto_init.json"


@dataclass(frozen=True)
class SourceScore:
    """One candidate's row of the ranked table: its validation score at λ=1 and, with retrieval, its cosine."""

    source: str
    score: float
    cosine: float | None = None


@dataclass
class InitPlan:
    """What :func:`auto_init` found: the ranked sources, the chosen ones, λ, and the start they give.

    Attributes:
        task: the target task's name.
        metric: the validation metric every score is in (the task's main metric).
        table: every candidate, best first.
        chosen: the sources summed for the start (empty when the origin is kept).
        scale: λ of the chosen sum (0 when the origin is kept).
        origin_score: validation score of the random origin alone.
        start_score: validation score of the chosen start (``origin_score`` when the origin is kept).
        n_validation: how many validation examples every score was measured on.
        origin: the origin the start is built on.
        vector: the chosen sum (``None`` when the origin is kept).
        searched: ``(k, λ, score)`` of every combination tried, in order.
    """

    task: str
    metric: str
    table: list[SourceScore]
    chosen: list[str]
    scale: float
    origin_score: float
    start_score: float
    n_validation: int
    origin: Origin = field(repr=False)
    vector: TaskPromptVector | None = field(default=None, repr=False)
    searched: list[tuple[int, float, float]] = field(default_factory=list, repr=False)
    _peft_model: object = field(default=None, repr=False)

    @property
    def beats_origin(self) -> bool:
        """True when the chosen start scored above the random origin on validation."""
        return bool(self.chosen)

    @property
    def prompt(self) -> torch.Tensor:
        """The start prompt ``origin + λ·Σ τ`` (the origin itself when no source helped)."""
        return self.origin.tensor.clone() if self.vector is None else self.vector.apply_to(self.origin, self.scale)

    def peft_model(self, model=None):
        """A trainable ``PeftModel`` whose soft prompt is the start, with the origin recorded.

        Args:
            model: a base model to wrap; by default the model :func:`auto_init` scored with, re-used.

        Returns:
            A ``PeftModel`` that :func:`tpv.engine.training.train_prompt` (``origin=None``) or a ``Trainer`` continues;
            vectors read from it afterwards are measured from :attr:`origin`.
        """
        from tpv.bridge.peft_io import init_prompt_tuning, record_origin, set_prompt

        if model is None:
            if self._peft_model is None:
                raise TPVError("this plan holds no model (it was loaded from a file); pass peft_model(model)")
            set_prompt(self._peft_model, self.prompt)
            record_origin(self._peft_model, self.origin)
            return self._peft_model
        return init_prompt_tuning(model, self.vector, origin=self.origin, scale=self.scale)

    def save_pretrained(self, folder: str | os.PathLike, model=None) -> Path:
        """Write a ready-to-train PEFT adapter (with ``tpv_origin.safetensors``) and the plan as JSON.

        Returns:
            The folder, which ``PeftModel.from_pretrained`` and ``TaskPromptVector.from_peft`` read.
        """
        folder = Path(folder)
        self.peft_model(model).save_pretrained(str(folder))
        atomic_write_text(folder / PLAN_FILENAME, json.dumps(self.to_dict(), indent=1) + "\n")
        return folder

    def to_dict(self) -> dict:
        """The plan as JSON-ready data (``tpv init --auto --json`` prints it)."""
        return {
            "task": self.task,
            "metric": self.metric,
            "n_validation": self.n_validation,
            "origin": self.origin.recipe,
            "origin_score": self.origin_score,
            "start_score": self.start_score,
            "beats_origin": self.beats_origin,
            "chosen": self.chosen,
            "scale": self.scale,
            "table": [{"source": r.source, "score": r.score, "cosine": r.cosine} for r in self.table],
            "searched": [{"k": k, "scale": s, "score": v} for k, s, v in self.searched],
        }

    def __str__(self) -> str:
        with_cosine = any(row.cosine is not None for row in self.table)
        width = max([len("source"), len("origin (random)")] + [len(row.source) for row in self.table])
        lines = [f"{'rank':>4}  {'source':<{width}}  {'val ' + self.metric:>12}" + ("  cosine" if with_cosine else "")]
        for rank, row in enumerate(self.table, start=1):
            mark = "*" if row.source in self.chosen else " "
            cos = f"  {row.cosine:6.3f}" if row.cosine is not None else ("       —" if with_cosine else "")
            lines.append(f"{rank:>3}{mark}  {row.source:<{width}}  {row.score:12.4f}{cos}")
        lines.append(f"{'':>4}  {'origin (random)':<{width}}  {self.origin_score:12.4f}")
        if self.chosen:
            lines.append(
                f"start: origin + {self.scale:g}·({' + '.join(self.chosen)})  validation {self.metric} "
                f"{self.start_score:.4f} vs origin {self.origin_score:.4f} ({self.n_validation} examples)"
            )
        else:
            lines.append(
                f"start: the random origin: no combination of the {len(self.table)} sources beat its "
                f"validation {self.metric} {self.origin_score:.4f} ({self.n_validation} examples)"
            )
        return "\n".join(lines)


def auto_init(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task,
    sources="zoo",
    *,
    validation: Sequence[Mapping] | None = None,
    train: Sequence[Mapping] | None = None,
    origin: Origin | int | None = None,
    k: int | None = None,
    max_k: int = DEFAULT_MAX_K,
    grid: Sequence[float] = DEFAULT_GRID,
    exclude: Sequence[str] = (),
    merge_method: str = "sum",
    merge_options: Mapping | None = None,
    retrieval_steps: int = 0,
    max_validation: int | None = DEFAULT_MAX_VALIDATION,
    method: str = "rank",
    batch_size: int = 32,
    max_length: int | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> InitPlan:
    """Find the best start for prompt tuning ``task`` among source vectors, on validation data only.

    Args:
        model: a base transformers model (not a PeftModel); it is wrapped once for every score.
        tokenizer: its tokenizer.
        task: a registered task name, or a :class:`tpv.data.Task` (e.g. from ``Task.from_files``).
        sources: ``"zoo"`` (the vectors shipped with tpv, default model only), a dict name → vector, a folder of
            ``*.tpv.safetensors`` files, or a list of such files and PEFT adapter folders.
        validation: the target's labelled validation examples; by default its ``validation`` split. At least
            32 make the ranking meaningful; only the first ``max_validation`` are used.
        train: the target's training examples; needed only for ``retrieval_steps``.
        origin: the random origin to build on: an :class:`Origin`, or an int seed for
            ``make_origin(model, tokens, seed)`` (default 0). Vectors do not depend on their origin, so zoo
            vectors apply to it too; pass ``tpv.zoo.origin()`` to build on the one the zoo was tuned from.
        k: how many of the best-ranked sources to sum; by default every k from 1 to ``max_k`` is tried.
        max_k: the largest k tried when ``k`` is not given.
        grid: the λ values tried for each k.
        exclude: source names to leave out, e.g. the target itself.
        merge_method, merge_options: how the best k are combined: ``"sum"`` (the paper's) or another
            :func:`tpv.merge` method (``"ties"``, ``"dare_ties"``, …) with its options (e.g. ``{"density": 0.3}``).
        retrieval_steps: when > 0, also tune a target prompt for this many steps on ``train`` and report each
            source's cosine to it (SPoT-style retrieval); the ranking stays by validation score.
        max_validation: cap on validation examples (``None``: all).
        method, batch_size: how candidates are scored (see :func:`tpv.engine.evaluation.evaluate`).
        max_length: tokens kept per input (default: the engine's 256); fewer make long texts cheaper to score.
        data_dir: where task splits are read from (default ``TPV_DATA_DIR``).
        progress: show progress bars while scoring.

    Returns:
        An :class:`InitPlan`; ``plan.peft_model()`` is ready to train, ``plan.save_pretrained(dir)`` writes it.

    Example:
        >>> plan = auto_init(model, tokenizer, "imdb", sources="zoo", exclude=["imdb"])  # doctest: +SKIP
        >>> print(plan)  # doctest: +SKIP
    """
    from tpv.bridge.peft_io import init_prompt_tuning, set_prompt
    from tpv.data.encoding import resolve_task
    from tpv.engine.evaluation import evaluate

    task = resolve_task(task)
    _check_options(k, max_k, grid, retrieval_steps, max_validation, batch_size, max_length)
    from tpv.compose.merge import MERGE_METHODS

    if merge_method not in MERGE_METHODS:
        raise TPVError(f"unknown merge_method {merge_method!r}; use one of {sorted(MERGE_METHODS)}")
    examples = _validation(task, validation, max_validation, data_dir)
    candidates = load_sources(sources, exclude=exclude, target=task.name)
    origin = _origin(model, origin, candidates)
    for name, vector in candidates.items():
        if vector.shape != tuple(origin.shape):
            raise TPVError(
                f"source {name!r} has shape {vector.shape} but the origin has {tuple(origin.shape)}; pass sources "
                f"tuned on this model with {origin.num_virtual_tokens} virtual tokens"
            )
    peft_model = init_prompt_tuning(model, origin=origin)
    cache: dict[bytes, float] = {}
    length: dict[str, Any] = {} if max_length is None else {"max_length": max_length}

    def score(prompt: torch.Tensor) -> float:
        key = prompt.numpy().tobytes()
        if key not in cache:
            set_prompt(peft_model, prompt)
            cache[key] = float(
                evaluate(peft_model, tokenizer, task, examples, method=method, batch_size=batch_size, **length)[
                    task.metric
                ]
            )
        return cache[key]

    origin_score = score(origin.tensor)
    scores = {
        name: score(vector.apply_to(origin))
        for name, vector in progress_bar(
            candidates.items(), progress, f"scoring sources on {task.name}", unit="prompt", leave=True
        )
    }
    cosines = (
        _cosines(model, tokenizer, task, train, examples, origin, candidates, retrieval_steps, progress, peft_model)
        if retrieval_steps
        else {}
    )
    table = sorted(
        (SourceScore(name, scores[name], cosines.get(name)) for name in candidates),
        key=lambda row: (-row.score, -(row.cosine or 0.0), row.source),
    )
    searched = []
    best = (origin_score, 0, 0.0)  # (score, k, λ): the origin unless something beats it
    ks = [k] if k is not None else list(range(1, min(max_k, len(table)) + 1))
    trials = [(n, scale) for n in ks for scale in grid]
    combined = {
        n: _combine({row.source: candidates[row.source] for row in table[:n]}, merge_method, merge_options) for n in ks
    }
    for n, scale in progress_bar(trials, progress, "searching k and λ", unit="prompt", leave=True):
        value = score(combined[n].apply_to(origin, scale))
        searched.append((n, float(scale), value))
        # Strictly better only: ties keep the smaller k and λ, and the origin beats an equal combination.
        if value > best[0]:
            best = (value, n, float(scale))
    start_score, n, scale = best
    chosen = [row.source for row in table[:n]]
    start = combined[n] if chosen else None
    set_prompt(peft_model, origin.tensor if start is None else start.apply_to(origin, scale))
    return InitPlan(
        task=task.name,
        metric=task.metric,
        table=table,
        chosen=chosen,
        scale=scale,
        origin_score=origin_score,
        start_score=start_score,
        n_validation=len(examples),
        origin=origin,
        vector=start,
        searched=searched,
        _peft_model=peft_model,
    )


def _combine(vectors: dict, method: str, options) -> TaskPromptVector:
    if method == "sum":
        return combine(list(vectors.values()))
    from tpv.compose.merge import merge

    return merge(vectors, method=method, **dict(options or {}))


def load_sources(sources, *, exclude: Sequence[str] = (), target: str | None = None) -> dict[str, TaskPromptVector]:
    """Candidate vectors by name from ``"zoo"``, a dict, a folder of vector files, or a list of files/adapter folders.

    Args:
        sources: see :func:`auto_init`.
        exclude: names to leave out.
        target: the target task's name, only for messages.

    Returns:
        ``{name: vector}`` with at least one entry.
    """
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    if isinstance(sources, str) and sources == "zoo":
        from tpv.compose import zoo

        present = set(zoo.manifest()["tasks"])
        # Vectors marked at_chance stay candidates: auto_init scores each on the target's validation data anyway.
        vectors = zoo.vectors(exclude=[name for name in exclude if name in present], include_at_chance=True)
    elif isinstance(sources, Mapping):
        vectors = {}
        for name, vector in sources.items():
            if not isinstance(vector, TaskPromptVector):
                raise TPVError(f"source {name!r} is a {type(vector).__name__}; pass TaskPromptVectors")
            vectors[str(name)] = vector
    elif isinstance(sources, (str, os.PathLike)):
        vectors = _from_path(Path(sources), folder_of_vectors=True)
    elif isinstance(sources, Sequence):
        vectors = {}
        for item in sources:
            if not isinstance(item, (str, os.PathLike)):
                raise TPVError(f"source {item!r} is a {type(item).__name__}; pass file or folder paths in the list")
            for name, vector in _from_path(Path(item), folder_of_vectors=False).items():
                if name in vectors:
                    raise TPVError(f"two sources are named {name!r}; rename one of the files")
                vectors[name] = vector
    else:
        raise TPVError(
            f"sources must be 'zoo', a dict name → vector, a folder or a list of paths, got {type(sources).__name__}"
        )
    vectors = {name: vector for name, vector in vectors.items() if name not in exclude}
    if not vectors:
        raise TPVError(
            f"no candidate source vectors for {target or 'the target'} in {sources!r:.200} after excluding "
            f"{exclude}; pass at least one vector"
        )
    return vectors


def _from_path(path: Path, folder_of_vectors: bool) -> dict[str, TaskPromptVector]:
    if path.is_file():
        if not path.name.endswith(VECTOR_SUFFIX):
            raise TPVError(f"source file '{path}' is not a *{VECTOR_SUFFIX} file; pass vector files or PEFT folders")
        return {_name(path.name[: -len(VECTOR_SUFFIX)], TaskPromptVector.load(path)): TaskPromptVector.load(path)}
    if not path.is_dir():
        raise TPVError(f"no such source file or folder: '{path}'")
    if (path / "adapter_config.json").is_file():
        vector = TaskPromptVector.from_peft(path)
        return {_name(path.name, vector): vector}
    if folder_of_vectors:
        files = sorted(path.glob(f"*{VECTOR_SUFFIX}")) or sorted(path.glob(f"*/*{VECTOR_SUFFIX}"))
        if files:
            vectors = {}
            for file in files:
                vector = TaskPromptVector.load(file)
                vectors[_name(file.name[: -len(VECTOR_SUFFIX)], vector)] = vector
            return vectors
    raise TPVError(
        f"'{path}' holds no *{VECTOR_SUFFIX} files and no PEFT adapter (adapter_config.json); pass "
        "a folder of vector files, vector files, or adapter folders"
    )


def _name(stem: str, vector: TaskPromptVector) -> str:
    # A single-task vector is named by its task, whatever the file is called; a combination by its file.
    if len(vector.tasks) == 1 and next(iter(vector.tasks.values())) == 1.0:
        return next(iter(vector.tasks))
    return stem


def _check_options(k, max_k, grid, retrieval_steps, max_validation, batch_size, max_length) -> None:
    for name, value, allow_none in (
        ("k", k, True),
        ("max_k", max_k, False),
        ("batch_size", batch_size, False),
        ("max_validation", max_validation, True),
        ("max_length", max_length, True),
    ):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TPVError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    if isinstance(retrieval_steps, bool) or not isinstance(retrieval_steps, int) or retrieval_steps < 0:
        raise TPVError(f"retrieval_steps must be an int ≥ 0 (0 turns retrieval off), got {retrieval_steps!r}")
    try:
        values = [float(value) for value in grid]
    except (TypeError, ValueError):
        raise TPVError(f"grid must be a list of numbers, e.g. {list(DEFAULT_GRID)}, got {grid!r}") from None
    if not values or any(not (value > 0) or value != value or value == float("inf") for value in values):
        raise TPVError(
            f"grid must be non-empty positive finite λ values (λ=0 is the origin, always scored), got {grid!r}"
        )


def _validation(task: Task, validation, max_validation, data_dir) -> list:
    from tpv.compose.search import refuse_test_examples
    from tpv.data import load_split

    if validation is None:
        validation = load_split(task, "validation", data_dir)
    if isinstance(validation, (str, bytes)) or not isinstance(validation, Sequence):
        raise TPVError(f"validation must be a list of example dicts, got {type(validation).__name__}")
    examples = list(validation)[:max_validation] if max_validation else list(validation)
    if not examples:
        raise TPVError(f"no validation examples for task {task.name!r}; pass validation=[...] (32 or more)")
    for number, example in enumerate(examples, start=1):
        try:
            task.format(example)
        except TPVError as error:
            raise TPVError(f"validation example {number}: {error}") from None
    from tpv.data import TASKS

    if TASKS.get(task.name) is task:
        # A λ and k chosen on test examples would make every later test score optimistic.
        refuse_test_examples(task.name, examples, data_dir)
    return examples


def _origin(model, origin, candidates) -> Origin:
    if isinstance(origin, Origin):
        return origin
    if origin is not None and (isinstance(origin, bool) or not isinstance(origin, int)):
        raise TPVError(f"origin must be a tpv.Origin or an int seed, got {origin!r}")
    tokens = {vector.num_virtual_tokens for vector in candidates.values()}
    if len(tokens) != 1:
        raise TPVError(f"the sources have different prompt lengths {sorted(tokens)}; pass sources of one length")
    return make_origin(model, tokens.pop(), seed=origin or 0)


def _cosines(model, tokenizer, task, train, examples, origin, candidates, steps, progress, peft_model) -> dict:
    from tpv.engine.training import train_prompt

    if not train:
        raise TPVError(
            f"retrieval_steps={steps} tunes a target prompt on training examples; pass train=[...] or retrieval_steps=0"
        )
    from tpv.bridge.peft_io import set_prompt

    set_prompt(peft_model, origin.tensor)
    with tempfile.TemporaryDirectory(prefix="tpv-retrieval-") as folder:
        result = train_prompt(
            peft_model,
            tokenizer,
            task,
            None,
            list(train),
            output_dir=folder,
            max_steps=steps,
            progress=progress,
            training_args={"save_strategy": "no"},
        )
    return {name: result.vector.cosine(vector) for name, vector in candidates.items()}
