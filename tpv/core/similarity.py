"""Cosine similarity between soft prompts or task prompt vectors, and similarity matrices over many of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from tpv.core.errors import TPVError

POOLINGS = ("mean", "flat", "per_token")


@torch.no_grad()
def prompt_cosine(a: torch.Tensor, b: torch.Tensor, pooling: str = "mean") -> float:
    """Cosine similarity of two ``(tokens, token_dim)`` tensors.

    ``mean`` (the paper's measure) compares the token-averaged weights; ``flat`` compares the flattened
    tensors; ``per_token`` averages the cosine of corresponding tokens (SPoT's measure).

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> round(prompt_cosine(a, 2 * a), 6), round(prompt_cosine(a, a.flip(0), "per_token"), 6)
        (1.0, 0.0)
    """
    if pooling not in POOLINGS:
        raise TPVError(f"unknown pooling {pooling!r}; use one of {list(POOLINGS)}")
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TPVError(f"prompt_cosine compares two tensors, got a {type(a).__name__} and a {type(b).__name__}")
    if a.shape != b.shape:
        raise TPVError(f"cannot compare tensors of shape {tuple(a.shape)} and {tuple(b.shape)}; pass equal shapes")
    a, b = a.float(), b.to(a.device, torch.float32)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise TPVError(
            "cannot compare prompts holding NaN/inf values; they are corrupt, or the training that made them diverged"
        )
    if pooling == "per_token":
        _require_nonzero(a.norm(dim=-1).min(), b.norm(dim=-1).min(), "a token")
        return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
    if pooling == "mean":
        a, b = a.mean(dim=0), b.mean(dim=0)
    a, b = a.flatten(), b.flatten()
    _require_nonzero(a.norm(), b.norm(), "the pooled tensor")
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def _require_nonzero(norm_a: torch.Tensor, norm_b: torch.Tensor, what: str) -> None:
    if float(norm_a) == 0.0 or float(norm_b) == 0.0:
        raise TPVError(
            f"cosine similarity is undefined because {what} is all zeros; a zero vector means the prompt never "
            "moved from its origin: train it, or leave it out"
        )


def similarity_matrix(
    vectors: Mapping[str, object] | Sequence[object], pooling: str = "mean"
) -> tuple[list[str], torch.Tensor]:
    """Pairwise cosine similarities of task prompt vectors (or raw prompt tensors).

    Args:
        vectors: a mapping name → vector/tensor, or a list of them (names come from the vectors' tasks,
            else their position).
        pooling: ``"mean"`` (the paper's), ``"flat"`` or ``"per_token"`` (SPoT's).

    Returns:
        The names and a symmetric ``(n, n)`` float32 matrix with ones on the diagonal.

    Example:
        >>> names, matrix = similarity_matrix({"a": torch.ones(2, 3), "b": -torch.ones(2, 3)})
        >>> names, matrix.tolist()
        (['a', 'b'], [[1.0, -1.0], [-1.0, 1.0]])
    """
    names, tensors = _named_tensors(vectors)
    size = len(tensors)
    matrix = torch.eye(size)
    for i in range(size):
        for j in range(i + 1, size):
            matrix[i, j] = matrix[j, i] = prompt_cosine(tensors[i], tensors[j], pooling)
    return names, matrix


def _named_tensors(vectors) -> tuple[list[str], list[torch.Tensor]]:
    if not isinstance(vectors, (Mapping, Sequence)) or isinstance(vectors, (str, bytes)):
        raise TPVError(f"similarity_matrix takes a mapping name → vector or a list of vectors, got {vectors!r}")
    items = list(vectors.items()) if isinstance(vectors, Mapping) else [(None, v) for v in vectors]
    if not items:
        raise TPVError("similarity_matrix got no vectors; pass a mapping name → vector or a non-empty list")
    names, tensors = [], []
    for position, (name, value) in enumerate(items):
        if hasattr(value, "active_tensor"):
            tensor = value.active_tensor
            name = name or value.name
        elif isinstance(value, torch.Tensor):
            tensor = value
        else:
            raise TPVError(f"item {name or position} is a {type(value).__name__}; pass TaskPromptVectors or tensors")
        names.append(str(name if name is not None else position))
        tensors.append(tensor)
    bases = {str(base) for _, value in items if (base := getattr(value, "base_model", None)) is not None}
    if len(bases) > 1:
        raise TPVError(
            f"cannot compare vectors of different base models {sorted(bases)}; soft prompts only compare "
            "within one model's embedding space: pass vectors of one base model"
        )
    return names, tensors
