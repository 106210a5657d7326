"""Prompt tuning on ``transformers.Trainer``: fast loss, tpv evaluation, best checkpoint, resumable, cached.

Defaults follow the paper (lr 0.3, weight decay 1e-5, linear warm-up and decay, AdamW) where they fit; the
prompt length defaults to 20 virtual tokens rather than T5's 50, because on a 2-core CPU every virtual token
lengthens every sequence of every step: on SmolLM2-135M, 20 tokens reach 0.847 SST-2 test macro-F1 in ~5 min
and 50 tokens 0.89 in ~7.5 min (docs/benchmarks.md). Pass ``num_virtual_tokens=50`` when quality matters more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from ._io import atomic_write_text, dumps, read_json
from .encoding import DEFAULT_MAX_LENGTH, Encoded, collate, encode_examples, is_seq2seq_model, resolve_task
from .errors import TPVError
from .evaluation import evaluate
from .origin import Origin, make_origin
from .peft_io import ORIGIN_FILENAME, get_prompt, init_prompt_tuning, record_origin, recorded_origin
from .prefix import FULL, SHARED_PREFIX, choose_engine, has_fast_path, shared_prefix_obstacle
from .scoring import prompt_tuning_loss
from .tasks import Task
from .vector import TaskPromptVector

DEFAULT_NUM_VIRTUAL_TOKENS = 20
RESULT_FILENAME = "tpv_train.json"
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
    # "shared_prefix" (the prompt's keys and values computed once per step) or "full" (see tpv.prefix).
    engine: str | None = None
    peft_model: object = field(default=None, repr=False, compare=False)
    tokenizer: object = field(default=None, repr=False, compare=False)
    task: Task | None = field(default=None, repr=False)
    max_length: int = DEFAULT_MAX_LENGTH

    def evaluate(self, data: Sequence[dict], **options) -> dict:
        """Score the tuned prompt on ``data`` (e.g. the test split) with :func:`tpv.evaluation.evaluate`.

        Args:
            data: examples of the task the prompt was tuned on.
            options: ``evaluate``'s keyword arguments (``method``, ``batch_size``, ``progress``, …); ``max_length``
                defaults to the training run's.

        Returns:
            ``evaluate``'s dict: the task's metric, ``accuracy`` where it applies, ``n``, ``method``.
        """
        if self.peft_model is None:
            raise TPVError("this TrainResult holds no model (it was built by hand or unpickled); rebuild one with "
                           "tpv.init_prompt_tuning(model, result.vector, origin=result.origin)")
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
        if self.task is not None and isinstance(self.metrics.get(f"eval_{self.task.metric}"), (int, float)):
            parts.append(f"validation {self.task.metric} {self.metrics[f'eval_{self.task.metric}']:.3f}")
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
            origin = Origin(get_prompt(model, self.adapter_name), num_virtual_tokens=config.num_virtual_tokens,
                            num_transformer_submodules=config.num_transformer_submodules or 1)
        self.origin = origin
        record_origin(model, origin, self.adapter_name)

    def on_save(self, args, state, control, **kwargs):
        # Trainer saves through PeftModel.save_pretrained, which already writes the origin; this also covers
        # back-ends (DeepSpeed, FSDP) that save weights another way.
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.origin is not None and folder.is_dir() and not (folder / ORIGIN_FILENAME).exists():
            self.origin.save(folder / ORIGIN_FILENAME)


class PromptTuningTrainer(Trainer):
    """A ``Trainer`` that computes the loss on target tokens only and evaluates with :func:`tpv.evaluation.evaluate`."""

    loss_is_scaled_for_ga = False  # our loss is a per-batch mean

    def __init__(self, *args, task: Task, tokenizer, eval_examples=None, eval_method="rank", eval_batch_size=32,
                 max_length=DEFAULT_MAX_LENGTH, adapter_name="default", shared_prefix: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
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

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if not self.tpv_eval_examples:
            return {}
        model = self.accelerator.unwrap_model(self.model)
        result = evaluate(model, self.tpv_tokenizer, self.tpv_task, self.tpv_eval_examples,
                          method=self.tpv_eval_method, batch_size=self.tpv_eval_batch_size,
                          adapter_name=self.tpv_adapter_name, max_length=self.tpv_max_length,
                          shared_prefix=self.tpv_shared_prefix, progress=not self.args.disable_tqdm)
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
            self.training_bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc,
                                     dynamic_ncols=True)
        self.current_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)


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
    model,
    tokenizer,
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
    returns the finished run without training; a killed run resumes from its last checkpoint. With
    ``eval_data`` the best checkpoint by the task's validation metric is kept.

    Args:
        model: a transformers model, or a PeftModel made by :func:`tpv.init_prompt_tuning`.
        origin: an :class:`Origin`, or an int seed for ``make_origin(model, num_virtual_tokens, seed)``.
        train_data, eval_data: lists of examples (dicts) of ``task``; eval data must be validation data.
        progress: show a progress bar over steps (and evaluations) and print a one-line summary on stderr.
        log_records: also print Trainer's raw log records (``{'loss': …}``) every ``logging_steps``.
        training_args: extra ``TrainingArguments`` fields, which override ours.
        shared_prefix: decoder-only models run the soft prompt once per step and every input against its keys
            and values (same loss and gradient, less work); None chooses that automatically where it applies,
            True insists, False runs ``[prompt; input]`` whole per row as PEFT does. ``TrainResult.engine``
            and the log say which ran.

    Returns:
        A :class:`TrainResult`; its ``peft_model`` holds the tuned prompt and ``result.evaluate(test_data)``
        scores it.
    """
    task = check_training_inputs(task, train_data, max_steps, batch_size)
    output_dir = Path(output_dir)
    peft_model, origin = _prepare(model, origin, num_virtual_tokens, init_vector, init_scale, adapter_name)
    seq2seq = is_seq2seq_model(peft_model)
    fingerprint = _fingerprint(task, origin, train_data, eval_data, init_vector, init_scale, dict(
        max_steps=max_steps, learning_rate=learning_rate, batch_size=batch_size, weight_decay=weight_decay,
        warmup_ratio=warmup_ratio, eval_steps=eval_steps, eval_method=eval_method, max_length=max_length,
        seed=seed, training_args=training_args or {}))
    finished = _load_finished(output_dir, fingerprint, peft_model, origin, task, adapter_name)
    if finished is not None:
        return _ready(finished, peft_model, tokenizer, task, max_length, progress, cached=True)

    encoded = encode_examples(tokenizer, task, train_data, seq2seq=seq2seq, max_length=max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eval_every = eval_steps or max(1, max_steps // 5)
    args = dict(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, weight_decay=weight_decay, warmup_steps=int(warmup_ratio * max_steps),
        lr_scheduler_type="linear", logging_steps=max(1, min(10, max_steps // 10)), save_strategy="steps",
        save_steps=eval_every, save_total_limit=2, report_to=[], remove_unused_columns=False,
        train_sampling_strategy="group_by_length", dataloader_num_workers=0, seed=seed, data_seed=seed,
        disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(),
    )
    if eval_data:
        args.update(eval_strategy="steps", eval_steps=eval_every, load_best_model_at_end=True,
                    metric_for_best_model=f"eval_{task.metric}", greater_is_better=True)
    args.update(training_args or {})
    engine = choose_engine(peft_model, shared_prefix, gradient_checkpointing=bool(args.get("gradient_checkpointing")))
    obstacle = shared_prefix_obstacle(peft_model, bool(args.get("gradient_checkpointing")))
    logger.info("prompt tuning engine: %s%s", engine, f" ({obstacle})" if engine != SHARED_PREFIX and obstacle else "")
    trainer = PromptTuningTrainer(
        model=peft_model, args=TrainingArguments(**args), train_dataset=_EncodedDataset(encoded),
        # Trainer insists on an eval_dataset when evaluating; our evaluate() reads the raw examples instead.
        eval_dataset=list(eval_data) if eval_data else None,
        data_collator=_Collator(pad_id, seq2seq), callbacks=[OriginCallback(origin, adapter_name), *callbacks],
        task=task, tokenizer=tokenizer, eval_examples=list(eval_data) if eval_data else None,
        eval_method=eval_method, eval_batch_size=eval_batch_size, max_length=max_length, adapter_name=adapter_name,
        shared_prefix=engine == SHARED_PREFIX,
    )
    # Trainer prints its log records as raw dicts, between the lines of the caller's own output; the bar shows
    # the loss instead, and the records stay in the result's history (and on screen with log_records=True).
    if not log_records:
        trainer.remove_callback(PrinterCallback)
        if trainer.pop_callback(ProgressCallback) is not None:
            trainer.add_callback(_StepProgress(f"train {task.name}"))
    last = get_last_checkpoint(str(output_dir)) if resume and output_dir.is_dir() else None
    train_output = trainer.train(resume_from_checkpoint=last)
    metrics = dict(train_output.metrics)
    if eval_data:
        metrics.update(trainer.evaluate())
    result = _finish(peft_model, origin, task, output_dir, adapter_name, trainer.state.log_history, metrics,
                     fingerprint)
    # Under DDP the loss runs through the wrapper, i.e. the full forward, whatever was chosen.
    result.engine = "+".join(sorted(trainer.tpv_engines_run)) or engine
    return _ready(result, peft_model, tokenizer, task, max_length, progress)


def _ready(result: TrainResult, peft_model, tokenizer, task: Task, max_length: int, progress: bool,
           cached: bool = False) -> TrainResult:
    result.peft_model, result.tokenizer, result.task, result.max_length = peft_model, tokenizer, task, max_length
    if progress:
        print(result.summary() + (" (reused the finished run)" if cached else ""), file=sys.stderr, flush=True)
    return result


def check_training_inputs(task: str | Task, train_data, max_steps: int, batch_size: int) -> Task:
    """The checks every training loop shares; returns the resolved task."""
    task = resolve_task(task)
    if not train_data:
        raise TPVError(f"no training examples for task {task.name!r}; pass a non-empty list")
    if max_steps < 1 or batch_size < 1:
        raise TPVError(f"max_steps and batch_size must be ≥ 1, got {max_steps} and {batch_size}")
    return task


def _prepare(model, origin, num_virtual_tokens, init_vector, init_scale, adapter_name):
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


def _finish(peft_model, origin, task, output_dir, adapter_name, history, metrics, fingerprint) -> TrainResult:
    peft_model.save_pretrained(str(output_dir), selected_adapters=[adapter_name])
    adapter_dir = output_dir if adapter_name == "default" else output_dir / adapter_name
    vector = TaskPromptVector.from_peft(peft_model, origin=origin, task=task.name, adapter_name=adapter_name)
    result = TrainResult(vector=vector, adapter_dir=adapter_dir, history=history, metrics=metrics, origin=origin,
                         vector_path=adapter_dir / f"{task.name}.tpv.safetensors")
    vector.save(result.vector_path)
    atomic_write_text(output_dir / RESULT_FILENAME, json.dumps({
        "fingerprint": fingerprint, "task": task.name, "metrics": metrics, "history": history,
        "vector": result.vector_path.name, "adapter_dir": str(adapter_dir.relative_to(output_dir)),
    }, indent=1, default=str))
    return result


def _load_finished(output_dir: Path, fingerprint: str, peft_model, origin, task, adapter_name) -> TrainResult | None:
    path = output_dir / RESULT_FILENAME
    if not path.is_file():
        return None
    record = read_json(path, "the run record", f"delete it to train again in '{output_dir}'")
    if not {"fingerprint", "adapter_dir", "vector", "history", "metrics"} <= set(record):
        raise TPVError(f"the run record '{path}' lacks {sorted({'fingerprint', 'adapter_dir', 'vector'} - set(record))}"
                       f"; delete it to train again in '{output_dir}'")
    if record.get("fingerprint") != fingerprint:
        raise TPVError(
            f"'{output_dir}' holds a finished run with other settings or data; pass a new output_dir, or delete "
            f"'{path}' to train again there"
        )
    adapter_dir = output_dir / record["adapter_dir"]
    vector = TaskPromptVector.load(adapter_dir / record["vector"])
    # Leave the model where the finished run ended, as if it had just trained.
    from .peft_io import set_prompt

    set_prompt(peft_model, vector.apply_to(origin), adapter_name)
    return TrainResult(vector=vector, adapter_dir=adapter_dir, history=record["history"],
                       metrics=record["metrics"], origin=origin, vector_path=adapter_dir / record["vector"])


def _fingerprint(task, origin, train_data, eval_data, init_vector, init_scale, settings) -> str:
    digest = hashlib.sha256()
    digest.update(dumps({"task": asdict(task) | {"hub_splits": None}, "origin": origin.sha256,
                         "settings": settings, "init_scale": init_scale}).encode())
    for example in train_data:
        digest.update(dumps(example).encode())
    digest.update(b"|eval|")
    for example in eval_data or ():
        digest.update(dumps(example).encode())
    if init_vector is not None:
        items = init_vector if isinstance(init_vector, (list, tuple)) else [init_vector]
        for item in items:
            vector, weight = item if isinstance(item, tuple) else (item, 1.0)
            digest.update(vector.tensor.cpu().numpy().tobytes() + str(weight).encode())
    return digest.hexdigest()


