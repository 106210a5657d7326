"""Prompt tuning on ``transformers.Trainer``: fast loss, tpv evaluation, best checkpoint, resumable, cached.

Defaults follow the paper (lr 0.3, weight decay 1e-5, linear warm-up and decay, AdamW) where they fit; the
prompt length defaults to 20 virtual tokens rather than T5's 50, because on a 2-core CPU every virtual token
lengthens every sequence of every step: on SmolLM2-135M, 20 tokens reach 0.847 SST-2 test macro-F1 in ~5 min
and 50 tokens 0.89 in ~7.5 min (docs/benchmarks.md). Pass ``num_virtual_tokens=50`` when quality matters more.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
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

from tpv.bridge.peft_io import ORIGIN_FILENAME, get_prompt, init_prompt_tuning, record_origin, recorded_origin
from tpv.bridge.vector import TaskPromptVector
from tpv.core._io import atomic_write_text
from tpv.core.errors import TPVError
from tpv.core.origin import Origin, make_origin
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
from tpv.engine.prefix import FULL, SHARED_PREFIX, choose_engine, has_fast_path, shared_prefix_obstacle
from tpv.engine.scoring import prompt_tuning_loss

if TYPE_CHECKING:
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
        if unwrapped is model:
            loss = prompt_tuning_loss(model, inputs, self.tpv_adapter_name, self.tpv_shared_prefix)
            self.tpv_engines_run.add(choose_engine(model, self.tpv_shared_prefix) if has_fast_path(model) else FULL)
        else:
            self.tpv_engines_run.add(FULL)
            # Under DDP the forward must go through the wrapper so gradients are synchronised.
            loss = model(**{k: inputs[k] for k in ("input_ids", "attention_mask", "labels")}).loss
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
    origin: Origin | int | None,
    train_data: Sequence[dict],
    *,
    output_dir: str | os.PathLike,
    eval_data: Sequence[dict] | None = None,
    max_steps: int = 200,
    learning_rate: float = 0.3,
    batch_size: int = 16,
    num_virtual_tokens: int = DEFAULT_NUM_VIRTUAL_TOKENS,
    init_vector: TaskPromptVector | list | None = None,
    init_scale: float = 1.0,
    weight_decay: float = 1e-5,
    warmup_ratio: float = 0.1,
    eval_steps: int | None = None,
    eval_method: str = "rank",
    eval_batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    log_records: bool = False,
    adapter_name: str = "default",
    callbacks: Sequence[TrainerCallback] = (),
    training_args: dict | None = None,
    shared_prefix: bool | None = None,
) -> TrainResult:
    """Tune a soft prompt for ``task`` from ``origin`` (optionally moved by ``init_vector``) and return its vector.

    The run lives in ``output_dir``: checkpoints (each with its origin), the final adapter (PEFT's files plus
    ``tpv_origin.safetensors``), the vector file and ``tpv_train.json``. Calling again with the same settings
    returns the finished run without training; a killed run resumes from its last complete checkpoint and ends
    with the vector an uninterrupted run gives. Other settings (data, model, origin, tpv version, any argument)
    in a used folder are refused unless ``overwrite``; a lock keeps a second process out while one trains. Under
    ``torchrun``/``accelerate launch`` only the main process writes, and evaluation is split across processes.
    With ``eval_data`` the best checkpoint by the task's validation metric is kept.

    Args:
        model: a transformers model, or a PeftModel made by :func:`tpv.init_prompt_tuning`.
        tokenizer: the model's tokenizer; it encodes the examples with the task's template.
        task: a registered task name (e.g. ``"sst2"``) or a :class:`~tpv.data.Task`.
        origin: an :class:`Origin`, or an int seed for ``make_origin(model, num_virtual_tokens, seed)``.
        train_data, eval_data: lists of examples (dicts) of ``task``; eval data must be validation data.
        output_dir: the run folder (created if needed); see above for what it holds.
        max_steps: optimizer steps.
        learning_rate: the peak learning rate (0.3, the paper's, for prompt tuning).
        batch_size: examples per step and device (``per_device_train_batch_size``).
        num_virtual_tokens: the soft prompt's length.
        init_vector: start from ``origin + init_scale · vector`` instead of the origin: a vector, or a list of
            vectors or ``(vector, weight)`` pairs, summed.
        init_scale: λ applied to ``init_vector``.
        weight_decay: AdamW's weight decay.
        warmup_ratio: the fraction of ``max_steps`` spent warming the learning rate up (then it decays linearly).
        eval_steps: evaluate (and save a checkpoint) every this many steps; by default five times per run.
        eval_method: ``"rank"`` the label words or ``"generate"`` and parse the answer (see
            :func:`tpv.engine.evaluation.evaluate`).
        eval_batch_size: examples per batch when evaluating.
        max_length: tokens kept per example, target included (longer inputs lose tokens; see :mod:`tpv.data.encoding`).
        seed: Trainer's seed (data order, dropout); the origin has its own.
        resume: continue from the folder's last complete checkpoint (``False``: start again, same settings).
        overwrite: discard whatever run the folder holds (its checkpoints, adapter, vectors, records) first.
        progress: show a progress bar over steps (and evaluations) and print a one-line summary on stderr.
        log_records: also print Trainer's raw log records (``{'loss': …}``) every ``logging_steps``.
        adapter_name: the PEFT adapter to train; other names save into ``output_dir/<adapter_name>``.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        training_args: extra ``TrainingArguments`` fields, which override ours (``tpv train --training-arg``;
            see :func:`parse_training_args`); all but ``output_dir``.
        shared_prefix: decoder-only models run the soft prompt once per step and every input against its keys
            and values (same loss and gradient, less work); None chooses that automatically where it applies,
            True insists, False runs ``[prompt; input]`` whole per row as PEFT does. ``TrainResult.engine``
            and the log say which ran.

    Returns:
        A :class:`TrainResult`; its ``peft_model`` holds the tuned prompt and ``result.evaluate(test_data)``
        scores it; on every process of a multi-process launch.
    """
    task = check_training_inputs(
        task,
        train_data,
        max_steps,
        batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
    )
    _check_prompt_settings(
        num_virtual_tokens, init_scale, eval_steps, eval_method, eval_batch_size, max_length, seed, training_args
    )
    output_dir = Path(output_dir)
    peft_model, origin = _prepare(model, origin, num_virtual_tokens, init_vector, init_scale, adapter_name)
    seq2seq = is_seq2seq_model(peft_model)
    settings = _settings(
        peft_model,
        task,
        origin,
        train_data,
        eval_data,
        init_vector,
        init_scale,
        dict(
            max_steps=max_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            eval_steps=eval_steps,
            eval_method=eval_method,
            max_length=max_length,
            seed=seed,
            training_args=training_args or {},
        ),
    )
    if callbacks:  # only when given, so that runs without callbacks keep their fingerprint
        recorded = [described for described in map(_callback_settings, callbacks) if described]
        if recorded:
            settings["callbacks"] = recorded
    fingerprint = run_folder.fingerprint_of(settings)

    eval_every = eval_steps or max(1, max_steps // 5)
    args: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=int(warmup_ratio * max_steps),
        lr_scheduler_type="linear",
        logging_steps=max(1, min(10, max_steps // 10)),
        save_strategy="steps",
        save_steps=eval_every,
        save_total_limit=2,
        report_to=[],
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        dataloader_num_workers=0,
        seed=seed,
        data_seed=seed,
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
    )
    if eval_data:
        args.update(
            eval_strategy="steps",
            eval_steps=eval_every,
            load_best_model_at_end=True,
            metric_for_best_model=f"eval_{task.metric}",
            greater_is_better=True,
        )
    args.update(training_args or {})
    try:
        arguments = TrainingArguments(**args)
    except (ValueError, TypeError) as error:
        raise TPVError(
            f"transformers.TrainingArguments rejected the settings: {error}; fix the value passed in "
            f"training_args (or the matching train_prompt argument)"
        ) from None

    # One process decides what the folder holds and trains into it while the others follow (torchrun,
    # accelerate launch); the lock keeps out every other run until this one returns.
    lock = run_folder.RunLock(output_dir)
    try:
        state = _on_main_process(
            arguments,
            lambda: (lock.acquire(), run_folder.open_run(output_dir, settings, overwrite=overwrite, resume=resume))[1],
        )
        if "finished" in state:
            finished = _load_finished(output_dir, state["finished"], peft_model, origin, adapter_name)
            return _ready(
                finished, peft_model, tokenizer, task, max_length, progress and arguments.should_save, cached=True
            )
        encoded = encode_examples(tokenizer, task, train_data, seq2seq=seq2seq, max_length=max_length)
        pad_id = pad_token_id(tokenizer)
        checkpointing = bool(args.get("gradient_checkpointing"))
        engine = choose_engine(peft_model, shared_prefix, gradient_checkpointing=checkpointing)
        obstacle = shared_prefix_obstacle(peft_model, checkpointing)
        logger.info(
            "prompt tuning engine: %s%s", engine, f" ({obstacle})" if engine != SHARED_PREFIX and obstacle else ""
        )
        trainer = PromptTuningTrainer(
            model=peft_model,
            args=arguments,
            train_dataset=_EncodedDataset(encoded),
            # Trainer insists on an eval_dataset when evaluating; our evaluate() reads the raw examples instead.
            eval_dataset=list(eval_data) if eval_data else None,
            data_collator=_Collator(pad_id, seq2seq),
            callbacks=[OriginCallback(origin, adapter_name), *callbacks],
            task=task,
            tokenizer=tokenizer,
            eval_examples=list(eval_data) if eval_data else None,
            eval_method=eval_method,
            eval_batch_size=eval_batch_size,
            max_length=max_length,
            adapter_name=adapter_name,
            shared_prefix=engine == SHARED_PREFIX,
            fingerprint=fingerprint,
        )
        # Trainer prints its log records as raw dicts, between the lines of the caller's own output; the bar shows
        # the loss instead, and the records stay in the result's history (and on screen with log_records=True).
        if not log_records:
            trainer.remove_callback(PrinterCallback)
            if trainer.pop_callback(ProgressCallback) is not None:
                trainer.add_callback(_StepProgress(f"train {task.name}"))
        try:
            train_output = trainer.train(resume_from_checkpoint=state["checkpoint"])
        except pickle.UnpicklingError as error:
            # Trainer reads optimizer, scheduler and RNG states with weights_only=True; a file it refuses was not
            # written by a run (tampered or foreign), so nothing in it ran and nothing of it can be trusted.
            raise TPVError(
                f"refused to unpickle a file of checkpoint {state['checkpoint']!r} "
                f"({' '.join(str(error).split())[:160]}); delete that checkpoint folder and rerun "
                "to resume from the one before it, or rerun with overwrite=True (--overwrite) to start "
                "again"
            ) from error
        metrics = dict(train_output.metrics)
        if eval_data:
            metrics.update(trainer.evaluate())
        result = _finish(
            peft_model,
            origin,
            task,
            output_dir,
            adapter_name,
            trainer.state.log_history,
            metrics,
            fingerprint,
            settings,
            arguments,
        )
    finally:
        lock.release()
    # Under DDP the loss runs through the wrapper, i.e. the full forward, whatever was chosen.
    result.engine = "+".join(sorted(trainer.tpv_engines_run)) or engine
    return _ready(result, peft_model, tokenizer, task, max_length, progress and arguments.should_save)


def _ready(
    result: TrainResult, peft_model, tokenizer, task: Task, max_length: int, progress: bool, cached: bool = False
) -> TrainResult:
    result.peft_model, result.tokenizer, result.task, result.max_length = peft_model, tokenizer, task, max_length
    if progress:
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
        _check_training_field(key)
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


def _check_training_field(key) -> None:
    known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    if key not in known:
        close = difflib.get_close_matches(str(key), sorted(known), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "see transformers.TrainingArguments"
        raise TPVError(f"training_args has {key!r}, which is not a TrainingArguments field; {hint}")


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


def _check_prompt_settings(
    num_virtual_tokens, init_scale, eval_steps, eval_method, eval_batch_size, max_length, seed, training_args
) -> None:
    from tpv.engine.evaluation import METHODS

    _check_whole("num_virtual_tokens", num_virtual_tokens)
    _check_real("init_scale", init_scale, "a finite number such as 1.0", lambda v: True)
    if eval_steps is not None:
        _check_whole("eval_steps", eval_steps)
    if eval_method not in METHODS:
        raise TPVError(f"unknown eval_method {eval_method!r}; use one of {list(METHODS)}")
    _check_whole("eval_batch_size", eval_batch_size)
    _check_whole("max_length", max_length)
    _check_whole("seed", seed, 0, 2**32 - 1)  # numpy's seeds are 32-bit
    if training_args is None:
        return
    if not isinstance(training_args, dict):
        raise TPVError(f"training_args must be a dict of TrainingArguments fields, got {type(training_args).__name__}")
    for key in training_args:
        if key == "output_dir":
            raise TPVError("training_args may not set 'output_dir'; pass train_prompt(output_dir=...) instead")
        _check_training_field(key)


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


def _prepare(model, origin, num_virtual_tokens, init_vector, init_scale, adapter_name) -> tuple[Any, Origin]:
    if hasattr(model, "peft_config"):
        recorded = recorded_origin(model, adapter_name)
        if isinstance(origin, Origin) or recorded is None:
            raise TPVError(
                "train_prompt got a PeftModel; pass the base model and an origin, so the run knows where the "
                "prompt starts (or a PeftModel made by tpv.init_prompt_tuning with origin=None)"
            )
        return model, recorded
    if origin is None or isinstance(origin, bool):
        raise TPVError("train_prompt needs an origin: a tpv.Origin or an int seed for tpv.make_origin")
    if isinstance(origin, int):
        origin = make_origin(model, num_virtual_tokens, seed=origin)
    peft_model = init_prompt_tuning(model, init_vector, origin=origin, scale=init_scale, adapter_name=adapter_name)
    return peft_model, origin


def _finish(
    peft_model, origin, task, output_dir, adapter_name, history, metrics, fingerprint, settings, args
) -> TrainResult:
    adapter_dir = output_dir if adapter_name == "default" else output_dir / adapter_name
    vector = TaskPromptVector.from_peft(peft_model, origin=origin, task=task.name, adapter_name=adapter_name)
    vector_path = adapter_dir / f"{task.name}.tpv.safetensors"
    result = TrainResult(
        vector=vector, adapter_dir=adapter_dir, history=history, metrics=metrics, origin=origin, vector_path=vector_path
    )
    if args.should_save:
        peft_model.save_pretrained(str(output_dir), selected_adapters=[adapter_name])
        vector.save(vector_path)
        # Written last: its presence is what makes the run finished.
        atomic_write_text(
            output_dir / RESULT_FILENAME,
            json.dumps(
                {
                    "fingerprint": fingerprint,
                    "settings": settings,
                    "task": task.name,
                    "metrics": metrics,
                    "history": history,
                    "vector": vector_path.name,
                    "adapter_dir": str(adapter_dir.relative_to(output_dir)),
                },
                indent=1,
                default=str,
            ),
        )
    _barrier(args)
    return result


def _load_finished(output_dir: Path, record: dict, peft_model, origin, adapter_name) -> TrainResult:
    from tpv.bridge.peft_io import set_prompt

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
    set_prompt(peft_model, vector.apply_to(origin), adapter_name)
    return TrainResult(
        vector=vector, adapter_dir=adapter_dir, history=history, metrics=metrics, origin=origin, vector_path=vector_path
    )


def _settings(peft_model, task, origin, train_data, eval_data, init_vector, init_scale, options) -> dict:
    """What makes a run this run, readable enough to name what differs; its hash is the run's fingerprint."""
    settings = {
        "task": task.name,
        "task_definition": run_folder.digest_of([asdict(task) | {"hub_splits": None}]),
        "origin": origin.sha256,
        "train_data": f"{len(train_data)} examples, {run_folder.digest_of(train_data)}",
        "eval_data": f"{len(eval_data)} examples, {run_folder.digest_of(eval_data)}" if eval_data else None,
        "init_vector": None,
        "init_scale": init_scale,
    }
    if init_vector is not None:
        items = init_vector if isinstance(init_vector, (list, tuple)) else [init_vector]
        digest = hashlib.sha256()
        for item in items:
            vector, weight = item if isinstance(item, tuple) else (item, 1.0)
            digest.update(vector.tensor.cpu().numpy().tobytes() + str(weight).encode())
        settings["init_vector"] = f"{len(items)} vectors, sha256 {digest.hexdigest()[:16]}"
    return run_folder.run_settings(settings, peft_model) | options


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
