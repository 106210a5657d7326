"""ATTEMPT (Asai et al. 2022): an input-dependent attention mixture of frozen source prompts, for causal LMs and
encoder-decoder models (the original is T5, where the instance prompt is prepended to the encoder's input).

For an input X with token embeddings E(X), ATTEMPT max-pools E(X) into x̂, projects it through a bottleneck
(down-projection, SiLU, up-projection) and a layer norm into h, scores every prompt P_j (sources and the
trainable target prompt, each pooled over its tokens to p̂_j) with ``a_j = softmax_j(p̂_j · h / T)``, and
prepends the instance prompt ``P_target + Σ_j a_j P_j`` to E(X). Only P_target and the attention module train;
the LM and the source prompts stay frozen.

Two variants (``VARIANTS``):

- ``"reference"`` follows ATTEMPT's code (AkariAsai/ATTEMPT@b5121e5, ``attn_method="sub"``): prompt keys
  *max*-pooled over prompt tokens, bottleneck width = number of prompt rows (its ``prefix_dim``), no biases,
  a LayerNorm that is never trained (its weights stay 1 and 0), and the target prompt starts from the first
  source prompt.
- ``"tpv"`` is the variant tpv shipped first: mean-pooled keys, a 64-wide bottleneck with biases and a trained
  LayerNorm, the target prompt starting from an origin. It is kept to reproduce results computed with it, not
  because it is known to be better.

Both mask padding out of the input max-pool (the reference code pools padding too, which makes the prompt of
an input depend on the longest input of its batch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tpv.core._io import atomic_save, atomic_write_text, read_safetensors
from tpv.core.errors import TPVError
from tpv.data import Task
from tpv.data.encoding import (
    DEFAULT_MAX_LENGTH,
    ENCODING_CACHE,
    IGNORE_INDEX,
    Encoded,
    collate,
    encode_examples,
    is_seq2seq_model,
    length_sorted_batches,
    resolve_task,
)
from tpv.engine.evaluation import _score, label_token_ids
from tpv.engine.training import check_training_inputs

__all__ = ["VARIANTS", "Attempt", "train_attempt"]

STATE_FILENAME = "attempt.safetensors"
RESULT_FILENAME = "attempt.json"
# Per variant: how prompt keys are pooled, the default bottleneck (None: the prompt's rows), biases, LayerNorm.
VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {"key_pooling": "max", "bottleneck": None, "bias": False, "train_norm": False},
    "tpv": {"key_pooling": "mean", "bottleneck": 64, "bias": True, "train_norm": True},
}


class Attempt(nn.Module):
    """A frozen LM with ATTEMPT's attention mixture of soft prompts prepended to every input.

    Args:
        model: a transformers causal LM or encoder-decoder model (not wrapped by PEFT); its parameters are frozen.
        source_prompts: task name → a ``(virtual tokens, hidden)`` source prompt (kept frozen). For an
            encoder-decoder model these are the encoder's prompt rows.
        target_prompt: the initial target prompt; ``None`` starts from the first source prompt (the reference).
        variant: ``"reference"`` (ATTEMPT's code) or ``"tpv"`` (see the module docstring).
        bottleneck: width of the attention module's down-projection; default: the variant's.
        temperature: the softmax temperature; ``None`` uses ATTEMPT's ``d·e`` (d = hidden size; its configs use
            2087 ≈ 768·e for T5-base), which keeps the weights from collapsing onto one prompt early on.
        seed: seeds the attention module's initialisation, so equal arguments build equal modules (and a
            cached training run is recognised as the same run).

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> lm = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16,
        ...                       num_hidden_layers=1, num_attention_heads=2))
        >>> attempt = Attempt(lm, {"a": torch.randn(4, 8), "b": torch.randn(4, 8)})
        >>> weights = attempt.mixture_weights(torch.tensor([[3, 4, 5]]), torch.tensor([[1, 1, 1]]))
        >>> weights.shape, round(float(weights.sum()), 5), attempt.down.out_features
        (torch.Size([1, 3]), 1.0, 4)
    """

    source_prompts: torch.Tensor  # a buffer: (sources, virtual tokens, hidden), frozen

    def __init__(self, model, source_prompts: Mapping[str, torch.Tensor], target_prompt: torch.Tensor | None = None,
                 *, variant: str = "reference", bottleneck: int | None = None, temperature: float | None = None,
                 seed: int = 0):
        super().__init__()
        if hasattr(model, "peft_config"):
            raise TPVError(f"Attempt wraps a plain transformers model; got a {type(model).__name__}: pass the base "
                           "model, not a PeftModel")
        if variant not in VARIANTS:
            raise TPVError(f"unknown ATTEMPT variant {variant!r}; use one of {list(VARIANTS)}")
        if not source_prompts:
            raise TPVError("Attempt needs at least one source prompt; pass {task: tensor}")
        hidden = model.get_input_embeddings().weight.shape[1]
        if target_prompt is None:
            target_prompt = next(iter(source_prompts.values()))
        shapes = {name: tuple(p.shape) for name, p in source_prompts.items()}
        if target_prompt.dim() != 2 or any(s != tuple(target_prompt.shape) for s in shapes.values()) \
                or target_prompt.shape[1] != hidden:
            raise TPVError(
                f"source prompts {shapes} and the target prompt {tuple(target_prompt.shape)} must all be "
                f"(virtual tokens, {hidden}); build them from origins of this model"
            )
        if temperature is not None and not temperature > 0:
            raise TPVError(f"temperature must be > 0, got {temperature!r}")
        settings = VARIANTS[variant]
        width = bottleneck or settings["bottleneck"] or target_prompt.shape[0]
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.model = model
        self.variant = variant
        self.seq2seq = is_seq2seq_model(model)
        self.key_pooling = settings["key_pooling"]
        self.source_names = list(source_prompts)
        self.register_buffer("source_prompts", torch.stack([p.detach().float() for p in source_prompts.values()]))
        self.target_prompt = nn.Parameter(target_prompt.detach().float().clone())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.down = nn.Linear(hidden, width, bias=settings["bias"])
            self.up = nn.Linear(width, hidden, bias=settings["bias"])
        self.norm = nn.LayerNorm(hidden)
        self.norm.requires_grad_(settings["train_norm"])
        self.temperature = float(temperature) if temperature is not None else hidden * math.e
        # Only the device follows the LM: the mixture itself stays in float32 even when the LM is bfloat16.
        self.to(model.get_input_embeddings().weight.device)

    @property
    def num_virtual_tokens(self) -> int:
        return self.target_prompt.shape[0]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The target prompt first, then the attention module's trained parameters."""
        return [self.target_prompt, *(p for m in (self.down, self.up, self.norm) for p in m.parameters()
                                      if p.requires_grad)]

    def mixture_weights(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-input weights over ``[*sources, target]``: shape ``(batch, sources + 1)``, rows sum to one."""
        embeds = self.model.get_input_embeddings()(input_ids).float()
        return self._weights(embeds, attention_mask)

    def instance_prompts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``P_target + Σ_j a_j P_j`` for every input: shape ``(batch, virtual tokens, hidden)``."""
        embeds = self.model.get_input_embeddings()(input_ids).float()
        return self._prompts(self._weights(embeds, attention_mask))

    def _weights(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Padding must not win the max-pool, so it is pushed to -inf first.
        masked = embeds.masked_fill(attention_mask.unsqueeze(-1) == 0, float("-inf"))
        pooled = masked.max(dim=1).values
        h = self.norm(self.up(F.silu(self.down(pooled))))
        prompts = torch.cat([self.source_prompts, self.target_prompt.unsqueeze(0)])
        keys = prompts.max(dim=1).values if self.key_pooling == "max" else prompts.mean(dim=1)
        return torch.softmax(h @ keys.T / self.temperature, dim=-1)

    def _prompts(self, weights: torch.Tensor) -> torch.Tensor:
        prompts = torch.cat([self.source_prompts, self.target_prompt.unsqueeze(0)])
        return self.target_prompt.unsqueeze(0) + torch.einsum("bj,jtd->btd", weights, prompts)

    def prompted_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """``(inputs_embeds, attention_mask)`` of ``[instance prompt; input]`` in the model's dtype (for a
        seq2seq model, the encoder's input)."""
        embeds = self.model.get_input_embeddings()(input_ids)
        prompts = self._prompts(self._weights(embeds.float(), attention_mask)).to(embeds.dtype)
        mask = torch.cat([attention_mask.new_ones(input_ids.shape[0], self.num_virtual_tokens), attention_mask], dim=1)
        return torch.cat([prompts, embeds], dim=1), mask

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states of ``[instance prompt; input]`` of a causal LM: ``(batch, virtual + length, hidden)``."""
        embeds, mask = self.prompted_inputs(input_ids, attention_mask)
        body = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.base_model
        return body(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state

    def target_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at the positions that predict a target token, and those targets (as ``tpv.engine.scoring``)."""
        labels = batch["labels"]
        if self.seq2seq:
            embeds, mask = self.prompted_inputs(batch["input_ids"], batch["attention_mask"])
            logits = self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False).logits
            keep = labels != IGNORE_INDEX
            return logits[keep], labels[keep]
        hidden = self.hidden_states(batch["input_ids"], batch["attention_mask"])
        rows, cols = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
        scored = hidden[rows, self.num_virtual_tokens + cols]
        return self.model.get_output_embeddings()(scored), labels[rows, cols + 1]

    def loss(self, batch: dict) -> torch.Tensor:
        """Mean cross-entropy over target tokens only."""
        logits, targets = self.target_logits(batch)
        return F.cross_entropy(logits.float(), targets)

    @torch.inference_mode()
    def evaluate(self, tokenizer, task: str | Task, data: Sequence[dict], *, method: str = "rank",
                 batch_size: int = 32, max_length: int = DEFAULT_MAX_LENGTH, max_new_tokens: int = 16,
                 answer_match: str = "prefix", return_predictions: bool = False) -> dict:
        """Score on ``data``: rank the task's label words after each input, or generate greedily and parse the
        text (as ``tpv.engine.evaluation.evaluate``; ``answer_match="exact"`` counts only the bare label word)."""
        task = resolve_task(task)
        if not task.is_classification:
            raise TPVError(f"Attempt.evaluate scores label words; task {task.name!r} has none (regression/generation)")
        if method not in ("rank", "generate"):
            raise TPVError(f"unknown evaluation method {method!r}; use 'rank' or 'generate'")
        if not data:
            raise TPVError(f"no examples to evaluate task {task.name!r} on; pass a non-empty list")
        was_training = self.training
        self.eval()
        try:
            if method == "rank":
                predictions = self._rank(tokenizer, task, data, batch_size, max_length)
            else:
                texts = self._generate(tokenizer, task, data, batch_size, max_length, max_new_tokens)
                predictions = [task.parse_prediction(t, exact=answer_match == "exact") for t in texts]
        finally:
            self.train(was_training)
        return _score(task, predictions, [e[task.label_key] for e in data], method, return_predictions)

    def _rank(self, tokenizer, task, data, batch_size, max_length) -> list[int]:
        encoded = ENCODING_CACHE.get(tokenizer, task, data, seq2seq=self.seq2seq, max_length=max_length)
        label_ids = label_token_ids(tokenizer, task, seq2seq=self.seq2seq)
        pad = _pad_id(tokenizer)
        device = self.target_prompt.device
        predictions = [0] * len(encoded)
        first = [ids[0] for ids in label_ids]
        if len(set(first)) == len(first):
            for indices in length_sorted_batches([len(e.input_ids) for e in encoded], batch_size):
                batch = collate([encoded[i] for i in indices], pad, seq2seq=self.seq2seq, with_targets=False)
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                scores = self._next_token_logits(ids, mask, first)
                for i, label in zip(indices, scores.argmax(dim=1).tolist()):
                    predictions[i] = label
            return predictions
        # Label words share a first token: compare whole label sequences by summed log-likelihood.
        eos = () if self.seq2seq else (tokenizer.eos_token_id,)
        per_batch = max(1, batch_size // len(label_ids))
        for indices in length_sorted_batches([len(e.input_ids) for e in encoded], per_batch):
            candidates = [Encoded(encoded[i].input_ids, tuple(ids) + eos) for i in indices for ids in label_ids]
            batch = {k: v.to(device) for k, v in collate(candidates, pad, seq2seq=self.seq2seq).items()}
            logits, targets = self.target_logits(batch)
            rows = (batch["labels"] != IGNORE_INDEX).nonzero(as_tuple=True)[0] if self.seq2seq \
                else (batch["labels"][:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)[0]
            token = torch.log_softmax(logits.float(), -1).gather(1, targets.unsqueeze(1)).squeeze(1)
            totals = torch.zeros(len(candidates), device=device).index_add_(0, rows, token)
            for row, i in enumerate(indices):
                predictions[i] = int(totals[row * len(label_ids):(row + 1) * len(label_ids)].argmax())
        return predictions

    def _next_token_logits(self, ids, mask, token_ids) -> torch.Tensor:
        if self.seq2seq:
            embeds, full_mask = self.prompted_inputs(ids, mask)
            start = torch.full((ids.shape[0], 1), self.model.config.decoder_start_token_id, device=ids.device)
            logits = self.model(inputs_embeds=embeds, attention_mask=full_mask, decoder_input_ids=start).logits
            return logits[:, 0, token_ids]
        hidden = self.hidden_states(ids, mask)
        last = hidden[torch.arange(ids.shape[0]), self.num_virtual_tokens + mask.sum(dim=1) - 1]
        head = self.model.get_output_embeddings()
        return F.linear(last, head.weight[token_ids], head.bias[token_ids] if head.bias is not None else None)

    def _generate(self, tokenizer, task, data, batch_size, max_length, max_new_tokens) -> list[str]:
        encoded = ENCODING_CACHE.get(tokenizer, task, data, seq2seq=self.seq2seq, max_length=max_length)
        pad = _pad_id(tokenizer)
        device = self.target_prompt.device
        texts = [""] * len(encoded)
        for indices in length_sorted_batches([len(e.input_ids) for e in encoded], batch_size):
            inputs = [encoded[i].input_ids for i in indices]
            width = max(len(ids) for ids in inputs)
            # Left padding for causal LMs: generation appends at the right end of every row.
            rows = [([pad] * (width - len(ids)) + list(ids), [0] * (width - len(ids)) + [1] * len(ids))
                    if not self.seq2seq
                    else (list(ids) + [pad] * (width - len(ids)), [1] * len(ids) + [0] * (width - len(ids)))
                    for ids in inputs]
            ids = torch.tensor([r[0] for r in rows], device=device)
            mask = torch.tensor([r[1] for r in rows], device=device)
            embeds, full_mask = self.prompted_inputs(ids, mask)
            output = self.model.generate(inputs_embeds=embeds, attention_mask=full_mask, max_new_tokens=max_new_tokens,
                                         do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
            for i, row in zip(indices, output.tolist()):
                texts[i] = tokenizer.decode(row, skip_special_tokens=True)
        return texts

    def state(self) -> dict[str, torch.Tensor]:
        """The trained parameters (target prompt and attention module), for saving."""
        return {name: p.detach() for name, p in self.named_parameters() if not name.startswith("model.")}

    def load_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        missing = [name for name in self.state() if name not in tensors]
        if missing:
            raise TPVError(f"ATTEMPT state lacks {missing}; it was saved by another version or model")
        with torch.no_grad():
            for name in self.state():
                own[name].copy_(tensors[name].to(own[name].device, own[name].dtype))


def train_attempt(attempt: Attempt, tokenizer, task: str | Task, train_data: Sequence[dict], *,
                  output_dir: str | os.PathLike, max_steps: int = 100, learning_rate: float = 0.3,
                  attention_learning_rate: float | None = None, batch_size: int = 16, weight_decay: float = 1e-5,
                  warmup_ratio: float = 0.1, max_length: int = DEFAULT_MAX_LENGTH, seed: int = 0,
                  progress: bool = True) -> dict:
    """Train ATTEMPT's target prompt and attention module on ``task`` (a ``MixtureTask`` for multi-task).

    The finished state is saved in ``output_dir``; calling again with the same settings, data and starting
    state loads it instead of training (so experiments resume). Every trained parameter takes ``learning_rate``,
    as in ATTEMPT's reference code, unless ``attention_learning_rate`` gives the attention module its own.

    Returns:
        ``{"losses": [...], "cached": bool}``.
    """
    task = check_training_inputs(task, train_data, max_steps, batch_size)
    output_dir = Path(output_dir)
    settings = dict(max_steps=max_steps, learning_rate=learning_rate, attention_learning_rate=attention_learning_rate,
                    batch_size=batch_size, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
                    max_length=max_length, seed=seed, task=task.name, temperature=attempt.temperature,
                    variant=attempt.variant)
    fingerprint = _fingerprint(attempt, train_data, settings)
    record_path = output_dir / RESULT_FILENAME
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fingerprint:
            tensors, _ = read_safetensors(output_dir / STATE_FILENAME, "ATTEMPT state file")
            attempt.load_state(tensors)
            return {"losses": record["losses"], "cached": True}
        raise TPVError(f"'{output_dir}' holds an ATTEMPT run with other settings or data; pass a new output_dir, "
                       f"or delete '{record_path}' to train again there")
    encoded = encode_examples(tokenizer, task, train_data, seq2seq=attempt.seq2seq, max_length=max_length)
    losses = _train_loop(attempt, encoded, _pad_id(tokenizer), settings, progress)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save(attempt.state(), output_dir / STATE_FILENAME, {"format": "tpv-attempt/1", "task": task.name})
    atomic_write_text(record_path, json.dumps({"fingerprint": fingerprint, "settings": settings, "losses": losses},
                                              indent=1))
    return {"losses": losses, "cached": False}


def _train_loop(attempt: Attempt, encoded: list[Encoded], pad: int, settings: dict, progress: bool) -> list[float]:
    steps, batch_size = settings["max_steps"], settings["batch_size"]
    parameters = attempt.trainable_parameters()
    groups = [{"params": parameters}] if settings["attention_learning_rate"] is None else [
        {"params": parameters[:1]}, {"params": parameters[1:], "lr": settings["attention_learning_rate"]}]
    optimizer = torch.optim.AdamW(groups, lr=settings["learning_rate"], weight_decay=settings["weight_decay"])
    warmup = int(settings["warmup_ratio"] * steps)
    # Linear warm-up then linear decay, the schedule train_prompt uses.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup
                                                 else max(0.0, (steps - s) / max(1, steps - warmup)))
    generator = torch.Generator().manual_seed(settings["seed"])
    device = attempt.target_prompt.device
    order: list[int] = []
    losses = []
    attempt.train()
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="ATTEMPT", leave=False)
    for _ in iterator:
        if len(order) < batch_size:
            order += torch.randperm(len(encoded), generator=generator).tolist()
        indices, order = order[:batch_size], order[batch_size:]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in indices], pad,
                                                     seq2seq=attempt.seq2seq).items()}
        loss = attempt.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    attempt.eval()
    return losses


def _fingerprint(attempt: Attempt, train_data: Sequence[dict], settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(attempt.state().items()):
        digest.update(name.encode() + tensor.float().cpu().numpy().tobytes())
    digest.update(attempt.source_prompts.float().cpu().numpy().tobytes())
    for example in train_data:
        digest.update(json.dumps(example, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
