"""The PEFT bridge: read and write the soft prompts of PeftModels and of saved adapter folders."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import torch

from ._io import PathLike, read_safetensors
from .errors import TPVError
from .origin import Origin, base_model_name, check_finite, input_embedding_weight, is_seq2seq
from .vector import TaskPromptVector, combine

ORIGIN_FILENAME = "tpv_origin.safetensors"
PROMPT_KEY = "prompt_embeddings"
_ORIGINS_ATTR = "_tpv_origins"


def get_prompt(peft_model, adapter_name: str = "default") -> torch.Tensor:
    """A float32 copy of the soft prompt of ``adapter_name``, shape ``(virtual tokens × submodules, token_dim)``."""
    return _prompt_parameter(peft_model, adapter_name).detach().to(torch.float32).clone()


def set_prompt(peft_model, prompt: torch.Tensor, adapter_name: str = "default") -> None:
    """Overwrite the soft prompt of ``adapter_name`` in place.

    The copy happens under ``no_grad`` into the existing parameter, so an optimizer (or a Trainer) that already
    holds that parameter keeps training it.
    """
    parameter = _prompt_parameter(peft_model, adapter_name)
    if not isinstance(prompt, torch.Tensor) or tuple(prompt.shape) != tuple(parameter.shape):
        got = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise TPVError(
            f"cannot set a prompt of shape {got} on adapter '{adapter_name}' of shape {tuple(parameter.shape)}; "
            "make the prompt from an origin of the same num_virtual_tokens"
        )
    check_finite(prompt, "prompt")
    with torch.no_grad():
        parameter.copy_(prompt.to(parameter.device, parameter.dtype))


def init_prompt_tuning(
    model,
    vector: TaskPromptVector | list | None = None,
    *,
    origin: Origin | torch.Tensor | PathLike | None = None,
    scale: float = 1.0,
    peft_config=None,
    adapter_name: str = "default",
):
    """A trainable ``PeftModel`` whose soft prompt is exactly ``origin + scale·vector``.

    Args:
        model: a transformers causal-LM or seq2seq model (not yet wrapped by PEFT).
        vector: a vector, a list of vectors, or a list of ``(vector, weight)`` pairs summed first; ``None``
            starts from the origin itself.
        origin: the :class:`Origin` (or its file, or a tensor) to start from.
        scale: λ in ``θ = θ_origin + λ·τ``.
        peft_config: a ``peft.PromptTuningConfig`` to use instead of the one built from the origin.
        adapter_name: PEFT adapter name.

    Returns:
        The ``PeftModel``. Its ``save_pretrained`` also writes ``tpv_origin.safetensors`` beside PEFT's files,
        so :meth:`TaskPromptVector.from_peft` finds the origin later.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from tpv import make_origin
        >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=8, n_layer=1, n_head=2))
        >>> origin = make_origin(model, num_virtual_tokens=4, seed=0)
        >>> peft_model = init_prompt_tuning(model, origin=origin)
        >>> torch.equal(get_prompt(peft_model), origin.tensor)
        True
    """
    from peft import PeftModel, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if isinstance(model, PeftModel):
        raise TPVError(
            "init_prompt_tuning got a PeftModel; pass the base transformers model, or change the prompt of an "
            "existing PeftModel with tpv.set_prompt(peft_model, prompt)"
        )
    if origin is None:
        raise TPVError("init_prompt_tuning needs origin=...; make one with tpv.make_origin(model, num_virtual_tokens)")
    origin = _as_origin(origin, model)
    token_dim = input_embedding_weight(model).shape[1]
    if origin.tensor.shape[1] != token_dim:
        raise TPVError(
            f"origin has token_dim {origin.tensor.shape[1]} but the model's embeddings have {token_dim}; "
            "make the origin with tpv.make_origin for this model"
        )
    if vector is None:
        prompt = origin.tensor
    else:
        items = vector if isinstance(vector, (list, tuple)) and not _is_pair(vector) else [vector]
        prompt = combine(items).apply_to(origin, scale)
    if peft_config is None:
        peft_config = PromptTuningConfig(
            task_type=TaskType.SEQ_2_SEQ_LM if is_seq2seq(model) else TaskType.CAUSAL_LM,
            num_virtual_tokens=origin.num_virtual_tokens,
            num_transformer_submodules=origin.num_transformer_submodules,
            token_dim=token_dim,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
    _check_config(peft_config, origin)
    peft_model = get_peft_model(model, peft_config, adapter_name=adapter_name)
    set_prompt(peft_model, prompt, adapter_name)
    record_origin(peft_model, origin, adapter_name)
    return peft_model


def record_origin(peft_model, origin: Origin, adapter_name: str = "default") -> None:
    """Remember ``origin`` for ``adapter_name`` and make ``save_pretrained`` write it beside the adapter."""
    origins = getattr(peft_model, _ORIGINS_ATTR, None)
    if origins is None:
        origins = {}
        object.__setattr__(peft_model, _ORIGINS_ATTR, origins)
        original_save = peft_model.save_pretrained

        def save_pretrained(self, save_directory, *args, **kwargs):
            # Prompt tuning never touches the embedding layers; "auto" would look the base model up on the Hub.
            kwargs.setdefault("save_embedding_layers", False)
            result = original_save(save_directory, *args, **kwargs)
            save_origins(self, save_directory, kwargs.get("selected_adapters"))
            return result

        # An instance-level override: Trainer checkpoints and user code both call model.save_pretrained.
        object.__setattr__(peft_model, "save_pretrained", types.MethodType(save_pretrained, peft_model))
    origins[adapter_name] = origin


def recorded_origin(peft_model, adapter_name: str = "default") -> Origin | None:
    return (getattr(peft_model, _ORIGINS_ATTR, None) or {}).get(adapter_name)


def save_origins(peft_model, save_directory: PathLike, selected_adapters=None) -> None:
    """Write each recorded origin as ``tpv_origin.safetensors`` where PEFT put that adapter's files."""
    for name, origin in (getattr(peft_model, _ORIGINS_ATTR, None) or {}).items():
        if selected_adapters is not None and name not in selected_adapters:
            continue
        # PEFT's own layout: the default adapter at the top, the others in a subfolder named after them.
        folder = Path(save_directory) if name == "default" else Path(save_directory) / name
        origin.save(folder / ORIGIN_FILENAME)


def vector_from_peft(cls, model_or_folder, *, origin=None, task=None, adapter_name="default") -> TaskPromptVector:
    if isinstance(model_or_folder, (str, os.PathLike)):
        folder = _adapter_folder(Path(model_or_folder), adapter_name)
        config, prompt = _read_adapter(folder)
        origin = _resolve_origin(origin, folder / ORIGIN_FILENAME, f"adapter folder '{folder}'")
        base_model = config.get("base_model_name_or_path")
        task = task or folder.resolve().name
    else:
        prompt = get_prompt(model_or_folder, adapter_name)
        peft_config = model_or_folder.peft_config[adapter_name]
        config = {
            "num_virtual_tokens": peft_config.num_virtual_tokens,
            "num_transformer_submodules": peft_config.num_transformer_submodules,
            "task_type": str(getattr(peft_config.task_type, "value", peft_config.task_type)),
        }
        origin = origin if origin is not None else recorded_origin(model_or_folder, adapter_name)
        origin = _resolve_origin(origin, None, f"adapter '{adapter_name}' of this PeftModel")
        base_model = base_model_name(model_or_folder)
        task = task or (adapter_name if adapter_name != "default" else "task")
    if not isinstance(origin, Origin):
        # A bare tensor: give it the adapter's layout, so encoder-decoder prompts keep their two blocks.
        origin = Origin(origin, num_virtual_tokens=int(config["num_virtual_tokens"]),
                        num_transformer_submodules=int(config.get("num_transformer_submodules") or 1))
    return cls.from_prompts(prompt, origin, task, base_model=base_model, task_type=config.get("task_type"))


def _prompt_parameter(peft_model, adapter_name: str) -> torch.nn.Parameter:
    configs = getattr(peft_model, "peft_config", None)
    encoders = getattr(peft_model, "prompt_encoder", None)
    if configs is None:
        raise TPVError(
            f"expected a peft.PeftModel with a prompt-tuning adapter, got {type(peft_model).__name__}; "
            "wrap the model with tpv.init_prompt_tuning first"
        )
    if adapter_name not in configs:
        raise TPVError(f"no adapter named {adapter_name!r}; this PeftModel has {sorted(configs)}")
    peft_type = str(getattr(configs[adapter_name].peft_type, "value", configs[adapter_name].peft_type))
    if peft_type != "PROMPT_TUNING" or encoders is None or adapter_name not in encoders:
        raise TPVError(_not_prompt_tuning(peft_type, f"adapter {adapter_name!r}"))
    return encoders[adapter_name].embedding.weight


def _not_prompt_tuning(peft_type: str, what: str) -> str:
    return (
        f"{what} is a {peft_type} adapter, but task prompt vectors need a PROMPT_TUNING adapter "
        "(peft.PromptTuningConfig); train one with tpv.init_prompt_tuning"
    )


def _adapter_folder(folder: Path, adapter_name: str) -> Path:
    if not folder.is_dir():
        raise TPVError(f"no adapter folder at '{folder}'; pass the directory given to save_pretrained")
    if not (folder / "adapter_config.json").is_file() and (folder / adapter_name / "adapter_config.json").is_file():
        return folder / adapter_name
    if not (folder / "adapter_config.json").is_file():
        raise TPVError(f"'{folder}' has no adapter_config.json; pass the directory given to PeftModel.save_pretrained")
    return folder


def _read_adapter(folder: Path) -> tuple[dict, torch.Tensor]:
    config = json.loads((folder / "adapter_config.json").read_text())
    peft_type = str(config.get("peft_type"))
    if peft_type != "PROMPT_TUNING":
        raise TPVError(_not_prompt_tuning(peft_type, f"'{folder}'"))
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        tensors, _ = read_safetensors(weights, "PEFT adapter weights file")
    elif (folder / "adapter_model.bin").is_file():
        # Old PEFT checkpoints: weights_only refuses anything but tensors, so no code is unpickled.
        tensors = torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
    else:
        raise TPVError(f"'{folder}' has no adapter_model.safetensors (or .bin); the adapter was not saved completely")
    if PROMPT_KEY not in tensors:
        raise TPVError(f"'{weights}' has no '{PROMPT_KEY}' tensor (it has {sorted(tensors)[:5]}); it is no soft prompt")
    return config, tensors[PROMPT_KEY]


def _resolve_origin(origin, default_path: Path | None, where: str):
    if origin is None and default_path is not None and default_path.is_file():
        return Origin.load(default_path)
    if origin is None:
        raise TPVError(
            f"no origin known for {where}: it was not made by tpv.init_prompt_tuning, so there is no "
            f"{ORIGIN_FILENAME}; pass origin= the Origin (or .origin.safetensors file) it was tuned from"
        )
    if isinstance(origin, (str, os.PathLike)):
        return Origin.load(origin)
    if isinstance(origin, (Origin, torch.Tensor)):
        return origin
    raise TPVError(f"origin must be an Origin, a tensor or a file path, got {type(origin).__name__}")


def _as_origin(origin, model) -> Origin:
    if isinstance(origin, (str, os.PathLike)):
        return Origin.load(origin)
    if isinstance(origin, Origin):
        return origin
    if isinstance(origin, torch.Tensor):
        submodules = 2 if is_seq2seq(model) else 1
        if origin.dim() != 2 or origin.shape[0] % submodules:
            raise TPVError(f"origin tensor of shape {tuple(origin.shape)} cannot serve {submodules} submodule(s)")
        return Origin(origin, num_virtual_tokens=origin.shape[0] // submodules,
                      num_transformer_submodules=submodules, base_model=base_model_name(model))
    raise TPVError(f"origin must be an Origin, a tensor or a file path, got {type(origin).__name__}")


def _is_pair(value) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], TaskPromptVector) and not isinstance(
        value[1], TaskPromptVector
    )


def _check_config(peft_config, origin: Origin) -> None:
    peft_type = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
    if peft_type != "PROMPT_TUNING":
        raise TPVError(_not_prompt_tuning(peft_type, "peft_config"))
    if peft_config.num_virtual_tokens != origin.num_virtual_tokens:
        raise TPVError(
            f"peft_config.num_virtual_tokens={peft_config.num_virtual_tokens} but the origin has "
            f"{origin.num_virtual_tokens}; make them equal"
        )
