"""Safe, atomic safetensors I/O shared by the file formats (vectors, origins, adapter origins)."""

from __future__ import annotations

import codecs
import contextlib
import glob
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tpv.core.errors import (  # noqa: F401 - re-exported for the readers
    TPVError,
    TPVFileNotFoundError,
    describe_os_error,
    os_error,
    os_errors,
)

PathLike = str | os.PathLike

# A hidden temporary file older than this is left over from a killed write; no live write takes this long.
STALE_TEMP_SECONDS = 3600
_UMASK_LOCK = threading.Lock()


def cache_dir() -> Path:
    """The folder tpv caches files in (converted models, measured dtypes): ``$TPV_CACHE``, else ``~/.cache/tpv``."""
    return Path(os.environ.get("TPV_CACHE") or Path.home() / ".cache" / "tpv")


def _check_target(path: PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TPVError(f"a file path is needed, got a {type(path).__name__} ({path!r})")
    if os.fspath(path) in ("", "."):
        raise TPVError(f"cannot write to the path {os.fspath(path)!r}; pass a file name, e.g. 'sst2.tpv.safetensors'")
    path = Path(path)
    if path.is_dir():
        raise TPVError(f"cannot write '{path}': it is a folder; pass a file path inside it, e.g. '{path / 'x'}'")
    if path.exists() and not path.is_file():
        # The rename would replace a device, FIFO or socket (e.g. /dev/null) with a regular file.
        raise TPVError(
            f"cannot write '{path}': it is not a regular file (a device, FIFO or socket); pass the path "
            "of a regular file"
        )
    return path


def _umask() -> int:
    # Linux reports the umask in /proc; elsewhere it can only be read by setting it (and setting it back).
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        current = os.umask(0o022)
        os.umask(current)
    return current


def remove_stale_temps(folder: Path, prefix: str, age: float = STALE_TEMP_SECONDS) -> None:
    """Delete hidden ``prefix*`` temporaries in ``folder`` left by writes killed more than ``age`` seconds ago."""
    cutoff = time.time() - age
    with contextlib.suppress(OSError):
        for leftover in folder.glob(f"{glob.escape(prefix)}*"):
            with contextlib.suppress(OSError):
                if leftover.lstat().st_mtime < cutoff:
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:
                        leftover.unlink()


@contextlib.contextmanager
def atomic_target(path: PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, so readers never see half a file.

    A new file gets the mode a plain ``open()`` would give it (``0o666`` less the umask); a replaced file keeps
    its mode. Temporaries that killed writes left beside ``path`` more than an hour ago are removed. OS errors
    become :class:`TPVError`.
    """
    path = _check_target(path)
    with os_errors(path, "write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, f".{path.name}.")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    try:
        yield tmp
        with os_errors(path, "write"):
            # mkstemp creates 0600 files and the mode survives the rename; results are meant to be shared.
            mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_target(path) as tmp, os_errors(path, "write"):
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def atomic_save(tensors: dict[str, torch.Tensor], path: PathLike, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` to ``path`` through a temporary file in the same folder, so readers never see half a file."""
    with atomic_target(path) as tmp, os_errors(path, "write"):
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return Path(path)


def read_text(path: PathLike, what: str, fix: str) -> str:
    """The UTF-8 text of ``path`` (``what`` it is, for the message); OS and decoding errors become TPVError.

    A leading byte-order mark is dropped: Excel and Notepad begin UTF-8 files with one, and it is no part of
    the text (JSON refuses it, and CSV would glue it to the first column's name).
    """
    with os_errors(path, "read"):
        data = Path(path).read_bytes()
    skipped = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skipped:].decode("utf-8")
    except UnicodeDecodeError as error:
        start = skipped + error.start
        raise TPVError(
            f"{what} '{path}' is not UTF-8 text (byte {start}: {data[start : start + 4]!r}); {fix}"
        ) from None


def read_json(path: PathLike, what: str, fix: str, kind: type = dict):
    """Parse the JSON file ``path``, which must hold a ``kind`` (``dict`` or ``list``); else one TPVError."""
    text = read_text(path, what, fix)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise TPVError(f"{what} '{path}' is not valid JSON ({error}); {fix}") from None
    if not isinstance(value, kind):
        wanted = "an object" if kind is dict else f"a {kind.__name__}"
        raise TPVError(f"{what} '{path}' holds a JSON {type(value).__name__}, not {wanted}; {fix}")
    return value


def read_safetensors(path: PathLike, expected: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file; ``expected`` names the kind of file wanted."""
    if not isinstance(path, (str, os.PathLike)) or os.fspath(path) == "":
        raise TPVError(f"a file path is needed to read a {expected}, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise TPVError(f"'{path}' is a folder; pass the path of a {expected} inside it")
    if not path.is_file():
        raise TPVFileNotFoundError(f"no such file: '{path}'; pass the path of an existing {expected}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except PermissionError as error:
        raise os_error(error, describe_os_error(error, path, "read")) from error
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError, OverflowError) as error:
        raise TPVError(
            f"'{path}' is not a safetensors file ({_sniff(path)}); tpv reads {expected}s only in the safetensors "
            "format and never unpickles them; re-save it with safetensors.torch.save_file"
        ) from error
    return tensors, metadata


def _sniff(path: Path) -> str:
    # Only the first bytes: a rejected file may be gigabytes long. safetensors reports a file it may not read
    # as missing (FileNotFoundError), so the reason it failed is learned here, and a file that cannot be read
    # is reported as such, not as a file of the wrong kind.
    with os_errors(path, "read"), path.open("rb") as handle:
        head = handle.read(8)
    if head[:2] == b"PK":
        return "it is a zip archive, probably a PyTorch pickle checkpoint"
    if head[:1] == b"\x80":
        return "it is a Python pickle"
    if head[:1] in (b"{", b"["):
        return "it is JSON text"
    if not head:
        return "it is empty"
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
