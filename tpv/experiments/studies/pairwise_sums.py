"""Study 3 (paper §4.3, Figure 3): do sums of two task prompt vectors keep both tasks' performance?

For every pair (a, b) of source tasks and every origin i, ``origin_i + λ(τ_a,i + τ_b,i)`` is scored on the test
sets of a and b, with λ chosen on both tasks' validation data (mean score, as the paper). Each score is divided
by the score of the task's own prompt from the same origin (study 1's "original"), so 1.0 means the sum keeps
the task's single-task performance.
"""

from __future__ import annotations

import itertools

import numpy as np

from tpv.core.progress import progress_bar
from tpv.experiments import paper_numbers
from tpv.experiments.result import StudyResult, at_chance_notes, markdown_table, marked
from tpv.experiments.stats import mean_std
from tpv.experiments.studies.origin_independence import original_score

TITLE = "Pairwise sums of task prompt vectors (§4.3, Figure 3)"


OFFICIAL_GRID = [round(x, 2) for x in np.arange(0, 1.05, 0.05)]


def lambda_note(config) -> str:
    """How λ was searched, and whether the grid is the official one or a cut of it."""
    protocol, grid = config.protocol, [float(x) for x in config.transfer.scale_grid]
    scoring = protocol.scoring[0] + (f", {protocol.answer_match} match" if protocol.scoring[0] == "generate" else "")
    cut = "a grid cut for time from the official 0, 0.05, …, 1"
    official = "the official grid" if [round(x, 6) for x in grid] == OFFICIAL_GRID else cut
    values = ", ".join(f"{x:g}" for x in grid)
    return (
        f"λ chosen per origin on both tasks' validation data (mean score) over λ ∈ {{{values}}}, {official}, "
        f"scored as the table ({scoring})."
    )


def run(lab, progress: bool = True) -> StudyResult:
    from tpv.experiments.plots import plot_heatmap

    config = lab.config
    seeds, tasks = config.seeds, config.source.pairs_of
    rows = []
    pairs = list(itertools.combinations(tasks, 2))
    for a, b in progress_bar(pairs, progress, "pairwise sums"):
        for i in seeds:
            rows += _sum_rows(lab, a, b, i)
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    body = []
    for a, b in pairs:
        cells = []
        for task, other in ((a, b), (b, a)):
            relative = [r["relative"] for r in rows if r["task"] == task and r["other"] == other]
            finite = [x for x in relative if np.isfinite(x)]
            mean = float(np.mean(finite)) if finite else float("nan")
            matrix[tasks.index(task), tasks.index(other)] = mean
            absolute = [r["score"] for r in rows if r["task"] == task and r["other"] == other]
            cells.append(f"{mean:.2f} ({mean_std(absolute)[0] * 100:.1f})")
        scales = sorted({r["scale"] for r in rows if r["pair"] == f"{a}+{b}"})
        body.append([f"{marked(a, config)} + {marked(b, config)}", *cells, ", ".join(f"{s:g}" for s in scales)])
    finite = matrix[np.isfinite(matrix)]
    # Red below half the own prompt's score, green from parity up, whatever the values' own range.
    figure = plot_heatmap(
        tasks,
        tasks,
        matrix,
        lab.output_dir / "pairwise_sums.png",
        title="Score of the pair's sum relative to the row task's own prompt",
        label="relative score (mean over origins)",
        cmap="RdYlGn",
        vmin=min(float(finite.min()), 0.5) if finite.size else 0.5,
        vmax=max(float(finite.max()), 1.0) if finite.size else 1.0,
    )
    table = markdown_table(["Pair (a + b)", "on a: relative (score)", "on b: relative (score)", "λ chosen"], body)
    notes = [
        "Relative = test score of origin + λ(τ_a + τ_b) divided by the task's own prompt's test score from the "
        "same origin, averaged over origins; the absolute score ×100 is in brackets. Heatmap: row = task "
        "scored, column = the task it was summed with."
    ]
    notes.append(lambda_note(config))
    notes += paper_numbers.figure_note("pairwise_sums")
    notes += at_chance_notes(config, tasks)
    summary = {
        "tasks": tasks,
        "relative_matrix": matrix.tolist(),
        "paper": paper_numbers.figure_summary("pairwise_sums"),
    }
    return StudyResult("pairwise_sums", TITLE, table, rows, summary, [figure], notes)


def run_shard(lab, index: int, count: int, progress: bool = True) -> dict:
    """Every ``count``-th (pair, origin) from the ``index``-th (1-based): λ searched and the sum scored on both
    tasks into the run folder's cache, for shards side by side (:func:`tpv.experiments.reproduce`'s ``shard``)."""
    pairs = itertools.combinations(lab.config.source.pairs_of, 2)
    units = [(a, b, i) for a, b in pairs for i in lab.config.seeds][index - 1 :: count]
    for a, b, i in progress_bar(units, progress, f"pairwise sums (shard {index}/{count})"):
        _sum_rows(lab, a, b, i)
    return {"units": len(units)}


def _sum_rows(lab, a: str, b: str, i: int) -> list[dict]:
    """The rows of origin ``i`` + λ(τ_a + τ_b) on a's and b's test sets, λ chosen on both validation sets."""
    vectors = lambda: [lab.source_vector(a, i), lab.source_vector(b, i)]  # noqa: E731
    scale = lab.search_scale(f"sum:{a}+{b}", vectors, i, [a, b])
    rows = []
    for task in (a, b):
        fields = lab.score_fields(
            task, f"sum:{a}+{b}@{i}x{scale}", lambda: sum(vectors()).apply_to(lab.origin(i), scale)
        )
        score, own = fields["score"], original_score(lab, task, i)
        rows.append(
            {
                "pair": f"{a}+{b}",
                "task": task,
                "other": b if task == a else a,
                "seed": i,
                "scale": scale,
                **fields,
                "own_score": own,
                "relative": score / own if own > 0 else float("nan"),
            }
        )
    return rows
