"""Study 4 (paper §4.3, Table 2): initialising prompt tuning on new target tasks, at 0 and k shots.

As the paper's ``statistical_signficance_tests.py``, each target's best initialisation is compared with the
runner-up by a two-sample Student's t-test over origins, Bonferroni-corrected over the targets; ``*`` marks a
significant difference. The λ of every sum row is published per origin in the rows (CSV/JSON). The paper's
T5-base 0- and 100-shot cells (:mod:`tpv.experiments.paper_numbers`) stand beside ours; RTE shows the paper's
SciTail, which it stands in for.
"""

from __future__ import annotations

from tpv.core.progress import progress_bar
from tpv.data import get_task
from tpv.experiments import paper_numbers
from tpv.experiments.result import StudyResult, at_chance_notes, markdown_table
from tpv.experiments.stats import format_cell, mean_std, ttest
from tpv.experiments.studies.transfer import label, methods, shard_transfer, transfer_fields
from tpv.experiments.verdicts import paired_interval

TITLE = "Initialisation for new tasks (§4.3, Table 2)"


def run(lab, progress: bool = True) -> StudyResult:
    config = lab.config
    shots = config.transfer.shots
    secondary = config.protocol.scoring[1:]
    rows: list[dict] = []
    sections: list[str] = []
    summary: dict = {}
    jobs = [(f, t) for f in config.transfer.families for t in f.targets]
    for family, target in progress_bar(jobs, progress, "initialisation"):
        for method in methods(lab, family):
            for k in shots:
                for seed in config.seeds:
                    fields = transfer_fields(lab, family, target, method, k, seed)
                    rows.append(
                        {
                            "family": family.name,
                            "target": target,
                            "method": method,
                            "shots": k,
                            "seed": seed,
                            **fields,
                            **_paper_fields(target, method, k),
                        }
                    )
    n_targets = len(jobs)
    for family, target in jobs:
        binary = get_task(target).num_labels == 2
        marks = _significance(rows, target, shots, n_targets, summary)
        header = ["Initialisation", *(f"{k} shots" for k in shots)]
        header += [f"Paper {k} shots" for k in paper_numbers.TABLE2_SHOTS]
        header += [f"{k} shots, {m}" for m in secondary for k in shots]
        header += [f"{k} shots, binary F1" for k in shots] if binary else []
        body = []
        for method in methods(lab, family):
            cells, extra, binary_cells = [], [], []
            for k in shots:
                mine = [r for r in rows if r["target"] == target and r["method"] == method and r["shots"] == k]
                cells.append(
                    format_cell([r["score"] for r in mine])
                    + ("*" if marks.get((method, k)) else "")
                    + _invalid_note(mine)
                )
                summary.setdefault(target, {}).setdefault(method, {})[k] = mean_std([r["score"] for r in mine])[0]
                if binary:
                    binary_cells.append(format_cell([r["binary_f1"] for r in mine]))
            for m in secondary:
                for k in shots:
                    mine = [r for r in rows if r["target"] == target and r["method"] == method and r["shots"] == k]
                    extra.append(format_cell([r[f"{m}_score"] for r in mine]) + _invalid_note(mine, f"{m}_invalid"))
            paper = paper_numbers.table2(target, method)
            paper_cells = [cell.format() for cell in paper] if paper else ["N/A"] * len(paper_numbers.TABLE2_SHOTS)
            body.append([label(method, family, config.source.at_chance), *cells, *paper_cells, *extra, *binary_cells])
        sections.append(
            f"**{target}** ({family.name}; sources {', '.join(family.sources)}){_paper_heading(target)}\n\n"
            + markdown_table(header, body)
        )
    against = against_random(rows)
    if against:
        summary["against_random"] = against
        sections.append(_against_random_table(against, lab, jobs, shots))
    summary["paper"] = _paper_summary(jobs, lambda family: methods(lab, family))
    scoring = config.protocol.scoring[0]
    checkpoint = (
        f"the best of every {config.transfer.checkpoint_every} steps by validation "
        f"{config.transfer.checkpoint_metric} on {config.transfer.checkpoint_examples} held examples"
        if config.transfer.checkpoint_examples
        else "the last step"
    )
    shots_drawn = "the same for every origin" if config.protocol.shot_draw == "per_target" else "drawn per origin"
    notes = [
        f"Test macro F1 ×100 scored by {scoring}"
        + (
            " (greedy generation, exact match; [x % invalid] = answers that match no label, counted wrong)"
            if scoring == "generate"
            else ""
        )
        + f", mean ± std over origins {config.seeds} (protocol `{config.protocol.name}`); k shots = prompt "
        f"tuning on k stratified training examples ({shots_drawn}) "
        f"for {config.transfer.steps} steps, keeping {checkpoint}. ",
        "`*`: the best initialisation of a target differs from the runner-up (two-sample Student's t-test "
        f"over origins, Bonferroni over {n_targets} targets), as the paper's Table 2. Binary F1 = F1 of the "
        "positive label (the official code's metric for binary tasks). The λ of the sum rows per origin "
        "is in the `scale` column of the CSV/JSON.",
        f"Paper columns: {paper_numbers.PAPER}, Table 2, T5-base, mean ± std over 3 origins as printed (at 0 and "
        "100 shots whatever our shot counts); * = the better of the pair the authors tested, where their "
        "Bonferroni-corrected t-test found a difference; N/A = no such row in the paper (our λ-searched sum is "
        f"tpv's own). Source: {paper_numbers.SOURCES['table2']}.",
        paper_numbers.DIFFERENCES,
        *paper_numbers.target_caveats(target for _, target in jobs),
        *at_chance_notes(config, [s for f in config.transfer.families for s in f.sources]),
    ]
    return StudyResult("initialisation", TITLE, "\n\n".join(sections), rows, summary, notes=notes)


def against_random(rows) -> dict:
    """``{target: {method: {k: interval dict}}}``: each start minus the random origin, in score units, paired over
    origins (both trained and scored from the same origin), where both have two or more origins in common."""
    scores: dict = {}
    for r in rows:
        scores.setdefault((r["target"], r["method"], r["shots"]), {})[r["seed"]] = r["score"]
    found: dict = {}
    for (target, method, k), mine in sorted(scores.items()):
        random = scores.get((target, "random", k), {})
        seeds = sorted(set(mine) & set(random))
        if method == "random" or len(seeds) < 2:
            continue
        interval = paired_interval(
            f"{target} {k} shots: {method} − random", [mine[s] for s in seeds], [random[s] for s in seeds]
        )
        found.setdefault(target, {}).setdefault(method, {})[k] = interval.to_dict()
    return found


def _against_random_table(against: dict, lab, jobs, shots) -> str:
    body = []
    for family, target in jobs:
        for method in methods(lab, family):
            cells = against.get(target, {}).get(method)
            if cells:
                body.append(
                    [
                        target,
                        label(method, family, lab.config.source.at_chance),
                        *(_interval_cell(cells.get(k)) for k in shots),
                    ]
                )
    header = ["Target", "Initialisation", *(f"{k} shots" for k in shots)]
    return (
        "**Against the random origin**: each start's score minus the random origin's, ×100, paired over origins "
        "(the same origin on both sides), mean and 95 % interval (Student's t)\n\n" + markdown_table(header, body)
    )


def _interval_cell(interval: dict | None) -> str:
    if interval is None:
        return "—"
    return f"{100 * interval['estimate']:+.1f} [{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]"


def run_shard(lab, index: int, count: int, progress: bool = True) -> dict:
    """Every ``count``-th (target, initialisation, origin) from the ``index``-th (1-based), at every k, into the
    run folder's cache, for shards side by side (:func:`tpv.experiments.reproduce`'s ``shard``)."""
    return shard_transfer(lab, index, count, lab.config.transfer.shots, None, "initialisation", progress)


def _significance(rows, target, shots, n_targets, summary) -> dict:
    marks = {}
    for k in shots:
        by_method: dict = {}
        for r in rows:
            if r["target"] == target and r["shots"] == k:
                by_method.setdefault(r["method"], []).append(r["score"])
        ranked = sorted(by_method, key=lambda m: -mean_std(by_method[m])[0])
        if len(ranked) < 2 or min(len(v) for v in by_method.values()) < 2:
            continue
        best, runner_up = ranked[0], ranked[1]
        test = ttest(by_method[best], by_method[runner_up], n_comparisons=n_targets)
        marks[(best, k)] = test.significant
        summary.setdefault("significance", {}).setdefault(target, {})[k] = {
            "best": best,
            "runner_up": runner_up,
            "p_bonferroni": test.p_value,
            "significant": test.significant,
        }
    return marks


def _invalid_note(rows, key: str = "invalid") -> str:
    if not rows or rows[0].get("scoring", "rank") == "rank" and key == "invalid":
        return ""
    share = sum(r[key] for r in rows) / max(1, sum(r["n"] for r in rows))
    return f" [{share * 100:.0f} % invalid]" if share else ""


def _paper_heading(target: str) -> str:
    name = paper_numbers.paper_target(target)
    if name is None:
        return "; the paper has no such target: its columns are N/A"
    if name != target:
        return f"; the paper columns are its {name} (not in tpv's data), for which {target} stands in here"
    return ""


def _paper_fields(target: str, method: str, shots: int) -> dict:
    cells = paper_numbers.table2(target, method)
    if cells is None or shots not in paper_numbers.TABLE2_SHOTS:
        return {"paper_mean": None, "paper_std": None}
    cell = cells[paper_numbers.TABLE2_SHOTS.index(shots)]
    return {"paper_mean": cell.mean, "paper_std": cell.std}


def _paper_summary(jobs, methods_of) -> dict:
    targets = {}
    for family, target in jobs:
        found = {m: paper_numbers.table2(target, m) for m in methods_of(family)}
        targets[target] = {
            "paper_target": paper_numbers.paper_target(target),
            "methods": {
                m: {str(k): c.to_dict() for k, c in zip(paper_numbers.TABLE2_SHOTS, cells)} if cells else None
                for m, cells in found.items()
            },
        }
    return {"source": paper_numbers.SOURCES["table2"], "model": paper_numbers.PAPER_MODEL, "targets": targets}
