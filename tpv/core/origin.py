"""Origins: the seeded random soft-prompt initialisations that task prompts are tuned from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from tpv.core import _checks
from tpv.core._io import PathLike, atomic_save, describe_foreign_file, read_safetensors
from tpv.core.errors import TPVError

ORIGIN_FORMAT = "tpv-origin/1"
ORIGIN_METHODS = ("sample_vocab", "normal", "paper", "captured", "text", "peft_random", "peft_sample_vocab")
# Origins rebuilt from a PEFT PromptTuningConfig (tpv.bridge.peft_io.origin_from_peft_config): "text" holds the
# embeddings of the init text (option "text", tokenizer in "tokenizer"); the "peft_*" ones replay PEFT's own
# draw after torch.manual_seed(seed).
PEFT_METHODS = ("text", "peft_random", "peft_sample_vocab")
# The official code's recipe (kinit-sk/task-prompt-vectors, scripts/create_origin.py): origin i holds the
# embeddings of the first ids of the i-th permutation of the first 5000 vocabulary ids, all origins drawn one
# after another from one NumPy stream seeded 1024.
PAPER_STREAM_SEED = 1024
PAPER_VOCAB_IDS = 5000


class OriginRecipe(str):
    """The recipe of the origin a vector was tuned from, e.g. ``"sample_vocab(seed=0)"``: a ``str``.

    A vector keeps only its origin's recipe, not the tensor (it applies to any origin of its shape). The
    ``recipe`` attribute makes ``vector.origin.recipe`` read as ``TrainResult.origin.recipe`` and
    ``InitPlan.origin.recipe`` do, where ``origin`` is a whole :class:`Origin`.

    Example:
        >>> recipe = OriginRecipe("sample_vocab(seed=0)")
        >>> recipe == "sample_vocab(seed=0)", recipe.recipe
        (True, 'sample_vocab(seed=0)')
    """

    __slots__ = ()

    @property
    def recipe(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True, eq=False)
class Origin:
    """A soft-prompt initialisation of shape ``(num_virtual_tokens × num_transformer_submodules, token_dim)``.

    Build one with :func:`make_origin` (or, for an adapter PEFT initialised itself, with
    :func:`tpv.origin_from_peft_config`); ``method="captured"`` marks an origin read back from a model or file
    whose recipe is unknown.
    """

    tensor: torch.Tensor
    num_virtual_tokens: int
    num_transformer_submodules: int = 1
    seed: int | None = None
    method: str = "captured"
    base_model: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        tensor = _checks.prompt_tensor(self.tensor, "an origin")
        if self.method not in ORIGIN_METHODS:
            raise TPVError(f"unknown origin method {self.method!r}; use one of {list(ORIGIN_METHODS)}")
        _checks.count(self.num_virtual_tokens, "num_virtual_tokens")
        _checks.count(self.num_transformer_submodules, "num_transformer_submodules")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TPVError(f"an origin's seed must be an int or None, got {self.seed!r}")
        _checks.optional_text(self.base_model, "base_model")
        if not isinstance(self.options, dict) or not all(isinstance(v, str) for v in self.options.values()):
            raise TPVError(f"an origin's options must map names to strings, got {self.options!r}")
        rows = self.num_virtual_tokens * self.num_transformer_submodules
        if tensor.shape[0] != rows:
            raise TPVError(
                f"origin tensor has {tensor.shape[0]} rows but num_virtual_tokens={self.num_virtual_tokens} × "
                f"num_transformer_submodules={self.num_transformer_submodules} = {rows}; pass matching sizes"
            )
        object.__setattr__(self, "tensor", tensor)

    @property
    def shape(self) -> tuple[int, int]:
        rows, dim = self.tensor.shape
        return rows, dim

    @property
    def recipe(self) -> str:
        """How the origin was made, e.g. ``sample_vocab(seed=0)``; a content hash when the recipe is unknown."""
        if self.method == "text":
            return f"text({json.dumps(self.options.get('text', ''))}, tokenizer={self.options.get('tokenizer')})"
        if self.method == "captured" or self.seed is None:
            return f"sha256:{self.sha256[:16]}"
        extras = "".join(f", {k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.method}(seed={self.seed}{extras})"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tensor.cpu().contiguous().numpy().tobytes()).hexdigest()

    def save(self, path: PathLike) -> None:
        """Write the origin as ``*.origin.safetensors`` (tensor ``origin`` plus string metadata)."""
        metadata = {
            "format": ORIGIN_FORMAT,
            "method": self.method,
            "seed": "" if self.seed is None else str(self.seed),
            "base_model": self.base_model or "",
            "num_virtual_tokens": str(self.num_virtual_tokens),
            "num_transformer_submodules": str(self.num_transformer_submodules),
            "token_dim": str(self.tensor.shape[1]),
            **{f"option.{k}": v for k, v in self.options.items()},
        }
        atomic_save({"origin": self.tensor}, path, metadata)

    @classmethod
    def load(cls, path: PathLike) -> Origin:
        """Read an origin written by :meth:`save`."""
        tensors, metadata = read_safetensors(path, "origin file")
        if metadata.get("format") != ORIGIN_FORMAT and "origin" not in tensors:
            raise TPVError(f"'{path}' is not a tpv origin file: it is {describe_foreign_file(tensors, metadata)}")
        fix = "re-save the origin with tpv (Origin.save)"
        sizes = _checks.file_metadata(path, tensors, metadata, ORIGIN_FORMAT, "origin", fix)
        seed_text = metadata.get("seed") or None
        seed = None
        if seed_text is not None:
            try:
                seed = int(seed_text)
            except ValueError:
                raise TPVError(
                    f"'{path}' has broken {ORIGIN_FORMAT} metadata: seed={seed_text!r} is not an integer; {fix}"
                ) from None
        try:
            return cls(
                tensor=tensors["origin"],
                seed=seed,
                method=metadata.get("method", "captured"),
                base_model=metadata.get("base_model") or None,
                options={k[len("option.") :]: v for k, v in metadata.items() if k.startswith("option.")},
                **sizes,
            )
        except TPVError as error:
            raise TPVError(f"'{path}' holds an invalid origin: {error}") from None

    def __repr__(self) -> str:
        rows, dim = self.shape
        return f"Origin({self.recipe}, {rows}×{dim}, base={self.base_model})"


def make_origin(
    model,
    num_virtual_tokens: int,
    seed: int = 0,
    method: str = "sample_vocab",
    *,
    num_transformer_submodules: int | None = None,
    std: float | None = None,
) -> Origin:
    """Make a deterministic random origin for ``model``'s input embeddings.

    ``sample_vocab`` (tpv's default) copies the embeddings of vocabulary tokens drawn uniformly (with
    replacement) by a generator seeded ``seed``; ``paper`` follows the official code's ``create_origin.py``:
    origin ``seed`` = i takes the first ids of the i-th permutation of the first 5000 vocabulary ids (fewer when
    the vocabulary is smaller; drawn without replacement) from one NumPy stream seeded 1024, so origins 0, 1, 2
    are the official script's origins 0, 1, 2; ``normal`` draws i.i.d. Gaussian values with standard deviation
    ``std`` (default: that of the vocabulary embeddings, so all methods live at the same scale). The same seed
    and model give a bit-identical origin on every run and machine, because sampling uses private generators.

    Args:
        model: a transformers model or a PeftModel wrapping one.
        num_virtual_tokens: soft-prompt length.
        seed: seed of the private generator.
        method: ``"sample_vocab"``, ``"paper"`` or ``"normal"``.
        num_transformer_submodules: 1 for decoder-only, 2 for encoder-decoder; inferred from the config.
        std: standard deviation for ``method="normal"``.

    Returns:
        An :class:`Origin`.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=8, n_layer=1, n_head=2))
        >>> origin = make_origin(model, num_virtual_tokens=4, seed=0)
        >>> origin.shape, origin.recipe
        ((4, 8), 'sample_vocab(seed=0)')
        >>> torch.equal(origin.tensor, make_origin(model, 4, seed=0).tensor)
        True
    """
    if isinstance(num_virtual_tokens, bool) or not isinstance(num_virtual_tokens, int) or num_virtual_tokens < 1:
        raise TPVError(f"num_virtual_tokens must be a positive int, got {num_virtual_tokens!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TPVError(f"seed must be an int, got {seed!r}")
    if method not in ("sample_vocab", "paper", "normal"):
        raise TPVError(
            f"unknown origin method {method!r}; use 'sample_vocab' (tpv's default), 'paper' (the "
            "official code's recipe) or 'normal'"
        )
    embeddings = input_embedding_weight(model)
    submodules = num_transformer_submodules or default_transformer_submodules(model)
    rows = num_virtual_tokens * submodules
    generator = torch.Generator(device="cpu").manual_seed(seed)
    options: dict[str, str] = {}
    if method == "sample_vocab":
        token_ids = torch.randint(0, embeddings.shape[0], (rows,), generator=generator)
        tensor = embeddings[token_ids.to(embeddings.device)].detach().to("cpu", torch.float32)
    elif method == "paper":
        token_ids = torch.from_numpy(paper_token_ids(seed, rows, embeddings.shape[0]))
        tensor = embeddings[token_ids.to(embeddings.device)].detach().to("cpu", torch.float32)
    else:
        scale = float(embeddings.detach().float().std()) if std is None else float(std)
        options["std"] = f"{scale:.6g}"
        tensor = torch.randn(rows, embeddings.shape[1], generator=generator) * float(options["std"])
    return Origin(
        tensor=tensor.to(embeddings.device),
        num_virtual_tokens=num_virtual_tokens,
        num_transformer_submodules=submodules,
        seed=seed,
        method=method,
        base_model=base_model_name(model),
        options=options,
    )


def paper_token_ids(index: int, rows: int, vocab_size: int) -> np.ndarray:
    """Token ids of the official code's origin ``index``: the first ``rows`` of the ``index``-th permutation of
    ``range(min(5000, vocab_size))`` in one ``numpy.random`` stream seeded 1024.

    Example:
        >>> paper_token_ids(0, 3, 10).tolist() == np.random.RandomState(1024).permutation(10)[:3].tolist()
        True
    """
    if index < 0:
        raise TPVError(
            f"the paper's origins are numbered from 0 (one stream, one origin after another); got seed={index}"
        )
    pool = min(PAPER_VOCAB_IDS, vocab_size)
    if rows > pool:
        raise TPVError(
            f"the paper's recipe draws {rows} distinct ids from the first {pool} vocabulary ids, which is "
            f"impossible; use fewer virtual tokens or method='sample_vocab'"
        )
    # Legacy RandomState: the script seeds np.random.seed(1024), whose permutation algorithm this reproduces.
    stream = np.random.RandomState(PAPER_STREAM_SEED)
    for _ in range(index):
        stream.permutation(pool)
    return stream.permutation(pool)[:rows].astype(np.int64)


check_finite = _checks.check_finite  # kept here too: the PEFT bridge and older callers import it from origin


def input_embedding_weight(model) -> torch.Tensor:
    getter = getattr(model, "get_input_embeddings", None)
    layer = getter() if getter else None
    if layer is None or not hasattr(layer, "weight"):
        raise TPVError(
            f"cannot find the input embeddings of {type(model).__name__}; pass a transformers model "
            "(it must implement get_input_embeddings())"
        )
    return layer.weight


def _config(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "config", None)


def base_model_name(model) -> str | None:
    """The Hub id or folder the model was loaded from, or None for a model built from a config."""
    config = _config(model)
    return getattr(config, "_name_or_path", None) or None


def is_seq2seq(model) -> bool:
    return bool(getattr(_config(model), "is_encoder_decoder", False))


def default_transformer_submodules(model) -> int:
    # PEFT gives encoder-decoder models two prompt blocks (encoder and decoder); decoder-only models one.
    return 2 if is_seq2seq(model) else 1
