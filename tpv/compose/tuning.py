"""A few prompt-tuning steps without a Trainer: what auto_init's probes and the zoo build run.

:func:`tpv.engine.training.train_prompt` is the full run (checkpoints, resumption, multi-process). A probe of
20 steps from each of three starts needs none of that, and pays Trainer's set-up three times; this loop is the
same loss (:func:`tpv.engine.scoring.prompt_tuning_loss`) and the same optimiser (AdamW, linear warm-up then
decay), on one process, with a seeded data order so that every start sees the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from tpv.bridge.peft_io import get_prompt
from tpv.core.errors import TPVError
from tpv.core.progress import progress_bar
from tpv.data.encoding import DEFAULT_MAX_LENGTH, ENCODING_CACHE, collate, is_seq2seq_model, pad_token_id, resolve_task
from tpv.engine.scoring import prompt_tuning_loss


def tune_prompt(
    peft_model,
    tokenizer,
    task,
    train: Sequence[dict],
    *,
    steps: int,
    learning_rate: float = 0.3,
    batch_size: int = 8,
    max_length: int = DEFAULT_MAX_LENGTH,
    weight_decay: float = 1e-5,
    warmup_ratio: float = 0.1,
    seed: int = 0,
    adapter_name: str = "default",
    on_step: Callable[[int], None] | None = None,
    progress: bool = False,
    desc: str = "tuning",
) -> torch.Tensor:
    """Tune the soft prompt of ``peft_model`` in place for ``steps`` optimiser steps from where it is now.

    Args:
        peft_model: a prompt-tuning ``PeftModel`` whose current prompt is the start.
        tokenizer, task: how ``train`` is encoded.
        train: training examples; batches are drawn in an order fixed by ``seed`` (a new order each epoch).
        steps: optimiser steps.
        learning_rate, batch_size, max_length, weight_decay, warmup_ratio: as in ``train_prompt``.
        on_step: called with the step number after each step (e.g. to score and keep the best prompt).
        progress: a progress bar over steps, named ``desc``.

    Returns:
        The tuned prompt (a float32 copy); the model holds it too.
    """
    task = resolve_task(task)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TPVError(f"steps must be a positive int, got {steps!r}")
    if not train:
        raise TPVError(f"no training examples to tune a prompt for task {task.name!r}; pass train=[...]")
    get_prompt(peft_model, adapter_name)  # a model without this prompt-tuning adapter fails here, in one line
    parameter = peft_model.prompt_encoder[adapter_name].embedding.weight
    seq2seq = is_seq2seq_model(peft_model)
    encoded = ENCODING_CACHE.get(tokenizer, task, list(train), seq2seq=seq2seq, max_length=max_length)
    pad = pad_token_id(tokenizer)
    optimizer = torch.optim.AdamW([parameter], lr=learning_rate, weight_decay=weight_decay)
    warmup = max(1, int(warmup_ratio * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    was_training, requires_grad = peft_model.training, parameter.requires_grad
    parameter.requires_grad_(True)
    peft_model.train()
    try:
        for step, rows in enumerate(progress_bar(_batches(len(encoded), batch_size, steps, seed), progress, desc), 1):
            batch = collate([encoded[i] for i in rows], pad, seq2seq=seq2seq)
            batch = {key: value.to(parameter.device) for key, value in batch.items()}
            loss = prompt_tuning_loss(peft_model, batch, adapter_name)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(step)
    finally:
        peft_model.train(was_training)
        parameter.requires_grad_(requires_grad)
    return get_prompt(peft_model, adapter_name)


def _batches(count: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += rng.permutation(count).tolist()
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]
