"""Study 5 (paper §4.4, Figure 4): few-shot curves of each initialisation, mean ± std over origins."""

from __future__ import annotations

from tpv.core.progress import progress_bar
from tpv.experiments import paper_numbers
from tpv.experiments.result import StudyResult, at_chance_notes, markdown_table
from tpv.experiments.stats import mean_std
from tpv.experiments.studies.transfer import label, methods, shard_transfer, transfer_fields

TITLE = "Few-shot curves (§4.4, Figure 4)"


def run(lab, progress: bool = True) -> StudyResult:
    from tpv.experiments.figures import plot_curves

    config = lab.config
    shots = config.transfer.curve_shots
    rows: list[dict] = []
    sections: list[str] = []
    figures: list = []
    summary: dict = {}
    jobs = [(f, t) for f in config.transfer.families for t in f.targets if t in config.curve_targets()]
    for family, target in progress_bar(jobs, progress, "few-shot curves"):
        curves, body = {}, []
        for method in methods(lab, family):
            means, stds = [], []
            for k in shots:
                found = [transfer_fields(lab, family, target, method, k, seed) for seed in config.seeds]
                scores = [fields["score"] for fields in found]
                rows += [
                    {"family": family.name, "target": target, "method": method, "shots": k, "seed": seed, **fields}
                    for seed, fields in zip(config.seeds, found)
                ]
                mean, std = mean_std(scores)
                means.append(mean * 100)
                stds.append(std * 100)
            curves[label(method, family, config.source.at_chance)] = (means, stds)
            summary.setdefault(target, {})[method] = dict(zip(shots, means))
            body.append(
                [label(method, family, config.source.at_chance), *(f"{m:.1f} ± {s:.1f}" for m, s in zip(means, stds))]
            )
        figures.append(
            plot_curves(
                shots,
                curves,
                lab.output_dir / f"few_shot_{target}.png",
                f"{target}: few-shot prompt tuning by initialisation",
                "test macro F1 ×100",
            )
        )
        sections.append(f"**{target}**\n\n" + markdown_table(["Initialisation", *(f"{k}" for k in shots)], body))
    notes = [
        f"Test macro F1 ×100 scored by {config.protocol.scoring[0]} (protocol `{config.protocol.name}`), mean ± "
        f"std over origins {config.seeds}, after {config.transfer.steps} steps of prompt tuning on k stratified "
        "examples (nested: the 5-shot set is inside the 10-shot set"
        + ("; the same examples for every origin" if config.protocol.shot_draw == "per_target" else "")
        + "). Per-origin scores, invalid answers and λ are in the CSV/JSON."
    ]
    notes += paper_numbers.figure_note("few_shot")
    notes += paper_numbers.target_caveats(target for _, target in jobs)
    notes += at_chance_notes(config, [s for f in config.transfer.families for s in f.sources])
    summary["paper"] = paper_numbers.figure_summary("few_shot")
    return StudyResult("few_shot", TITLE, "\n\n".join(sections), rows, summary, figures, notes)


def run_shard(lab, index: int, count: int, progress: bool = True) -> dict:
    """Every ``count``-th (target, initialisation, origin) of the curves from the ``index``-th (1-based), at every
    k, into the run folder's cache, for shards side by side (:func:`tpv.experiments.reproduce`'s ``shard``)."""
    config = lab.config
    return shard_transfer(
        lab, index, count, config.transfer.curve_shots, config.curve_targets(), "few-shot curves", progress
    )
