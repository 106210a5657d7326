"""A tuned soft prompt minus its origin (paper eq. 2), with arithmetic (eq. 3, 4) and its file format.

:class:`BaseTaskPromptVector` is everything a vector is without Hugging Face: the public
:class:`tpv.TaskPromptVector` (``tpv.bridge.vector``) adds the constructors and sharing that go through PEFT
and the Hub, so that this layer never imports the one above it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from tpv.core import _checks
from tpv.core._checks import file_metadata
from tpv.core._io import PathLike, atomic_save, describe_foreign_file, dumps, read_safetensors
from tpv.core.errors import TPVError
from tpv.core.origin import Origin
from tpv.core.provenance import join_merge_records, merge_record
from tpv.core.similarity import prompt_cosine

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

VECTOR_FORMAT = "tpv/1"
VECTOR_KEY = "task_prompt_vector"
_MISSING = object()


class BaseTaskPromptVector:
    """The difference ``θ_tuned − θ_origin`` between a task prompt and its origin, plus where it came from.

    Users work with its subclass :class:`tpv.TaskPromptVector`, which adds ``from_peft``, ``from_pretrained``,
    ``save_pretrained`` and ``push_to_hub``; every operation here returns a vector of the operand's own class.

    ``tensor`` has shape ``(num_virtual_tokens × num_transformer_submodules, token_dim)``, PEFT's own layout,
    and is always float32: float16/bfloat16 input converts exactly, float64 input is rounded to float32 (and
    refused beyond its range); integer, bool, complex, empty and non-finite tensors are refused. ``tasks`` maps
    each task the vector expresses to its coefficient, so
    ``0.5 * a + b`` knows it is ``0.5·a + 1·b``. Every operation returns a new vector.

    Encoder-decoder models (``num_transformer_submodules=2``): PEFT prepends only the first
    ``num_virtual_tokens`` rows, so the other rows never train and stay zero in a vector. Similarity and
    norms use those first rows only (:attr:`active_tensor`); files and :meth:`apply_to` keep every row, so
    the result loads back into PEFT unchanged.

    Example:
        >>> a = BaseTaskPromptVector(torch.ones(2, 3), tasks={"sst2": 1.0}, num_virtual_tokens=2)
        >>> b = BaseTaskPromptVector(torch.eye(2, 3), tasks={"yelp": 1.0}, num_virtual_tokens=2)
        >>> 0.5 * b + a
        BaseTaskPromptVector(0.5·yelp + 1·sst2, 2×3, base=None)
        >>> sum([a, b]).tensor[0].tolist()
        [2.0, 1.0, 1.0]
    """

    def __init__(
        self,
        tensor: torch.Tensor,
        *,
        tasks: Mapping[str, float],
        num_virtual_tokens: int | None = None,
        num_transformer_submodules: int = 1,
        base_model: str | None = None,
        task_type: str | None = None,
        origin: str | None = None,
        merge: str | None = None,
    ):
        tensor = _checks.prompt_tensor(tensor, "a task prompt vector")
        num_transformer_submodules = _checks.count(num_transformer_submodules, "num_transformer_submodules")
        if num_virtual_tokens is None:
            num_virtual_tokens = tensor.shape[0] // num_transformer_submodules
        num_virtual_tokens = _checks.count(num_virtual_tokens, "num_virtual_tokens")
        if num_virtual_tokens * num_transformer_submodules != tensor.shape[0]:
            raise TPVError(
                f"tensor has {tensor.shape[0]} rows but num_virtual_tokens={num_virtual_tokens} × "
                f"num_transformer_submodules={num_transformer_submodules} = "
                f"{num_virtual_tokens * num_transformer_submodules}; pass matching sizes"
            )
        # prompt_tensor returned a copy, so no later in-place edit of the caller's tensor can change this vector.
        self.tensor = tensor
        self.tasks = _check_tasks(tasks)
        self.num_virtual_tokens = num_virtual_tokens
        self.num_transformer_submodules = num_transformer_submodules
        self.base_model = _checks.optional_text(base_model, "base_model")
        self.task_type = _checks.optional_text(task_type, "task_type")
        self.origin = _checks.optional_text(origin, "origin")
        # How a tpv.merge method made this vector (JSON), since `tasks` alone cannot say e.g. "ties, density=0.2".
        self.merge = _checks.optional_text(merge, "merge")

    # ---- constructors -------------------------------------------------------------------------------------

    @classmethod
    def from_prompts(
        cls,
        task_prompt: torch.Tensor,
        origin: Origin | torch.Tensor,
        task: str = "task",
        *,
        base_model: str | None = None,
        task_type: str | None = None,
    ) -> Self:
        """Build ``task_prompt − origin`` (paper eq. 2).

        Args:
            task_prompt: the tuned soft prompt, shaped like the origin.
            origin: the :class:`Origin` (or raw tensor) it was tuned from.
            task: the task's name.

        Example:
            >>> origin = Origin(torch.zeros(2, 3), num_virtual_tokens=2, seed=0, method="normal")
            >>> BaseTaskPromptVector.from_prompts(torch.ones(2, 3), origin, task="sst2").tensor.sum().item()
            6.0
        """
        origin_tensor, meta = _origin_parts(origin)
        task_prompt = _checks.prompt_tensor(task_prompt, "the task prompt")
        if tuple(task_prompt.shape) != tuple(origin_tensor.shape):
            raise TPVError(
                f"task prompt of shape {tuple(task_prompt.shape)} does not match its origin of shape "
                f"{tuple(origin_tensor.shape)}; pass the origin the prompt was tuned from"
            )
        with torch.no_grad():
            difference = task_prompt - origin_tensor.to(task_prompt.device, torch.float32)
        return cls(
            difference,
            tasks={task: 1.0},
            num_virtual_tokens=meta.get("num_virtual_tokens"),
            num_transformer_submodules=meta.get("num_transformer_submodules", 1),
            base_model=base_model or meta.get("base_model"),
            task_type=task_type,
            origin=meta.get("recipe"),
        )

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """Read a ``*.tpv.safetensors`` file written by :meth:`save`."""
        tensors, metadata = read_safetensors(path, "task prompt vector file")
        if metadata.get("format") != VECTOR_FORMAT and VECTOR_KEY not in tensors:
            raise TPVError(
                f"'{path}' is not a task prompt vector file: it is {describe_foreign_file(tensors, metadata)}"
            )
        fields = file_metadata(path, tensors, metadata, VECTOR_FORMAT, VECTOR_KEY, "re-save the vector with tpv")
        try:
            tasks = json.loads(metadata.get("tasks", ""))
        except ValueError:
            tasks = None
        if not isinstance(tasks, dict):
            raise TPVError(
                f"'{path}' has broken tpv/1 metadata: tasks={metadata.get('tasks')!r} is not a JSON "
                "object of task → coefficient; re-save the vector with tpv"
            )
        try:
            return cls(
                tensors[VECTOR_KEY],
                tasks=tasks,
                base_model=metadata.get("base_model"),
                task_type=metadata.get("task_type"),
                origin=metadata.get("origin"),
                merge=_readable_merge_record(metadata.get("merge") or None, path),
                **fields,
            )
        except TPVError as error:
            raise TPVError(f"'{path}' holds an invalid task prompt vector: {error}") from None

    # ---- I/O ----------------------------------------------------------------------------------------------

    def save(self, path: PathLike) -> Path:
        """Write the vector as ``tpv/1`` safetensors (atomically) and return the path."""
        from tpv.core._version import __version__

        metadata = {
            "format": VECTOR_FORMAT,
            "base_model": self.base_model or "",
            "task_type": self.task_type or "",
            "num_virtual_tokens": str(self.num_virtual_tokens),
            "num_transformer_submodules": str(self.num_transformer_submodules),
            "token_dim": str(self.token_dim),
            "tasks": dumps(self.tasks),
            "origin": self.origin or "",
            "tpv_version": __version__,
        }
        if self.merge:
            metadata["merge"] = self.merge
        return atomic_save({VECTOR_KEY: self.tensor}, path, metadata)

    # ---- views --------------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        rows, dim = self.tensor.shape
        return rows, dim

    @property
    def token_dim(self) -> int:
        return self.tensor.shape[1]

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @property
    def active_tensor(self) -> torch.Tensor:
        """The rows PEFT actually prepends (all of them for decoder-only models)."""
        return self.tensor[: self.num_virtual_tokens]

    @property
    def name(self) -> str:
        """The combination this vector expresses, e.g. ``0.5·yelp + 1·sst2``."""
        terms = []
        for task, coef in self.tasks.items():
            sign = "-" if coef < 0 else "+"
            terms.append((sign, f"{abs(coef):g}·{task}"))
        if not terms:
            return "∅"
        first_sign, first = terms[0]
        text = ("-" if first_sign == "-" else "") + first
        return text + "".join(f" {sign} {term}" for sign, term in terms[1:])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.shape[0]}×{self.shape[1]}, base={self.base_model})"

    def norm(self) -> float:
        """Frobenius norm of the trained rows."""
        return float(self.active_tensor.norm())

    def cosine(self, other: BaseTaskPromptVector | torch.Tensor, pooling: str = "mean") -> float:
        """Cosine similarity with another vector; ``mean`` pooling is the paper's measure.

        Example:
            >>> v = BaseTaskPromptVector(torch.randn(4, 8), tasks={"a": 1.0})
            >>> round(v.cosine(3 * v), 5)
            1.0
        """
        if isinstance(other, BaseTaskPromptVector):
            _checks.compatible_vectors(self, other, "compare")
            return prompt_cosine(self.active_tensor, other.active_tensor, pooling)
        if not isinstance(other, torch.Tensor):
            raise TPVError(
                f"cannot compare a vector with a {type(other).__name__} ({other!r}); pass a "
                "TaskPromptVector or a tensor of the same shape"
            )
        # A tensor shaped like the whole vector (all submodules' rows) or like its trained rows only.
        if tuple(other.shape) not in (self.shape, tuple(self.active_tensor.shape)):
            raise TPVError(
                f"cannot compare a vector of shape {self.shape} with a tensor of shape "
                f"{tuple(other.shape)}; pass a tensor of shape {self.shape}"
            )
        other = _checks.prompt_tensor(other, "the tensor to compare with")
        return prompt_cosine(self.active_tensor, other[: self.num_virtual_tokens], pooling)

    def apply_to(self, origin: Origin | torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The soft prompt ``θ_origin + λ·τ`` (paper eq. 3), on the origin's device, float32.

        Example:
            >>> v = BaseTaskPromptVector(torch.ones(2, 3), tasks={"a": 1.0})
            >>> v.apply_to(torch.zeros(2, 3), scale=0.5)[0].tolist()
            [0.5, 0.5, 0.5]
        """
        scale = _check_scale(scale)
        origin_tensor, meta = _origin_parts(origin)
        if tuple(origin_tensor.shape) != self.shape:
            raise TPVError(
                f"cannot apply a vector of shape {self.shape} to an origin of shape {tuple(origin_tensor.shape)}; "
                f"make the origin with num_virtual_tokens={self.num_virtual_tokens} for the same model"
            )
        _checks.same_base_model(self.base_model, meta.get("base_model"), "apply the vector to an origin")
        with torch.no_grad():
            return origin_tensor.float() + scale * self.tensor.to(origin_tensor.device)

    def to(self, device: torch.device | str) -> Self:
        """A copy on ``device``; vectors stay float32 so arithmetic is exact enough to compose many of them."""
        if isinstance(device, torch.dtype):
            raise TPVError(
                f"vectors are kept in float32, so .to({device}) is refused; cast the applied prompt instead: "
                "vector.apply_to(origin).to(dtype)"
            )
        target = _checks.device(device, "a vector")
        try:
            moved = self.tensor.to(target)
        except (RuntimeError, TypeError, ValueError) as error:
            raise TPVError(
                f"cannot move a vector to {device!r} ({error}); pass a device such as 'cpu' or 'cuda:0'"
            ) from None
        return self._replace(moved, self.tasks)

    # ---- arithmetic ---------------------------------------------------------------------------------------

    def __add__(self, other: BaseTaskPromptVector) -> Self:
        return self._combine(other, 1.0, "add")

    def __radd__(self, other) -> Self:
        # sum() starts from 0; accept exactly that and nothing else.
        if isinstance(other, numbers.Number) and not isinstance(other, bool) and other == 0:
            return self._replace(self.tensor, self.tasks)
        return self._combine(other, 1.0, "add")

    def __sub__(self, other: BaseTaskPromptVector) -> Self:
        return self._combine(other, -1.0, "subtract")

    def __neg__(self) -> Self:
        return self * -1.0

    def __mul__(self, scale: float) -> Self:
        scale = _check_scale(scale, "multiply a vector by")
        with torch.no_grad():
            tensor = self.tensor * scale
        if not torch.isfinite(tensor).all():
            raise TPVError(
                f"multiplying by {scale:g} overflows float32 (largest entry "
                f"{float(self.tensor.abs().max()):g}); use a smaller scale"
            )
        return self._replace(tensor, {t: c * scale for t, c in self.tasks.items()})

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> Self:
        divisor = _check_scale(divisor, "divide a vector by")
        if divisor == 0:
            raise TPVError("cannot divide a task prompt vector by 0; pass a non-zero divisor")
        return self * (1.0 / divisor)

    def _combine(self, other, sign: float, verb: str) -> Self:
        if not isinstance(other, BaseTaskPromptVector):
            raise TPVError(
                f"cannot {verb} a {type(other).__name__} and a TaskPromptVector; both operands must be "
                "TaskPromptVectors (build one with TaskPromptVector.from_prompts or from_peft)"
            )
        _checks.compatible_vectors(self, other, verb)
        tasks = dict(self.tasks)
        for task, coef in other.tasks.items():
            tasks[task] = tasks.get(task, 0.0) + sign * coef
        with torch.no_grad():
            tensor = self.tensor + sign * other.tensor.to(self.device)
        if not torch.isfinite(tensor).all():
            raise TPVError(f"cannot {verb} these vectors: the result overflows float32; rescale them first")
        origins = {o for o in (self.origin, other.origin) if o}
        return self._replace(
            tensor,
            tasks,
            base_model=self.base_model or other.base_model,
            task_type=self.task_type or other.task_type,
            origin=" | ".join(sorted(origins)) or None,
            merge=join_merge_records(self.merge, other.merge),
        )

    def _replace(self, tensor: torch.Tensor, tasks: Mapping[str, float], **changes) -> Self:
        fields: dict[str, Any] = dict(
            num_virtual_tokens=self.num_virtual_tokens,
            num_transformer_submodules=self.num_transformer_submodules,
            base_model=self.base_model,
            task_type=self.task_type,
            origin=self.origin,
            merge=self.merge,
        )
        fields.update(changes)
        # type(self): arithmetic on a tpv.TaskPromptVector gives a tpv.TaskPromptVector, with its Hub methods.
        return type(self)(tensor, tasks=tasks, **fields)


Vector = TypeVar("Vector", bound="BaseTaskPromptVector")


def combine(vectors: Iterable[Vector | tuple[Vector, float]]) -> Vector:
    """The weighted sum of vectors given as vectors or ``(vector, weight)`` pairs (paper eq. 4).

    Example:
        >>> a = BaseTaskPromptVector(torch.ones(1, 2), tasks={"a": 1.0})
        >>> b = BaseTaskPromptVector(torch.ones(1, 2), tasks={"b": 1.0})
        >>> combine([a, (b, 0.5)])
        BaseTaskPromptVector(1·a + 0.5·b, 1×2, base=None)
    """
    if isinstance(vectors, BaseTaskPromptVector):
        vectors = [vectors]  # type: ignore[list-item]  # one vector given where a list is asked for
    if not isinstance(vectors, Iterable) or isinstance(vectors, (str, bytes, Mapping, torch.Tensor)):
        raise TPVError(f"combine takes a list of vectors or (vector, weight) pairs, got {vectors!r}")
    items = list(vectors)
    if not items:
        raise TPVError("cannot combine an empty list of vectors; pass at least one TaskPromptVector")
    terms = []
    for item in items:
        if isinstance(item, tuple) and len(item) != 2:
            raise TPVError(f"cannot combine {item!r}: pairs are (vector, weight), got {len(item)} items")
        vector, weight = item if isinstance(item, tuple) else (item, 1.0)
        weight = _check_scale(weight, "combine a vector with weight")
        if not isinstance(vector, BaseTaskPromptVector):
            raise TPVError(
                f"cannot combine a {type(vector).__name__}; pass TaskPromptVectors or (vector, weight) pairs"
            )
        terms.append(vector * weight if weight != 1.0 else vector)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _check_scale(value, verb: str = "apply a vector with scale") -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TPVError(f"cannot {verb} {value!r}: a real number is needed")
    value = float(value)
    if not math.isfinite(value):
        raise TPVError(f"cannot {verb} {value}: the scale must be finite; pick λ from a grid such as 0…1")
    return value


def _check_tasks(tasks) -> dict[str, float]:
    if not isinstance(tasks, Mapping):
        raise TPVError(f"tasks must map task names to coefficients, e.g. {{'sst2': 1.0}}, got {tasks!r}")
    checked = {}
    for name, coef in tasks.items():
        if not isinstance(name, str) or not name:
            raise TPVError(f"task names must be non-empty strings, got {name!r} in tasks {dict(tasks)!r}")
        checked[name] = _checks.real(coef, f"the coefficient of task {name!r}")
    return checked


def _origin_parts(origin) -> tuple[torch.Tensor, dict]:
    if isinstance(origin, Origin):
        return origin.tensor, {
            "num_virtual_tokens": origin.num_virtual_tokens,
            "num_transformer_submodules": origin.num_transformer_submodules,
            "base_model": origin.base_model,
            "recipe": origin.recipe,
        }
    if isinstance(origin, torch.Tensor) and origin.dim() == 2:
        return _checks.prompt_tensor(origin, "the origin"), {}
    got = tuple(origin.shape) if isinstance(origin, torch.Tensor) else type(origin).__name__
    raise TPVError(f"an origin must be a tpv.Origin or a 2-D tensor, got {got}; make one with tpv.make_origin")


def _readable_merge_record(text: str | None, path: PathLike) -> str | None:
    # The record only describes how the tensor was made; a damaged one must not lock the user out of an intact
    # tensor, so it is dropped with a warning that gives the command to drop it from the file too.
    if not text:
        return None
    try:
        merge_record(text)
    except TPVError:
        warnings.warn(
            f"'{path}' holds a merge record tpv cannot read ({text[:80]!r}: not a JSON object as tpv.merge "
            'writes it); the vector was loaded without it. To drop it from the file: python -c "import tpv; '
            f'tpv.TaskPromptVector.load({os.fspath(path)!r}).save({os.fspath(path)!r})"',
            stacklevel=3,
        )
        return None
    return text
