"""Merging task prompt vectors: the paper's weighted sum and the model-merging methods (TIES, DARE, pruning).

A merge method takes the stacked task tensors ``(n, rows, token_dim)`` (float32), the weights ``(n,)`` and
keyword options, and returns the merged ``(rows, token_dim)`` tensor and the options it used (defaults
filled in), which :func:`merge` records on the result. Add a method by adding it to ``MERGE_METHODS``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch

from tpv.bridge.vector import TaskPromptVector
from tpv.core import _checks
from tpv.core._io import dumps
from tpv.core.errors import TPVError
from tpv.core.origin import Origin

MergeResult = tuple[torch.Tensor, dict]


@torch.no_grad()
def merge(
    vectors: Sequence[TaskPromptVector] | Mapping[str, TaskPromptVector],
    method: str = "sum",
    weights: Sequence[float] | Mapping[str, float] | None = None,
    **options,
) -> TaskPromptVector:
    """Merge task prompt vectors into one with a method from ``MERGE_METHODS``.

    Args:
        vectors: a list of vectors, or a mapping name → vector.
        method: ``"sum"`` (the paper's arithmetic, eq. 4), ``"mean"``, ``"ties"``, ``"dare_linear"``,
            ``"dare_ties"`` or ``"magnitude_prune"``.
        weights: one coefficient per vector (a list in order, or a mapping by name); all ones by default.
        options: the method's options: ``density`` (fraction of entries kept; ties/magnitude_prune 0.2,
            dare 0.5), ``majority_sign_method`` (ties/dare_ties: ``"total"`` or ``"frequency"``), ``seed``
            (dare, default 0: the random drop uses a private generator, so results are reproducible).

    Returns:
        A new vector. Its ``tasks`` map each source task to weight × its coefficient (divided by n for
        ``mean``); its ``merge`` attribute (saved in the file) is JSON naming the method, options and weights.

    Example:
        >>> a = TaskPromptVector(torch.tensor([[1.0, -2.0]]), tasks={"sst2": 1.0})
        >>> b = TaskPromptVector(torch.tensor([[3.0, 2.0]]), tasks={"yelp": 1.0})
        >>> merged = merge([a, b], weights=[1.0, 0.5])
        >>> merged.tensor.tolist(), merged.tasks
        ([[2.5, -1.0]], {'sst2': 1.0, 'yelp': 0.5})
        >>> merge({"sst2": a, "yelp": b}, method="ties", density=1.0).tensor.tolist()
        [[2.0, 2.0]]
    """
    if method not in MERGE_METHODS:
        raise TPVError(f"unknown merge method {method!r}; use one of {sorted(MERGE_METHODS)}")
    names, items = _named_vectors(vectors)
    coefficients = _weights(weights, names)
    first = items[0]
    for other in items[1:]:
        _checks.compatible_vectors(first, other, "merge")
    stacked = torch.stack([v.tensor.to(first.device) for v in items])
    weight_tensor = torch.tensor(coefficients, dtype=torch.float32, device=first.device)
    tensor, used = MERGE_METHODS[method](stacked, weight_tensor, **options)
    if tuple(tensor.shape) != first.shape:
        raise TPVError(
            f"merge method {method!r} returned shape {tuple(tensor.shape)} for vectors of shape {first.shape}; "
            "a merge method must return one tensor shaped like its inputs"
        )
    _check_not_emptied(tensor, stacked * weight_tensor.view(-1, 1, 1), method, used)
    per_task = 1.0 / len(items) if method == "mean" else 1.0
    tasks: dict[str, float] = {}
    for vector, weight in zip(items, coefficients):
        for task, coef in vector.tasks.items():
            tasks[task] = tasks.get(task, 0.0) + weight * per_task * coef
    record = {"method": method, **used, "weights": dict(zip(names, coefficients))}
    return TaskPromptVector(
        tensor,
        tasks=tasks,
        num_virtual_tokens=first.num_virtual_tokens,
        num_transformer_submodules=first.num_transformer_submodules,
        base_model=next((v.base_model for v in items if v.base_model), None),
        task_type=next((v.task_type for v in items if v.task_type), None),
        origin=" | ".join(sorted({v.origin for v in items if v.origin})) or None,
        merge=dumps(record),
    )


@torch.no_grad()
def negate(vector: TaskPromptVector, task_vector: TaskPromptVector, scale: float = 1.0) -> TaskPromptVector:
    """``vector − scale·task_vector``: remove a task from a (multi-task) vector, to forget it.

    Example:
        >>> both = TaskPromptVector(torch.ones(1, 2), tasks={"sst2": 1.0, "rte": 1.0})
        >>> rte = TaskPromptVector(torch.ones(1, 2), tasks={"rte": 1.0})
        >>> negate(both, rte).tasks
        {'sst2': 1.0, 'rte': 0.0}
    """
    return vector - scale * task_vector


@torch.no_grad()
def forget(
    prompt_or_vector: torch.Tensor | TaskPromptVector,
    task_vector: TaskPromptVector,
    scale: float = 1.0,
    origin: Origin | torch.Tensor | None = None,
) -> torch.Tensor | TaskPromptVector:
    """Apply ``−scale·τ_task`` to a tuned prompt (or a vector) so that it forgets that task.

    Args:
        prompt_or_vector: a soft prompt tensor (e.g. a tuned multi-task prompt) or a vector.
        task_vector: the vector of the task to forget.
        scale: λ of the negation.
        origin: with a vector, the origin to apply the result to; the result is then a prompt.

    Returns:
        The prompt ``θ − λ·τ_task`` (a new float32 tensor), or the vector ``τ − λ·τ_task`` when given a vector
        and no origin.

    Example:
        >>> rte = TaskPromptVector(torch.ones(1, 2), tasks={"rte": 1.0})
        >>> forget(torch.full((1, 2), 3.0), rte, scale=0.5).tolist()
        [[2.5, 2.5]]
        >>> both = TaskPromptVector(torch.ones(1, 2), tasks={"sst2": 1.0, "rte": 1.0})
        >>> forget(both, rte, origin=torch.zeros(1, 2)).tolist()
        [[0.0, 0.0]]
    """
    if isinstance(prompt_or_vector, TaskPromptVector):
        forgotten = negate(prompt_or_vector, task_vector, scale)
        return forgotten if origin is None else forgotten.apply_to(origin)
    if origin is not None:
        raise TPVError(
            "forget got a prompt tensor and an origin; the origin is only used with a vector: pass "
            "forget(prompt, task_vector, scale) or forget(vector, task_vector, scale, origin=origin)"
        )
    # apply_to checks the shapes and returns a new float32 tensor: prompt + (−λ)·τ.
    return task_vector.apply_to(prompt_or_vector, scale=-_real(scale, "scale"))


# ---- the methods ------------------------------------------------------------------------------------------


def _sum(tensors: torch.Tensor, weights: torch.Tensor, **options) -> MergeResult:
    _take(options, "sum")
    return _weighted_sum(tensors, weights), {}


def _mean(tensors: torch.Tensor, weights: torch.Tensor, **options) -> MergeResult:
    _take(options, "mean")
    return _weighted_sum(tensors, weights) / tensors.shape[0], {}


def _ties(tensors: torch.Tensor, weights: torch.Tensor, **options) -> MergeResult:
    used = _take(options, "ties", density=0.2, majority_sign_method="total")
    density = _density(used["density"], tensors)
    trimmed = torch.stack([_magnitude_prune(t, density) for t in tensors])
    return _elect_and_merge(trimmed, weights, used["majority_sign_method"]), used


def _dare_linear(tensors: torch.Tensor, weights: torch.Tensor, **options) -> MergeResult:
    used = _take(options, "dare_linear", density=0.5, seed=0)
    dropped = _random_drop(tensors, _density(used["density"], tensors), _seed(used["seed"]))
    return _weighted_sum(dropped, weights), used


def _dare_ties(tensors: torch.Tensor, weights: torch.Tensor, **options) -> MergeResult:
    used = _take(options, "dare_ties", density=0.5, seed=0, majority_sign_method="total")
    dropped = _random_drop(tensors, _density(used["density"], tensors), _seed(used["seed"]))
    return _elect_and_merge(dropped, weights, used["majority_sign_method"]), used


def _magnitude_prune_merge(tensors: torch.Tensor, weights: torch.Tensor, **options) -> MergeResult:
    used = _take(options, "magnitude_prune", density=0.2)
    density = _density(used["density"], tensors)
    return _weighted_sum(torch.stack([_magnitude_prune(t, density) for t in tensors]), weights), used


MERGE_METHODS: dict[str, Callable[..., MergeResult]] = {
    "sum": _sum,
    "mean": _mean,
    "ties": _ties,
    "dare_linear": _dare_linear,
    "dare_ties": _dare_ties,
    "magnitude_prune": _magnitude_prune_merge,
}


# ---- building blocks ----------------------------------------------------------------------------------------
# The same arithmetic as PEFT's peft.utils.merge_utils (TIES: Yadav et al. 2023; DARE: Yu et al. 2023), written
# here rather than called there: merge_utils is internal to PEFT (not its public API), so its signatures
# may change under us. tests/test_merge.py checks these against PEFT's functions entry by entry.


def _weighted_sum(tensors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (tensors * weights.view(-1, 1, 1)).sum(dim=0)


def _random_drop(tensors: torch.Tensor, density: float, seed: int) -> torch.Tensor:
    # PEFT's random_pruning draws from the global RNG; a private generator makes the drop reproducible and
    # leaves the caller's RNG state alone. The mask is drawn on the CPU so a seed gives the same mask anywhere.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    keep = torch.rand(tensors.shape, generator=generator) < density
    return tensors * keep.to(tensors.device) / density


def _magnitude_prune(tensor: torch.Tensor, density: float) -> torch.Tensor:
    if density >= 1.0:
        return tensor.clone()
    keep = int(density * tensor.numel())
    mask = torch.zeros(tensor.numel(), dtype=torch.bool, device=tensor.device)
    mask[tensor.abs().flatten().topk(keep).indices] = True
    return tensor * mask.view(tensor.shape)


def _elect_and_merge(tensors: torch.Tensor, weights: torch.Tensor, sign_method: str) -> torch.Tensor:
    if sign_method not in ("total", "frequency"):
        raise TPVError(f"unknown majority_sign_method {sign_method!r}; use 'total' (TIES's) or 'frequency'")
    # The sign is elected on the weighted tensors, so a vector merged with a negative weight votes with the
    # sign it contributes (PEFT elects before weighting; with positive weights and "total" both agree on sign).
    weighted = tensors * weights.view(-1, 1, 1)
    return _disjoint_merge(weighted, _majority_sign_mask(weighted, sign_method))


def _majority_sign_mask(tensors: torch.Tensor, method: str) -> torch.Tensor:
    sign = tensors.sign()
    mass = tensors.sum(dim=0) if method == "total" else sign.sum(dim=0)
    return sign == torch.where(mass >= 0, 1.0, -1.0)


def _disjoint_merge(tensors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (tensors * mask).sum(dim=0) / mask.sum(dim=0).clamp(min=1)


# ---- argument checks --------------------------------------------------------------------------------------


def _named_vectors(vectors) -> tuple[list[str], list[TaskPromptVector]]:
    if isinstance(vectors, TaskPromptVector):
        vectors = [vectors]
    if not isinstance(vectors, (Sequence, Mapping)) or isinstance(vectors, (str, bytes)):
        raise TPVError(f"merge takes a list of vectors or a mapping name → vector, got {vectors!r}")
    items = list(vectors.items()) if isinstance(vectors, Mapping) else list(enumerate(vectors))
    if not items:
        raise TPVError("cannot merge an empty list of vectors; pass at least one TaskPromptVector")
    for name, vector in items:
        if not isinstance(vector, TaskPromptVector):
            raise TPVError(
                f"cannot merge item {name!r}: it is a {type(vector).__name__}; pass TaskPromptVectors "
                "(build one with TaskPromptVector.from_prompts or from_peft)"
            )
    return [str(name) for name, _ in items], [vector for _, vector in items]


def _weights(weights, names: list[str]) -> list[float]:
    if weights is None:
        return [1.0] * len(names)
    if isinstance(weights, Mapping):
        unknown = sorted(set(map(str, weights)) - set(names))
        missing = [name for name in names if name not in weights]
        if unknown or missing:
            raise TPVError(
                f"merge weights name {sorted(map(str, weights))} but the vectors are {names}; give one weight per "
                "vector name"
            )
        return [_real(weights[name], f"weight of {name!r}") for name in names]
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, torch.Tensor)):
        raise TPVError(
            f"merge weights must be a list (one per vector) or a mapping name → weight, got {weights!r}; "
            f"e.g. weights={[1.0] * len(names)}"
        )
    weights = list(weights)
    if len(weights) != len(names):
        raise TPVError(f"got {len(weights)} weights {weights} for {len(names)} vectors; give one weight per vector")
    return [_real(w, f"weight {i}") for i, w in enumerate(weights)]


def _check_not_emptied(merged: torch.Tensor, weighted: torch.Tensor, method: str, used: dict) -> None:
    if merged.any() or not weighted.any():
        return
    if "density" in used:
        raise TPVError(
            f"merge method {method!r} with density={used['density']!r} dropped every entry, so the merged vector "
            "is all zeros; raise density" + (" or pass another seed" if "seed" in used else "")
        )
    # An exact cancellation (a + (−a)) is valid arithmetic, but rarely what a merge was meant to give.
    warnings.warn(
        f"merge method {method!r} returned an all-zero vector: the weighted vectors cancel; check the weights",
        stacklevel=4,  # the caller of merge, past its torch.no_grad wrapper
    )


def _take(options: dict, method: str, **defaults) -> dict:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        accepted = sorted(defaults) or "no options"
        raise TPVError(f"merge method {method!r} got unknown options {unknown}; it accepts {accepted}")
    return {**defaults, **options}


def _density(value, tensors: torch.Tensor) -> float:
    density = _real(value, "density")
    if not 0.0 < density <= 1.0:
        raise TPVError(f"density must be in (0, 1] (the fraction of entries kept), got {value!r}")
    entries = tensors[0].numel()
    # Fewer than one entry kept on average: magnitude pruning keeps none, DARE almost surely none.
    if density * entries < 1:
        raise TPVError(
            f"density={value!r} keeps no entry of vectors with {entries} entries (density × entries = "
            f"{density * entries:.2g} < 1); pass density ≥ 1/{entries} ({1 / entries:.2g})"
        )
    return density


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TPVError(f"seed must be an int, got {value!r}")
    return value


def _real(value, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value or abs(value) == float("inf"):
        raise TPVError(f"{what} must be a finite real number, got {value!r}")
    return float(value)
