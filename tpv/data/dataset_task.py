"""A task from a Hugging Face ``datasets`` dataset: ``Task.from_dataset("imdb")`` or a Dataset already in hand.

The label words come from the label column's ``ClassLabel`` names, the name from the dataset's own info, the
splits from the ``DatasetDict``. Unlabelled splits (label −1 everywhere, e.g. imdb's ``unsupervised``) are left
out with a warning; unlabelled rows of a labelled split too. Examples stay in the Arrow table: the task's splits
read rows on demand and never copy the dataset into Python lists.

``datasets`` is the optional extra ``tpv[hub]``; it is imported only here, when a dataset is used.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from tpv.core.errors import TPVError, TPVFileNotFoundError
from tpv.data.files import _ID_FIELDS, HOLDOUT_FRACTION, HOLDOUT_MIN, FileTask, _family, _split_name, _template
from tpv.data.registry import TASKS, register_task

__all__ = ["DatasetRows", "from_dataset"]

UNLABELLED = -1  # what datasets' ClassLabel (and GLUE's test splits) write for "no label"


class DatasetRows(Sequence):
    """The examples of one split, read from the Arrow table row by row (a slice gives a list).

    Labels come out as the task expects them: an int id, or a float for regression.
    """

    def __init__(self, dataset, label_field: str, to_label):
        self.dataset = dataset
        self.label_field = label_field
        self.to_label = to_label

    def __len__(self) -> int:
        return len(self.dataset)

    @overload
    def __getitem__(self, index: int) -> dict: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = dict(self.dataset[index])
        row[self.label_field] = self.to_label(row[self.label_field])
        return row

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"DatasetRows({len(self)} examples of {self.dataset.info.dataset_name or 'a Dataset'})"


def from_dataset(
    dataset_or_id,
    config: str | None = None,
    *,
    splits: Mapping[str, str] | Sequence[str] | None = None,
    text_fields: str | Sequence[str] | None = None,
    label_field: str = "label",
    labels: Sequence[str] | None = None,
    name: str | None = None,
    family: str | None = None,
    template: str | None = None,
    register: bool = True,
    overwrite: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FileTask:
    """Build (and register) a task from a ``datasets`` dataset.

    Args:
        dataset_or_id: a ``datasets.Dataset`` (its examples are the training split), a ``DatasetDict``, a folder
            written by ``save_to_disk``, or a Hub dataset id (read with ``datasets.load_dataset``).
        config: the dataset's configuration (``load_dataset``'s ``name``), e.g. ``"sst2"`` for ``"glue"``.
        splits: the splits to use: a mapping tpv split → dataset split (``{"validation": "test"}``) or a list of
            dataset split names; by default every split (``dev``/``valid`` count as validation). Splits with no
            labels are left out with a warning.
        text_fields: the input field(s), in template order; by default every string column except the label
            and ids.
        label_field: the label column.
        labels: label words for label ids 0, 1, …; by default the ``ClassLabel`` names of the label column.
            String labels are their own words (sorted); float labels make a regression task.
        name: the task's name; by default the dataset's configuration or name from its info (or the Hub id).
        family: any family name; inferred from the label words when they say it.
        template: a ``str.format`` template over the text fields; by default ``"<field>: {<field>}"`` lines.
        register: add the task to the registry. A task of the same name and another definition is not
            replaced silently: pass ``name=`` (or ``overwrite=True`` to replace a user task, never a built-in).
        overwrite: replace a user task of the same name even when its definition differs.
        revision, token, cache_dir: passed to ``load_dataset`` for a Hub id.

    Returns:
        A :class:`~tpv.data.files.FileTask`; ``task.split("train")`` reads its examples from the dataset.

    Example:
        >>> import datasets
        >>> features = datasets.Features({"text": datasets.Value("string"),
        ...                               "label": datasets.ClassLabel(names=["negative", "positive"])})
        >>> rows = {"text": [f"review {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
        >>> task = from_dataset(datasets.Dataset.from_dict(rows, features=features), name="reviews", register=False)
        >>> task.label_words, task.family, len(task.split("train")), len(task.split("validation"))
        (('negative', 'positive'), 'sentiment', 8, 32)
    """
    datasets = _datasets_module()
    loaded, where, fallback_name = _load(datasets, dataset_or_id, config, revision, token, cache_dir)
    parts = _chosen_splits(loaded, splits, where)
    first = next(iter(parts.values()))
    features = first.features
    if label_field not in features:
        raise TPVError(
            f"no label column {label_field!r} in {where}; its columns are {sorted(features)}: pass label_field="
        )
    fields = _text_fields(text_fields, label_field, features, where)
    parts = _labelled(parts, label_field, where)
    kind, words, to_label = _label_kind(features[label_field], parts, label_field, labels, datasets, where)
    family = family or _family(kind, words)
    task = FileTask(
        name=name or _name_from_info(first, fallback_name, where),
        family=family,
        template=template or _template(fields, family),
        label_words=words,
        label_key=label_field,
        metric="pearson" if kind == "regression" else "macro_f1",
        regression=kind == "regression",
        data=_with_validation(
            {split: DatasetRows(part, label_field, to_label) for split, part in parts.items()}, where
        ),
        source=where,
    )
    for split, rows in task.data.items():
        if len(rows):
            try:
                task.format(rows[0])
            except TPVError as error:
                raise TPVError(f"{where}, {split} example 1: {error}") from None
    if register:
        _refuse_a_silent_clash(task, overwrite)
        register_task(task, overwrite=True)
    return task


def _datasets_module():
    try:
        import datasets
    except ImportError:
        raise TPVError(
            "Task.from_dataset needs the optional package 'datasets'; install it with pip install 'tpv[hub]'"
        ) from None
    return datasets


def _load(datasets, source, config, revision, token, cache_dir) -> tuple[Any, str, str | None]:
    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        if config is not None:
            raise TPVError(f"config={config!r} selects a configuration of a Hub dataset; this is a loaded dataset")
        return source, f"the {type(source).__name__}", None
    if not isinstance(source, (str, os.PathLike)) or not os.fspath(source):
        raise TPVError(
            "Task.from_dataset takes a datasets Dataset or DatasetDict, a save_to_disk folder or a Hub dataset "
            f"id, got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        return datasets.load_from_disk(str(path)), f"'{path}'", path.resolve().name
    text = os.fspath(source)
    if path.exists() or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text):
        raise TPVFileNotFoundError(
            f"{text!r} is neither a save_to_disk folder nor a Hub dataset id like 'stanfordnlp/imdb'; check the path"
        )
    try:
        loaded = datasets.load_dataset(text, config, revision=revision, token=token, cache_dir=cache_dir)
    except FileNotFoundError as error:
        from tpv.core.errors import TPVRepoNotFoundError

        raise TPVRepoNotFoundError(
            f"cannot load the Hub dataset {text!r}{f' ({config})' if config else ''}: {error}; check the id and config"
        ) from error
    return loaded, f"the Hub dataset {text!r}" + (f" ({config})" if config else ""), text.split("/")[-1]


def _chosen_splits(loaded, splits, where) -> dict[str, Any]:
    available = {"train": loaded} if not isinstance(loaded, Mapping) else dict(loaded)
    if splits is None:
        wanted = {_split_name(str(split)): str(split) for split in available}
    elif isinstance(splits, Mapping):
        wanted = {str(ours): str(theirs) for ours, theirs in splits.items()}
    elif isinstance(splits, Sequence) and not isinstance(splits, str):
        wanted = {_split_name(str(split)): str(split) for split in splits}
    else:
        raise TPVError(f"splits must be a mapping tpv split → dataset split or a list of split names, got {splits!r}")
    missing = sorted(theirs for theirs in wanted.values() if theirs not in available)
    if missing or not wanted:
        raise TPVError(f"{where} has no split(s) {missing or []}; it has {sorted(available)}")
    return {ours: available[theirs] for ours, theirs in wanted.items()}


def _text_fields(text_fields, label_field, features, where) -> tuple[str, ...]:
    if text_fields is None:
        detected = tuple(
            column
            for column, feature in features.items()
            if column != label_field
            and column.lower() not in _ID_FIELDS
            and getattr(feature, "dtype", None) in ("string", "large_string")
        )
        if not detected:
            raise TPVError(f"no text column found in {where} (columns: {sorted(features)}); pass text_fields=")
        return detected
    fields = (text_fields,) if isinstance(text_fields, str) else tuple(text_fields)
    missing = [f for f in fields if f not in features]
    if missing or not fields:
        raise TPVError(f"no text column(s) {missing or fields} in {where}; its columns are {sorted(features)}")
    for f in fields:
        if not f.isidentifier():
            raise TPVError(f"text column {f!r} cannot be named in a template; rename it (letters, digits, _)")
    return fields


def _labelled(parts: dict, label_field: str, where: str) -> dict:
    kept = {}
    for split, part in parts.items():
        # The label column alone, from Arrow: no Python copy of the rows.
        column = part.with_format("arrow")[label_field].to_numpy()
        numeric = np.issubdtype(column.dtype, np.number)
        unlabelled = np.flatnonzero(column == UNLABELLED) if numeric else np.array([], dtype=np.int64)
        if len(unlabelled) == len(part):
            warnings.warn(
                f"{where}: split {split!r} has no labels ({label_field} is {UNLABELLED} in all {len(part)} rows, "
                "e.g. imdb's 'unsupervised'); left out",
                UserWarning,
                stacklevel=4,
            )
            continue
        if len(unlabelled):
            warnings.warn(
                f"{where}: {len(unlabelled)} of {len(part)} rows of split {split!r} have no label "
                f"({label_field}={UNLABELLED}); left out",
                UserWarning,
                stacklevel=4,
            )
            part = part.select(np.flatnonzero(column != UNLABELLED), keep_in_memory=True)
        kept[split] = part
    if not kept:
        raise TPVError(f"{where} has no labelled split ({label_field} is {UNLABELLED} everywhere); pass labelled data")
    return kept


def _label_kind(feature, parts, label_field, labels, datasets, where):
    if isinstance(feature, datasets.ClassLabel):
        words = tuple(str(w) for w in labels) if labels is not None else tuple(feature.names)
        if len(words) != feature.num_classes:
            raise TPVError(
                f"labels= names {len(words)} words but {label_field!r} in {where} has {feature.num_classes} "
                f"classes {feature.names}; give one word per class"
            )
        return "classification", words, int
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        values = sorted(
            {v for part in parts.values() for v in part.with_format("arrow")[label_field].unique().to_pylist()}
        )
        words = tuple(labels) if labels is not None else tuple(values)
        index = {word: i for i, word in enumerate(words)}
        unknown = [v for v in values if v not in index]
        if unknown:
            raise TPVError(f"labels {unknown[:5]} in {where} are not in labels= {list(words)}; add them")
        return "classification", words, index.__getitem__
    if dtype is not None and dtype.startswith(("int", "uint")):
        if labels is None:
            raise TPVError(
                f"{label_field!r} in {where} holds integer labels without ClassLabel names; pass labels=[word for "
                "label 0, word for label 1, …] so the model has words to answer with"
            )
        return "classification", tuple(str(w) for w in labels), int
    if dtype is not None and dtype.startswith("float"):
        return "regression", None, float
    raise TPVError(f"{label_field!r} in {where} is a {feature!r} column; a label must be a class, a word or a number")


def _name_from_info(dataset, fallback: str | None, where: str) -> str:
    info = dataset.info
    # A configuration names the task better than its collection: glue's "sst2", not "glue".
    config = info.config_name if info.config_name not in (None, "default", "plain_text") else None
    found = config or info.dataset_name or info.builder_name or fallback
    if not found:
        raise TPVError(f"{where} carries no dataset name in its info; pass name= the task's name")
    return re.sub(r"\W+", "_", str(found)).strip("_").lower() or "dataset"


def _with_validation(data: dict[str, DatasetRows], where: str) -> dict[str, DatasetRows]:
    if "validation" in data:
        return data
    train = data.get("train")
    size = max(HOLDOUT_MIN, int(len(train) * HOLDOUT_FRACTION)) if train is not None else HOLDOUT_MIN
    if train is None or len(train) < size + 1:
        raise TPVError(
            f"{where} has no validation split and {len(train) if train is not None else 'no'} training examples; "
            f"pass splits= with a validation split, or at least {size + 1} training examples"
        )
    # Task.from_files' rule, by index: the last 10% (at least 32) of a seed-0 shuffle are held out.
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    held = set(order[-size:])
    keep = [i for i in range(len(train)) if i not in held]
    return {
        **data,
        "train": DatasetRows(train.dataset.select(keep, keep_in_memory=True), train.label_field, train.to_label),
        "validation": DatasetRows(
            train.dataset.select(sorted(held), keep_in_memory=True), train.label_field, train.to_label
        ),
    }


def _refuse_a_silent_clash(task: FileTask, overwrite: bool) -> None:
    existing = TASKS.get(task.name)
    if existing is None or (overwrite and isinstance(existing, FileTask)):
        return
    same = (existing.template, existing.label_words, existing.label_key, existing.regression) == (
        task.template,
        task.label_words,
        task.label_key,
        task.regression,
    )
    if not same or not isinstance(existing, FileTask):
        kind = "a user task" if isinstance(existing, FileTask) else "a built-in task"
        raise TPVError(
            f"task {task.name!r} is already registered ({kind} with template {existing.template!r} and label "
            f"words {existing.label_words}); pass name= another name for {task.source}"
        )
