"""The shared-prefix engine: run the soft prompt once, then every input of a batch against its keys and values.

In a decoder-only model the virtual tokens come first and attend only to each other, so their keys and values at
every layer depend on the prompt alone. This module computes them once (at batch size 1, with gradient when
training), broadcasts them to a batch with ``expand`` (no copy per row) in a fresh transformers ``DynamicCache``,
and runs only the batch's real tokens, at positions offset by the prompt length. A forward pass grows the cache it
is given, so every batch gets a new cache built on the same stored tensors; the stored tensors are never mutated.

Where it cannot apply (encoder-decoder models, whose encoder reads the prompt bidirectionally; logits with extra
processing; attention implementations or cache layers other than full attention; gradient checkpointing, which
drops caches; a device_map that runs layers on several accelerators) the engine falls back to running
``[soft prompt; input]`` whole, as PEFT does.

Under DDP each process runs the prefix for its own micro-batch; :func:`as_forward` runs the loss inside the
DDP wrapper's forward, so that its reducer averages the prompt's gradient exactly as for the model's own forward.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch

from tpv.core.errors import TPVError
from tpv.data.encoding import is_seq2seq_model

SHARED_PREFIX = "shared_prefix"
FULL = "full"
ENGINES = (SHARED_PREFIX, FULL)
# Attention implementations whose masks transformers builds from a 2D mask plus a cache offset.
_PREFIX_ATTENTION = ("eager", "sdpa")
# Config attributes that change logits after the projection; such models take PEFT's generic path.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale", "logits_scaling")


def has_fast_path(model) -> bool:
    """True for decoder-only models whose logits are a plain projection of the last hidden state (``model`` a
    PEFT model or a transformers model)."""
    if is_seq2seq_model(model):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_POSTPROCESSING):
        return False
    return base.get_output_embeddings() is not None and getattr(base, "base_model", None) is not base


def shared_prefix_obstacle(peft_model, gradient_checkpointing: bool = False) -> str | None:
    """Why the shared-prefix engine cannot run ``peft_model``, or None when it can."""
    if is_seq2seq_model(peft_model):
        return "it is an encoder-decoder model, whose encoder reads the prompt bidirectionally"
    if not has_fast_path(peft_model):
        return "its logits are not a plain projection of the last hidden state"
    base = peft_model.get_base_model()
    attention = getattr(base.config, "_attn_implementation", None) or "eager"
    if attention not in _PREFIX_ATTENTION:
        return f"its attention implementation {attention!r} is not one of {list(_PREFIX_ATTENTION)}"
    if gradient_checkpointing or _checkpointing(base):
        return "gradient checkpointing is on, and checkpointed layers drop the prefix cache"
    devices = _execution_devices(base)
    if len(devices) > 1:
        return (
            f"its device_map runs layers on several devices ({', '.join(devices)}), and the prefix cache would "
            "have to follow each layer to its device"
        )
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layers = DynamicCache(config=base.config).layers
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        return f"this transformers version has no per-layer DynamicCache ({error})"
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers})
        return f"its cache layers ({kinds}) are not all full-attention DynamicLayer"
    return None


def _execution_devices(base) -> list[str]:
    # accelerate records where a device_map put each module. Modules offloaded to "cpu" or "disk" run on the main
    # accelerator (on the CPU when there is none), as the rest do, so only distinct accelerators split the cache.
    device_map = getattr(base, "hf_device_map", None) or {}
    # A machine has one accelerator type, so 1, "cuda:1" and torch.device("cuda", 1) are the same device.
    indices = {
        device if isinstance(device, int) else torch.device(device).index or 0
        for device in device_map.values()
        if str(device) not in ("cpu", "disk", "meta")
    }
    return [f"accelerator {index}" for index in sorted(indices)]


@contextlib.contextmanager
def as_forward(module: torch.nn.Module, compute):
    """Within the block, calling ``module``, or a wrapper around it such as DDP, runs ``compute`` as its forward.

    DDP averages gradients only for a backward that follows its own forward; running the shared-prefix loss as the
    wrapped module's forward puts the prompt's keys and values, and so the prompt's gradient, under its reducer.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> with as_forward(layer, lambda x: x * 2):
        ...     layer(torch.ones(1))
        tensor([2.])
        >>> layer(torch.ones(2)).shape
        torch.Size([2])
    """
    own = vars(module)
    had_own, previous = "forward" in own, own.get("forward")
    own["forward"] = compute  # an instance attribute: nn.Module.__call__ finds it before the class's forward
    try:
        yield module
    finally:
        if had_own:
            own["forward"] = previous
        else:
            del own["forward"]


def choose_engine(peft_model, shared_prefix: bool | None = None, gradient_checkpointing: bool = False) -> str:
    """The engine that runs ``peft_model``: ``"shared_prefix"`` where it applies, else ``"full"``.

    Args:
        shared_prefix: None chooses automatically; True insists on the shared prefix (an error where it cannot
            apply); False forces today's full forward over ``[soft prompt; input]``.
        gradient_checkpointing: whether training will checkpoint layers (which rules the shared prefix out).

    Returns:
        ``"shared_prefix"`` or ``"full"``.
    """
    if shared_prefix is not None and not isinstance(shared_prefix, bool):
        raise TPVError(f"shared_prefix must be None (automatic), True or False, got {shared_prefix!r}")
    if shared_prefix is False:
        return FULL
    obstacle = shared_prefix_obstacle(peft_model, gradient_checkpointing)
    if obstacle is None:
        return SHARED_PREFIX
    if shared_prefix:
        raise TPVError(
            f"shared_prefix=True, but the shared prefix cannot run this model: {obstacle}; "
            "pass shared_prefix=None to fall back to the full forward automatically"
        )
    return FULL


@dataclass(frozen=True)
class PromptPrefix:
    """Per-layer keys and values of the soft prompt at batch size 1: ``keys_values[layer] = (k, v)``, each of
    shape ``(1, kv heads, virtual tokens, head dim)``."""

    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    num_virtual_tokens: int

    def cache_for(self, batch_size: int):
        """A fresh cache holding this prefix broadcast to ``batch_size`` rows; the rows share the stored memory."""
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer, (keys, values) in enumerate(self.keys_values):
            # `update` would concatenate onto an empty tensor and so copy every row; set the views directly.
            cache.update(keys[:, :, :0], values[:, :, :0], layer)
            layer_cache: Any = cache.layers[layer]  # an attention layer's: it holds keys and values
            layer_cache.keys = keys.expand(batch_size, -1, -1, -1)
            layer_cache.values = values.expand(batch_size, -1, -1, -1)
        return cache


def prompt_prefix(peft_model, adapter_name: str = "default") -> PromptPrefix:
    """Run the soft prompt of ``adapter_name`` once and keep its keys and values (with gradient when enabled)."""
    from transformers import DynamicCache

    base = peft_model.get_base_model()
    virtual = peft_model.peft_config[adapter_name].num_virtual_tokens
    weight = peft_model.prompt_encoder[adapter_name].embedding.weight[:virtual]
    embeds = weight.to(base.get_input_embeddings().weight.dtype).unsqueeze(0)
    cache = DynamicCache(config=base.config)
    mask = torch.ones(1, virtual, dtype=torch.long, device=embeds.device)
    _body_forward(base, inputs_embeds=embeds, attention_mask=mask, cache=cache)
    layers: list[Any] = list(cache.layers)  # attention layers' caches, each with keys and values
    return PromptPrefix(tuple((layer.keys, layer.values) for layer in layers), virtual)


def prefixed_hidden_states(
    peft_model, prefix: PromptPrefix, input_ids, attention_mask, position_ids=None, cache=None
) -> torch.Tensor:
    """Last hidden states of the input tokens read after ``prefix``: shape ``(batch, length, hidden)``.

    Right-padded inputs need no ``position_ids``; left-padded ones pass them (see :func:`input_positions`).
    ``cache`` continues a cache this function already grew (generation); by default a fresh one is built.
    """
    base = peft_model.get_base_model()
    batch = input_ids.shape[0]
    virtual = prefix.num_virtual_tokens
    if position_ids is None:
        position_ids = input_positions(attention_mask, virtual, left_padded=False)
    if cache is None:
        cache = prefix.cache_for(batch)
    mask = torch.cat([attention_mask.new_ones(batch, virtual), attention_mask], dim=1)
    embeds = base.get_input_embeddings()(input_ids)
    return _body_forward(
        base, inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, cache=cache
    ).last_hidden_state


def input_positions(attention_mask, num_virtual_tokens: int, left_padded: bool) -> torch.Tensor:
    """Position ids of the input tokens after a prompt of ``num_virtual_tokens``: what a full forward over
    ``[soft prompt; input]`` would give each real token."""
    if left_padded:
        return num_virtual_tokens + (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    length = attention_mask.shape[1]
    steps = torch.arange(length, device=attention_mask.device) + num_virtual_tokens
    return steps.unsqueeze(0).expand(attention_mask.shape[0], -1)


def _body_forward(base, **kwargs):
    body = base.base_model
    kwargs[_cache_argument(type(body))] = kwargs.pop("cache")
    return body(**kwargs, use_cache=True)


@functools.cache
def _cache_argument(body_class) -> str:
    # transformers 5 renamed `past_key_values` to `cache`; older releases know only the first name.
    return "cache" if "cache" in inspect.signature(body_class.forward).parameters else "past_key_values"


def _checkpointing(base) -> bool:
    # transformers 5 renamed the flag; reading the old name there warns.
    name = (
        "is_activation_checkpointing"
        if hasattr(type(base), "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    return bool(getattr(base, name, False))


def generate_after_prefix(
    peft_model,
    prefix: PromptPrefix,
    input_ids,
    attention_mask,
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    finished=None,
) -> torch.Tensor:
    """Greedy decoding of left-padded inputs after ``prefix``: the new tokens, ``(batch, ≤ max_new_tokens)``.

    Every row's tokens sit at the positions a full forward over ``[soft prompt; input]`` would give them, however
    much left padding it has. A row stops at EOS, or when ``finished(row, new_token_ids)`` says its answer is
    decided; decoding stops when every row has. Stopped rows are padded with ``pad_token_id``.
    """
    base = peft_model.get_base_model()
    head = base.get_output_embeddings()
    batch = input_ids.shape[0]
    cache = prefix.cache_for(batch)
    positions = input_positions(attention_mask, prefix.num_virtual_tokens, left_padded=True)
    mask = attention_mask
    step_ids = input_ids
    done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    new_tokens: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        full_mask = torch.cat([mask.new_ones(batch, prefix.num_virtual_tokens), mask], dim=1)
        embeds = base.get_input_embeddings()(step_ids)
        hidden = _body_forward(
            base, inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, cache=cache
        ).last_hidden_state
        token = head(hidden[:, -1]).argmax(dim=-1)
        token = torch.where(done, torch.full_like(token, pad_token_id), token)
        new_tokens.append(token)
        if eos_token_id is not None:
            done |= token == eos_token_id
        if finished is not None:
            generated = torch.stack(new_tokens, dim=1).tolist()
            for row in (~done).nonzero(as_tuple=True)[0].tolist():
                if finished(row, generated[row]):
                    done[row] = True
        if bool(done.all()):
            break
        step_ids = token.unsqueeze(1)
        positions = positions[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
    if not new_tokens:
        return input_ids.new_zeros(batch, 0)
    return torch.stack(new_tokens, dim=1)
