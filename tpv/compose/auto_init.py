"""From "I have vectors" to "my new task starts well" in one call, without picking noise.

:func:`auto_init` splits the target's *validation* examples in two (stratified by label, fixed seed): the
**choosing** part ranks every candidate source (the prompt ``origin + τ_i``, zero shots, one model whose soft
prompt is swapped per candidate) and then searches how many of the best to sum (k) and by how much to scale
the sum (λ), both by successive halving (all candidates on a few examples, the better half on twice as many,
…), so the cost grows with the log of the number of candidates; the **confirming** part, never seen by the
choice, then compares the best start with the random origin by a paired bootstrap. The start is accepted only
if the one-sided lower confidence bound of (start − origin) is above 0; otherwise the origin is kept, and the
plan says why. With ``probe_steps`` the origin and the best few starts are also tuned for a few steps and
compared after them (what a start is for). Test data is never read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tpv.bridge.hub import resolve_sources
from tpv.bridge.vector import TaskPromptVector
from tpv.compose.selection import (
    VECTOR_SUFFIX,
    PairedInterval,
    halving_rungs,
    paired_bootstrap,
    split_examples,
    successive_halving,
)
from tpv.core._io import atomic_write_text
from tpv.core.errors import TPVError, TPVFileNotFoundError
from tpv.core.origin import Origin, make_origin
from tpv.core.progress import progress_bar
from tpv.core.vector import combine

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tpv.data import Task

__all__ = ["Decision", "InitPlan", "SourceScore", "auto_init", "load_sources"]

DEFAULT_GRID = (0.25, 0.5, 0.75, 1.0)
DEFAULT_MAX_K = 3
DEFAULT_MAX_VALIDATION = 200
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
PLAN_FILENAME = "tpv_auto_init.json"
ORIGIN_LABEL = "origin (random)"


@dataclass(frozen=True)
class SourceScore:
    """One candidate's row of the ranked table: its choosing-part score at λ=1, on how many examples, and
    (with retrieval) its cosine to a briefly tuned target vector."""

    source: str
    score: float
    cosine: float | None = None
    n: int = 0


@dataclass(frozen=True)
class Decision:
    """Why :func:`auto_init` accepted a start or kept the origin.

    Attributes:
        candidate: the best start on the choosing examples, e.g. ``"0.5·(sst2 + imdb)"``.
        k, scale: its number of sources and λ.
        choose_start, choose_origin: its and the origin's scores on the choosing examples.
        confirm_start, confirm_origin: the same on the confirming examples (``confirm_start`` is ``None`` when
            the candidate did not even beat the origin on the choosing examples, so it was not confirmed).
        interval: the paired-bootstrap comparison on the confirming examples (``None`` when not confirmed).
        accepted: True when the start is used.
        reason: one sentence saying why.
        probe_steps: training steps run from each finalist before scoring (0: zero-shot scores).
    """

    candidate: str
    k: int
    scale: float
    choose_start: float
    choose_origin: float
    confirm_start: float | None
    confirm_origin: float
    interval: PairedInterval | None
    accepted: bool
    reason: str
    probe_steps: int = 0

    def to_dict(self) -> dict:
        """The decision as JSON-ready data."""
        interval = self.interval
        return {
            "candidate": self.candidate,
            "k": self.k,
            "scale": self.scale,
            "choose": {"start": self.choose_start, "origin": self.choose_origin},
            "confirm": {"start": self.confirm_start, "origin": self.confirm_origin},
            "interval": None
            if interval is None
            else {
                "difference": interval.difference,
                "lower": interval.lower,
                "confidence": interval.confidence,
                "resamples": interval.resamples,
                "n": interval.n,
            },
            "accepted": self.accepted,
            "reason": self.reason,
            "probe_steps": self.probe_steps,
        }


@dataclass
class InitPlan:
    """What :func:`auto_init` found: the ranked sources, the chosen ones, λ, the start they give, and why.

    Attributes:
        task: the target task's name.
        metric: the validation metric every score is in (the task's main metric).
        table: every candidate source, those scored on the most choosing examples first, then by score.
        chosen: the sources summed for the start (empty when the origin is kept).
        scale: λ of the chosen sum (0 when the origin is kept).
        origin_score: the origin's score on the confirming examples (after ``probe_steps`` steps when probing).
        start_score: the start's score there (``origin_score`` when the origin is kept).
        n_validation: validation examples used (``n_choose + n_confirm``).
        origin: the origin the start is built on.
        vector: the chosen sum (``None`` when the origin is kept).
        searched: ``(k, λ, score, n)`` of every combination tried on the choosing examples, best first.
        decision: the comparison on the confirming examples and why the start was accepted or refused.
        n_choose, n_confirm: the sizes of the two parts of the validation examples.
        scored_examples: how many (prompt, example) pairs were scored in all: the cost, deterministic.
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
    searched: list[tuple[int, float, float, int]] = field(default_factory=list, repr=False)
    decision: Decision | None = field(default=None, repr=False)
    n_choose: int = 0
    n_confirm: int = 0
    scored_examples: int = 0
    _peft_model: object = field(default=None, repr=False)

    @property
    def beats_origin(self) -> bool:
        """True when a start was accepted: it beat the origin on the confirming examples with confidence."""
        return bool(self.chosen)

    @property
    def cost(self) -> float:
        """The scoring cost in units of one ``evaluate`` of the ``n_validation`` examples."""
        return self.scored_examples / self.n_validation if self.n_validation else 0.0

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
            "n_choose": self.n_choose,
            "n_confirm": self.n_confirm,
            "origin": self.origin.recipe,
            "origin_score": self.origin_score,
            "start_score": self.start_score,
            "beats_origin": self.beats_origin,
            "chosen": self.chosen,
            "scale": self.scale,
            "decision": None if self.decision is None else self.decision.to_dict(),
            "scored_examples": self.scored_examples,
            "cost": self.cost,
            "table": [{"source": r.source, "score": r.score, "n": r.n, "cosine": r.cosine} for r in self.table],
            "searched": [{"k": k, "scale": s, "score": v, "n": n} for k, s, v, n in self.searched],
        }

    def __str__(self) -> str:
        with_cosine = any(row.cosine is not None for row in self.table)
        width = max([len("source"), len(ORIGIN_LABEL)] + [len(row.source) for row in self.table])
        header = f"{'rank':>4}  {'source':<{width}}  {'choose ' + self.metric:>15}  {'n':>4}"
        lines = [header + ("  cosine" if with_cosine else "")]
        for rank, row in enumerate(self.table, start=1):
            mark = "*" if row.source in self.chosen else " "
            cos = f"  {row.cosine:6.3f}" if row.cosine is not None else ("       —" if with_cosine else "")
            lines.append(f"{rank:>3}{mark}  {row.source:<{width}}  {row.score:15.4f}  {row.n:>4}{cos}")
        if self.decision is not None:
            lines.append(f"{'':>4}  {ORIGIN_LABEL:<{width}}  {self.decision.choose_origin:15.4f}  {self.n_choose:>4}")
            lines += _decision_lines(self.decision, self.metric, self.n_choose, self.n_confirm)
        lines.append(
            f"cost: {self.scored_examples} scored examples = {self.cost:.1f} × one evaluate of the "
            f"{self.n_validation} validation examples"
        )
        return "\n".join(lines)


def _decision_lines(decision: Decision, metric: str, n_choose: int, n_confirm: int) -> list[str]:
    after = f" after {decision.probe_steps} training steps" if decision.probe_steps else ""
    lines = [
        f"choose  ({n_choose} ex.){after}: best start {decision.candidate} {metric} {decision.choose_start:.4f} "
        f"vs origin {decision.choose_origin:.4f}"
    ]
    if decision.interval is not None and decision.confirm_start is not None:
        interval = decision.interval
        lines.append(
            f"confirm ({n_confirm} ex.){after}: start {decision.confirm_start:.4f} vs origin "
            f"{decision.confirm_origin:.4f}: difference {interval.difference:+.4f}, "
            f"{interval.confidence:.0%} lower bound {interval.lower:+.4f} (paired bootstrap, {interval.resamples})"
        )
    verdict = f"origin + {decision.candidate}" if decision.accepted else "the random origin"
    lines.append(f"start: {verdict}: {decision.reason}")
    return lines


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
    include_at_chance: bool = False,
    merge_method: str = "sum",
    merge_options: Mapping | None = None,
    retrieval_steps: int = 0,
    probe_steps: int = 0,
    probe_top: int = 2,
    confirm_fraction: float = 0.5,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    max_validation: int | None = DEFAULT_MAX_VALIDATION,
    method: str = "rank",
    batch_size: int = 32,
    max_length: int | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> InitPlan:
    """Find a start for prompt tuning ``task`` among source vectors that is better than the random origin, on
    validation data only, or keep the origin.

    Args:
        model: a base transformers model (not a PeftModel); it is wrapped once for every score.
        tokenizer: its tokenizer.
        task: a registered task name, or a :class:`tpv.data.Task` (e.g. from ``Task.from_files``).
        sources: ``"zoo"`` (the vectors shipped with tpv, default model only), a zoo folder written by
            :func:`tpv.build_zoo`, a dict name → vector, a folder of ``*.tpv.safetensors`` files, or a list of
            such files and PEFT adapter folders; a Hub repo id (``"user/zoo"``) wherever a folder goes.
        validation: the target's labelled validation examples; by default its ``validation`` split. Only the
            first ``max_validation`` are used. With fewer than about 100 only a large gain is confirmed, so the
            origin is kept more often: that is the rule working, not failing.
        train: the target's training examples; needed for ``retrieval_steps`` and ``probe_steps``.
        origin: the random origin to build on: an :class:`Origin`, or an int seed for
            ``make_origin(model, tokens, seed)`` (default 0). Vectors do not depend on their origin, so zoo
            vectors apply to it too; pass ``tpv.zoo.origin()`` to build on the one the zoo was tuned from.
        k: how many of the best-ranked sources to sum; by default every k from 1 to ``max_k`` is tried.
        max_k: the largest k tried when ``k`` is not given.
        grid: the λ values tried for each k.
        exclude: source names to leave out, e.g. the target itself.
        include_at_chance: also consider zoo vectors whose manifest marks them ``at_chance`` (their tuned prompt
            never left chance on their own task; left out by default).
        merge_method, merge_options: how the best k are combined: ``"sum"`` (the paper's) or another
            :func:`tpv.merge` method (``"ties"``, ``"dare_ties"``, …) with its options (e.g. ``{"density": 0.3}``).
        retrieval_steps: when > 0, also tune a target prompt for this many steps on ``train`` and report each
            source's cosine to it (SPoT-style retrieval); the ranking stays by validation score.
        probe_steps: when > 0, tune the origin and the ``probe_top`` best starts for this many steps on ``train``
            (learning rate 0.3, batch 8, the same batches for each) and choose and confirm by the scores after
            those steps instead of the zero-shot ones.
        probe_top: how many of the best starts are probed besides the origin.
        confirm_fraction: the share of the validation examples kept aside to confirm the choice.
        confidence: the one-sided level of the paired-bootstrap lower bound a start must have above 0.
        seed: the seed of the split, the bootstrap and the probes' data order (the same inputs give the same plan).
        max_validation: cap on validation examples (``None``: all).
        method, batch_size: how candidates are scored (see :func:`tpv.engine.evaluation.evaluate`).
        max_length: tokens kept per input (default: the engine's 256); fewer make long texts cheaper to score.
        data_dir: where task splits are read from (default ``TPV_DATA_DIR``).
        progress: show progress bars while scoring.
        revision, token, cache_dir, local_files_only: for Hub repo ids in ``sources``, as in ``from_pretrained``.

    Returns:
        An :class:`InitPlan`; ``plan.peft_model()`` is ready to train, ``plan.save_pretrained(dir)`` writes it;
        ``plan.decision`` says why the start was accepted or the origin kept.

    Example:
        >>> plan = auto_init(model, tokenizer, "imdb", sources="zoo", exclude=["imdb"])  # doctest: +SKIP
        >>> print(plan)  # doctest: +SKIP
    """
    from tpv.bridge.peft_io import init_prompt_tuning, set_prompt
    from tpv.data.encoding import resolve_task

    task = resolve_task(task)
    _check_options(k, max_k, grid, retrieval_steps, max_validation, batch_size, max_length, probe_steps, probe_top)
    _check_merge_method(merge_method)
    if (retrieval_steps or probe_steps) and not train:
        steps = f"retrieval_steps={retrieval_steps}" if retrieval_steps else f"probe_steps={probe_steps}"
        raise TPVError(f"{steps} tunes prompts on training examples; pass train=[...] or set it to 0")
    examples = _validation(task, validation, max_validation, data_dir)
    resolved = resolve_sources(
        sources, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only
    )
    candidates, zoo_manifest = _load_candidates(resolved, exclude, task.name, include_at_chance)
    origin = _origin(model, origin, candidates)
    _check_shapes(candidates, origin, sources, zoo_manifest)
    peft_model = init_prompt_tuning(model, origin=origin)
    length: dict[str, Any] = {} if max_length is None else {"max_length": max_length}
    scorer = _Scorer(peft_model, tokenizer, task, examples, {"method": method, "batch_size": batch_size, **length})
    choose, confirm = split_examples(scorer.strata, confirm_fraction, seed)
    cosines = (
        _cosines(peft_model, tokenizer, task, train, origin, candidates, retrieval_steps, seed, length, progress)
        if retrieval_steps
        else {}
    )
    table = _rank_sources(scorer, candidates, origin, choose, cosines, task.name, progress)
    ks = [k] if k is not None else list(range(1, min(max_k, len(table)) + 1))
    combined = {
        n: _combine({row.source: candidates[row.source] for row in table[:n]}, merge_method, merge_options) for n in ks
    }
    names = {n: [row.source for row in table[:n]] for n in ks}
    searched = _search(scorer, combined, origin, [float(scale) for scale in grid], choose, progress)
    settings = _Confirming(choose, confirm, confidence, seed)
    if probe_steps:
        probe = _Probe(tokenizer, task, list(train or ()), probe_steps, probe_top, seed, length, progress)
        decision = _decide_after_probes(scorer, combined, names, origin, searched, settings, probe)
    else:
        decision = _decide(scorer, combined, names, origin, searched, settings)
    start = combined[decision.k] if decision.accepted else None
    set_prompt(peft_model, origin.tensor if start is None else start.apply_to(origin, decision.scale))
    return InitPlan(
        task=task.name,
        metric=task.metric,
        table=table,
        chosen=[row.source for row in table[: decision.k]] if decision.accepted else [],
        scale=decision.scale if decision.accepted else 0.0,
        origin_score=decision.confirm_origin,
        start_score=decision.confirm_start
        if decision.accepted and decision.confirm_start is not None
        else decision.confirm_origin,
        n_validation=len(examples),
        origin=origin,
        vector=start,
        searched=searched,
        decision=decision,
        n_choose=len(choose),
        n_confirm=len(confirm),
        scored_examples=scorer.scored,
        _peft_model=peft_model,
    )


class _Scorer:
    """Scores prompts on subsets of the validation examples, keeping every prediction, so a prompt scored on
    more examples later pays only for the new ones; ``scored`` counts the (prompt, example) pairs run."""

    def __init__(self, peft_model, tokenizer, task: Task, examples: list, options: dict):
        self.peft_model, self.tokenizer, self.task, self.examples, self.options = (
            peft_model,
            tokenizer,
            task,
            examples,
            options,
        )
        self.references = [example[task.label_key] for example in examples]
        self.gold = [task.label_id(r) for r in self.references] if task.is_classification else list(self.references)
        self.strata = self.gold if task.is_classification else [0] * len(examples)
        self.scored = 0
        self._predictions: dict[bytes, dict[int, Any]] = {}

    def predictions(self, prompt: torch.Tensor, rows: Sequence[int]) -> list:
        from tpv.bridge.peft_io import set_prompt
        from tpv.engine.evaluation import evaluate

        known = self._predictions.setdefault(prompt.detach().cpu().float().numpy().tobytes(), {})
        missing = [row for row in rows if row not in known]
        if missing:
            set_prompt(self.peft_model, prompt)
            result = evaluate(
                self.peft_model,
                self.tokenizer,
                self.task,
                [self.examples[row] for row in missing],
                return_predictions=True,
                **self.options,
            )
            known.update(zip(missing, result["predictions"]))
            self.scored += len(missing)
        return [known[row] for row in rows]

    def knows(self, prompt: torch.Tensor, rows: Sequence[int]) -> bool:
        known = self._predictions.get(prompt.detach().cpu().float().numpy().tobytes(), {})
        return all(row in known for row in rows)

    def score(self, prompt: torch.Tensor, rows: Sequence[int]) -> float:
        from tpv.engine.evaluation import score_predictions

        predictions = self.predictions(prompt, rows)
        references = [self.references[row] for row in rows]
        return float(score_predictions(self.task, predictions, references, "")[self.task.metric])

    def compare(self, start: torch.Tensor, origin: torch.Tensor, rows: Sequence[int], settings) -> PairedInterval:
        def numeric(values):
            # As score_predictions does: an unparseable regression answer counts as 0, the bottom of the scale.
            return [0.0 if isinstance(v, float) and v != v else v for v in values] if self.task.regression else values

        labels = list(range(self.task.num_labels)) if self.task.is_classification and self.task.num_labels else None
        return paired_bootstrap(
            self.task.metric,
            numeric(self.predictions(start, rows)),
            numeric(self.predictions(origin, rows)),
            [self.gold[row] for row in rows],
            labels=labels,
            confidence=settings.confidence,
            resamples=BOOTSTRAP_RESAMPLES,
            seed=settings.seed,
        )


@dataclass(frozen=True)
class _Confirming:
    choose: list[int]
    confirm: list[int]
    confidence: float
    seed: int


def _rank_sources(scorer, candidates, origin, choose, cosines, task_name, progress) -> list[SourceScore]:
    prompts = {name: vector.apply_to(origin) for name, vector in candidates.items()}
    ranked = _halving(scorer, prompts, choose, progress, f"ranking sources on {task_name}")
    return [SourceScore(name, value, cosines.get(name), n) for name, value, n in ranked]


def _search(scorer, combined, origin, grid, choose, progress) -> list[tuple[int, float, float, int]]:
    prompts = {(n, scale): combined[n].apply_to(origin, scale) for n in combined for scale in grid}
    ranked = _halving(scorer, prompts, choose, progress, "searching k and λ")
    return [(n, scale, value, size) for (n, scale), value, size in ranked]


def _halving(scorer, prompts: dict, choose: list[int], progress: bool, desc: str) -> list:
    rungs = halving_rungs(len(prompts), len(choose))
    most = sum(survivors * (size - before) for (survivors, size), (_, before) in zip(rungs, [(0, 0)] + rungs))
    bar: Any = progress_bar(iter(()), progress, desc, unit="example", leave=True, total=most)
    done = scorer.scored

    def score(key, size: int) -> float:
        value = scorer.score(prompts[key], choose[:size])
        if progress:
            bar.update(scorer.scored - done - bar.n)
        return value

    ranked = successive_halving(list(prompts), score, len(choose))
    if progress:
        bar.close()
    return _with_free_full_scores(scorer, prompts, choose, ranked)


def _with_free_full_scores(scorer, prompts: dict, choose: list[int], ranked: list) -> list:
    # A prompt dropped at a small rung may already be scored on every choosing example (the top source at λ = 1 was,
    # while ranking the sources): its full score costs nothing, so it competes with the survivor on equal terms.
    order = {key: position for position, key in enumerate(prompts)}
    full = len(choose)
    upgraded = [
        (key, scorer.score(prompts[key], choose), full) if n < full and scorer.knows(prompts[key], choose) else row
        for row in ranked
        for key, _, n in [row]
    ]
    return sorted(upgraded, key=lambda row: (-row[2], -row[1], order[row[0]]))


def _label(table_names: Sequence[str], scale: float) -> str:
    return f"{scale:g}·({' + '.join(table_names)})"


def _decide(scorer, combined, names, origin, searched, settings: _Confirming) -> Decision:
    n, scale, best, _ = searched[0]
    origin_choose = scorer.score(origin.tensor, settings.choose)
    origin_confirm = scorer.score(origin.tensor, settings.confirm)
    start = combined[n].apply_to(origin, scale)
    return _verdict(
        scorer,
        start,
        origin.tensor,
        _label(names[n], scale),
        n,
        scale,
        best,
        origin_choose,
        origin_confirm,
        settings,
        0,
    )


def _verdict(scorer, start, origin_prompt, label, n, scale, best, origin_choose, origin_confirm, settings, steps):
    common = {
        "candidate": label,
        "k": n,
        "scale": scale,
        "choose_start": best,
        "choose_origin": origin_choose,
        "confirm_origin": origin_confirm,
        "probe_steps": steps,
    }
    if not best > origin_choose:
        reason = (
            f"no start beat the origin on the {len(settings.choose)} choosing examples "
            f"(best {best:.4f} ≤ origin {origin_choose:.4f})"
        )
        return Decision(confirm_start=None, interval=None, accepted=False, reason=reason, **common)
    interval = scorer.compare(start, origin_prompt, settings.confirm, settings)
    confirm_start = scorer.score(start, settings.confirm)
    bound = f"{interval.confidence:.0%} lower bound {interval.lower:+.4f}"
    if interval.above_zero:
        reason = f"accepted: on the {interval.n} confirming examples it beats the origin ({bound} > 0)"
    else:
        reason = (
            f"refused: its gain on the choosing examples did not hold on the {interval.n} confirming examples "
            f"({bound} ≤ 0; difference {interval.difference:+.4f}), so it may be noise"
        )
    return Decision(
        confirm_start=confirm_start, interval=interval, accepted=interval.above_zero, reason=reason, **common
    )


@dataclass(frozen=True)
class _Probe:
    tokenizer: Any
    task: Any
    train: list
    steps: int
    top: int
    seed: int
    length: dict
    progress: bool


def _decide_after_probes(scorer, combined, names, origin, searched, settings: _Confirming, probe: _Probe) -> Decision:
    from tpv.bridge.peft_io import set_prompt
    from tpv.compose.tuning import tune_prompt

    finalists = [(0, 0.0, origin.tensor)] + [
        (n, scale, combined[n].apply_to(origin, scale)) for n, scale, _, _ in searched[: probe.top]
    ]
    tuned = []
    for n, scale, start in progress_bar(finalists, probe.progress, f"probing {probe.steps} steps", unit="start"):
        set_prompt(scorer.peft_model, start)
        # The same seed for every start: each sees the same batches, so only the start differs.
        prompt = tune_prompt(
            scorer.peft_model,
            probe.tokenizer,
            probe.task,
            probe.train,
            steps=probe.steps,
            seed=probe.seed,
            **probe.length,
        )
        tuned.append((n, scale, prompt, scorer.score(prompt, settings.choose)))
    _, _, origin_tuned, origin_choose = tuned[0]
    n, scale, best_prompt, best = max(tuned[1:], key=lambda row: row[3])  # max keeps the first, higher-ranked start
    origin_confirm = scorer.score(origin_tuned, settings.confirm)
    return _verdict(
        scorer,
        best_prompt,
        origin_tuned,
        _label(names[n], scale),
        n,
        scale,
        best,
        origin_choose,
        origin_confirm,
        settings,
        probe.steps,
    )


def _combine(vectors: dict, method: str, options) -> TaskPromptVector:
    if method == "sum":
        return combine(list(vectors.values()))
    from tpv.compose.merge import merge

    return merge(vectors, method=method, **dict(options or {}))


def _check_merge_method(merge_method: str) -> None:
    from tpv.compose.merge import MERGE_METHODS

    if merge_method not in MERGE_METHODS:
        raise TPVError(f"unknown merge_method {merge_method!r}; use one of {sorted(MERGE_METHODS)}")


def load_sources(
    sources,
    *,
    exclude: Sequence[str] = (),
    target: str | None = None,
    include_at_chance: bool = False,
    **hub_options,
) -> dict[str, TaskPromptVector]:
    """Candidate vectors by name from ``"zoo"``, a zoo folder, a dict, a folder of vector files, or a list of
    files/adapter folders.

    Args:
        sources: see :func:`auto_init`.
        exclude: names to leave out.
        target: the target task's name, only for messages.
        include_at_chance: keep a zoo's vectors marked ``at_chance`` in its manifest.
        hub_options: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for Hub repo ids (see
            :func:`tpv.bridge.hub.resolve_sources`); ``auto_init(sources=load_sources("user/zoo", revision=...))``
            passes them through ``auto_init``.

    Returns:
        ``{name: vector}`` with at least one entry.
    """
    return _load_candidates(resolve_sources(sources, **hub_options), exclude, target, include_at_chance)[0]


def _load_candidates(sources, exclude, target, include_at_chance) -> tuple[dict[str, TaskPromptVector], dict | None]:
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    zoo_manifest = None
    left_out: list[str] = []
    folder = _zoo_folder(sources)
    if folder is not None:
        from tpv.compose import zoo

        zoo_manifest = zoo.read_manifest(folder)
        vectors = zoo.folder_vectors(folder, include_at_chance=True)
        if not include_at_chance:
            left_out = sorted(name for name, entry in zoo_manifest["tasks"].items() if entry.get("at_chance"))
            # A vector whose own task never left chance carries no skill to transfer; scoring it only adds noise.
            vectors = {name: vector for name, vector in vectors.items() if name not in left_out}
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
        hint = f" ({len(left_out)} at-chance zoo vectors left out: pass include_at_chance=True)" if left_out else ""
        raise TPVError(
            f"no candidate source vectors for {target or 'the target'} in {sources!r:.200} after excluding "
            f"{exclude}{hint}; pass at least one vector"
        )
    return vectors, zoo_manifest


def _zoo_folder(sources) -> Path | None:
    if isinstance(sources, str) and sources == "zoo":
        from tpv.compose.zoo import ZOO_DIR

        return ZOO_DIR
    if isinstance(sources, (str, os.PathLike)) and (Path(sources) / "manifest.json").is_file():
        return Path(sources)
    return None


def _check_shapes(candidates, origin: Origin, sources, zoo_manifest) -> None:
    for name, vector in candidates.items():
        if vector.shape == tuple(origin.shape):
            continue
        if zoo_manifest is not None:
            where = "tpv's zoo" if sources == "zoo" else f"the zoo in '{sources}'"
            raise TPVError(
                f"{where} was built for {zoo_manifest.get('base_model', 'another model')!r}: its vectors have shape "
                f"{vector.shape}, but prompts of this model with {origin.num_virtual_tokens} virtual tokens have shape "
                f"{tuple(origin.shape)}; build a zoo for this model with tpv.build_zoo(model, tasks, output_dir) "
                "and pass sources=output_dir"
            )
        raise TPVError(
            f"source {name!r} has shape {vector.shape} but the origin has {tuple(origin.shape)}; pass sources "
            f"tuned on this model with {origin.num_virtual_tokens} virtual tokens"
        )


def _from_path(path: Path, folder_of_vectors: bool) -> dict[str, TaskPromptVector]:
    if path.is_file():
        if not path.name.endswith(VECTOR_SUFFIX):
            raise TPVError(f"source file '{path}' is not a *{VECTOR_SUFFIX} file; pass vector files or PEFT folders")
        return {_name(path.name[: -len(VECTOR_SUFFIX)], TaskPromptVector.load(path)): TaskPromptVector.load(path)}
    if not path.is_dir():
        raise TPVFileNotFoundError(f"no such source file or folder: '{path}'")
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


def _check_options(k, max_k, grid, retrieval_steps, max_validation, batch_size, max_length, probe_steps, probe_top):
    for name, value, allow_none in (
        ("k", k, True),
        ("max_k", max_k, False),
        ("probe_top", probe_top, False),
        ("batch_size", batch_size, False),
        ("max_validation", max_validation, True),
        ("max_length", max_length, True),
    ):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TPVError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    for name, steps in (("retrieval_steps", retrieval_steps), ("probe_steps", probe_steps)):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise TPVError(f"{name} must be an int ≥ 0 (0 turns it off), got {steps!r}")
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


def _cosines(peft_model, tokenizer, task, train, origin, candidates, steps, seed, length, progress) -> dict:
    from tpv.bridge.peft_io import set_prompt
    from tpv.compose.tuning import tune_prompt

    set_prompt(peft_model, origin.tensor)
    tuned = tune_prompt(
        peft_model, tokenizer, task, list(train), steps=steps, seed=seed, progress=progress, desc="retrieval", **length
    )
    target = TaskPromptVector.from_prompts(tuned, origin, task.name)
    return {name: target.cosine(vector) for name, vector in candidates.items()}
