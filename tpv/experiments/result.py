"""What a study returns, and small helpers shared by the studies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StudyResult:
    """One study's outputs.

    Attributes:
        name: the study's key (``origin_independence`` …).
        title: the paper's section and figure/table.
        table: the Markdown table(s).
        rows: raw per-origin records (one dict per score), from which the table can be recomputed.
        summary: aggregated numbers (JSON-ready).
        figures: PNG files written.
        notes: caveats printed under the table.
    """

    name: str
    title: str
    table: str
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def markdown_table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)
