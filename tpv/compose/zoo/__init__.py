"""The vector zoo: task prompt vectors of the default model (SmolLM2-135M-Instruct), shipped inside tpv.

Every vector was tuned from one recorded origin (``origin.safetensors`` here), by ``scripts/build_zoo.py`` or,
for the ones rebuilt with larger budgets, by :func:`tpv.build_zoo` and ``scripts/update_zoo.py``;
``manifest.json`` records the commit, machine, data files' hashes, budget and scores of each, and every run tried.
Start a new task from them with :func:`tpv.auto_init` (``sources="zoo"``) or combine them by hand: no training
needed.
:func:`tpv.build_zoo` (:mod:`tpv.compose.zoo.build`) writes a zoo of the same format for another model, which
``auto_init(..., sources=that_folder)`` reads like this one.

Example:
    >>> from tpv.compose import zoo
    >>> "sst2" in [row["task"] for row in zoo.available()]
    True
    >>> zoo.load("sst2").tasks
    {'sst2': 1.0}
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from tpv.bridge.vector import TaskPromptVector
from tpv.core.errors import TPVError, TPVFileNotFoundError
from tpv.core.origin import Origin

__all__ = [
    "ZOO_DIR",
    "ZooTable",
    "available",
    "folder_vectors",
    "load",
    "manifest",
    "origin",
    "pending",
    "read_manifest",
    "vectors",
]

ZOO_DIR = Path(__file__).resolve().parent
_COLUMNS = (
    ("task", "{}"),
    ("family", "{}"),
    ("steps", "{}"),
    ("metric", "{}"),
    ("validation", "{:.3f}"),
    ("origin_validation", "{:.3f}"),
    ("chance_level", "{:.3f}"),
    ("test", "{:.3f}"),
    ("norm", "{:.2f}"),
    ("at_chance", "{}"),
    ("file", "{}"),
)


class ZooTable(list):
    """A list of the zoo's manifest rows (dicts) that prints as an aligned table."""

    def __str__(self) -> str:
        cells = [[name for name, _ in _COLUMNS]]
        cells += [[fmt.format(row.get(name, "")) for name, fmt in _COLUMNS] for row in self]
        widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)

    def _repr_pretty_(self, printer, cycle):  # IPython / Jupyter
        printer.text(str(self))


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The zoo's ``manifest.json``: how and from what each vector was built, and its scores."""
    return read_manifest(ZOO_DIR)


def read_manifest(folder: str | os.PathLike) -> dict:
    """The ``manifest.json`` of a zoo folder (tpv's own, or one written by :func:`tpv.build_zoo`).

    Example:
        >>> read_manifest(ZOO_DIR)["base_model"]
        'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise TPVFileNotFoundError(
            f"'{folder}' holds no zoo manifest (manifest.json); build one with tpv.build_zoo(...)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TPVError(f"cannot read the zoo manifest '{path}': {error}; rebuild the zoo") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise TPVError(f"the zoo manifest '{path}' has no 'tasks' table; rebuild the zoo with tpv.build_zoo(...)")
    return data


def folder_vectors(
    folder: str | os.PathLike, exclude=(), include_at_chance: bool = False
) -> dict[str, TaskPromptVector]:
    """Every vector of a zoo folder as ``{task: vector}``, less ``exclude`` and (by default) those at chance.

    Example:
        >>> "sst2" in folder_vectors(ZOO_DIR) and "rte" not in folder_vectors(ZOO_DIR)
        True
    """
    exclude = {exclude} if isinstance(exclude, str) else set(exclude)
    tasks = read_manifest(folder)["tasks"]
    return {
        name: TaskPromptVector.load(Path(folder) / entry["file"])
        for name, entry in sorted(tasks.items())
        if name not in exclude and (include_at_chance or not entry.get("at_chance"))
    }


def available(include_at_chance: bool = True) -> ZooTable:
    """The zoo's vectors: task, family, steps, validation and test scores (macro-F1; Pearson for stsb), norm, file.

    Args:
        include_at_chance: also list vectors whose tuned prompt did not beat chance on validation.

    Returns:
        A :class:`ZooTable` (a list of dicts), sorted by task.
    """
    rows = [dict(entry) for _, entry in sorted(manifest()["tasks"].items())]
    return ZooTable(row for row in rows if include_at_chance or not row.get("at_chance"))


def load(name: str) -> TaskPromptVector:
    """The zoo vector of task ``name`` (see :func:`available`).

    Example:
        >>> load("sst2").shape
        (20, 576)
    """
    tasks = manifest()["tasks"]
    if name not in tasks:
        raise TPVError(f"the zoo has no vector for {name!r}; it has {sorted(tasks)} (see tpv.compose.zoo.available())")
    return TaskPromptVector.load(ZOO_DIR / tasks[name]["file"])


def vectors(exclude=(), include_at_chance: bool = False) -> dict[str, TaskPromptVector]:
    """Every zoo vector as ``{task: vector}``, less ``exclude`` and (by default) those at chance.

    Args:
        exclude: task names to leave out, e.g. the target task itself.
        include_at_chance: keep vectors whose tuned prompt did not beat chance on validation.
    """
    exclude = {exclude} if isinstance(exclude, str) else set(exclude)
    unknown = exclude - set(manifest()["tasks"])
    if unknown:
        raise TPVError(f"cannot exclude {sorted(unknown)}: not in the zoo, which has {sorted(manifest()['tasks'])}")
    return {row["task"]: load(row["task"]) for row in available(include_at_chance) if row["task"] not in exclude}


def pending() -> list[str]:
    """Tasks the build script plans a vector for but this zoo does not hold yet (a build cut short)."""
    return sorted(set(manifest().get("planned", ())) - set(manifest()["tasks"]))


def origin() -> Origin:
    """The origin every zoo vector was tuned from (the paper's origin 0 at 20 virtual tokens; see the manifest)."""
    return Origin.load(ZOO_DIR / manifest()["origin"]["file"])
