"""A training run's folder: one run at a time, its settings on record, complete checkpoints told apart from debris.

A kill can land anywhere: while ``Trainer`` fills ``checkpoint-N/``, while it deletes an old one, while the final
files are written. So a checkpoint counts only once ``tpv_checkpoint.json`` — written last, through a temporary
file — lists every file in it with its size and the run's fingerprint; anything else named ``checkpoint-*`` in a
run folder is debris of a kill and is removed before training resumes. ``tpv_run.json`` records the settings when
a run starts, so a rerun with other settings is refused whether or not the first run finished, and an advisory
lock (``flock``: the kernel drops it when its process dies, so a killed run never leaves a stale lock) keeps a
second process out while one trains.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from tpv.core._io import atomic_write_text, dumps, read_json
from tpv.core.errors import TPVError

LOCK_FILENAME = ".tpv.lock"
RUN_FILENAME = "tpv_run.json"
RESULT_FILENAME = "tpv_train.json"
CHECKPOINT_MARKER = "tpv_checkpoint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What a run writes at the top of its folder; --overwrite removes exactly these (never the user's other files).
_RUN_FILES = (
    RUN_FILENAME,
    RESULT_FILENAME,
    "adapter_model.safetensors",
    "adapter_model.bin",
    "adapter_config.json",
    "tpv_origin.safetensors",
)


class RunLock:
    """An exclusive, non-blocking lock on a run folder, held by one process from ``acquire`` to ``release``.

    A refused lock names the holder and ends with ``elsewhere``: how the caller's user runs a second copy in
    another folder (training names ``--output-dir``, ``tpv reproduce`` its ``--run-dir``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with RunLock(folder):
        ...     RunLock(folder).acquire()
        Traceback (most recent call last):
        tpv.core.errors.TPVError: ...is in use by another tpv run...
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        elsewhere: str = "train into another output_dir (tpv train --output-dir)",
        wait: bool = False,
    ):
        self.path = Path(folder) / LOCK_FILENAME
        self.elsewhere = elsewhere
        # wait=True blocks until the holder is done instead of refusing: for work that processes share on
        # purpose (shards of one study), where the second process then finds the first one's result cached.
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, self.wait)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise TPVError(
                f"'{self.path.parent}' is in use by another tpv run ({holder}); wait for it to finish, or "
                f"{self.elsewhere}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            ).encode(),
        )
        self._fd = fd
        return self

    def release(self) -> None:
        # The file stays: deleting it would let a third process lock a new file while a second holds the old one.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _lock(fd: int, wait: bool = False) -> None:
    if sys.platform == "win32":
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError as error:
                if not wait:
                    raise BlockingIOError(str(error)) from None
                time.sleep(1)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "a process that has not written its id yet"


def run_settings(settings: Mapping, model) -> dict:
    """``settings`` with what every cached result also depends on: the tpv version and the model's identity.

    Every cache of tpv (a training run's folder, an ATTEMPT run, the experiments' run folder) keys on
    :func:`fingerprint_of` of this, so new code or another model never reuses a stale result.

    Args:
        settings: the run's own settings (JSON-able).
        model: the model it runs (a transformers or PEFT model, see :func:`model_identity`), or its identity as
            a dict already made (the experiments key a model by its files before loading it).

    Returns:
        A new dict: ``settings``, then the identity's keys and ``tpv_version``.
    """
    from tpv.core._version import __version__

    identity = dict(model) if isinstance(model, Mapping) else model_identity(model)
    return {**settings, **identity, "tpv_version": __version__}


def model_identity(model) -> dict[str, str]:
    """What makes a loaded model this model for a cached result: its name, a digest of its config (paths and
    versions left out), and its parameters' dtype."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = {
        k: v
        for k, v in base.config.to_dict().items()
        if k not in ("_name_or_path", "transformers_version", "torch_dtype", "dtype")
    }
    return {
        "model": getattr(base, "name_or_path", "") or base.config._name_or_path,
        "model_config": digest_of([config]),
        "model_dtype": str(next(base.parameters()).dtype),
    }


def digest_of(items) -> str:
    """A short digest of JSON-able items (examples, configs) or tensors: ``"sha256 <16 hex digits>"``."""
    digest = hashlib.sha256()
    for item in items:
        if isinstance(item, torch.Tensor):
            digest.update(str(tuple(item.shape)).encode() + item.detach().float().cpu().numpy().tobytes())
        else:
            digest.update(dumps(item).encode())
    return f"sha256 {digest.hexdigest()[:16]}"


def fingerprint_of(settings: dict) -> str:
    """SHA-256 of a run's settings (a JSON-able dict, see :func:`run_settings`), the key it is cached under."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def open_run(folder: Path, settings: dict, *, overwrite: bool = False, resume: bool = True) -> dict:
    """Decide what a run with ``settings`` does in ``folder``; call it holding the folder's :class:`RunLock`.

    Returns:
        ``{"finished": record}`` when the folder holds this run finished, else ``{"checkpoint": path | None}``:
        the newest complete checkpoint to resume from. Incomplete checkpoints are removed; the run's settings
        are recorded before it trains.

    Raises:
        TPVError: the folder holds a run with other settings (naming them), or checkpoints no tpv run recorded.
    """
    fingerprint = fingerprint_of(settings)
    if overwrite:
        clear_run(folder)
    finished = _read_record(folder / RESULT_FILENAME)
    if finished is not None:
        _check_same(folder, "a finished run", finished, settings, fingerprint)
        _check_files_kept(folder, finished)
        return {"finished": finished}
    started = _read_record(folder / RUN_FILENAME)
    if started is not None:
        _check_same(folder, "an unfinished run", started, settings, fingerprint)
    elif any(_checkpoints(folder)):
        foreign = [p for p in _checkpoints(folder) if any(p.iterdir())]
        if foreign:
            raise TPVError(
                f"'{folder}' holds checkpoints that no tpv run recorded ({foreign[0].name}); train into a new "
                f"output_dir, or pass overwrite=True (tpv train --overwrite) to delete them"
            )
    complete = [p for p in _checkpoints(folder) if resume and is_complete(p, fingerprint)]
    for path in _checkpoints(folder):
        if path not in complete:
            remove_checkpoint(path)
    if started is None:
        atomic_write_text(
            folder / RUN_FILENAME, json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=1, default=str)
        )
    return {"checkpoint": str(complete[-1]) if complete else None}


def _check_same(folder: Path, what: str, record: dict, settings: dict, fingerprint: str) -> None:
    if record.get("fingerprint") == fingerprint:
        return
    recorded = record.get("settings")
    if isinstance(recorded, dict):
        keys = [k for k in dict.fromkeys([*settings, *recorded]) if recorded.get(k) != settings.get(k)]
        differ = "; ".join(f"{k} {_short(recorded.get(k))} there, {_short(settings.get(k))} now" for k in keys[:4])
        differ += f" (and {len(keys) - 4} more)" if len(keys) > 4 else ""
    else:
        differ = "its settings were recorded by an older tpv"
    raise TPVError(
        f"'{folder}' holds {what} with other settings ({differ or 'data differ'}); train into a new output_dir, "
        f"or pass overwrite=True (tpv train --overwrite) to discard that run"
    )


def _check_files_kept(folder: Path, record: dict) -> None:
    # The record says the run finished; the files it wrote may have been deleted since. (A record that names
    # them wrongly is reported by whoever reads it.)
    adapter, vector = record.get("adapter_dir"), record.get("vector")
    if not isinstance(adapter, str) or not isinstance(vector, str):
        return
    adapter_dir = folder / adapter
    # Each entry: the file, or the names any one of which will do.
    needed = ((vector,), ("adapter_config.json",), ("adapter_model.safetensors", "adapter_model.bin"))
    missing = [str(adapter_dir / names[0]) for names in needed if not any((adapter_dir / n).is_file() for n in names)]
    if missing:
        raise TPVError(
            f"'{folder}' holds a finished run that is incomplete: {', '.join(repr(m) for m in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing (deleted after the run finished); pass overwrite=True "
            "(tpv train --overwrite) to train the run again"
        )


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return read_json(
        path,
        "the run record",
        "delete it to train again, or pass overwrite=True (tpv train --overwrite) to discard the run",
    )


def clear_run(folder: Path) -> None:
    """Remove what a tpv run wrote in ``folder`` (checkpoints, adapter, vectors, records), nothing else."""
    try:
        record = _read_record(folder / RESULT_FILENAME)
    except TPVError:  # a broken record is one more thing to discard
        record = None
    for path in _checkpoints(folder):
        remove_checkpoint(path)
    if record and isinstance(record.get("adapter_dir"), str) and record["adapter_dir"] not in ("", "."):
        adapter = (folder / record["adapter_dir"]).resolve()
        if adapter.is_dir() and folder.resolve() in adapter.parents:
            shutil.rmtree(adapter)
    for name in _RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for vector in folder.glob("*.tpv.safetensors") if folder.is_dir() else ():
        vector.unlink()


def _checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _CHECKPOINT.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")))


def mark_complete(checkpoint: Path, fingerprint: str) -> None:
    """Record that ``checkpoint`` is whole: every file in it with its size. Written last, atomically."""
    files = {
        str(p.relative_to(checkpoint)): p.stat().st_size
        for p in sorted(checkpoint.rglob("*"))
        if p.is_file() and p.name != CHECKPOINT_MARKER and not p.name.startswith(".")
    }
    atomic_write_text(
        checkpoint / CHECKPOINT_MARKER, json.dumps({"fingerprint": fingerprint, "files": files}, indent=1)
    )


def is_complete(checkpoint: Path, fingerprint: str) -> bool:
    """Whether ``checkpoint`` was marked whole by this run and still holds every file it had then."""
    try:
        marker = json.loads((checkpoint / CHECKPOINT_MARKER).read_text(encoding="utf-8"))
        return (
            marker["fingerprint"] == fingerprint
            and bool(marker["files"])
            and all((checkpoint / name).stat().st_size == size for name, size in marker["files"].items())
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def remove_checkpoint(checkpoint: Path) -> None:
    # The marker goes first, so a kill halfway through the deletion leaves a folder that reads as incomplete.
    (checkpoint / CHECKPOINT_MARKER).unlink(missing_ok=True)
    shutil.rmtree(checkpoint, ignore_errors=True)


def prune_checkpoints(folder: Path, limit: int | None, keep: list) -> None:
    """Delete the oldest checkpoints beyond ``limit``, never those in ``keep`` (the newest, the best)."""
    if not limit or limit < 1:
        return
    kept = {Path(k).resolve() for k in keep if k}
    checkpoints = _checkpoints(folder)
    others = [path for path in checkpoints if path.resolve() not in kept]
    # Like Trainer: the limit counts the kept ones too, but never deletes them.
    for path in others[: max(0, len(checkpoints) - max(limit, len(checkpoints) - len(others)))]:
        remove_checkpoint(path)
