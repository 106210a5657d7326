"""Checks shared by every constructor and loader of vectors and origins, so bad values fail the same way."""

from __future__ import annotations

import math
import numbers

import torch

from tpv.core.errors import TPVError

# Dtypes that float32 holds exactly; float64 is narrowed (see prompt_tensor) and everything else is refused.
_WIDENED = (torch.float16, torch.bfloat16, torch.float32)


def prompt_tensor(tensor, what: str) -> torch.Tensor:
    """A detached float32 copy of a 2-D, non-empty, real floating, finite ``tensor``; else one TPVError.

    float16/bfloat16/float32 convert exactly. float64 is rounded to float32 (the precision vectors are kept in:
    about 7 significant digits), and refused when a value lies beyond float32's range, so no value turns into
    inf silently. Integer, bool and complex tensors are refused: they are not soft prompts, and a complex
    tensor would lose its imaginary part.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TPVError(f"{what} must be a torch.Tensor, got a {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise TPVError(f"{what} must be a 2-D tensor (virtual tokens × token_dim), got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise TPVError(f"{what} is empty (shape {tuple(tensor.shape)}); a soft prompt has ≥ 1 token and token_dim ≥ 1")
    if tensor.dtype not in _WIDENED and tensor.dtype != torch.float64:
        raise TPVError(
            f"{what} has dtype {tensor.dtype}, but soft prompts are real floating-point tensors; "
            + (
                "drop the imaginary part deliberately (tensor.real)"
                if tensor.is_complex()
                else "pass the tuned float prompt, not ids or a mask"
            )
            + ", then convert with .float()"
        )
    check_finite(tensor, what)
    converted = tensor.detach().to(torch.float32, copy=True)
    if tensor.dtype == torch.float64 and not torch.isfinite(converted).all():
        largest = float(tensor.abs().max())
        raise TPVError(
            f"{what} holds float64 values up to {largest:g}, beyond float32's range (3.4e38) that "
            "vectors are kept in; rescale it first"
        )
    return converted


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Refuse NaN or inf values in ``tensor``."""
    if tensor.is_floating_point() or tensor.is_complex():
        finite = torch.isfinite(tensor)
        if not finite.all():
            bad = int((~finite).sum())
            raise TPVError(
                f"{what} holds {bad} NaN/inf values of {tensor.numel()}; it is corrupt, or the training "
                "that made it diverged (then lower the learning rate)"
            )


def count(value, what: str, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise TPVError(f"{what} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def real(value, what: str) -> float:
    """``value`` as a finite float; bools, strings, NaN and inf are refused."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TPVError(f"{what} must be a finite real number, got {value!r}")
    return float(value)


def device(value, what: str) -> torch.device:
    """``value`` as a ``torch.device`` that this machine has; else one TPVError (torch itself raises an
    ``AssertionError`` for CUDA on a CPU-only build)."""
    try:
        placed = torch.device(value)
    except (RuntimeError, TypeError, ValueError) as error:
        raise TPVError(f"cannot move {what} to {value!r} ({error}); pass a device such as 'cpu' or 'cuda:0'") from None
    if placed.type == "cuda":
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if found == 0:
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise TPVError(f"cannot move {what} to {value!r}: there is no CUDA device here ({why}); use 'cpu'")
        if placed.index is not None and placed.index >= found:
            raise TPVError(
                f"cannot move {what} to {value!r}: this machine has {found} CUDA device(s), "
                f"'cuda:0' to 'cuda:{found - 1}'; pass one of those"
            )
    if placed.type == "mps" and not torch.backends.mps.is_available():
        raise TPVError(f"cannot move {what} to {value!r}: there is no Apple MPS device here; use 'cpu'")
    return placed


def optional_text(value, what: str) -> str | None:
    """``value`` as a non-empty string, or None for None/""."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TPVError(f"{what} must be a string, got {value!r}")
    return value


def file_metadata(path, tensors: dict, metadata: dict, file_format: str, key: str, fix: str) -> dict[str, int]:
    """Check a tpv safetensors file's format, tensor and sizes; return its ``num_virtual_tokens`` and submodules.

    ``metadata`` comes from the file, so every value is checked here rather than trusted: the format tag, one
    float32 tensor under ``key``, integer sizes ≥ 1 that match the tensor's rows, and ``token_dim`` equal to
    its columns.
    """
    if metadata.get("format") != file_format:
        raise TPVError(
            f"'{path}' holds a {key!r} tensor but its metadata says format={metadata.get('format')!r}, "
            f"not {file_format!r}; {fix}"
        )
    if key not in tensors:
        raise TPVError(
            f"'{path}' has {file_format} metadata but no {key!r} tensor (it has {sorted(tensors)[:5]}); "
            f"the file is damaged: {fix}"
        )
    tensor = tensors[key]
    if tensor.dtype != torch.float32:
        raise TPVError(
            f"'{path}' stores {key!r} as {tensor.dtype}, but {file_format} files hold float32; {fix} "
            "(or convert the tensor with .float() and save it again)"
        )
    sizes: dict[str, int] = {}
    for name in ("num_virtual_tokens", "num_transformer_submodules", "token_dim"):
        text = metadata.get(name)
        if name == "token_dim" and text in (None, ""):
            continue  # files from before token_dim was recorded
        try:
            sizes[name] = int(text) if text is not None else 0
        except ValueError:
            sizes[name] = 0
        if sizes[name] < 1:
            raise TPVError(f"'{path}' has broken {file_format} metadata: {name}={text!r} is not an integer ≥ 1; {fix}")
    shape = tuple(tensor.shape)
    rows = sizes["num_virtual_tokens"] * sizes["num_transformer_submodules"]
    if len(shape) != 2 or shape[0] != rows or shape[1] != sizes.get("token_dim", shape[1]):
        raise TPVError(
            f"'{path}' has a {key!r} tensor of shape {shape}, but its metadata says num_virtual_tokens="
            f"{sizes['num_virtual_tokens']} × num_transformer_submodules={sizes['num_transformer_submodules']} rows "
            f"of token_dim={sizes.get('token_dim', '?')}; the file is damaged: {fix}"
        )
    sizes.pop("token_dim", None)
    return sizes


def compatible_vectors(first, second, verb: str) -> None:
    """One TPVError naming the difference unless vectors ``first`` and ``second`` can be added (``verb`` says
    what was tried)."""
    if first.shape != second.shape:
        if first.num_virtual_tokens != second.num_virtual_tokens:
            why = f"num_virtual_tokens differ ({first.num_virtual_tokens} vs {second.num_virtual_tokens})"
            fix = "build both from origins with the same num_virtual_tokens"
        elif first.token_dim != second.token_dim:
            why = f"token_dim differs ({first.token_dim} vs {second.token_dim})"
            fix = "use vectors of the same base model"
        else:
            why = "num_transformer_submodules differ"
            fix = "use vectors from the same kind of model (decoder-only or encoder-decoder)"
        raise TPVError(f"cannot {verb} vectors of shape {first.shape} and {second.shape}: {why}; {fix}")
    if first.num_transformer_submodules != second.num_transformer_submodules:
        raise TPVError(
            f"cannot {verb} vectors with num_transformer_submodules {first.num_transformer_submodules} and "
            f"{second.num_transformer_submodules}; use vectors from the same kind of model"
        )
    same_base_model(first.base_model, second.base_model, f"{verb} vectors")


def same_base_model(first: str | None, second: str | None, verb: str) -> None:
    """One TPVError unless the two base model names (either may be unknown) are the same."""
    if first and second and first != second:
        raise TPVError(
            f"cannot {verb} from different base models ({first!r} vs {second!r}); soft prompts only transfer "
            "within one model's embedding space"
        )
