"""Choosing source vectors for a new task by their similarity to a briefly tuned target vector."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tpv.bridge.vector import TaskPromptVector
from tpv.core.errors import TPVError

VECTOR_SUFFIX = ".tpv.safetensors"


def select_sources(
    target: TaskPromptVector,
    library: Mapping[str, TaskPromptVector] | str | os.PathLike,
    k: int | None = 2,
    pooling: str = "mean",
) -> list[tuple[str, float]]:
    """Rank stored vectors by cosine similarity to ``target``, best first.

    ``target`` is typically a vector from a short prompt tuning on the target task's few shots (the paper's
    discussion proposes this retrieval); the best-ranked sources are then combined to initialise the target.

    Args:
        target: the target task's vector.
        library: a mapping name → vector, or a folder of ``*.tpv.safetensors`` files (named by file stem).
        k: how many to return; ``None`` returns all.
        pooling: ``"mean"`` (the paper's measure), ``"flat"`` or ``"per_token"`` (SPoT's).

    Returns:
        ``[(name, cosine), …]``, highest cosine first (ties by name).

    Example:
        >>> import torch
        >>> target = TaskPromptVector(torch.tensor([[1.0, 0.1]]), tasks={"sst5": 1.0})
        >>> library = {"sst2": TaskPromptVector(torch.tensor([[1.0, 0.0]]), tasks={"sst2": 1.0}),
        ...            "rte": TaskPromptVector(torch.tensor([[0.0, 1.0]]), tasks={"rte": 1.0})}
        >>> [name for name, _ in select_sources(target, library)]
        ['sst2', 'rte']
    """
    if not isinstance(target, TaskPromptVector):
        raise TPVError(
            f"the target must be a TaskPromptVector, got a {type(target).__name__}; tune a short prompt on the "
            "target's few shots and build it with TaskPromptVector.from_peft"
        )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise TPVError(f"k must be a positive int or None (all), got {k!r}")
    vectors = _library(library)
    ranked = sorted(
        ((name, target.cosine(vector, pooling)) for name, vector in vectors.items()),
        key=lambda item: (-item[1], item[0]),
    )
    return ranked if k is None else ranked[:k]


def _library(library) -> dict[str, TaskPromptVector]:
    if isinstance(library, (str, os.PathLike)):
        folder = Path(library)
        if not folder.is_dir():
            raise TPVError(f"vector library '{folder}' is not a folder; pass a folder of *{VECTOR_SUFFIX} files")
        files = sorted(folder.glob(f"*{VECTOR_SUFFIX}"))
        if not files:
            raise TPVError(f"no *{VECTOR_SUFFIX} files in '{folder}'; save vectors there with vector.save(path)")
        return {path.name[: -len(VECTOR_SUFFIX)]: TaskPromptVector.load(path) for path in files}
    if not isinstance(library, Mapping):
        raise TPVError(f"the library must be a mapping name → vector or a folder, got a {type(library).__name__}")
    if not library:
        raise TPVError("the vector library is empty; pass at least one named vector")
    for name, vector in library.items():
        if not isinstance(vector, TaskPromptVector):
            raise TPVError(f"library entry {name!r} is a {type(vector).__name__}; pass TaskPromptVectors")
    return {str(name): vector for name, vector in library.items()}
