"""Read a task's split from a local folder (``<data_dir>/<task>/<split>.jsonl|.csv|.tsv``) or the Hub."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tpv.core.errors import TPVError
from tpv.data.files import FileTask
from tpv.data.reading import read_jsonl, read_table
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
    task = get_task(task)
    if isinstance(task, FileTask) and task.data:
        # A task made by Task.from_files carries its own examples; one from Task.from_dataset reads them from
        # Arrow only now, for the one split asked for (task.split(name) gives them without the list).
        return list(task.split(split))
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


def _read_table(path: Path, task: Task) -> list[dict]:
    rows: list[dict] = read_table(path)
    # CSV cells are strings; labels become the numbers the task expects.
    for row in rows:
        value = row.get(task.label_key)
        if isinstance(value, str) and (task.is_classification or task.regression):
            row[task.label_key] = _parse_number(value, integer=task.is_classification)
    return rows


def _parse_number(text: str, *, integer: bool):
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return text  # left as is, so validation reports the bad label with its task's label set
