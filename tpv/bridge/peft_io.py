"""The PEFT bridge: read and write the soft prompts of PeftModels and of saved adapter folders."""

from __future__ import annotations

import contextlib
import math
import os
import types
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tpv.bridge.hub import local_or_hub
from tpv.core import _checks
from tpv.core._io import PathLike, os_errors, read_json, read_safetensors
from tpv.core.errors import TPVError, TPVFileNotFoundError, TPVRepoNotFoundError
from tpv.core.origin import (
    Origin,
    base_model_name,
    default_transformer_submodules,
    input_embedding_weight,
    is_seq2seq,
)
from tpv.core.vector import BaseTaskPromptVector, Vector, combine

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

ORIGIN_FILENAME = "tpv_origin.safetensors"
PROMPT_KEY = "prompt_embeddings"
_ORIGINS_ATTR = "_tpv_origins"


def get_prompt(peft_model: PeftModel, adapter_name: str = "default") -> torch.Tensor:
    """A float32 copy of the soft prompt of ``adapter_name``, shape ``(virtual tokens × submodules, token_dim)``."""
    return _prompt_parameter(peft_model, adapter_name).detach().to(torch.float32).clone()


def set_prompt(peft_model: PeftModel, prompt: torch.Tensor, adapter_name: str = "default") -> None:
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
    prompt = _checks.prompt_tensor(prompt, "the prompt")
    with torch.no_grad():
        parameter.copy_(prompt.to(parameter.device, parameter.dtype))


def init_prompt_tuning(
    model: PreTrainedModel,
    vector: BaseTaskPromptVector | list | None = None,
    *,
    origin: Origin | torch.Tensor | PathLike | None = None,
    scale: float = 1.0,
    peft_config=None,
    adapter_name: str = "default",
) -> PeftModel:
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
    _check_origin_base(origin, base_model_name(model), "this model")
    token_dim = input_embedding_weight(model).shape[1]
    if origin.tensor.shape[1] != token_dim:
        raise TPVError(
            f"origin has token_dim {origin.tensor.shape[1]} but the model's embeddings have {token_dim}; "
            "make the origin with tpv.make_origin for this model"
        )
    if vector is None:
        prompt = origin.tensor
    else:
        items: list = list(vector) if isinstance(vector, (list, tuple)) and not _is_pair(vector) else [vector]
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
    with _quiet_transformers_deprecation():
        peft_model = get_peft_model(model, peft_config, adapter_name=adapter_name)
    set_prompt(peft_model, prompt, adapter_name)
    record_origin(peft_model, origin, adapter_name)
    return peft_model


@contextlib.contextmanager
def _quiet_transformers_deprecation():
    # PeftModel.__init__ reads model.is_gradient_checkpointing, which transformers ≥ 5 deprecates in favour of
    # is_activation_checkpointing: a FutureWarning on every wrap that only PEFT can act on. Exactly that message
    # is silenced, and only around PEFT's call, so every other warning still reaches the user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


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


def origin_from_peft_config(
    peft_config,
    model: PreTrainedModel,
    *,
    seed: int | None = None,
    tokenizer=None,
) -> Origin:
    """The origin PEFT gives a prompt-tuning adapter of ``peft_config`` on ``model``, rebuilt.

    - ``PromptTuningInit.TEXT``: the embeddings of ``prompt_tuning_init_text``, tokenized as PEFT does (the
      tokenizer ``tokenizer_name_or_path`` with ``tokenizer_kwargs``, or ``tokenizer``), cut or repeated to the
      prompt's length.
    - ``SAMPLE_VOCAB`` and ``RANDOM``: PEFT draws these from torch's global generator; tpv replays the draw that
      follows ``torch.manual_seed(seed)`` (without touching the global generator), so only with the ``seed``
      that was set right before ``get_peft_model``.

    Args:
        peft_config: a ``peft.PromptTuningConfig`` (or its ``adapter_config.json`` as a dict).
        model: the base model (or a PeftModel around it), whose input embeddings the origin is made of.
        seed: for ``SAMPLE_VOCAB``/``RANDOM``: the ``torch.manual_seed`` set before ``get_peft_model``.
        tokenizer: for ``TEXT``: the tokenizer to use instead of loading ``tokenizer_name_or_path``.

    Returns:
        An :class:`Origin` (``method`` ``"text"``, ``"peft_sample_vocab"`` or ``"peft_random"``).

    Example:
        >>> from peft import PromptTuningConfig
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=8, n_layer=1, n_head=2))
        >>> config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="RANDOM")
        >>> origin_from_peft_config(config, model, seed=0).recipe
        'peft_random(seed=0)'
    """
    config = _config_fields(peft_config)
    peft_type = str(config.get("peft_type") or "PROMPT_TUNING")
    if peft_type != "PROMPT_TUNING":
        raise TPVError(_not_prompt_tuning(peft_type, "peft_config"))
    embeddings = input_embedding_weight(model)
    tokens = config.get("num_virtual_tokens")
    submodules = config.get("num_transformer_submodules") or default_transformer_submodules(model)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise TPVError(f"peft_config.num_virtual_tokens must be an int ≥ 1, got {tokens!r}")
    rows = tokens * submodules
    init = str(getattr(config.get("prompt_tuning_init"), "value", config.get("prompt_tuning_init") or "RANDOM"))
    if init == "TEXT":
        tensor, options = _text_init(config, embeddings, rows, tokenizer)
        method, seed = "text", None
    elif init in ("SAMPLE_VOCAB", "RANDOM"):
        tensor = _replayed_init(init, seed, rows, embeddings)
        method, options = f"peft_{init.lower()}", {}
    else:
        raise TPVError(f"unknown prompt_tuning_init {init!r}; PEFT's are TEXT, SAMPLE_VOCAB and RANDOM")
    return Origin(
        tensor=tensor,
        num_virtual_tokens=tokens,
        num_transformer_submodules=submodules,
        seed=seed,
        method=method,
        base_model=base_model_name(model),
        options=options,
    )


def _config_fields(peft_config) -> dict:
    if isinstance(peft_config, dict):
        return dict(peft_config)
    if not hasattr(peft_config, "peft_type"):
        raise TPVError(f"peft_config must be a peft.PromptTuningConfig, got {type(peft_config).__name__}")
    fields = dict(vars(peft_config))
    fields["peft_type"] = getattr(peft_config.peft_type, "value", peft_config.peft_type)
    return fields


def _text_init(config: dict, embeddings: torch.Tensor, rows: int, tokenizer) -> tuple[torch.Tensor, dict]:
    text = config.get("prompt_tuning_init_text")
    if not isinstance(text, str) or not text:
        raise TPVError(
            f"prompt_tuning_init is TEXT but prompt_tuning_init_text is {text!r}; the adapter config is incomplete"
        )
    name = config.get("tokenizer_name_or_path")
    if tokenizer is None:
        if not name:
            raise TPVError("the TEXT init names no tokenizer_name_or_path; pass tokenizer= the one PEFT used")
        from transformers import AutoTokenizer

        kwargs = dict(config.get("tokenizer_kwargs") or {})
        kwargs.pop("trust_remote_code", None)  # as PEFT: loading an adapter must never run remote code
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        except OSError as error:
            raise TPVRepoNotFoundError(
                f"cannot load the tokenizer {name!r} of the TEXT init ({error}); pass tokenizer= the one PEFT used"
            ) from error
    ids = list(tokenizer(text)["input_ids"])
    if not ids:
        raise TPVError(f"the init text {text!r} gives no tokens; PEFT could not have used it either")
    # PEFT's own rule (PromptEmbedding.__init__): cut to the prompt's length, or repeat the ids until it fits.
    ids = (ids * math.ceil(rows / len(ids)))[:rows]
    tensor = embeddings[torch.tensor(ids, device=embeddings.device)].detach().to("cpu", torch.float32)
    return tensor, {"text": text, "tokenizer": str(name or getattr(tokenizer, "name_or_path", "") or "given")}


def _replayed_init(init: str, seed: int | None, rows: int, embeddings: torch.Tensor) -> torch.Tensor:
    if seed is None or isinstance(seed, bool) or not isinstance(seed, int):
        raise TPVError(
            f"an adapter PEFT initialised with {init} has no recorded origin: PEFT drew it from torch's global "
            f"generator. Pass seed= the torch.manual_seed(...) set right before get_peft_model (got {seed!r}), "
            "or origin= the prompt it started from"
        )
    # fork_rng: the replay must not move the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Embedding(rows, embeddings.shape[1])  # PEFT builds this first: it consumes the stream
        if init == "RANDOM":
            return layer.weight.detach().to(torch.float32).clone()
        ids = torch.randint(0, embeddings.shape[0], (rows,), dtype=torch.long)
    return embeddings[ids.to(embeddings.device)].detach().to("cpu", torch.float32)


# What a Hub repo of a PEFT prompt-tuning adapter holds that from_peft reads (also in a subfolder per adapter).
ADAPTER_PATTERNS = ["*adapter_config.json", "*adapter_model.safetensors", "*adapter_model.bin", "*" + ORIGIN_FILENAME]


def vector_from_peft(
    cls: type[Vector],
    model_or_folder,
    *,
    origin=None,
    task=None,
    adapter_name="default",
    model=None,
    seed: int | None = None,
    tokenizer=None,
    **hub_options,
) -> Vector:
    """The vector ``prompt − origin`` of a PeftModel's adapter, an adapter folder, or a Hub adapter repo id.

    The origin, in order: ``origin=`` (an Origin, a tensor, an ``*.origin.safetensors`` file or a folder holding
    ``tpv_origin.safetensors``); the one tpv recorded (on the model, or ``tpv_origin.safetensors`` beside the
    adapter files); else rebuilt from the adapter's ``PromptTuningConfig`` (:func:`origin_from_peft_config`:
    TEXT init always, SAMPLE_VOCAB/RANDOM with ``seed=``), which needs the base ``model=`` for a folder.
    ``hub_options`` (``revision``, ``token``, ``cache_dir``, ``local_files_only``) go to the Hub download.
    """
    if isinstance(model_or_folder, (str, os.PathLike)):
        location = local_or_hub(
            model_or_folder,
            "the adapter",
            allow_patterns=ADAPTER_PATTERNS,
            fix="pass the id of a PEFT prompt-tuning adapter repository",
            **hub_options,
        )
        folder = _adapter_folder(location, adapter_name)
        config, prompt = _read_adapter(folder)
        where = f"adapter folder '{folder}'" if location == Path(model_or_folder) else f"adapter {model_or_folder!r}"
        origin = _resolve_origin(origin, folder / ORIGIN_FILENAME, where, config, model, seed, tokenizer)
        base_model = config.get("base_model_name_or_path") or None
        if not isinstance(base_model, (str, type(None))):
            raise TPVError(
                f"'{folder}/adapter_config.json' has base_model_name_or_path={base_model!r}, not a string; "
                "save the adapter again with PEFT"
            )
        downloaded = location != Path(model_or_folder).expanduser()
        # A Hub snapshot folder is named after its commit; the repo's name says what the adapter is.
        task = task or (Path(os.fspath(model_or_folder)).name if downloaded and folder == location else None)
        task = task or folder.resolve().name
    else:
        if hub_options:
            raise TPVError(f"{sorted(hub_options)} apply to a Hub adapter id; this is a loaded PeftModel")
        prompt = get_prompt(model_or_folder, adapter_name)
        peft_config = model_or_folder.peft_config[adapter_name]
        config = {
            **_config_fields(peft_config),
            "num_transformer_submodules": peft_config.num_transformer_submodules,
            "task_type": str(getattr(peft_config.task_type, "value", peft_config.task_type)),
        }
        origin = origin if origin is not None else recorded_origin(model_or_folder, adapter_name)
        where = f"adapter '{adapter_name}' of this PeftModel"
        origin = _resolve_origin(origin, None, where, config, model or model_or_folder, seed, tokenizer)
        base_model = base_model_name(model_or_folder)
        task = task or (adapter_name if adapter_name != "default" else "task")
    if isinstance(origin, Origin):
        _check_origin_base(origin, base_model, "the adapter's base model")
    if not isinstance(origin, Origin):
        # A bare tensor: give it the adapter's layout, so encoder-decoder prompts keep their two blocks.
        origin = Origin(
            origin,
            num_virtual_tokens=config["num_virtual_tokens"],
            num_transformer_submodules=config.get("num_transformer_submodules") or 1,
        )
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
        raise TPVFileNotFoundError(f"no adapter folder at '{folder}'; pass the directory given to save_pretrained")
    if not (folder / "adapter_config.json").is_file() and (folder / adapter_name / "adapter_config.json").is_file():
        return folder / adapter_name
    if not (folder / "adapter_config.json").is_file():
        raise TPVFileNotFoundError(
            f"'{folder}' has no adapter_config.json; pass the directory given to PeftModel.save_pretrained"
        )
    return folder


def read_adapter_config(folder: PathLike) -> dict:
    """The checked ``adapter_config.json`` of a PEFT prompt-tuning adapter folder; else one TPVError."""
    folder = Path(folder)
    config = read_json(
        folder / "adapter_config.json",
        "the PEFT adapter config",
        "save the adapter again with PeftModel.save_pretrained",
    )
    peft_type = str(config.get("peft_type"))
    if peft_type != "PROMPT_TUNING":
        raise TPVError(_not_prompt_tuning(peft_type, f"'{folder}'"))
    for key in ("num_virtual_tokens", "num_transformer_submodules", "token_dim"):
        value = config.get(key)
        if value is None and key != "num_virtual_tokens":
            continue  # PEFT fills these in from the model when they are missing
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TPVError(
                f"'{folder}/adapter_config.json' has {key}={value!r}, not an integer ≥ 1; save the "
                "adapter again with PeftModel.save_pretrained"
            )
    return config


def load_prompt_adapter(model, folder: PathLike):
    """``PeftModel.from_pretrained(model, folder)`` after checking the folder holds a prompt-tuning adapter
    that fits ``model`` (its ``token_dim``), so a mismatch fails before any work instead of mid-evaluation.

    Unlike PEFT's loader it remembers the folder's ``tpv_origin.safetensors``, so
    ``TaskPromptVector.from_peft(peft_model)`` finds the origin (PEFT keeps nothing of the folder it read).
    """
    from peft import PeftModel

    folder = _adapter_folder(Path(folder), "default")
    config = read_adapter_config(folder)
    token_dim = input_embedding_weight(model).shape[1]
    if config.get("token_dim") not in (None, token_dim):
        raise TPVError(
            f"the adapter '{folder}' has token_dim {config['token_dim']}"
            + (f" (made for {config['base_model_name_or_path']!r})" if config.get("base_model_name_or_path") else "")
            + f" but the model's embeddings have {token_dim}; evaluate it with the model it was trained on (--model)"
        )
    _, prompt = _read_adapter(folder)
    rows = config["num_virtual_tokens"] * (config.get("num_transformer_submodules") or 1)
    if tuple(prompt.shape) != (rows, token_dim):
        raise TPVError(
            f"the adapter '{folder}' holds a prompt of shape {tuple(prompt.shape)}, but its config and "
            f"the model need ({rows}, {token_dim}); use the model it was trained on, or save it again"
        )
    with os_errors(folder, "read"), _quiet_transformers_deprecation():
        peft_model = PeftModel.from_pretrained(model, str(folder))
    if (folder / ORIGIN_FILENAME).is_file():
        # PEFT forgets the folder it read; tpv remembers the origin, so from_peft(peft_model) finds it.
        record_origin(peft_model, Origin.load(folder / ORIGIN_FILENAME))
    return peft_model


def _read_adapter(folder: Path) -> tuple[dict, torch.Tensor]:
    config = read_adapter_config(folder)
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        tensors, _ = read_safetensors(weights, "PEFT adapter weights file")
    elif (weights := folder / "adapter_model.bin").is_file():
        tensors = _load_pickled_tensors(weights)
    else:
        raise TPVFileNotFoundError(
            f"'{folder}' has no adapter_model.safetensors (or .bin); the adapter was not saved completely"
        )
    if PROMPT_KEY not in tensors or not isinstance(tensors[PROMPT_KEY], torch.Tensor):
        raise TPVError(
            f"'{weights}' has no '{PROMPT_KEY}' tensor (it has {sorted(map(str, tensors))[:5]}); it is no soft prompt"
        )
    return config, tensors[PROMPT_KEY]


def _load_pickled_tensors(path: Path) -> dict:
    # Old PEFT checkpoints: weights_only refuses anything but tensors and plain containers, so no code is
    # unpickled; a file that needs more is refused rather than trusted.
    try:
        with os_errors(path, "read"):
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except TPVError:
        raise
    except Exception as error:  # noqa: BLE001 - a malformed pickle fails in many ways (struct.error, EOFError, ...)
        raise TPVError(
            f"'{path}' is not a plain PyTorch tensor file ({type(error).__name__}: {str(error)[:160]}); tpv loads "
            "it with torch.load(weights_only=True) and unpickles nothing else: re-save the adapter with "
            "PeftModel.save_pretrained (safetensors)"
        ) from None
    if not isinstance(tensors, dict):
        raise TPVError(
            f"'{path}' holds a {type(tensors).__name__}, not a dict of tensors; re-save the adapter with "
            "PeftModel.save_pretrained"
        )
    return tensors


def _resolve_origin(origin, default_path: Path | None, where: str, config, model, seed, tokenizer):
    if isinstance(origin, (str, os.PathLike)):
        path = Path(origin)
        # The adapter folder itself (e.g. of a PeftModel loaded with PeftModel.from_pretrained) holds the file.
        return Origin.load(path / ORIGIN_FILENAME if path.is_dir() else path)
    if isinstance(origin, (Origin, torch.Tensor)):
        return origin
    if origin is not None:
        raise TPVError(f"origin must be an Origin, a tensor or a file path, got {type(origin).__name__}")
    if default_path is not None and default_path.is_file():
        return Origin.load(default_path)
    init = str(getattr(config.get("prompt_tuning_init"), "value", config.get("prompt_tuning_init") or "RANDOM"))
    if model is not None and (init == "TEXT" or seed is not None):
        return origin_from_peft_config(config, model, seed=seed, tokenizer=tokenizer)
    raise TPVError(_no_origin_message(where, init, default_path is None, model is not None))


def _no_origin_message(where: str, init: str, loaded: bool, has_model: bool) -> str:
    if init == "TEXT":
        return (
            f"{where} was initialised by PEFT from its init text; pass model= the base model, so tpv can embed "
            "the text as PEFT did (or origin=)"
        )
    fixes = ["origin= the Origin (or .origin.safetensors file) it was tuned from"]
    if loaded:
        # PEFT keeps nothing of the folder a PeftModel.from_pretrained call read.
        fixes.append(
            f"origin='<adapter folder>' when it was loaded with PeftModel.from_pretrained from a folder holding "
            f"{ORIGIN_FILENAME} (PEFT does not record the folder), or load it with tpv.load_prompt_adapter"
        )
    fixes.append(
        f"seed= the torch.manual_seed(...) set right before get_peft_model, if PEFT drew it ({init})"
        + ("" if has_model else " together with model= the base model")
    )
    return (
        f"no origin known for {where}: it was not made by tpv.init_prompt_tuning, so there is no "
        f"{ORIGIN_FILENAME}; pass " + "; or ".join(fixes)
    )


def _check_origin_base(origin: Origin, base_model: str | None, what: str) -> None:
    if origin.base_model and base_model and origin.base_model != base_model:
        raise TPVError(
            f"the origin was made for {origin.base_model!r} but {what} is {base_model!r}; soft prompts only "
            "transfer within one model's embedding space: make the origin with tpv.make_origin for this model"
        )


def _as_origin(origin, model) -> Origin:
    if isinstance(origin, (str, os.PathLike)):
        return Origin.load(origin)
    if isinstance(origin, Origin):
        return origin
    if isinstance(origin, torch.Tensor):
        submodules = 2 if is_seq2seq(model) else 1
        if origin.dim() != 2 or origin.shape[0] % submodules:
            raise TPVError(f"origin tensor of shape {tuple(origin.shape)} cannot serve {submodules} submodule(s)")
        return Origin(
            origin,
            num_virtual_tokens=origin.shape[0] // submodules,
            num_transformer_submodules=submodules,
            base_model=base_model_name(model),
        )
    raise TPVError(f"origin must be an Origin, a tensor or a file path, got {type(origin).__name__}")


def _is_pair(value) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], BaseTaskPromptVector)
        and not isinstance(value[1], BaseTaskPromptVector)
    )


def _check_config(peft_config, origin: Origin) -> None:
    if not hasattr(peft_config, "peft_type"):
        raise TPVError(f"peft_config must be a peft.PromptTuningConfig, got {peft_config!r}")
    peft_type = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
    if peft_type != "PROMPT_TUNING":
        raise TPVError(_not_prompt_tuning(peft_type, "peft_config"))
    if peft_config.num_virtual_tokens != origin.num_virtual_tokens:
        raise TPVError(
            f"peft_config.num_virtual_tokens={peft_config.num_virtual_tokens} but the origin has "
            f"{origin.num_virtual_tokens}; make them equal"
        )
