"""A small JSON store of scores and choices (λ), written atomically after every new entry.

Trained prompts are cached by ``train_prompt`` itself in their own folders; this store holds everything else
a study computes, so a killed run loses at most the item it was computing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from tpv._io import atomic_write_text
from tpv.errors import TPVError


class ScoreStore:
    """Key → JSON value, persisted in one file. ``hits``/``misses`` count lookups (resume checks use them)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        if self.path.is_file():
            try:
                self._data = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise TPVError(f"the score store '{self.path}' is not valid JSON ({err}); delete it to recompute "
                               "the scores (trained prompts are kept)") from None
        else:
            self._data = {}

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default=None):
        return self._data.get(key, default)

    def put(self, key: str, value) -> None:
        self._data[key] = value
        self._flush()

    def cached(self, key: str, compute: Callable[[], object]):
        """The stored value of ``key``, computing and storing it first when absent."""
        if key in self._data:
            self.hits += 1
            return self._data[key]
        self.misses += 1
        value = compute()
        self.put(key, value)
        return value

    def _flush(self) -> None:
        atomic_write_text(self.path, json.dumps(self._data, indent=0, sort_keys=True))
