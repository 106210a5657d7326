"""Read a task's split from a local folder (``<data_dir>/<task>/<split>.jsonl|.csv|.tsv``) or the Hub."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
from pathlib import Path

from tpv.core._io import read_text
from tpv.core.errors import TPVError
from tpv.data.registry import get_task
from tpv.data.task import Task

__all__ = ["load_split", "data_dir_from_env", "SPLITS"]

SPLITS = ("train", "validation", "test")
_SUFFIXES = (".jsonl", ".csv", ".tsv")


def data_dir_from_env() -> Path | None:
    """The local data folder named by ``TPV_DATA_DIR``, or ``None`` when it is unset."""
    value = os.environ.get("TPV_DATA_DIR")
    return Path(value) if value else None


def load_split(task: str | Task, split: str, data_dir: str | os.PathLike | None = None) -> list[dict]:
    """Load and validate every example of one split of a task.

    Args:
        task: a task name or ``Task``.
        split: ``"train"``, ``"validation"`` or ``"test"`` (any name with a file works locally).
        data_dir: folder holding ``<task>/<split>.jsonl`` (or ``.csv``/``.tsv``); defaults to ``TPV_DATA_DIR``.
            With neither, and the ``datasets`` package installed, the split is read from the Hugging Face Hub.

    Returns:
        The examples as dicts; each has every field the template needs and a valid label.

    Example:
        >>> rows = load_split("rte", "test")  # reads $TPV_DATA_DIR/rte/test.jsonl
        >>> sorted(rows[0])
        ['label', 'sentence1', 'sentence2']
    """
    from tpv.data.files import FileTask  # files reads JSON lines with this module's reader

    task = get_task(task)
    if isinstance(task, FileTask) and task.data:
        return task.split(split)  # a task made by Task.from_files carries its own examples
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TPVError(f"data_dir must be a folder path, got {data_dir!r}")
    folder = Path(data_dir) if data_dir is not None else data_dir_from_env()
    if folder is None:
        if importlib.util.find_spec("datasets") is None:
            raise TPVError(
                f"no data folder for task {task.name!r}: pass data_dir=..., set TPV_DATA_DIR to a folder holding "
                f"{task.name}/{split}.jsonl, or `pip install datasets` to read the Hugging Face Hub"
            )
        from tpv.data.hub import load_hub_split

        examples = load_hub_split(task, split)
        source = f"the Hub dataset {task.hub_id!r}"
    else:
        path = _find_split_file(folder, task.name, split)
        examples = read_jsonl(path) if path.suffix == ".jsonl" else _read_table(path, task)
        source = str(path)
    for line, example in enumerate(examples, start=1):
        try:
            task.format(example)
        except TPVError as err:
            raise TPVError(f"{source}, example {line}: {err}") from None
    return examples


def _find_split_file(folder: Path, task_name: str, split: str) -> Path:
    candidates = [folder / task_name / f"{split}{suffix}" for suffix in _SUFFIXES]
    for path in candidates:
        if path.is_file():
            return path
    raise TPVError(
        f"no {split!r} split for task {task_name!r}: tried {candidates[0]} (and .csv, .tsv); "
        f"put the file there or point data_dir / TPV_DATA_DIR at the folder holding {task_name}/"
    )


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, one a line; blank lines skipped, anything else a TPVError."""
    examples = []
    for line_number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as err:
            raise TPVError(f"{path}, line {line_number}: not valid JSON ({err}); fix the file") from None
        if not isinstance(example, dict):
            raise TPVError(f"{path}, line {line_number}: expected a JSON object, got {example!r}")
        examples.append(example)
    return examples


def _text(path: Path) -> str:
    return read_text(path, "the data file", "save the file as UTF-8")


def _read_table(path: Path, task: Task) -> list[dict]:
    try:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        rows = list(csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter))
    except csv.Error as err:
        raise TPVError(f"{path}: not a valid {path.suffix[1:].upper()} table ({err}); fix the file") from None
    # CSV cells are strings; labels become the numbers the task expects.
    for line, row in enumerate(rows, start=2):
        if None in row:  # DictReader files cells beyond the header under the key None
            raise TPVError(f"{path}, row {line}: {len(row) - 1 + len(row[None])} cells but the header names "
                           f"{len(row) - 1} ({[k for k in row if k is not None]}); fix the file (quote cells that "
                           "hold the delimiter)")
        value = row.get(task.label_key)
        if isinstance(value, str) and (task.is_classification or task.regression):
            row[task.label_key] = _parse_number(value, integer=task.is_classification)
    return rows


def _parse_number(text: str, *, integer: bool):
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return text  # left as is, so validation reports the bad label with its task's label set
