"""How :func:`tpv.engine.training.train_prompt` reads its arguments: ``args`` beside tpv's own keywords, datasets,
and the call forms of the previous release (kept for one release with a ``DeprecationWarning``)."""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from tpv.core.errors import TPVError
from tpv.core.origin import Origin

# tpv's keywords that set a TrainingArguments field, and that field. Either may set the value; both may only
# when they agree. warmup_ratio has no field here (transformers takes warmup_steps), so it is checked apart.
FIELD_OF_KEYWORD = {
    "output_dir": "output_dir",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "weight_decay": "weight_decay",
    "eval_steps": "eval_steps",
    "eval_batch_size": "per_device_eval_batch_size",
    "seed": "seed",
}
# Prompt tuning's defaults (the paper's lr 0.3 and weight decay 1e-5), where neither a keyword nor args sets one;
# transformers' own (lr 5e-5, 3 epochs) are fine-tuning's and would leave a soft prompt almost where it started.
DEFAULTS: dict[str, Any] = {
    "max_steps": 200,
    "learning_rate": 0.3,
    "batch_size": 16,
    "weight_decay": 1e-5,
    "warmup_ratio": 0.1,
    "eval_steps": None,
    "eval_batch_size": 32,
    "seed": 0,
}


@dataclass
class Hyperparameters:
    """The run's settings once tpv's keywords and ``args`` are merged; ``extra`` holds the other
    ``TrainingArguments`` fields given, which override tpv's choices (logging, saving, precision, …)."""

    output_dir: Path
    max_steps: int
    learning_rate: float
    batch_size: int
    weight_decay: float
    warmup_ratio: float
    eval_steps: int | None
    eval_batch_size: int
    seed: int
    extra: dict = field(default_factory=dict)


def merge_hyperparameters(args: TrainingArguments | Mapping | None, keywords: Mapping[str, Any]) -> Hyperparameters:
    """tpv's keywords (``None`` = not given) merged with the fields ``args`` sets; a value set in both places
    must agree."""
    given = fields_given(args)
    values: dict[str, Any] = {}
    for keyword, value in keywords.items():
        name = FIELD_OF_KEYWORD.get(keyword)
        if name is not None and name in given:
            from_args = given.pop(name)
            if value is not None and not _same(keyword, value, from_args):
                raise TPVError(
                    f"train_prompt got {keyword}={_shown(value)} and args.{name}={_shown(from_args)}; set it in one "
                    f"place (the keyword or args), or to the same value in both"
                )
            value = from_args
        values[keyword] = DEFAULTS.get(keyword) if value is None else value
    if keywords.get("warmup_ratio") is not None and "warmup_steps" in given:
        raise TPVError(
            f"train_prompt got warmup_ratio={keywords['warmup_ratio']!r} and args.warmup_steps="
            f"{given['warmup_steps']!r}, two warm-ups; pass one of them"
        )
    if "num_train_epochs" in given:
        raise TPVError(
            f"train_prompt counts optimizer steps, so args.num_train_epochs={given['num_train_epochs']!r} would be "
            "ignored; pass max_steps=... (steps = epochs × examples / batch size) instead"
        )
    if values["output_dir"] is None:
        raise TPVError("train_prompt needs output_dir=... (the run folder), or args with output_dir set")
    values["output_dir"] = Path(values["output_dir"])
    return Hyperparameters(**values, extra=given)


def fields_given(args: TrainingArguments | Mapping | None) -> dict:
    """The ``TrainingArguments`` fields ``args`` sets: a dict's keys, or the fields of a ``TrainingArguments``
    that differ from transformers' defaults (a field left at its default is one the caller did not choose)."""
    if args is None:
        return {}
    if isinstance(args, TrainingArguments):
        reference = TrainingArguments()
        names = [f.name for f in dataclasses.fields(TrainingArguments) if f.init]
        return {name: getattr(args, name) for name in names if getattr(args, name) != getattr(reference, name)}
    if not isinstance(args, Mapping):
        raise TPVError(
            f"args must be a transformers.TrainingArguments or a dict of its fields, got {type(args).__name__}"
        )
    for key in args:
        check_training_field(key, "args")
    return dict(args)


def check_training_field(key, where: str) -> None:
    known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    if key not in known:
        close = difflib.get_close_matches(str(key), sorted(known), n=3)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "see transformers.TrainingArguments"
        raise TPVError(f"{where} has {key!r}, which is not a TrainingArguments field; {hint}")


def _same(keyword: str, value, from_args) -> bool:
    if keyword == "output_dir":
        return Path(os.fspath(value)) == Path(os.fspath(from_args))
    return bool(value == from_args)


def _shown(value) -> str:
    return repr(os.fspath(value)) if isinstance(value, os.PathLike) else repr(value)


def as_examples(dataset, name: str) -> list[dict] | None:
    """A list of example dicts from a list, any iterable of dicts, or a ``datasets.Dataset``."""
    if dataset is None:
        return None
    if isinstance(dataset, Mapping):
        # A DatasetDict (or any dict of splits): which split to train on is the caller's choice, not ours.
        raise TPVError(
            f"{name} is a dict of splits {sorted(map(str, dataset))}; pass one split, e.g. {name}=dataset['train']"
        )
    if isinstance(dataset, (str, bytes, os.PathLike)):
        raise TPVError(
            f"{name} must hold examples (a list of dicts or a datasets.Dataset), got {dataset!r}; read the file "
            "or Hub dataset first, e.g. with tpv.data.load_split or datasets.load_dataset"
        )
    examples = dataset.to_list() if hasattr(dataset, "to_list") and hasattr(dataset, "column_names") else list(dataset)
    for example in examples[:1]:
        if not isinstance(example, Mapping):
            raise TPVError(f"{name} must hold dicts (one per example), got a {type(example).__name__} first")
    return [dict(example) for example in examples]


@dataclass
class CallForm:
    """What the caller passed, in the current form, after the previous release's forms are translated."""

    train_dataset: Any
    eval_dataset: Any
    origin: Any
    args: Any


def accept_old_forms(
    positional: tuple, *, train_dataset, eval_dataset, origin, args, train_data, eval_data, training_args
) -> CallForm:
    """Translate ``train_prompt(model, tokenizer, task, origin, train_data, ...)`` and the keywords
    ``train_data`` / ``eval_data`` / ``training_args``, warning once per call with the form to use now."""
    old: list[str] = []
    if positional or (train_data is not None and _looks_like_an_origin(train_dataset)):
        # The previous form's 4th positional argument was the origin, and its 5th the training data.
        if len(positional) > 1:
            raise TPVError(
                f"train_prompt takes at most 5 positional arguments, got {4 + len(positional)}; pass the others "
                "by keyword (origin=..., output_dir=..., ...)"
            )
        if origin is not None:
            raise TPVError("train_prompt got an origin both as its 4th argument and as origin=...; pass origin= only")
        origin, train_dataset = train_dataset, (positional[0] if positional else None)
        old.append("the origin as 4th positional argument (pass origin=...)")
    elif train_dataset is not None and _looks_like_an_origin(train_dataset):
        raise TPVError(
            f"train_prompt's 4th argument is the training data, got {type(train_dataset).__name__} "
            f"{_brief(train_dataset)}; pass the origin by keyword: train_prompt(model, tokenizer, task, "
            "train_dataset, origin=...)"
        )
    train_dataset = _renamed("train_data", train_data, "train_dataset", train_dataset, old)
    eval_dataset = _renamed("eval_data", eval_data, "eval_dataset", eval_dataset, old)
    args = _renamed("training_args", training_args, "args", args, old)
    if old:
        warnings.warn(
            f"train_prompt: {'; '.join(old)} is deprecated and will be removed in the next release; call "
            "train_prompt(model, tokenizer, task, train_dataset, origin=..., args=..., eval_dataset=..., "
            "output_dir=...)",
            DeprecationWarning,
            stacklevel=3,
        )
    return CallForm(train_dataset, eval_dataset, origin, args)


def _renamed(old_name: str, old_value, new_name: str, new_value, old: list[str]):
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TPVError(f"train_prompt got both {old_name}= and {new_name}=; pass {new_name}= only")
    old.append(f"{old_name}= (pass {new_name}=...)")
    return old_value


def _looks_like_an_origin(value) -> bool:
    return value is None or isinstance(value, (Origin, numbers.Integral))


def _brief(value) -> str:
    return repr(value) if isinstance(value, numbers.Integral) else f"of {value.num_virtual_tokens} virtual tokens"
