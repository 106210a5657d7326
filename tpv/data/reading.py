"""Reading data files: JSON lines and CSV/TSV tables, every fault a TPVError that names the file and the line.

Both the registered tasks' splits (``loading.py``) and a user's own files (``files.py``) are read here, so the
two accept the same files and fail on them with the same messages.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tpv.core._io import read_text
from tpv.core.errors import TPVError

__all__ = ["read_jsonl", "read_table"]


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file, one a line; blank lines skipped; a fault, or no object, is a TPVError."""
    examples = []
    text = _text(path)
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as err:
            raise TPVError(f"{path}, line {line_number}: not valid JSON ({err}); fix the file") from None
        if not isinstance(example, dict):
            raise TPVError(f"{path}, line {line_number}: expected a JSON object, got {example!r}")
        examples.append(example)
    if not examples:
        raise TPVError(
            f"the data file '{path}' {_why_empty(text)}: it has no examples; write one JSON object a line into it"
        )
    return examples


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV (``.csv``) or tab-separated (``.tsv``) file with a header, as dicts of strings (≥ 1 row)."""
    text = _text(path)
    try:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as err:
        raise TPVError(f"{path}: not a valid {path.suffix[1:].upper()} table ({err}); fix the file") from None
    if not rows:
        why = "has a header but no rows" if text.strip() else _why_empty(text)
        raise TPVError(
            f"the data file '{path}' {why}: it has no examples; write a header line and one example a row into it"
        )
    for line, row in enumerate(rows, start=2):
        if None in row:  # DictReader files cells beyond the header under the key None
            raise TPVError(
                f"{path}, row {line}: {len(row) - 1 + len(row[None])} cells but the header names "
                f"{len(row) - 1} ({[k for k in row if k is not None]}); fix the file (quote cells that "
                "hold the delimiter)"
            )
    return rows


def _text(path: Path) -> str:
    return read_text(path, "the data file", "save the file as UTF-8")


def _why_empty(text: str) -> str:
    return "is empty (0 bytes)" if not text else "holds only blank lines"
