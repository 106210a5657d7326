"""Study 2 (paper §4.2, Figure 2): cosine similarity of task prompts and of task prompt vectors across tasks.

Each cell averages the cosine (mean-pooled over tokens, as the paper) of task a from origin i and task b from
origin j over all pairs i ≠ j, so the diagonal is the same task across different origins: the baseline the
off-diagonal cells are compared with.
"""

from __future__ import annotations

import numpy as np

from tpv.core.progress import progress_bar
from tpv.core.similarity import prompt_cosine
from tpv.experiments import paper_numbers
from tpv.experiments.result import StudyResult, at_chance_notes, markdown_table, marked

TITLE = "Similarity of task prompts and task prompt vectors (§4.2, Figure 2)"


def run(lab, progress: bool = True) -> StudyResult:
    from tpv.experiments.plots import plot_similarity

    config = lab.config
    seeds, tasks = config.seeds, config.source.tasks
    vectors = {(t, i): lab.source_vector(t, i) for t in progress_bar(tasks, progress, "similarity") for i in seeds}
    kinds = {
        "task_prompts": lambda t, i: vectors[(t, i)].apply_to(lab.origin(i)),
        "task_prompt_vectors": lambda t, i: vectors[(t, i)].tensor,
    }
    rows, summary, tables, figures = [], {}, [], []
    for kind, tensor in kinds.items():
        matrix = np.zeros((len(tasks), len(tasks)))
        for a, task_a in enumerate(tasks):
            for b, task_b in enumerate(tasks):
                values = []
                for i in seeds:
                    for j in seeds:
                        if i != j:
                            value = prompt_cosine(tensor(task_a, i), tensor(task_b, j), "mean")
                            values.append(value)
                            rows.append(
                                {
                                    "kind": kind,
                                    "task_a": task_a,
                                    "origin_a": i,
                                    "task_b": task_b,
                                    "origin_b": j,
                                    "cosine": value,
                                }
                            )
                matrix[a, b] = float(np.mean(values))
        summary[kind] = {"tasks": tasks, "matrix": matrix.tolist()}
        label = kind.replace("_", " ")
        tables.append(
            f"**{label}** (cosine, mean-pooled, averaged over origin pairs i ≠ j)\n\n"
            + markdown_table(
                ["", *(marked(t, config) for t in tasks)],
                [[marked(t, config), *(f"{v:.2f}" for v in matrix[r])] for r, t in enumerate(tasks)],
            )
        )
        figures.append(
            plot_similarity(
                tasks, matrix, lab.output_dir / f"similarity_{kind}.png", title=f"Cosine similarity of {label}"
            )
        )
    summary["paper"] = paper_numbers.figure_summary("similarity")
    notes = paper_numbers.figure_note("similarity") + at_chance_notes(config, tasks)
    return StudyResult("similarity", TITLE, "\n\n".join(tables), rows, summary, figures, notes)


def run_shard(lab, index: int, count: int, progress: bool = True) -> dict:
    """Every ``count``-th (task, origin) source vector from the ``index``-th (1-based) tuned into the run folder
    (the cosines themselves take no time), for shards side by side (:func:`tpv.experiments.reproduce`'s
    ``shard``)."""
    units = [(task, i) for task in lab.config.source.tasks for i in lab.config.seeds][index - 1 :: count]
    for task, i in progress_bar(units, progress, f"similarity (shard {index}/{count})"):
        lab.source_vector(task, i)
    return {"units": len(units)}
