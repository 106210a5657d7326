"""A task from the user's own data in zero lines of setup: ``Task.from_files("reviews/", text_fields="text")``.

Reads jsonl, csv or tsv files (a folder of ``train``/``validation``/``test`` files, one file, or a mapping split →
file) or a ``datasets`` Dataset / DatasetDict, infers what it can (the text fields, the label words from string
labels, regression from non-integer numbers, a template, a family) and registers the task so every tpv function
and the CLI accept its name. Its examples travel with it: ``load_split(task, "train")`` returns them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tpv.core.errors import TPVError, TPVFileNotFoundError
from tpv.data.reading import read_jsonl, read_table
from tpv.data.registry import TASKS, register_task
from tpv.data.task import Task

__all__ = ["FileTask", "from_files"]


_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
# Other spellings of the split names, as found in common dataset folders.
_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
_ID_FIELDS = {"id", "idx", "guid", "uid", "index"}
HOLDOUT_FRACTION = 0.1
HOLDOUT_MIN = 32
_FAMILY_WORDS = {
    "sentiment": {"negative", "positive", "neutral", "bad", "good", "great", "terrible"},
    "nli": {"entailment", "contradiction", "neutral", "not entailment"},
    "paraphrase": {"duplicate", "not duplicate", "equivalent", "not equivalent", "paraphrase"},
}
_ANSWER_WORD = {"sentiment": "sentiment", "topic": "topic", "grammar": "grammar", "similarity": "similarity"}


@dataclass(frozen=True)
class FileTask(Task):
    """A :class:`Task` that carries its own examples (``data``: split → list of example dicts, or the rows of a
    ``datasets`` split read on demand, for :meth:`Task.from_dataset`)."""

    data: Mapping[str, Sequence[dict]] = field(default_factory=dict, hash=False, compare=False, repr=False)
    source: str = ""

    def split(self, name: str) -> Sequence[dict]:
        """The examples of split ``name`` (``train``, ``validation`` or ``test``)."""
        if name not in self.data:
            raise TPVError(f"task {self.name!r} (from {self.source}) has no {name!r} split; it has {sorted(self.data)}")
        return self.data[name]


def from_files(
    source,
    *,
    text_fields: str | Sequence[str] | None = None,
    label_field: str = "label",
    labels: Sequence[str] | Mapping | None = None,
    name: str | None = None,
    family: str | None = None,
    template: str | None = None,
    register: bool = True,
    overwrite: bool = True,
) -> FileTask:
    """Build (and register) a task from the user's own labelled data.

    Args:
        source: a folder holding ``train``/``validation``/``test`` ``.jsonl``/``.csv``/``.tsv`` files (``dev`` and
            ``valid`` count as validation), one such file (its examples are the training split), a mapping
            split → file, or a ``datasets.Dataset`` / ``DatasetDict``. Without a validation split, the last
            10% of the shuffled training examples (at least 32) are held out as validation (seed 0).
        text_fields: the input field(s), in template order; by default every text field except the label and ids.
        label_field: the field holding the label.
        labels: label words: a list (word of label 0, 1, …) for integer labels, or a mapping label value → word;
            string labels are their own words when not given (sorted); non-integer numbers make a regression task.
        name: the task's name (default: the folder's or file's name).
        family: any family name; inferred from the label words when they say it (sentiment, nli, paraphrase),
            else ``"similarity"`` for regression and ``"classification"`` otherwise. Families are not a closed list.
        template: a ``str.format`` template over the text fields; by default ``"<field>: {<field>}"`` lines and
            an answer cue (``"sentiment:"``, ``"answer:"``, …).
        register: add the task to the registry so tpv functions accept its name.
        overwrite: replace a user task already registered under ``name`` (never a built-in task).

    Returns:
        A :class:`FileTask`; its examples have integer (or float) labels and ``task.split("train")`` returns them.

    Example:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "reviews"; folder.mkdir()
        >>> rows = [{"review": f"text {i}", "stars": ["bad", "good"][i % 2]} for i in range(40)]
        >>> _ = (folder / "train.jsonl").write_text("\\n".join(json.dumps(r) for r in rows))
        >>> task = from_files(folder, label_field="stars")
        >>> task.name, task.label_words, task.template, len(task.split("validation"))
        ('reviews', ('bad', 'good'), 'review: {review}\\nsentiment:', 32)
    """
    splits, origin_name, where = _read_source(source)
    if not splits or not any(splits.values()):
        raise TPVError(f"no examples in {where}; pass a folder of train/validation/test .jsonl/.csv files or a file")
    first = next(rows for rows in splits.values() if rows)
    found = sorted(first[0])
    if label_field not in first[0]:
        raise TPVError(f"no label field {label_field!r} in {where}; the fields found are {found}: pass label_field=")
    fields = _text_fields(text_fields, label_field, first, found, where)
    values = [row.get(label_field) for rows in splits.values() for row in rows]
    kind, words, mapping = _labels(values, labels, label_field, where)
    family = family or _family(kind, words)
    template = template or _template(fields, family)
    name = name or origin_name
    data = {}
    for split, rows in splits.items():
        converted = []
        for number, row in enumerate(rows, start=1):
            missing = [f for f in (*fields, label_field) if f not in row]
            if missing:
                raise TPVError(f"{where}, {split} example {number}: no field(s) {missing}; it has {sorted(row)}")
            converted.append({**row, label_field: mapping(row[label_field], split, number)})
        data[split] = converted
    if "validation" not in data:
        data = _hold_out(data, where)
    if name in TASKS and not isinstance(TASKS[name], FileTask):
        raise TPVError(f"task name {name!r} is a built-in task; pass name= another name for your data")
    task = FileTask(
        name=name,
        family=family,
        template=template,
        label_words=words,
        fields=(),
        label_key=label_field,
        metric="pearson" if kind == "regression" else "macro_f1",
        regression=kind == "regression",
        hub_id=None,
        data=data,
        source=where,
    )
    for split, rows in data.items():
        for number, row in enumerate(rows, start=1):
            try:
                task.format(row)
            except TPVError as error:
                raise TPVError(f"{where}, {split} example {number}: {error}") from None
    if register:
        register_task(task, overwrite=overwrite)
    return task


def _read_source(source) -> tuple[dict[str, list], str, str]:
    if hasattr(source, "column_names") and hasattr(source, "to_list"):  # a datasets.Dataset
        return {"train": [dict(row) for row in source.to_list()]}, "my_task", "the Dataset"
    if isinstance(source, Mapping) and source and all(hasattr(v, "to_list") for v in source.values()):  # DatasetDict
        return (
            {_split_name(str(k)): [dict(r) for r in v.to_list()] for k, v in source.items()},
            "my_task",
            "the DatasetDict",
        )
    if isinstance(source, Mapping):
        splits = {}
        for split, path in source.items():
            splits[_split_name(str(split))] = _read_file(Path(path))
        first = Path(next(iter(source.values())))
        return splits, first.parent.name or first.stem, f"files {sorted(map(str, source.values()))}"
    if not isinstance(source, (str, os.PathLike)):
        raise TPVError(
            f"from_files takes a folder, a file, a mapping split → file or a datasets Dataset, got "
            f"{type(source).__name__}"
        )
    path = Path(source)
    if path.is_file():
        return {"train": _read_file(path)}, path.name.split(".")[0], f"'{path}'"
    if not path.is_dir():
        raise TPVFileNotFoundError(
            f"no such file or folder: '{path}'; pass a folder of train/validation/test files or one file"
        )
    splits = {}
    for split, spellings in _SPLIT_NAMES.items():
        for spelling in spellings:
            files = [path / f"{spelling}{suffix}" for suffix in _SUFFIXES if (path / f"{spelling}{suffix}").is_file()]
            if files:
                splits[split] = _read_file(files[0])
                break
    if not splits:
        present = sorted(p.name for p in path.iterdir())[:10]
        raise TPVError(
            f"'{path}' has no train/validation/test .jsonl/.csv/.tsv files (it has {present}); name "
            "them train.jsonl, validation.jsonl, test.jsonl"
        )
    return splits, path.resolve().name, f"'{path}'"


def _split_name(name: str) -> str:
    for split, spellings in _SPLIT_NAMES.items():
        if name in spellings:
            return split
    return name


def _read_file(path: Path) -> list[dict]:
    if not path.is_file():
        raise TPVFileNotFoundError(f"no such data file: '{path}'; check the path")
    if path.suffix in (".csv", ".tsv"):
        return [{k: _cell(v) for k, v in row.items()} for row in read_table(path)]
    if path.suffix not in (".jsonl", ".json"):
        raise TPVError(f"'{path}' is neither .jsonl, .csv nor .tsv; convert it to one of those")
    return read_jsonl(path)


def _cell(value: str):
    # CSV cells are strings; numeric labels become numbers so "0"/"1" are label ids and "3.5" a score.
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            continue
    return value


def _text_fields(text_fields, label_field, rows, found, where) -> tuple[str, ...]:
    if text_fields is None:
        detected = [
            key
            for key in rows[0]
            if key != label_field and key.lower() not in _ID_FIELDS and isinstance(rows[0][key], str)
        ]
        if not detected:
            raise TPVError(f"no text field found in {where} (fields: {found}); pass text_fields=")
        return tuple(detected)
    fields = (text_fields,) if isinstance(text_fields, str) else tuple(text_fields)
    missing = [f for f in fields if f not in rows[0]]
    if missing or not fields:
        raise TPVError(f"no text field(s) {missing or fields} in {where}; the fields found are {found}")
    for f in fields:
        if not f.isidentifier():
            raise TPVError(f"text field {f!r} cannot be named in a template; rename it (letters, digits, _)")
    return fields


def _labels(values, labels, label_field, where):
    """``(kind, label words, value → label)``: kind is ``classification`` or ``regression``."""
    if isinstance(labels, Mapping):
        words = tuple(str(w) for w in labels.values())
        index = {key: i for i, key in enumerate(labels)}

        def mapped(value, split, number):
            if value not in index:
                raise TPVError(f"{where}, {split} example {number}: label {value!r} is not in labels= {list(index)}")
            return index[value]

        return "classification", words, mapped
    if all(isinstance(v, str) for v in values):
        words = tuple(labels) if labels is not None else tuple(sorted(set(values)))
        index = {w: i for i, w in enumerate(words)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise TPVError(f"labels {unknown[:5]} in {where} are not in labels= {list(words)}; add them")
        return "classification", words, lambda value, split, number: index[value]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values):
        bad = next(v for v in values if v not in numbers)
        raise TPVError(
            f"field {label_field!r} in {where} mixes label types (e.g. {bad!r}); use all words or all numbers"
        )
    if all(float(v).is_integer() for v in numbers) and labels is not None:
        words = tuple(str(w) for w in labels)
        ids = sorted({int(v) for v in numbers})
        if ids[0] < 0 or ids[-1] >= len(words):
            raise TPVError(f"labels in {where} run {ids[0]}..{ids[-1]} but labels= names {len(words)}: {list(words)}")
        return "classification", words, lambda value, split, number: int(value)
    if all(float(v).is_integer() for v in numbers) and len(set(numbers)) <= 20:
        raise TPVError(
            f"field {label_field!r} in {where} holds integer labels {sorted(set(numbers))[:10]}; pass "
            "labels=[word for label 0, word for label 1, …] so the model has words to answer with"
        )
    return "regression", None, lambda value, split, number: float(value)


def _family(kind, words) -> str:
    if kind == "regression":
        return "similarity"
    lowered = {w.lower() for w in words}
    for family, vocabulary in _FAMILY_WORDS.items():
        if lowered <= vocabulary:
            return family
    return "classification"


def _template(fields, family) -> str:
    lines = [f"{field}: {{{field}}}" for field in fields]
    return "\n".join(lines) + f"\n{_ANSWER_WORD.get(family, 'answer')}:"


def _hold_out(data, where) -> dict:
    rows = list(data.get("train", []))
    size = max(HOLDOUT_MIN, int(len(rows) * HOLDOUT_FRACTION))
    if len(rows) < size + 1:
        raise TPVError(
            f"{where} has no validation split and only {len(rows)} training examples; give a "
            f"validation file (validation.jsonl) or at least {size + 1} examples"
        )
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    held = set(order[-size:])
    return {
        **data,
        "train": [r for i, r in enumerate(rows) if i not in held],
        "validation": [r for i, r in enumerate(rows) if i in held],
    }
