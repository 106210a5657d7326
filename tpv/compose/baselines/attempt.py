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
from tpv.core.progress import progress_bar
from tpv.data import Task
from tpv.data.encoding import DEFAULT_MAX_LENGTH, Encoded, collate, encode_examples, pad_token_id, resolve_task
from tpv.engine.evaluation import evaluate_prompted
from tpv.engine.run_folder import digest_of, fingerprint_of, run_settings
from tpv.engine.scoring import PromptedModel, prompt_tuning_loss, target_logits
from tpv.engine.training import check_training_inputs

__all__ = ["VARIANTS", "Attempt", "train_attempt"]

STATE_FILENAME = "attempt.safetensors"
RESULT_FILENAME = "attempt.json"
# Per variant: how prompt keys are pooled, the default bottleneck (None: the prompt's rows), biases, LayerNorm.
VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {"key_pooling": "max", "bottleneck": None, "bias": False, "train_norm": False},
    "tpv": {"key_pooling": "mean", "bottleneck": 64, "bias": True, "train_norm": True},
}


class Attempt(PromptedModel, nn.Module):
    """A frozen LM with ATTEMPT's attention mixture of soft prompts prepended to every input.

    It is a :class:`tpv.engine.scoring.PromptedModel`: its instance prompts go through the engine's own scoring, so
    ATTEMPT's loss, ranking and generation are computed by the same code as a PEFT prompt's.

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

    def __init__(
        self,
        model,
        source_prompts: Mapping[str, torch.Tensor],
        target_prompt: torch.Tensor | None = None,
        *,
        variant: str = "reference",
        bottleneck: int | None = None,
        temperature: float | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if hasattr(model, "peft_config"):
            raise TPVError(
                f"Attempt wraps a plain transformers model; got a {type(model).__name__}: pass the base "
                "model, not a PeftModel"
            )
        if variant not in VARIANTS:
            raise TPVError(f"unknown ATTEMPT variant {variant!r}; use one of {list(VARIANTS)}")
        if not source_prompts:
            raise TPVError("Attempt needs at least one source prompt; pass {task: tensor}")
        hidden = model.get_input_embeddings().weight.shape[1]
        if target_prompt is None:
            target_prompt = next(iter(source_prompts.values()))
        shapes = {name: tuple(p.shape) for name, p in source_prompts.items()}
        if (
            target_prompt.dim() != 2
            or any(s != tuple(target_prompt.shape) for s in shapes.values())
            or target_prompt.shape[1] != hidden
        ):
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

    @property
    def lm(self):
        return self.model

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The target prompt first, then the attention module's trained parameters."""
        return [
            self.target_prompt,
            *(p for m in (self.down, self.up, self.norm) for p in m.parameters() if p.requires_grad),
        ]

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

    def target_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at the positions that predict a target token, and those targets
        (:func:`tpv.engine.scoring.target_logits`)."""
        return target_logits(self, batch)

    def loss(self, batch: dict) -> torch.Tensor:
        """Mean cross-entropy over target tokens only."""
        return prompt_tuning_loss(self, batch)

    def evaluate(
        self,
        tokenizer,
        task: str | Task,
        data: Sequence[dict],
        *,
        method: str = "rank",
        batch_size: int = 32,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_new_tokens: int = 16,
        answer_match: str = "prefix",
        return_predictions: bool = False,
    ) -> dict:
        """Score on ``data``: rank the task's label words after each input, or generate greedily and parse the
        text (:func:`tpv.engine.evaluation.evaluate_prompted`; ``answer_match="exact"`` counts only the bare label
        word)."""
        task = resolve_task(task)
        if not task.is_classification:
            raise TPVError(f"Attempt.evaluate scores label words; task {task.name!r} has none (regression/generation)")
        return evaluate_prompted(
            self,
            tokenizer,
            task,
            data,
            method=method,
            batch_size=batch_size,
            max_length=max_length,
            max_new_tokens=max_new_tokens,
            answer_match=answer_match,
            return_predictions=return_predictions,
        )

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


def train_attempt(
    attempt: Attempt,
    tokenizer,
    task: str | Task,
    train_data: Sequence[dict],
    *,
    output_dir: str | os.PathLike,
    max_steps: int = 100,
    learning_rate: float = 0.3,
    attention_learning_rate: float | None = None,
    batch_size: int = 16,
    weight_decay: float = 1e-5,
    warmup_ratio: float = 0.1,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train ATTEMPT's target prompt and attention module on ``task`` (a ``MixtureTask`` for multi-task).

    The finished state is saved in ``output_dir``; calling again with the same settings, data and starting
    state loads it instead of training (so experiments resume). Every trained parameter takes ``learning_rate``,
    as in ATTEMPT's reference code, unless ``attention_learning_rate`` gives the attention module its own.

    Returns:
        ``{"losses": [...], "cached": bool}``.
    """
    task = check_training_inputs(task, train_data, max_steps, batch_size)
    output_dir = Path(output_dir)
    settings = dict(
        max_steps=max_steps,
        learning_rate=learning_rate,
        attention_learning_rate=attention_learning_rate,
        batch_size=batch_size,
        weight_decay=weight_decay,
        warmup_ratio=warmup_ratio,
        max_length=max_length,
        seed=seed,
        task=task.name,
        temperature=attempt.temperature,
        variant=attempt.variant,
    )
    # What the run starts from (the attention module's and target prompt's initial state, the frozen source
    # prompts) and the data, besides the settings, the tpv version and the LM's identity.
    keyed = run_settings(
        {
            **settings,
            "start": digest_of(tensor for _, tensor in sorted(attempt.state().items())),
            "source_prompts": digest_of([attempt.source_prompts]),
            "train_data": f"{len(train_data)} examples, {digest_of(train_data)}",
        },
        attempt.model,
    )
    fingerprint = fingerprint_of(keyed)
    record_path = output_dir / RESULT_FILENAME
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") in (fingerprint, _legacy_fingerprint(attempt, train_data, settings)):
            tensors, _ = read_safetensors(output_dir / STATE_FILENAME, "ATTEMPT state file")
            attempt.load_state(tensors)
            return {"losses": record["losses"], "cached": True}
        raise TPVError(
            f"'{output_dir}' holds an ATTEMPT run with other settings or data; pass a new output_dir, "
            f"or delete '{record_path}' to train again there"
        )
    encoded = encode_examples(tokenizer, task, train_data, seq2seq=attempt.seq2seq, max_length=max_length)
    losses = _train_loop(attempt, encoded, pad_token_id(tokenizer), settings, progress)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_save(attempt.state(), output_dir / STATE_FILENAME, {"format": "tpv-attempt/1", "task": task.name})
    atomic_write_text(
        record_path, json.dumps({"fingerprint": fingerprint, "settings": keyed, "losses": losses}, indent=1)
    )
    return {"losses": losses, "cached": False}


def _train_loop(attempt: Attempt, encoded: list[Encoded], pad: int, settings: dict, progress: bool) -> list[float]:
    steps, batch_size = settings["max_steps"], settings["batch_size"]
    parameters = attempt.trainable_parameters()
    groups = (
        [{"params": parameters}]
        if settings["attention_learning_rate"] is None
        else [{"params": parameters[:1]}, {"params": parameters[1:], "lr": settings["attention_learning_rate"]}]
    )
    optimizer = torch.optim.AdamW(groups, lr=settings["learning_rate"], weight_decay=settings["weight_decay"])
    warmup = int(settings["warmup_ratio"] * steps)
    # Linear warm-up then linear decay, the schedule train_prompt uses.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    generator = torch.Generator().manual_seed(settings["seed"])
    device = attempt.target_prompt.device
    order: list[int] = []
    losses = []
    attempt.train()
    for _ in progress_bar(range(steps), progress, "ATTEMPT"):
        if len(order) < batch_size:
            order += torch.randperm(len(encoded), generator=generator).tolist()
        indices, order = order[:batch_size], order[batch_size:]
        batch = {
            k: v.to(device) for k, v in collate([encoded[i] for i in indices], pad, seq2seq=attempt.seq2seq).items()
        }
        loss = attempt.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    attempt.eval()
    return losses


def _legacy_fingerprint(attempt: Attempt, train_data: Sequence[dict], settings: dict) -> str:
    # How runs were keyed before run_folder.run_settings (no tpv version or model in the key). Still accepted so
    # that experiment folders holding such runs resume instead of stopping; new runs are keyed as above.
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(attempt.state().items()):
        digest.update(name.encode() + tensor.float().cpu().numpy().tobytes())
    digest.update(attempt.source_prompts.float().cpu().numpy().tobytes())
    for example in train_data:
        digest.update(json.dumps(example, sort_keys=True, default=str).encode())
    return digest.hexdigest()
