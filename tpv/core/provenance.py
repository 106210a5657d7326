"""What a vector records of how it was made by :func:`tpv.merge`: the ``merge`` field of the file format.

The core owns these records, not the merge methods, because adding and loading vectors (layer 1) must read
and join them; the methods that write them (``tpv.compose.merge``) sit four layers up.
"""

from __future__ import annotations

import json
from typing import Protocol

from tpv.core._io import dumps
from tpv.core.errors import TPVError


class _Merged(Protocol):
    # A vector, as far as its records go; naming the class here would make this module and vector.py a circle.
    merge: str | None


def merge_record(vector: _Merged | str | None) -> dict | None:
    """The method, options and weights :func:`tpv.merge` recorded on ``vector`` (``None`` when it was not merged).

    A merged vector later added to another merged vector keeps both records: ``{"combined": [...]}``.

    Example:
        >>> merge_record('{"method": "mean", "weights": {"0": 1.0, "1": 1.0}}')
        {'method': 'mean', 'weights': {'0': 1.0, '1': 1.0}}
    """
    if vector is not None and not isinstance(vector, str):
        if not hasattr(vector, "merge"):
            raise TPVError(f"merge_record takes a TaskPromptVector, its merge text or None, got {vector!r}")
        vector = vector.merge
    records = _merge_records(vector)
    if not records:
        return None
    return records[0] if len(records) == 1 else {"combined": records}


def join_merge_records(*texts: str | None) -> str | None:
    """The ``merge`` text of a sum of vectors: every distinct record of the parts, as one JSON list."""
    records = []
    for text in texts:
        for record in _merge_records(text):
            if record not in records:
                records.append(record)
    if not records:
        return None
    return dumps(records[0]) if len(records) == 1 else dumps(sorted(records, key=dumps))


def _merge_records(text: str | None) -> list[dict]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        # Files from tpv ≤ 0.1 joined records with " | ", which a task name may contain; read those if we can.
        try:
            value = [json.loads(part) for part in text.split(" | ")]
        except ValueError:
            value = None
    records = value if isinstance(value, list) else [value]
    if not records or not all(isinstance(record, dict) for record in records):
        raise TPVError(
            f"the merge record {text[:200]!r} is not a JSON object (or list of them) as tpv.merge "
            "writes it; re-save the vector with tpv, or drop its 'merge' metadata"
        )
    return records
