"""Prompt tuning on ``transformers.Trainer``: fast loss, tpv evaluation, best checkpoint, resumable, cached.

Defaults follow the paper (lr 0.3, weight decay 1e-5, linear warm-up and decay, AdamW) where they fit; the
prompt length defaults to 20 virtual tokens rather than T5's 50, because on a 2-core CPU every virtual token
lengthens every sequence of every step: on SmolLM2-135M, 20 tokens reach 0.847 SST-2 test macro-F1 in ~5 min
and 50 tokens 0.89 in ~7.5 min (docs/benchmarks.md). Pass ``num_virtual_tokens=50`` when quality matters more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import numbers
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from tpv.bridge.peft_io import (
    ORIGIN_FILENAME,
    get_prompt,
    init_prompt_tuning,
    record_origin,
    recorded_origin,
    set_prompt,
)
from tpv.bridge.vector import TaskPromptVector
from tpv.core._io import atomic_write_text
from tpv.core.errors import TPVError
from tpv.core.origin import Origin, make_origin
from tpv.core.vector import combine
from tpv.data import Task
from tpv.data.encoding import (
    DEFAULT_MAX_LENGTH,
    Encoded,
    collate,
    encode_examples,
    is_seq2seq_model,
    pad_token_id,
    resolve_task,
)
from tpv.engine import run_folder
from tpv.engine.evaluation import evaluate, format_scores, score_predictions
from tpv.engine.prefix import FULL, SHARED_PREFIX, as_forward, choose_engine, has_fast_path, shared_prefix_obstacle
from tpv.engine.scoring import prompt_tuning_loss
from tpv.engine.training_inputs import (
    CallForm,
    Hyperparameters,
    accept_old_forms,
    as_examples,
    check_training_field,
    merge_hyperparameters,
)

if TYPE_CHECKING:
    from datasets import Dataset
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_NUM_VIRTUAL_TOKENS = 20
RESULT_FILENAME = run_folder.RESULT_FILENAME
logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a prompt-tuning run produced.

    Attributes:
        vector: the task prompt vector, tuned prompt − origin.
        adapter_dir: the PEFT adapter folder (``PeftModel.from_pretrained`` reads it).
        history: Trainer's log records (loss, learning rate, evaluations).
        metrics: the final training and validation metrics (``eval_<metric>``).
        origin: the origin the prompt was tuned from.
        vector_path: the saved ``*.tpv.safetensors`` file.
        peft_model: the ready ``PeftModel`` holding the tuned (best) prompt, when the run came from
            :func:`train_prompt` in this process; :meth:`evaluate` scores it.
    """

    vector: TaskPromptVector
    adapter_dir: Path
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    origin: Origin | None = None
    vector_path: Path | None = None
    # "shared_prefix" (the prompt's keys and values computed once per step) or "full" (see tpv.engine.prefix).
    engine: str | None = None
    peft_model: PeftModel | None = field(default=None, repr=False, compare=False)
    tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False, compare=False)
    task: Task | None = field(default=None, repr=False)
    max_length: int = DEFAULT_MAX_LENGTH

    def evaluate(self, data: Sequence[dict], **options) -> dict:
        """Score the tuned prompt on ``data`` (e.g. the test split) with :func:`tpv.engine.evaluation.evaluate`.

        Args:
            data: examples of the task the prompt was tuned on.
            options: ``evaluate``'s keyword arguments (``method``, ``batch_size``, ``progress``, …); ``max_length``
                defaults to the training run's.

        Returns:
            ``evaluate``'s dict: the task's metric, ``accuracy`` where it applies, ``n``, ``method``.
        """
        if self.peft_model is None or self.tokenizer is None:
            raise TPVError(
                "this TrainResult holds no model (it was built by hand or unpickled); rebuild one with "
                "tpv.init_prompt_tuning(model, result.vector, origin=result.origin)"
            )
        if self.task is None:
            raise TPVError(
                "this TrainResult does not know its task; call tpv.engine.evaluation.evaluate(...) with the task"
            )
        options.setdefault("max_length", self.max_length)
        return evaluate(self.peft_model, self.tokenizer, self.task, data, **options)

    def summary(self) -> str:
        """One line: the task, steps, time, final loss, validation score and the vector file."""
        steps = next((record["step"] for record in reversed(self.history) if "step" in record), 0)
        seconds = self.metrics.get("train_runtime")
        loss = next((record["loss"] for record in reversed(self.history) if "loss" in record), None)
        name = self.task.name if self.task is not None else ", ".join(self.vector.tasks)
        parts = [f"trained {name}: {steps} steps" + (f" in {seconds:.0f} s" if seconds is not None else "")]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        validation = {k: v for k, v in self.metrics.items() if k.startswith("eval_") and k != "eval_loss"}
        if self.task is not None and f"eval_{self.task.metric}" in validation:
            parts.append(f"validation {format_scores(validation, self.task.metric, digits=3)}")
        parts.append(f"|τ| {self.vector.norm():.1f}")
        return ", ".join(parts) + (f" → {self.vector_path}" if self.vector_path is not None else "")


class OriginCallback(TrainerCallback):
    """Records the origin of a prompt-tuning run and saves it beside every checkpoint.

    Add it to your own ``Trainer`` (``callbacks=[OriginCallback()]``) to make its checkpoints readable by
    :meth:`TaskPromptVector.from_peft`. Without ``origin`` it takes the prompt as it is when training starts,
    or, when resuming, the origin saved in the checkpoint.
    """

    def __init__(self, origin: Origin | None = None, adapter_name: str = "default"):
        self.origin = origin
        self.adapter_name = adapter_name

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        origin = self.origin or recorded_origin(model, self.adapter_name)
        if origin is None and state.global_step > 0:
            saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / ORIGIN_FILENAME
            origin = Origin.load(saved) if saved.is_file() else None
        if origin is None:
            config = model.peft_config[self.adapter_name]
            origin = Origin(
                get_prompt(model, self.adapter_name),
                num_virtual_tokens=config.num_virtual_tokens,
                num_transformer_submodules=config.num_transformer_submodules or 1,
            )
        self.origin = origin
        record_origin(model, origin, self.adapter_name)

    def on_save(self, args, state, control, **kwargs):
        # Trainer saves through PeftModel.save_pretrained, which already writes the origin; this also covers
        # back-ends (DeepSpeed, FSDP) that save weights another way.
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and self.origin is not None and folder.is_dir() and not (folder / ORIGIN_FILENAME).exists():
            self.origin.save(folder / ORIGIN_FILENAME)


class PromptTuningTrainer(Trainer):
    """A ``Trainer`` that computes the loss on target tokens only and evaluates with
    :func:`tpv.engine.evaluation.evaluate`."""

    loss_is_scaled_for_ga = False  # our loss is a per-batch mean

    def __init__(
        self,
        *args,
        task: Task,
        tokenizer,
        eval_examples=None,
        eval_method="rank",
        eval_batch_size=32,
        max_length=DEFAULT_MAX_LENGTH,
        adapter_name="default",
        shared_prefix: bool | None = None,
        fingerprint: str = "",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.tpv_fingerprint = fingerprint
        self.tpv_task = task
        self.tpv_tokenizer = tokenizer
        self.tpv_eval_examples = eval_examples
        self.tpv_eval_method = eval_method
        self.tpv_eval_batch_size = eval_batch_size
        self.tpv_max_length = max_length
        self.tpv_adapter_name = adapter_name
        self.tpv_shared_prefix = shared_prefix
        self.tpv_engines_run: set[str] = set()  # what compute_loss actually ran, for TrainResult.engine

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)

        def loss_of(**batch):
            return prompt_tuning_loss(unwrapped, batch, self.tpv_adapter_name, self.tpv_shared_prefix)

        if unwrapped is model:
            loss = loss_of(**inputs)
        else:
            # DDP averages the prompt's gradient only after a forward of its own: run the loss as that forward.
            with as_forward(unwrapped, loss_of):
                loss = model(**inputs)
        if not self.tpv_engines_run:  # the choice holds for the whole run; deciding it costs a cache per step
            self.tpv_engines_run.add(
                choose_engine(unwrapped, self.tpv_shared_prefix) if has_fast_path(unwrapped) else FULL
            )
        return (loss, None) if return_outputs else loss

    def _save_checkpoint(self, model, trial):
        # Trainer would delete old checkpoints before this one is known to be whole; a kill in between could leave
        # none to resume from. So: save, mark complete (after every process wrote its RNG state), then prune.
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            (folder / run_folder.CHECKPOINT_MARKER).unlink(missing_ok=True)
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            run_folder.mark_complete(folder, self.tpv_fingerprint)
            run_folder.prune_checkpoints(folder.parent, limit, keep=[folder, self.state.best_model_checkpoint])

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        # Trainer's sampler draws each epoch's order from the global RNG, whose state a resumed run does not share
        # with an uninterrupted one; an order seeded by (seed, epoch) makes a resumed run the same run.
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return _EpochSeededLengthSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            dataset=train_dataset or self.train_dataset,
            seed=seed,
        )

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if not self.tpv_eval_examples:
            return {}
        model = self.accelerator.unwrap_model(self.model)
        result = _evaluate_sharded(
            self.accelerator,
            model,
            self.tpv_tokenizer,
            self.tpv_task,
            self.tpv_eval_examples,
            method=self.tpv_eval_method,
            batch_size=self.tpv_eval_batch_size,
            adapter_name=self.tpv_adapter_name,
            max_length=self.tpv_max_length,
            shared_prefix=self.tpv_shared_prefix,
            progress=not self.args.disable_tqdm,
        )
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in result.items() if isinstance(v, (int, float))}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class _StepProgress(ProgressCallback):
    """Trainer's step bar, named after the task, with the latest loss on it instead of printed log dicts."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            # initial=: a resumed run's bar starts where the run stopped.
            self.training_bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc=self.desc, dynamic_ncols=True
            )
        self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)


class _EpochSeededLengthSampler(LengthGroupedSampler):
    def __init__(self, batch_size: int, dataset, seed: int):
        super().__init__(batch_size, dataset=dataset)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        # seed + 0 for the first epoch: the order Trainer itself draws there, right after set_seed(seed).
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def _evaluate_sharded(accelerator, model, tokenizer, task, examples, **kwargs) -> dict:
    """``evaluate`` on this process's share of ``examples``; the predictions of all processes scored together."""
    if accelerator.num_processes == 1:
        return evaluate(model, tokenizer, task, examples, **kwargs)
    import torch.distributed as dist

    rank, world = accelerator.process_index, accelerator.num_processes
    share = examples[rank::world]
    mine = evaluate(model, tokenizer, task, share, return_predictions=True, **kwargs)["predictions"] if share else []
    gathered: list = [None] * world
    dist.all_gather_object(gathered, mine)
    predictions: list = [None] * len(examples)
    for index, part in enumerate(gathered):
        predictions[index::world] = part
    method = kwargs.get("method", "rank") if task.is_classification else "generate"
    return score_predictions(task, predictions, [e[task.label_key] for e in examples], method)


class _EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, encoded: Sequence[Encoded]):
        self.encoded = list(encoded)

    def __len__(self):
        return len(self.encoded)

    def __getitem__(self, index):
        # `input_ids` (the whole sequence) is what Trainer's length-grouped sampler measures.
        example = self.encoded[index]
        return {"input_ids": example.input_ids + example.target_ids, "encoded": example}


class _Collator:
    def __init__(self, pad_id: int, seq2seq: bool):
        self.pad_id, self.seq2seq = pad_id, seq2seq

    def __call__(self, items):
        return collate([item["encoded"] for item in items], self.pad_id, seq2seq=self.seq2seq)


def train_prompt(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    task: str | Task,
    train_dataset: Sequence[dict] | Dataset | None = None,
    *old_positional: Any,
    origin: Origin | int | None = None,
    args: TrainingArguments | dict | None = None,
    eval_dataset: Sequence[dict] | Dataset | None = None,
    output_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    num_virtual_tokens: int = DEFAULT_NUM_VIRTUAL_TOKENS,
    init_vector: TaskPromptVector | list | None = None,
    init_scale: float = 1.0,
    weight_decay: float | None = None,
    warmup_ratio: float | None = None,
    eval_steps: int | None = None,
    eval_method: str = "rank",
    eval_batch_size: int | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    log_records: bool = False,
    adapter_name: str = "default",
    callbacks: Sequence[TrainerCallback] = (),
    shared_prefix: bool | None = None,
    train_data: Sequence[dict] | None = None,
    eval_data: Sequence[dict] | None = None,
    training_args: dict | None = None,
) -> TrainResult:
    """Tune a soft prompt for ``task`` from ``origin`` (optionally moved by ``init_vector``) and return its vector.

    The run lives in ``output_dir``: checkpoints (each with its origin), the final adapter (PEFT's files plus
    ``tpv_origin.safetensors``), the vector file and ``tpv_train.json``. Calling again with the same settings
    returns the finished run without training; a killed run resumes from its last complete checkpoint and ends
    with the vector an uninterrupted run gives. Other settings (data, model, origin, tpv version, any argument)
    in a used folder are refused unless ``overwrite``; a lock keeps a second process out while one trains. Under
    ``torchrun``/``accelerate launch`` only the main process writes, and evaluation is split across processes.
    With ``eval_dataset`` the best checkpoint by the task's validation metric is kept.

    **tpv's keywords and** ``args``. Eight keywords set a ``TrainingArguments`` field: ``output_dir``,
    ``max_steps``, ``learning_rate``, ``batch_size`` (``per_device_train_batch_size``), ``weight_decay``,
    ``eval_steps``, ``eval_batch_size`` (``per_device_eval_batch_size``) and ``seed`` (also ``data_seed``).
    Each value comes from the keyword or from ``args``; given in both with different values, it is refused
    with a ``TPVError`` naming both. Neither given, prompt tuning's default applies (below), not transformers'
    (its lr 5e-5 suits fine-tuning, not a soft prompt). ``args`` sets a field when it is a key of the dict, or,
    for a ``TrainingArguments``, when it differs from transformers' default: ``TrainingArguments(output_dir=d,
    learning_rate=5e-5)`` therefore trains at 0.3; pass ``learning_rate=5e-5`` to mean it. ``warmup_ratio``
    becomes ``warmup_steps`` (refused beside ``args.warmup_steps``); ``num_train_epochs`` is refused, as the run
    counts steps. Every other field of ``args`` overrides tpv's choice for it (logging, saving, precision, …).

    Args:
        model: a transformers model, or a prompt-tuning ``PeftModel``: yours (then pass ``origin``; its prompt
            is set to the origin, moved by ``init_vector``), or one made by :func:`tpv.init_prompt_tuning`
            (``origin=None`` takes the origin it records and trains the prompt as it is).
        tokenizer: the model's tokenizer; it encodes the examples with the task's template.
        task: a registered task name (e.g. ``"sst2"``) or a :class:`~tpv.data.Task`.
        train_dataset, eval_dataset: examples (dicts) of ``task``: a list or a ``datasets.Dataset`` (one split);
            eval data must be validation data.
        origin: an :class:`Origin`, or an int seed for ``make_origin(model, num_virtual_tokens, seed)``.
        args: a ``transformers.TrainingArguments`` or a dict of its fields (see above; ``tpv train
            --training-arg``, :func:`parse_training_args`).
        output_dir: the run folder (created if needed); see above for what it holds.
        max_steps: optimizer steps (default 200).
        learning_rate: the peak learning rate (default 0.3, the paper's, for prompt tuning).
        batch_size: examples per step and device (default 16).
        num_virtual_tokens: the soft prompt's length.
        init_vector: start from ``origin + init_scale · vector`` instead of the origin: a vector, or a list of
            vectors or ``(vector, weight)`` pairs, summed.
        init_scale: λ applied to ``init_vector``.
        weight_decay: AdamW's weight decay (default 1e-5).
        warmup_ratio: the fraction of ``max_steps`` spent warming the learning rate up, then it decays linearly
            (default 0.1).
        eval_steps: evaluate (and save a checkpoint) every this many steps; by default five times per run.
        eval_method: ``"rank"`` the label words or ``"generate"`` and parse the answer (see
            :func:`tpv.engine.evaluation.evaluate`).
        eval_batch_size: examples per batch when evaluating (default 32).
        max_length: tokens kept per example, target included (longer inputs lose tokens; see :mod:`tpv.data.encoding`).
        seed: Trainer's seed (data order, dropout; default 0); the origin has its own.
        resume: continue from the folder's last complete checkpoint (``False``: start again, same settings).
        overwrite: discard whatever run the folder holds (its checkpoints, adapter, vectors, records) first.
        progress: show a progress bar over steps (and evaluations) and print a one-line summary on stderr.
        log_records: also print Trainer's raw log records (``{'loss': …}``) every ``logging_steps``.
        adapter_name: the PEFT adapter to train; other names save into ``output_dir/<adapter_name>``.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        shared_prefix: decoder-only models run the soft prompt once per step and every input against its keys
            and values (same loss and gradient, less work); None chooses that automatically where it applies,
            True insists, False runs ``[prompt; input]`` whole per row as PEFT does. ``TrainResult.engine``
            and the log say which ran.
        train_data, eval_data, training_args: the previous release's names of ``train_dataset``,
            ``eval_dataset`` and ``args``; deprecated (a ``DeprecationWarning``), like passing the origin as the
            4th positional argument (``train_prompt(model, tokenizer, task, origin, train_data)``).

    Returns:
        A :class:`TrainResult`; its ``peft_model`` holds the tuned prompt and ``result.evaluate(test_data)``
        scores it; on every process of a multi-process launch.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from tpv import Task, load_model
        >>> from tpv.experiments.tiny import build_tiny_model
        >>> toy = Task("toy", "sentiment", "text: {text} label:", ("negative", "positive"))
        >>> data = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}] * 4
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model, tokenizer = load_model(build_tiny_model(Path(folder, "model"), [toy], data), dtype="float32")
        ...     result = train_prompt(model, tokenizer, toy, data, origin=0, output_dir=Path(folder, "run"),
        ...                           max_steps=2, batch_size=4, num_virtual_tokens=2, progress=False)
        >>> result.vector.tasks
        {'toy': 1.0}
    """
    call = accept_old_forms(
        old_positional,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        origin=origin,
        args=args,
        train_data=train_data,
        eval_data=eval_data,
        training_args=training_args,
    )
    hyper = merge_hyperparameters(
        call.args,
        dict(
            output_dir=output_dir,
            max_steps=max_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            eval_steps=eval_steps,
            eval_batch_size=eval_batch_size,
            seed=seed,
        ),
    )
    run = _resolve(
        model,
        tokenizer,
        task,
        call,
        hyper,
        _Options(
            num_virtual_tokens=num_virtual_tokens,
            init_vector=init_vector,
            init_scale=init_scale,
            eval_method=eval_method,
            max_length=max_length,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            log_records=log_records,
            adapter_name=adapter_name,
            callbacks=list(callbacks),
            shared_prefix=shared_prefix,
        ),
    )
    return _train_in_run_folder(run)


@dataclass
class _Options:
    """train_prompt's keywords that do not set a TrainingArguments field."""

    num_virtual_tokens: int
    init_vector: Any
    init_scale: float
    eval_method: str
    max_length: int
    resume: bool
    overwrite: bool
    progress: bool
    log_records: bool
    adapter_name: str
    callbacks: list
    shared_prefix: bool | None


@dataclass
class _Run:
    """What one train_prompt call passes from stage to stage."""

    task: Task
    tokenizer: Any
    peft_model: Any
    origin: Origin
    train_data: list[dict]
    eval_data: list[dict] | None
    hyper: Hyperparameters
    options: _Options
    settings: dict
    fingerprint: str
    arguments: TrainingArguments

    @property
    def output_dir(self) -> Path:
        return self.hyper.output_dir


def _resolve(model, tokenizer, task, call: CallForm, hyper: Hyperparameters, options: _Options) -> _Run:
    """Check every input, wrap the model, and fix the run's settings, before anything is written."""
    train_data = as_examples(call.train_dataset, "train_dataset")
    eval_data = as_examples(call.eval_dataset, "eval_dataset") or None
    task = check_training_inputs(
        task,
        train_data,
        hyper.max_steps,
        hyper.batch_size,
        learning_rate=hyper.learning_rate,
        weight_decay=hyper.weight_decay,
        warmup_ratio=hyper.warmup_ratio,
    )
    _check_prompt_settings(hyper, options)
    peft_model, origin = _prepare(model, call.origin, options)
    settings = _settings(peft_model, task, origin, train_data or [], eval_data, hyper, options)
    arguments = _training_arguments(hyper, task, eval_data, options.progress)
    return _Run(
        task,
        tokenizer,
        peft_model,
        origin,
        train_data or [],
        eval_data,
        hyper,
        options,
        settings,
        run_folder.fingerprint_of(settings),
        arguments,
    )


def _train_in_run_folder(run: _Run) -> TrainResult:
    # One process decides what the folder holds and trains into it while the others follow (torchrun,
    # accelerate launch); the lock keeps out every other run until this one returns.
    lock = run_folder.RunLock(run.output_dir)
    try:
        state = _on_main_process(
            run.arguments,
            lambda: (lock.acquire(), run_folder.open_run(run.output_dir, run.settings, **_open_options(run)))[1],
        )
        if "finished" in state:
            return _ready(_load_finished(run, state["finished"]), run, cached=True)
        trainer = _build_trainer(run)
        metrics = _train(trainer, run, state["checkpoint"])
        engines = _engines_per_rank(run.arguments, "+".join(sorted(trainer.tpv_engines_run)) or _choose_engine(run))
        result = _finish(run, trainer.state.log_history, metrics, engines)
    finally:
        lock.release()
    return _ready(result, run)


def _engines_per_rank(args: TrainingArguments, engine: str) -> list[str]:
    """The engine every process ran, in rank order (each process decides for its own model)."""
    if args.world_size <= 1:
        return [engine]
    import torch.distributed as dist

    engines: list = [None] * args.world_size
    dist.all_gather_object(engines, engine)
    return engines


def _open_options(run: _Run) -> dict:
    return {"overwrite": run.options.overwrite, "resume": run.options.resume}


def _training_arguments(hyper: Hyperparameters, task: Task, eval_data, progress: bool) -> TrainingArguments:
    eval_every = hyper.eval_steps or max(1, hyper.max_steps // 5)
    fields: dict[str, Any] = dict(
        output_dir=str(hyper.output_dir),
        max_steps=hyper.max_steps,
        per_device_train_batch_size=hyper.batch_size,
        per_device_eval_batch_size=hyper.eval_batch_size,
        learning_rate=hyper.learning_rate,
        weight_decay=hyper.weight_decay,
        warmup_steps=int(hyper.warmup_ratio * hyper.max_steps),
        lr_scheduler_type="linear",
        logging_steps=max(1, min(10, hyper.max_steps // 10)),
        save_strategy="steps",
        save_steps=eval_every,
        save_total_limit=2,
        report_to=[],
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        seed=hyper.seed,
        data_seed=hyper.seed,
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
    )
    if eval_data:
        fields.update(
            eval_strategy="steps",
            eval_steps=eval_every,
            load_best_model_at_end=True,
            metric_for_best_model=f"eval_{task.metric}",
            greater_is_better=True,
        )
    fields.update(hyper.extra)
    _refuse_untested_backends(fields)
    try:
        return TrainingArguments(**fields)
    except (ValueError, TypeError) as error:
        raise TPVError(
            f"transformers.TrainingArguments rejected the settings: {error}; fix the value passed in "
            f"args (or the matching train_prompt argument)"
        ) from None


# FSDP and DeepSpeed shard the prompt, save and evaluate otherwise than DDP, and need GPUs (accelerate runs neither
# on CPUs, and silently falls back to DDP there), so no test covers them: a vector from them would be unchecked.
_UNTESTED_BACKENDS = {"fsdp": "FSDP", "deepspeed": "DeepSpeed"}
_BACKEND_FIX = (
    "train with DDP instead (torchrun or accelerate launch without it: each process holds the whole model and "
    "the prompt's gradient is averaged), and load a model too large for one device with "
    "tpv.load_model(..., device_map='auto') in one process"
)


def _refuse_untested_backends(fields: Mapping[str, Any]) -> None:
    for key, name in _UNTESTED_BACKENDS.items():
        if fields.get(key):
            raise TPVError(
                f"args sets {key}={fields[key]!r}, but train_prompt does not run under {name}, which no test "
                f"covers; {_BACKEND_FIX}"
            )
        variable = f"ACCELERATE_USE_{key.upper()}"
        if os.environ.get(variable, "false").lower() in ("1", "true"):
            raise TPVError(
                f"{variable}={os.environ[variable]} (accelerate launch --use_{key}), but train_prompt does not run "
                f"under {name}, which no test covers; {_BACKEND_FIX}"
            )


def _choose_engine(run: _Run) -> str:
    checkpointing = bool(run.arguments.gradient_checkpointing)
    return choose_engine(run.peft_model, run.options.shared_prefix, gradient_checkpointing=checkpointing)


def _build_trainer(run: _Run) -> PromptTuningTrainer:
    options, seq2seq = run.options, is_seq2seq_model(run.peft_model)
    engine = _choose_engine(run)
    obstacle = shared_prefix_obstacle(run.peft_model, bool(run.arguments.gradient_checkpointing))
    logger.info("prompt tuning engine: %s%s", engine, f" ({obstacle})" if engine != SHARED_PREFIX and obstacle else "")
    encoded = encode_examples(run.tokenizer, run.task, run.train_data, seq2seq=seq2seq, max_length=options.max_length)
    trainer = PromptTuningTrainer(
        model=run.peft_model,
        args=run.arguments,
        train_dataset=_EncodedDataset(encoded),
        # Trainer insists on an eval_dataset when evaluating; our evaluate() reads the raw examples instead.
        eval_dataset=run.eval_data,
        data_collator=_Collator(pad_token_id(run.tokenizer), seq2seq),
        callbacks=[OriginCallback(run.origin, options.adapter_name), *options.callbacks],
        task=run.task,
        tokenizer=run.tokenizer,
        eval_examples=run.eval_data,
        eval_method=options.eval_method,
        eval_batch_size=run.hyper.eval_batch_size,
        max_length=options.max_length,
        adapter_name=options.adapter_name,
        shared_prefix=engine == SHARED_PREFIX,
        fingerprint=run.fingerprint,
    )
    # Trainer prints its log records as raw dicts, between the lines of the caller's own output; the bar shows
    # the loss instead, and the records stay in the result's history (and on screen with log_records=True).
    if not options.log_records:
        trainer.remove_callback(PrinterCallback)
        if trainer.pop_callback(ProgressCallback) is not None:
            trainer.add_callback(_StepProgress(f"train {run.task.name}"))
    return trainer


def _train(trainer: PromptTuningTrainer, run: _Run, checkpoint: str | None) -> dict:
    try:
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    except pickle.UnpicklingError as error:
        # Trainer reads optimizer, scheduler and RNG states with weights_only=True; a file it refuses was not
        # written by a run (tampered or foreign), so nothing in it ran and nothing of it can be trusted.
        raise TPVError(
            f"refused to unpickle a file of checkpoint {checkpoint!r} "
            f"({' '.join(str(error).split())[:160]}); delete that checkpoint folder and rerun "
            "to resume from the one before it, or rerun with overwrite=True (--overwrite) to start "
            "again"
        ) from error
    metrics = dict(train_output.metrics)
    if run.eval_data:
        metrics.update(trainer.evaluate())
    return metrics


def _ready(result: TrainResult, run: _Run, cached: bool = False) -> TrainResult:
    result.peft_model, result.tokenizer, result.task = run.peft_model, run.tokenizer, run.task
    result.max_length = run.options.max_length
    if run.options.progress and run.arguments.should_save:
        print(result.summary() + (" (reused the finished run)" if cached else ""), file=sys.stderr, flush=True)
    return result


def check_training_inputs(
    task: str | Task,
    train_data,
    max_steps: int,
    batch_size: int,
    *,
    learning_rate: float = 1.0,
    weight_decay: float = 0.0,
    warmup_ratio: float = 0.0,
) -> Task:
    """The checks every training loop shares; returns the resolved task."""
    task = resolve_task(task)
    if not train_data:
        raise TPVError(f"no training examples for task {task.name!r}; pass a non-empty list")
    _check_whole("max_steps", max_steps)
    _check_whole("batch_size", batch_size)
    _check_real("learning_rate", learning_rate, "a positive number such as 0.3", lambda v: v > 0)
    _check_real("weight_decay", weight_decay, "a number ≥ 0 such as 1e-5", lambda v: v >= 0)
    _check_real("warmup_ratio", warmup_ratio, "a fraction in [0, 1] such as 0.1", lambda v: 0 <= v <= 1)
    return task


def parse_training_args(pairs: Sequence[str], owned: Mapping[str, str] | None = None) -> dict:
    """``KEY=VALUE`` strings (``tpv train --training-arg``) as ``TrainingArguments`` fields of the right types.

    The values are converted by transformers' own ``HfArgumentParser``, the parser behind its example scripts'
    command lines, so ``bf16=true``, ``report_to=tensorboard`` and ``gradient_accumulation_steps=4`` mean there
    what they mean here.

    Args:
        pairs: strings such as ``"gradient_accumulation_steps=4"``.
        owned: fields the caller sets through options of its own, mapped to those options' names; naming one
            is refused with the option to use instead.

    Example:
        >>> parse_training_args(["gradient_accumulation_steps=4", "bf16=true", "report_to=tensorboard"])
        {'gradient_accumulation_steps': 4, 'bf16': True, 'report_to': 'tensorboard'}
    """
    from transformers import HfArgumentParser

    owned = {"output_dir": "train_prompt(output_dir=...)", **(owned or {})}
    # HfArgumentParser types its argument as a NewType of Any that no class matches; any dataclass is accepted.
    parser = HfArgumentParser(cast(Any, TrainingArguments), exit_on_error=False)
    fields = {action.dest: action for action in parser._actions}
    parsed: dict = {}
    for pair in pairs:
        key, equals, text = str(pair).partition("=")
        key = key.strip().replace("-", "_")
        example = "e.g. --training-arg gradient_accumulation_steps=4"
        if not equals or not key:
            raise TPVError(f"--training-arg takes KEY=VALUE, got {pair!r}; {example}")
        if key in owned:
            raise TPVError(f"--training-arg {key}=… sets what {owned[key]} sets; use {owned[key]} instead")
        check_training_field(key, "--training-arg")
        action = fields[key]
        try:
            # One field at a time, so the error names it; output_dir is the one field the parser requires.
            namespace, _ = parser.parse_known_args(["--output_dir", "-", f"--{key}", *_values(action, text)])
        except argparse.ArgumentError as error:
            raise TPVError(
                f"--training-arg {key}={text!r} is not a valid value for TrainingArguments.{key} "
                f"({error.message}); {example}"
            ) from None
        parsed[key] = getattr(namespace, key)
    return parsed


def _values(action, text: str) -> list[str]:
    # Fields that take lists (report_to, …) take them comma-separated here, one --training-arg per field.
    return [part.strip() for part in text.split(",")] if action.nargs in ("+", "*") else [text]


def _check_whole(name: str, value, minimum: int = 1, maximum: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or int(value) < minimum
        or (maximum is not None and int(value) > maximum)
    ):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"≥ {minimum}"
        raise TPVError(f"{name} must be a whole number {bound}, got {value!r}; pass an int such as {name}={minimum}")


def _check_real(name: str, value, wanted: str, ok) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise TPVError(f"{name} must be {wanted}, got {value!r}")


def _check_prompt_settings(hyper: Hyperparameters, options: _Options) -> None:
    from tpv.engine.evaluation import METHODS

    _check_whole("num_virtual_tokens", options.num_virtual_tokens)
    _check_real("init_scale", options.init_scale, "a finite number such as 1.0", lambda v: True)
    if hyper.eval_steps is not None:
        _check_whole("eval_steps", hyper.eval_steps)
    if options.eval_method not in METHODS:
        raise TPVError(f"unknown eval_method {options.eval_method!r}; use one of {list(METHODS)}")
    _check_whole("eval_batch_size", hyper.eval_batch_size)
    _check_whole("max_length", options.max_length)
    _check_whole("seed", hyper.seed, 0, 2**32 - 1)  # numpy's seeds are 32-bit


def _on_main_process(args: TrainingArguments, decide):
    """``decide()`` on the main process only; its answer (or its TPVError) is shared with every process."""
    if args.world_size <= 1:
        return decide()
    import torch.distributed as dist

    box: list = [None]
    if args.process_index == 0:
        try:
            box[0] = ("ok", decide())
        except Exception as error:
            dist.broadcast_object_list([("error", str(error))], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise TPVError(f"the main process stopped: {value}")
    return value


def _barrier(args: TrainingArguments) -> None:
    if args.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _prepare(model, origin, options: _Options) -> tuple[Any, Origin]:
    if hasattr(model, "peft_config"):
        return _prepare_peft_model(model, origin, options)
    if origin is None or isinstance(origin, bool):
        raise TPVError("train_prompt needs an origin: origin=tpv.Origin(...) or an int seed for tpv.make_origin")
    if isinstance(origin, numbers.Integral):
        origin = make_origin(model, options.num_virtual_tokens, seed=int(origin))
    peft_model = init_prompt_tuning(
        model, options.init_vector, origin=origin, scale=options.init_scale, adapter_name=options.adapter_name
    )
    return peft_model, origin


def _prepare_peft_model(peft_model, origin, options: _Options) -> tuple[Any, Origin]:
    adapter_name = options.adapter_name
    if origin is None:
        recorded = recorded_origin(peft_model, adapter_name)
        if recorded is None:
            raise TPVError(
                "train_prompt got a PeftModel that records no origin; pass origin=... (a tpv.Origin or an int "
                "seed), so the run knows where the prompt starts"
            )
        if options.init_vector is not None:
            raise TPVError(
                "train_prompt got init_vector with a PeftModel and no origin; pass origin=... to start from "
                "origin + init_scale·init_vector, or set the prompt yourself with tpv.set_prompt"
            )
        return peft_model, recorded
    if isinstance(origin, bool) or not isinstance(origin, (Origin, numbers.Integral)):
        raise TPVError(f"origin must be a tpv.Origin or an int seed, got {type(origin).__name__}")
    config = peft_model.peft_config.get(adapter_name)
    if config is None or str(getattr(config.peft_type, "value", config.peft_type)) != "PROMPT_TUNING":
        raise TPVError(
            f"train_prompt trains a PROMPT_TUNING adapter named {adapter_name!r}; this PeftModel has "
            f"{ {name: str(getattr(c.peft_type, 'value', c.peft_type)) for name, c in peft_model.peft_config.items()} }"
            "; pass adapter_name=... or the base model"
        )
    if isinstance(origin, numbers.Integral):
        origin = make_origin(peft_model.get_base_model(), config.num_virtual_tokens, seed=int(origin))
    if origin.num_virtual_tokens != config.num_virtual_tokens:
        raise TPVError(
            f"the origin has {origin.num_virtual_tokens} virtual tokens but adapter {adapter_name!r} has "
            f"{config.num_virtual_tokens}; make the origin with tpv.make_origin(model, {config.num_virtual_tokens})"
        )
    set_prompt(peft_model, _start_prompt(origin, options.init_vector, options.init_scale), adapter_name)
    record_origin(peft_model, origin, adapter_name)
    return peft_model, origin


def _start_prompt(origin: Origin, init_vector, init_scale: float) -> torch.Tensor:
    if init_vector is None:
        return origin.tensor
    items = list(init_vector) if isinstance(init_vector, list) else [init_vector]
    return combine(items).apply_to(origin, init_scale)


def _finish(run: _Run, history: list[dict], metrics: dict, engines: list[str]) -> TrainResult:
    """Save the tuned adapter and its vector, then the record that marks the run finished."""
    output_dir, adapter_name, task = run.output_dir, run.options.adapter_name, run.task
    adapter_dir = output_dir if adapter_name == "default" else output_dir / adapter_name
    vector = TaskPromptVector.from_peft(run.peft_model, origin=run.origin, task=task.name, adapter_name=adapter_name)
    vector_path = adapter_dir / f"{task.name}.tpv.safetensors"
    result = TrainResult(
        vector=vector,
        adapter_dir=adapter_dir,
        history=history,
        metrics=metrics,
        origin=run.origin,
        vector_path=vector_path,
        engine="+".join(sorted(set(engines))),
    )
    if run.arguments.should_save:
        run.peft_model.save_pretrained(str(output_dir), selected_adapters=[adapter_name])
        vector.save(vector_path)
        # Written last: its presence is what makes the run finished.
        record = {
            "fingerprint": run.fingerprint,
            "settings": run.settings,
            "task": task.name,
            "metrics": metrics,
            "history": history,
            "vector": vector_path.name,
            "adapter_dir": str(adapter_dir.relative_to(output_dir)),
            "engine_per_rank": engines,
        }
        atomic_write_text(output_dir / RESULT_FILENAME, json.dumps(record, indent=1, default=str))
    _barrier(run.arguments)
    return result


def _load_finished(run: _Run, record: dict) -> TrainResult:
    output_dir = run.output_dir
    try:
        adapter_dir = output_dir / record["adapter_dir"]
        vector_path = adapter_dir / record["vector"]
        history, metrics = list(record["history"]), dict(record["metrics"])
    except (KeyError, TypeError, ValueError) as error:
        raise TPVError(
            f"'{output_dir / RESULT_FILENAME}' lacks {error} or holds the wrong type; pass "
            f"overwrite=True (tpv train --overwrite) to train the run again"
        ) from None
    vector = TaskPromptVector.load(vector_path)
    # Leave the model where the finished run ended, as if it had just trained.
    set_prompt(run.peft_model, vector.apply_to(run.origin), run.options.adapter_name)
    engines = record.get("engine_per_rank")  # absent from runs finished before it was recorded
    return TrainResult(
        vector=vector,
        adapter_dir=adapter_dir,
        history=history,
        metrics=metrics,
        origin=run.origin,
        vector_path=vector_path,
        engine="+".join(sorted(set(map(str, engines)))) if isinstance(engines, list) and engines else None,
    )


def _settings(peft_model, task, origin, train_data, eval_data, hyper: Hyperparameters, options: _Options) -> dict:
    """What makes a run this run, readable enough to name what differs; its hash is the run's fingerprint."""
    settings = {
        "task": task.name,
        "task_definition": run_folder.digest_of([asdict(task) | {"hub_splits": None}]),
        "origin": origin.sha256,
        "train_data": f"{len(train_data)} examples, {run_folder.digest_of(train_data)}",
        "eval_data": f"{len(eval_data)} examples, {run_folder.digest_of(eval_data)}" if eval_data else None,
        "init_vector": _init_vector_digest(options.init_vector),
        "init_scale": options.init_scale,
    }
    # The same keys as before args existed, so that run folders made then are still this run.
    chosen = dict(
        max_steps=hyper.max_steps,
        learning_rate=hyper.learning_rate,
        batch_size=hyper.batch_size,
        weight_decay=hyper.weight_decay,
        warmup_ratio=hyper.warmup_ratio,
        eval_steps=hyper.eval_steps,
        eval_method=options.eval_method,
        max_length=options.max_length,
        seed=hyper.seed,
        training_args=hyper.extra,
    )
    settings = run_folder.run_settings(settings, peft_model) | chosen
    # Only when given, so that runs without callbacks keep their fingerprint.
    recorded = [described for described in map(_callback_settings, options.callbacks) if described]
    if recorded:
        settings["callbacks"] = recorded
    return settings


def _init_vector_digest(init_vector) -> str | None:
    if init_vector is None:
        return None
    items = init_vector if isinstance(init_vector, (list, tuple)) else [init_vector]
    digest = hashlib.sha256()
    for item in items:
        vector, weight = item if isinstance(item, tuple) else (item, 1.0)
        digest.update(vector.tensor.cpu().numpy().tobytes() + str(weight).encode())
    return f"{len(items)} vectors, sha256 {digest.hexdigest()[:16]}"


def _callback_settings(callback) -> dict:
    """What a callback changes about a run, or ``{}`` when it changes nothing that is kept. An early stop changes
    which steps run, so it is part of the run's identity; a callback of the user's that changes training says
    so with a ``tpv_settings()`` method returning plain values. Others (logging, progress, a test's kill switch)
    are left out, so that a run resumed without them is still the same run."""
    from transformers import EarlyStoppingCallback

    described: dict[str, Any] = {"class": f"{type(callback).__module__}.{type(callback).__qualname__}"}
    if callable(getattr(callback, "tpv_settings", None)):
        return described | dict(callback.tpv_settings())
    if isinstance(callback, EarlyStoppingCallback):
        return described | {
            "patience": callback.early_stopping_patience,
            "threshold": callback.early_stopping_threshold,
        }
    return {}
