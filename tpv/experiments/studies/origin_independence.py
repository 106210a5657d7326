"""Study 1 (paper §4.2, Table 1): is a task prompt vector independent of the origin it was tuned from?

For every source task and origin i, the vector τ_i is scored on the test set applied to its own origin
("original") and to every other origin j ≠ i ("mixed"). Cells are mean ± std over origins (original) and over
the (i, j) pairs (mixed); ``*`` marks a significant difference (Student's t-test, Bonferroni over the tasks).
The paper's T5-base columns (:mod:`tpv.experiments.paper_numbers`) stand beside ours, "N/A" where it has no row.
"""

from __future__ import annotations

from tpv.core.progress import progress_bar
from tpv.experiments import paper_numbers
from tpv.experiments.result import StudyResult, at_chance_notes, markdown_table, marked
from tpv.experiments.stats import format_cell, mean_std, ttest

TITLE = "Origin independence (§4.2, Table 1)"


def original_score(lab, task: str, seed: int) -> float:
    """Test score of the task prompt tuned from origin ``seed`` (also study 3's per-task reference)."""
    return original_fields(lab, task, seed)["score"]


def original_fields(lab, task: str, seed: int) -> dict:
    vector = lambda: lab.source_vector(task, seed)  # noqa: E731  (only trained when the score is not cached)
    return lab.score_fields(task, f"source:{task}@{seed}+origin{seed}", lambda: vector().apply_to(lab.origin(seed)))


def run(lab, progress: bool = True) -> StudyResult:
    config = lab.config
    seeds, tasks = config.seeds, config.source.tasks
    rows = []
    for task in progress_bar(tasks, progress, "origin independence"):
        for i in seeds:
            rows += _vector_rows(lab, task, i)
    body: list[list] = []
    summary: dict = {}
    learned = [t for t in tasks if t not in config.source.at_chance]
    # "avg" over every task, as the paper's row; with tasks at chance, also over the others, the ones that can
    # say something about origin independence.
    averages = {"avg": tasks, **({"avg (no †)": learned} if learned and len(learned) < len(tasks) else {})}
    for task in tasks + list(averages):
        if task in averages:
            # Each origin's (or pair's) score averaged over the tasks, as the paper's "avg" row.
            over = averages[task]
            original = [
                sum(r["score"] for r in rows if r["kind"] == "original" and r["vector_seed"] == i and r["task"] in over)
                / len(over)
                for i in seeds
            ]
            mixed = [
                sum(
                    r["score"]
                    for r in rows
                    if r["kind"] == "mixed" and (r["vector_seed"], r["origin_seed"]) == p and r["task"] in over
                )
                / len(over)
                for p in [(i, j) for i in seeds for j in seeds if i != j]
            ]
        else:
            original = [r["score"] for r in rows if r["task"] == task and r["kind"] == "original"]
            mixed = [r["score"] for r in rows if r["task"] == task and r["kind"] == "mixed"]
        delta = mean_std(mixed)[0] - mean_std(original)[0]
        test = ttest(mixed, original, n_comparisons=len(tasks))
        body.append(
            [
                marked(task, config),
                format_cell(original),
                format_cell(mixed) + ("*" if test.significant else ""),
                f"{delta * 100:+.1f}",
                *_paper_cells(task),
            ]
        )
        summary[task] = {
            "original_mean": mean_std(original)[0],
            "mixed_mean": mean_std(mixed)[0],
            "delta": delta,
            "p_bonferroni": test.p_value,
            "significant": test.significant,
        }
    summary["paper"] = _paper_summary(tasks)
    table = markdown_table(
        ["Task", "Original", "Mixed", "Δ", "Paper T5: Original", "Paper T5: Mixed", "Paper T5: Δ"], body
    )
    notes = [
        f"Scores ×100 (macro F1; Pearson for STS-B; scored by {config.protocol.scoring[0]}, protocol "
        f"`{config.protocol.name}`; invalid answers and binary F1 per row in the CSV/JSON) on the test subsets; "
        f"{len(seeds)} origins "
        f"(seeds {seeds}); original: mean ± std over origins; mixed: over the {len(seeds) * (len(seeds) - 1)} "
        f"(vector origin, other origin) pairs; * = p < 0.05 after Bonferroni over {len(tasks)} tasks.",
        f"Paper T5 columns: {paper_numbers.PAPER}, Table 1, T5-base (its main model), mean ± std over 3 origins "
        f"as printed; * = the paper's mark; N/A = no such row in the paper (its avg is over the 8 GLUE tasks, "
        f"{_glue_avg()}, so it is not beside ours). Source: {paper_numbers.SOURCES['table1']}. LLaMa-3.1-8B "
        "and DeepSeek-7B rows are in the JSON's `summary.paper`.",
        paper_numbers.DIFFERENCES,
        *at_chance_notes(config, tasks),
    ]
    summary["at_chance"] = [t for t in tasks if t in config.source.at_chance]
    return StudyResult("origin_independence", TITLE, table, rows, summary, notes=notes)


def run_shard(lab, index: int, count: int, progress: bool = True) -> dict:
    """Every ``count``-th (task, origin) vector from the ``index``-th (1-based): tuned and scored on every origin
    into the run folder's cache, for shards side by side (:func:`tpv.experiments.reproduce`'s ``shard``)."""
    units = [(task, i) for task in lab.config.source.tasks for i in lab.config.seeds][index - 1 :: count]
    for task, i in progress_bar(units, progress, f"origin independence (shard {index}/{count})"):
        _vector_rows(lab, task, i)
    return {"units": len(units)}


def _vector_rows(lab, task: str, i: int) -> list[dict]:
    """The rows of the vector tuned from origin ``i``: on its own origin ("original") and on every other one."""
    rows = [
        {
            "task": task,
            "vector_seed": i,
            "origin_seed": i,
            "kind": "original",
            **original_fields(lab, task, i),
            **_paper_fields(task, "original"),
        }
    ]
    for j in lab.config.seeds:
        if j != i:
            fields = lab.score_fields(
                task, f"source:{task}@{i}+origin{j}", lambda j=j: lab.source_vector(task, i).apply_to(lab.origin(j))
            )
            head = {"task": task, "vector_seed": i, "origin_seed": j, "kind": "mixed"}
            rows.append({**head, **fields, **_paper_fields(task, "mixed")})
    return rows


def _paper_cells(task: str) -> list[str]:
    row = paper_numbers.table1(task) if task != "avg" else None
    if row is None:
        return ["N/A"] * 3
    return [row.original.format(), row.mixed.format(), f"{row.delta:+.1f}"]


def _paper_fields(task: str, kind: str) -> dict:
    row = paper_numbers.table1(task)
    cell = getattr(row, kind) if row else None
    return {"paper_mean": cell.mean if cell else None, "paper_std": cell.std if cell else None}


def _glue_avg() -> str:
    row = paper_numbers.table1("avg")
    # The printed Mixed avg is not the mean of the paper's own GLUE Mixed cells (see paper_numbers); say so.
    return f"{row.original.format()} original, {row.mixed.format()} mixed as printed" if row else "N/A"


def _paper_summary(tasks: list[str]) -> dict:
    models = {}
    for model in paper_numbers.MODELS:
        rows = {task: paper_numbers.table1(task, model) for task in [*tasks, "avg"]}
        models[model] = {task: row.to_dict() if row else None for task, row in rows.items()}
    return {"source": paper_numbers.SOURCES["table1"], "shown": paper_numbers.PAPER_MODEL, "table1": models}
