"""Study 1 (paper §4.2, Table 1): is a task prompt vector independent of the origin it was tuned from?

For every source task and origin i, the vector τ_i is scored on the test set applied to its own origin
("original") and to every other origin j ≠ i ("mixed"). Cells are mean ± std over origins (original) and over
the (i, j) pairs (mixed); ``*`` marks a significant difference (Student's t-test, Bonferroni over the tasks).
"""

from __future__ import annotations

from tpv.core.progress import progress_bar
from tpv.experiments.result import StudyResult, markdown_table
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
            rows.append(
                {"task": task, "vector_seed": i, "origin_seed": i, "kind": "original", **original_fields(lab, task, i)}
            )
            for j in seeds:
                if j != i:
                    fields = lab.score_fields(
                        task,
                        f"source:{task}@{i}+origin{j}",
                        lambda task=task, i=i, j=j: lab.source_vector(task, i).apply_to(lab.origin(j)),
                    )
                    rows.append({"task": task, "vector_seed": i, "origin_seed": j, "kind": "mixed", **fields})
    body, summary = [], {}
    for task in tasks + ["avg"]:
        if task == "avg":
            # The average row averages each origin's (or pair's) score over tasks, as the paper's "avg" row.
            original = [
                sum(r["score"] for r in rows if r["kind"] == "original" and r["vector_seed"] == i) / len(tasks)
                for i in seeds
            ]
            mixed = [
                sum(r["score"] for r in rows if r["kind"] == "mixed" and (r["vector_seed"], r["origin_seed"]) == p)
                / len(tasks)
                for p in [(i, j) for i in seeds for j in seeds if i != j]
            ]
        else:
            original = [r["score"] for r in rows if r["task"] == task and r["kind"] == "original"]
            mixed = [r["score"] for r in rows if r["task"] == task and r["kind"] == "mixed"]
        delta = mean_std(mixed)[0] - mean_std(original)[0]
        test = ttest(mixed, original, n_comparisons=len(tasks))
        body.append(
            [task, format_cell(original), format_cell(mixed) + ("*" if test.significant else ""), f"{delta * 100:+.1f}"]
        )
        summary[task] = {
            "original_mean": mean_std(original)[0],
            "mixed_mean": mean_std(mixed)[0],
            "delta": delta,
            "p_bonferroni": test.p_value,
            "significant": test.significant,
        }
    table = markdown_table(["Task", "Original", "Mixed", "Δ"], body)
    notes = [
        f"Scores ×100 (macro F1; Pearson for STS-B; scored by {config.protocol.scoring[0]}, protocol "
        f"`{config.protocol.name}`; invalid answers and binary F1 per row in the CSV/JSON) on the test subsets; "
        f"{len(seeds)} origins "
        f"(seeds {seeds}); original: mean ± std over origins; mixed: over the {len(seeds) * (len(seeds) - 1)} "
        f"(vector origin, other origin) pairs; * = p < 0.05 after Bonferroni over {len(tasks)} tasks."
    ]
    return StudyResult("origin_independence", TITLE, table, rows, summary, notes=notes)
