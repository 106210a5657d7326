"""Safe, atomic safetensors I/O shared by the file formats (vectors, origins, adapter origins)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import TPVError

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_target(path: PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_target(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def atomic_save(tensors: dict[str, torch.Tensor], path: PathLike, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` to ``path`` through a temporary file in the same folder, so readers never see half a file."""
    with atomic_target(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return Path(path)


def read_safetensors(path: PathLike, expected: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file; ``expected`` names the kind of file wanted."""
    path = Path(path)
    if not path.is_file():
        raise TPVError(f"no such file: '{path}'; pass the path of an existing {expected}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise TPVError(
            f"'{path}' is not a safetensors file ({_sniff(path)}); tpv reads {expected}s only in the safetensors "
            "format and never unpickles files; re-save it with safetensors.torch.save_file"
        ) from error
    return tensors, metadata


def _sniff(path: Path) -> str:
    head = path.read_bytes()[:8]
    if head[:2] == b"PK":
        return "it is a zip archive, probably a PyTorch pickle checkpoint"
    if head[:1] == b"\x80":
        return "it is a Python pickle"
    if head[:1] in (b"{", b"["):
        return "it is JSON text"
    return f"it starts with bytes {head!r}"


def describe_foreign_file(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Say what a safetensors file that is not the expected tpv format most likely is."""
    if metadata.get("format") == "tpv-origin/1" or "origin" in tensors:
        return "a tpv origin file (load it with tpv.Origin.load)"
    if metadata.get("format") == "tpv/1" or "task_prompt_vector" in tensors:
        return "a task prompt vector file (load it with tpv.TaskPromptVector.load)"
    if "prompt_embeddings" in tensors:
        return "PEFT prompt-tuning adapter weights (use TaskPromptVector.from_peft on the adapter folder)"
    if any("lora_" in key for key in tensors):
        return "LoRA adapter weights, not a soft prompt"
    keys = sorted(tensors)[:3]
    return f"a safetensors file with tensors {keys} and metadata format={metadata.get('format')!r}"


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
