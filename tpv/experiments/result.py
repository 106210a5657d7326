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


AT_CHANCE_MARK = "†"


def marked(task: str, config) -> str:
    """``task`` with † when the profile lists it in ``[source] at_chance``: its source prompt stayed at chance in
    the learnability study, so rows built on it are no evidence for or against a finding."""
    return f"{task}{AT_CHANCE_MARK}" if task in config.source.at_chance else task


def at_chance_notes(config, tasks) -> list[str]:
    """The note that explains † under a table whose rows use ``tasks`` (none when no row is marked)."""
    found = [task for task in config.source.at_chance if task in tasks]
    if not found:
        return []
    return [
        f"{AT_CHANCE_MARK} {', '.join(found)}: source prompts that stayed at chance on this model at every budget "
        "tried (docs/results/learnability/; the profile's `[source] at_chance`). A row that uses one compares "
        "prompts without skill: it is no evidence for or against the paper's finding."
    ]


def scale_note(config, study: str) -> str:
    """One sentence on how large ``config``'s run is where ``study`` depends on it, for the header of its page:
    a smaller run than the paper's must say so where its numbers are shown."""
    if study == "transfer":
        from tpv.experiments.studies.left_out import scale_note as transfer_scale_note

        return transfer_scale_note(config)
    data, prompt, source, transfer = config.data, config.prompt, config.source, config.transfer
    budgets = ", ".join(
        f"{task} {source.steps_for(task)}"
        + (
            f" at {source.learning_rate_for(task, prompt.learning_rate):g}"
            if source.learning_rate_for(task, prompt.learning_rate) != prompt.learning_rate
            else ""
        )
        for task in source.tasks
    )
    stopping = (
        f", stopped after {source.early_stopping_patience} checkpoint evaluations without a lower validation loss"
        if source.early_stopping_patience
        else ""
    )
    parts = [
        f"Scale of this run: test subsets of {data.test_examples} examples per task (the paper scores whole test "
        f"sets), at most {data.train_examples} training and {data.validation_examples} validation examples per "
        f"task; {prompt.num_virtual_tokens} virtual tokens, batch {prompt.batch_size}, learning rate "
        f"{prompt.learning_rate:g}; source prompts ({len(source.tasks)} tasks) trained for at most {budgets} "
        f"steps{stopping}"
    ]
    if study in ("initialisation", "few_shot"):
        targets = [t for family in transfer.families for t in family.targets]
        parts.append(
            f"targets {', '.join(targets)}; methods {', '.join(transfer.methods)}; k-shot runs of "
            f"{transfer.steps} steps"
            + (
                f", best of every {transfer.checkpoint_every} by {transfer.checkpoint_metric} on "
                f"{transfer.checkpoint_examples} held validation examples"
                if transfer.checkpoint_examples
                else ", last step kept"
            )
        )
    return "; ".join(parts) + "."


def markdown_table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)
