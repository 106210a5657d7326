"""Study 4 (paper §4.3, Table 2): initialising prompt tuning on new target tasks, at 0 and 100 shots."""

from __future__ import annotations

from tpv.experiments.result import StudyResult, markdown_table, progress_bar
from tpv.experiments.studies.transfer import label, methods, transfer_score
from tpv.stats import format_cell

TITLE = "Initialisation for new tasks (§4.3, Table 2)"


def run(lab, progress: bool = True) -> StudyResult:
    config = lab.config
    shots = config.transfer.shots
    rows, sections, summary = [], [], {}
    jobs = [(f, t) for f in config.transfer.families for t in f.targets]
    for family, target in progress_bar(jobs, progress, "initialisation"):
        body = []
        for method in methods(lab, family):
            cells = []
            for k in shots:
                scores = []
                for seed in config.seeds:
                    score = transfer_score(lab, family, target, method, k, seed)
                    scores.append(score)
                    rows.append({"family": family.name, "target": target, "method": method, "shots": k,
                                 "seed": seed, "score": score})
                cells.append(format_cell(scores))
                summary.setdefault(target, {}).setdefault(method, {})[k] = sum(scores) / len(scores)
            body.append([label(method, family), *cells])
        sections.append(f"**{target}** ({family.name}; sources {', '.join(family.sources)})\n\n"
                        + markdown_table(["Initialisation", *(f"{k} shots" for k in shots)], body))
    notes = [f"Test score ×100 (macro F1), mean ± std over origins {config.seeds}; k shots = prompt tuning on k "
             f"stratified training examples for {config.transfer.steps} steps from the initialisation; λ of "
             "'ours' chosen on the target's validation subset."]
    return StudyResult("initialisation", TITLE, "\n\n".join(sections), rows, summary, notes=notes)
