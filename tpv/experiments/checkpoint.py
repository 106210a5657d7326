"""Best checkpoint by validation *loss*, as the official few-shot configs (``metric_for_best_model =
"eval_average_loss"``): a Trainer callback that adds ``eval_loss`` on held validation examples to the metrics of
every evaluation, so ``load_best_model_at_end`` with ``metric_for_best_model="eval_loss"`` keeps the lowest.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import TrainerCallback

from tpv.data.encoding import (
    DEFAULT_MAX_LENGTH,
    Encoded,
    collate,
    encode_examples,
    is_seq2seq_model,
    length_sorted_batches,
    pad_token_id,
)
from tpv.engine.scoring import prompt_tuning_loss

# The Trainer settings that make it keep the checkpoint with the lowest validation loss.
LOSS_CHECKPOINT_ARGS = {"metric_for_best_model": "eval_loss", "greater_is_better": False}


class ValidationLossCallback(TrainerCallback):
    """Adds ``eval_loss`` (mean target-token cross-entropy on ``examples``) to each evaluation's metrics.

    Args:
        tokenizer, task: as for ``train_prompt``.
        examples: the held validation examples.
        batch_size, max_length: as for scoring.
    """

    def __init__(
        self, tokenizer, task, examples: Sequence[dict], batch_size: int = 32, max_length: int = DEFAULT_MAX_LENGTH
    ):
        self.tokenizer, self.task, self.examples = tokenizer, task, list(examples)
        self.batch_size, self.max_length = batch_size, max_length
        self._encoded: list[Encoded] | None = None

    def tpv_settings(self) -> dict:
        """Judging checkpoints by this loss changes which one a run keeps: part of the run's identity."""
        return {"metric": "eval_loss", "examples": len(self.examples), "max_length": self.max_length}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics is None or model is None:
            return
        metrics["eval_loss"] = self.loss(model)

    @torch.no_grad()
    def loss(self, peft_model) -> float:
        """Mean loss over the examples (each batch weighted by its size)."""
        seq2seq = is_seq2seq_model(peft_model)
        if self._encoded is None:
            self._encoded = encode_examples(
                self.tokenizer, self.task, self.examples, seq2seq=seq2seq, max_length=self.max_length
            )
        encoded = self._encoded
        pad = pad_token_id(self.tokenizer)
        device = next(peft_model.parameters()).device
        was_training = peft_model.training
        peft_model.eval()
        total = 0.0
        try:
            for indices in length_sorted_batches([len(e.input_ids) for e in encoded], self.batch_size):
                batch = collate([encoded[i] for i in indices], pad, seq2seq=seq2seq)
                batch = {k: v.to(device) for k, v in batch.items()}
                total += float(prompt_tuning_loss(peft_model, batch)) * len(indices)
        finally:
            peft_model.train(was_training)
        return total / len(encoded)
