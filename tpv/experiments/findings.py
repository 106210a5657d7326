"""The findings table: each claim of the paper that the five studies test, a verdict and the numbers behind it.

Verdicts are computed by fixed rules from the studies' JSON files (whose ``rows`` are the CSV's), not written by
hand, so every sentence of ``findings.md`` can be checked against the files beside it and a rerun rewrites it
byte for byte. A study whose JSON is missing, or was written by a run with other settings (another run folder
key), gives "not run"; a claim about tasks this run does not have gives "not testable here".

The rules, stated on the page:

- a difference is *significant* when a two-sample Student's t-test over origins gives p < 0.05 (Bonferroni over
  the table's comparisons, as the studies' own tables);
- a sum *keeps* a task when its score is at least ``KEEP`` of the task's own prompt's (mean over origins);
- "at par" means not significantly worse.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tpv.core._io import atomic_write_text
from tpv.data import get_task
from tpv.experiments.result import markdown_table
from tpv.experiments.stats import mean_std, ttest

KEEP = 0.9
HELD, PARTLY, NOT_HELD, NOT_TESTABLE, NOT_RUN = "held", "partly", "not held", "not testable here", "not run"


@dataclass
class Finding:
    """One of the paper's claims, where the paper shows it, our verdict and the numbers that decide it."""

    claim: str
    paper: str
    study: str
    verdict: str
    evidence: str


def _load(output_dir: Path, study: str, fingerprint: str) -> dict | None:
    path = output_dir / f"{study}.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    return payload if payload.get("fingerprint") == fingerprint else None


def _share(count: int, total: int) -> str:
    return HELD if count == total else NOT_HELD if count == 0 else PARTLY


def _origin_independence(data: dict) -> Finding:
    claim = "A task prompt vector applied to another origin keeps its task's score."
    at_chance = set(data["summary"].get("at_chance", []))
    tasks = [t for t in data["summary"] if t not in ("avg", "paper", "at_chance") and t not in at_chance]
    if not tasks:
        return Finding(claim, "Table 1", "origin_independence", NOT_TESTABLE, "every source task is at chance.")
    summary = data["summary"]
    deltas = {t: summary[t]["delta"] * 100 for t in tasks}
    changed = [t for t in tasks if summary[t]["significant"]]
    seeds = data["config"]["seeds"]
    evidence = (
        f"{len(tasks) - len(changed)} of {len(tasks)} tasks show no significant change (mixed vs original, "
        f"{len(seeds)} origins each); Δ from {min(deltas.values()):+.1f} ({min(deltas, key=lambda t: deltas[t])}) to "
        f"{max(deltas.values()):+.1f} ({max(deltas, key=lambda t: deltas[t])}) points"
        + (f"; significant: {', '.join(f'{t} {deltas[t]:+.1f}' for t in changed)}" if changed else "")
        + (f"; left out as at chance: {', '.join(sorted(at_chance))}" if at_chance else "")
        + f". With {len(seeds)} origins a side the test finds only large changes."
    )
    return Finding(claim, "Table 1", "origin_independence", _share(len(tasks) - len(changed), len(tasks)), evidence)


def _family_pairs(config: dict, tasks: list[str]) -> tuple[list, list]:
    family_of = {s: f["name"] for f in config["transfer"]["families"] for s in f["sources"] if s in tasks}
    pairs = list(itertools.combinations([t for t in tasks if t in family_of], 2))
    same = [p for p in pairs if family_of[p[0]] == family_of[p[1]]]
    return same, [p for p in pairs if family_of[p[0]] != family_of[p[1]]]


def _similarity(data: dict) -> list[Finding]:
    vectors, prompts = data["summary"]["task_prompt_vectors"], data["summary"]["task_prompts"]
    tasks = vectors["tasks"]
    cos_v, cos_p = np.array(vectors["matrix"]), np.array(prompts["matrix"])

    def at(matrix, a, b):
        return float(matrix[tasks.index(a), tasks.index(b)])

    found = []
    claim = "Vectors of tasks from the same problem family are more similar than vectors of unrelated tasks."
    same, cross = _family_pairs(data["config"], tasks)
    if not same or not cross:
        found.append(Finding(claim, "§4.2, Figure 2", "similarity", NOT_TESTABLE, "no two families of sources."))
    else:
        highest_cross = max(cross, key=lambda p: at(cos_v, *p))
        above = [p for p in same if at(cos_v, *p) > at(cos_v, *highest_cross)]
        cross_mean = float(np.mean([at(cos_v, *p) for p in cross]))
        above_mean = [p for p in same if at(cos_v, *p) > cross_mean]
        verdict = HELD if len(above) == len(same) else PARTLY if above_mean else NOT_HELD
        evidence = (
            "same-family vector cosines "
            + ", ".join(f"{a}–{b} {at(cos_v, a, b):.2f}" for a, b in same)
            + f"; cross-family pairs {min(at(cos_v, *p) for p in cross):.2f}–{at(cos_v, *highest_cross):.2f} "
            f"(mean {cross_mean:.2f}, highest {highest_cross[0]}–{highest_cross[1]}); {len(above)} of {len(same)} "
            f"same-family pairs above every cross-family pair, {len(above_mean)} above their mean."
        )
        found.append(Finding(claim, "§4.2, Figure 2", "similarity", verdict, evidence))
    claim = "Task prompt vectors have lower cosine similarities than task prompts."
    upper = [(i, j) for i in range(len(tasks)) for j in range(i, len(tasks))]
    lower = [(i, j) for i, j in upper if cos_v[i, j] < cos_p[i, j]]
    gaps = [cos_p[i, j] - cos_v[i, j] for i, j in upper]
    evidence = (
        f"{len(lower)} of {len(upper)} entries (diagonal included) are lower for vectors; prompt minus vector "
        f"cosine {min(gaps):+.2f} to {max(gaps):+.2f}."
    )
    found.append(Finding(claim, "§4.2, Figure 2(a) vs 2(b)", "similarity", _share(len(lower), len(upper)), evidence))
    claim = "QNLI–TREC is high among prompt cosines and low among vector cosines."
    if "qnli" in tasks and "trec" in tasks:
        off = [(i, j) for i, j in upper if i != j]
        median_p = float(np.median([cos_p[i, j] for i, j in off]))
        median_v = float(np.median([cos_v[i, j] for i, j in off]))
        p, v = at(cos_p, "qnli", "trec"), at(cos_v, "qnli", "trec")
        verdict = HELD if p > median_p and v < median_v else PARTLY if p > median_p or v < median_v else NOT_HELD
        # Three decimals: the entries sit close to the medians, and the verdict turns on their order.
        evidence = f"prompts {p:.3f} (median of other pairs {median_p:.3f}); vectors {v:.3f} (median {median_v:.3f})."
    else:
        verdict, evidence = NOT_TESTABLE, "QNLI or TREC is not a source task of this run."
    found.append(Finding(claim, "§4.2, Figure 2", "similarity", verdict, evidence))
    return found


def _pairwise_sums(data: dict, at_chance: set) -> Finding:
    claim = "The sum of two binary tasks' vectors keeps both tasks' single-task performance for most pairs."
    tasks = data["summary"]["tasks"]
    matrix = np.array(data["summary"]["relative_matrix"], dtype=float)
    binary = [t for t in tasks if get_task(t).num_labels == 2 and t not in at_chance]
    pairs = list(itertools.combinations(binary, 2))
    if not pairs:
        return Finding(claim, "§4.3, Figure 3", "pairwise_sums", NOT_TESTABLE, "fewer than two binary sources.")
    kept, cells = [], []
    for a, b in pairs:
        on_a, on_b = matrix[tasks.index(a), tasks.index(b)], matrix[tasks.index(b), tasks.index(a)]
        cells.append(f"{a}+{b} {on_a:.2f}/{on_b:.2f}")
        if on_a >= KEEP and on_b >= KEEP:
            kept.append((a, b))
    # nan: a task's own prompt scored 0 on every origin, so there is no performance to keep.
    pairs = [
        (a, b)
        for a, b in pairs
        if np.isfinite(matrix[tasks.index(a), tasks.index(b)] + matrix[tasks.index(b), tasks.index(a)])
    ]
    if not pairs:
        return Finding(
            claim, "§4.3, Figure 3", "pairwise_sums", NOT_TESTABLE, "the own prompts scored 0: " + "; ".join(cells)
        )
    evidence = (
        f"{len(kept)} of {len(pairs)} binary pairs keep ≥ {KEEP:.0%} of both tasks' own scores (relative score "
        f"on a/b, mean over origins: {'; '.join(cells)})."
    )
    verdict = HELD if 2 * len(kept) > len(pairs) else PARTLY if kept else NOT_HELD
    return Finding(claim, "§4.3, Figure 3", "pairwise_sums", verdict, evidence)


def _cell(rows: list, target: str, method: str, shots: int) -> list[dict]:
    """The rows (one per origin) of ``method`` on ``target`` after ``shots`` examples."""
    return [r for r in rows if r["target"] == target and r["method"] == method and r["shots"] == shots]


def _scores(rows: list, target: str, method: str, shots: int) -> list[float]:
    return [r["score"] for r in _cell(rows, target, method, shots)]


def _mean(rows: list, target: str, method: str, shots: int) -> float:
    return mean_std(_scores(rows, target, method, shots))[0]


def _silent(rows: list, target: str, method: str, shots: int) -> bool:
    """Whether every answer of ``method`` on every origin matched no label (generation scoring): its score of 0
    says the prompt answers nothing valid, not how good a start it is, so it decides no comparison."""
    mine = _cell(rows, target, method, shots)
    return bool(mine) and all(r.get("n") and r.get("invalid") == r["n"] for r in mine)


def _invalid_note(rows: list, target: str, method: str, shots: int) -> str:
    mine = [r for r in _cell(rows, target, method, shots) if r.get("n")]
    share = sum(r.get("invalid", 0) for r in mine) / max(1, sum(r["n"] for r in mine))
    return f" ({share:.0%} invalid)" if share else ""


def _not_counted(cells: list[str]) -> str:
    return f" Not counted, no valid answer from either side on any origin: {', '.join(cells)}." if cells else ""


def _sum_method(rows: list) -> str:
    """The paper's sum is λ = 1 ("sum"); a profile without it has only tpv's λ searched on the target."""
    return "sum" if any(r["method"] == "sum" for r in rows) else "sum_search"


def _initialisation(data: dict) -> list[Finding]:
    rows = data["rows"]
    cells = sorted({(r["target"], r["shots"]) for r in rows}, key=lambda c: (c[0], c[1]))
    claim = "A sum of the source tasks' vectors initialises at par with or better than single-source SPoT."
    sum_method = _sum_method(rows)
    at_par, lines, silent = 0, [], []
    for target, shots in cells:
        spots = sorted({r["method"] for r in rows if r["target"] == target and r["method"].startswith("spot:")})
        ours = _scores(rows, target, sum_method, shots)
        if not spots or len(ours) < 2:
            continue
        best = max(spots, key=lambda m: _mean(rows, target, m, shots))
        if _silent(rows, target, sum_method, shots) and _silent(rows, target, best, shots):
            silent.append(f"{target} {shots} shots")
            continue
        theirs = _scores(rows, target, best, shots)
        worse = ttest(ours, theirs, n_comparisons=len(cells))
        ours_mean, theirs_mean = mean_std(ours)[0] * 100, mean_std(theirs)[0] * 100
        ok = ours_mean >= theirs_mean or not worse.significant
        at_par += ok
        lines.append(
            f"{target} {shots} shots: {sum_method} {ours_mean:.1f} vs {best[5:]} {theirs_mean:.1f}"
            + ("" if ok else " (significantly worse)")
        )
    found = []
    if not lines:
        why = "no sum or SPoT rows." if not silent else "no cell where the sum or SPoT answers validly."
        found.append(Finding(claim, "§4.3, Table 2", "initialisation", NOT_TESTABLE, why + _not_counted(silent)))
    else:
        evidence = (
            f"at par or better in {at_par} of {len(lines)} (target, shots) cells against the best single-source "
            f"SPoT: {'; '.join(lines)}." + _not_counted(silent)
        )
        found.append(Finding(claim, "§4.3, Table 2", "initialisation", _share(at_par, len(lines)), evidence))
    claim = "At 0 shots a sum of task prompt vectors is a better start than a random prompt."
    zero = [t for t, k in cells if k == 0 and len(_scores(rows, t, "random", 0)) >= 2]
    zero = [t for t in zero if len(_scores(rows, t, sum_method, 0)) >= 2]
    silent = [t for t in zero if _silent(rows, t, sum_method, 0) and _silent(rows, t, "random", 0)]
    zero = [t for t in zero if t not in silent]
    # Better = a higher mean that the t-test separates from random's: with 3 origins a mean a few points up on
    # mostly invalid answers is not a better start.
    significant = {
        t: ttest(_scores(rows, t, sum_method, 0), _scores(rows, t, "random", 0), n_comparisons=len(zero)).significant
        for t in zero
    }
    better = [t for t in zero if _mean(rows, t, sum_method, 0) > _mean(rows, t, "random", 0) and significant[t]]
    evidence = "; ".join(
        f"{t}: {sum_method} {_mean(rows, t, sum_method, 0) * 100:.1f}{_invalid_note(rows, t, sum_method, 0)} vs "
        f"random {_mean(rows, t, 'random', 0) * 100:.1f}{_invalid_note(rows, t, 'random', 0)}"
        + ("" if significant[t] else " (not significant)")
        for t in zero
    )
    found.append(
        Finding(
            claim,
            "§4.3, Table 2",
            "initialisation",
            _share(len(better), len(zero)) if zero else NOT_TESTABLE,
            (
                f"significantly higher mean for {len(better)} of {len(zero)} targets: {evidence}."
                if zero
                else "no 0-shot rows."
            )
            + _not_counted([f"{t} 0 shots" for t in silent]),
        )
    )
    return found


def _few_shot(data: dict) -> list[Finding]:
    rows = data["rows"]
    targets = sorted({r["target"] for r in rows})
    sum_method = _sum_method(rows)
    found = []
    claim = "For SciTail and IMDB the sum beats single-task SPoT initialisation at every shot count."
    showcase = [t for t in ("scitail", "imdb") if t in targets]
    if not showcase:
        found.append(Finding(claim, "§4.4, Figure 4", "few_shot", NOT_TESTABLE, "neither is a target of this run."))
    else:
        wins, lines = 0, []
        spots = {r["method"] for r in rows if r["method"].startswith("spot:")}
        cells = [(t, k) for t in showcase for k in sorted({r["shots"] for r in rows if r["target"] == t})]
        silent = [(t, k) for t, k in cells if all(_silent(rows, t, m, k) for m in [sum_method, *spots])]
        cells = [cell for cell in cells if cell not in silent]
        for target, shots in cells:
            ours = _mean(rows, target, sum_method, shots)
            best = max(_mean(rows, target, m, shots) for m in spots)
            wins += ours > best
            lines.append(f"{target} {shots}: {ours * 100:.1f} vs {best * 100:.1f}")
        evidence = (
            f"the sum's mean is above every single-task SPoT in {wins} of {len(cells)}: {'; '.join(lines)}."
            + _not_counted([f"{t} {k} shots" for t, k in silent])
        )
        verdict = _share(wins, len(cells)) if cells else NOT_TESTABLE
        found.append(Finding(claim, "§4.4, Figure 4", "few_shot", verdict, evidence))
    claim = "For SST-5, initialising from SST-2 alone is best."
    if "sst5" in targets and any(r["method"] == "spot:sst2" for r in rows):
        shot_counts = sorted({r["shots"] for r in rows if r["target"] == "sst5"})
        methods = sorted({r["method"] for r in rows if r["target"] == "sst5"})
        lines, wins = [], 0
        silent = [k for k in shot_counts if all(_silent(rows, "sst5", m, k) for m in methods)]
        shot_counts = [k for k in shot_counts if k not in silent]
        for shots in shot_counts:
            means = {m: _mean(rows, "sst5", m, shots) for m in methods}
            best = max(means, key=lambda m: means[m])
            wins += best == "spot:sst2"
            lines.append(
                f"{shots} shots: best {best} {means[best] * 100:.1f}, spot:sst2 {means['spot:sst2'] * 100:.1f}"
            )
        evidence = (
            f"SST-2's SPoT has the highest mean at {wins} of {len(shot_counts)} shot counts: {'; '.join(lines)}."
            + _not_counted([f"sst5 {k} shots" for k in silent])
        )
        verdict = _share(wins, len(shot_counts)) if shot_counts else NOT_TESTABLE
        found.append(Finding(claim, "§4.4, Figure 4", "few_shot", verdict, evidence))
    else:
        found.append(
            Finding(claim, "§4.4, Figure 4", "few_shot", NOT_TESTABLE, "SST-5 is not a target, or SST-2 no source.")
        )
    return found


CLAIMS_PER_STUDY = {"origin_independence": 1, "similarity": 3, "pairwise_sums": 1, "initialisation": 2, "few_shot": 2}


def findings(output_dir: str | Path, config) -> list[Finding]:
    """The findings of the run that ``config`` describes, from the study JSONs in ``output_dir``."""
    output_dir, fingerprint = Path(output_dir), config.fingerprint()
    loaded = {study: _load(output_dir, study, fingerprint) for study in CLAIMS_PER_STUDY}
    at_chance = set(config.source.at_chance)
    build = {
        "origin_independence": lambda d: [_origin_independence(d)],
        "similarity": _similarity,
        "pairwise_sums": lambda d: [_pairwise_sums(d, at_chance)],
        "initialisation": _initialisation,
        "few_shot": _few_shot,
    }
    found = []
    for study, data in loaded.items():
        if data is None:
            missing = "its JSON is missing or comes from a run with other settings"
            found += [Finding(f"(claims of study {study})", "", study, NOT_RUN, missing)] * CLAIMS_PER_STUDY[study]
            continue
        found += build[study](data)
    return found


def write_findings(output_dir: str | Path, config) -> list[Path]:
    """Write ``findings.md`` and ``findings.json`` into ``output_dir``; returns their paths."""
    if not set(config.studies) & set(CLAIMS_PER_STUDY):
        # A run of tpv's own studies only (the transfer study) answers its own claims, not the paper's.
        from tpv.experiments.studies.left_out import write_findings as write_transfer_findings

        return write_transfer_findings(output_dir, config)
    output_dir = Path(output_dir)
    found = findings(output_dir, config)
    body = [[f.claim, f.paper, f"[{f.study}]({f.study}.md)", f.evidence, f"**{f.verdict}**"] for f in found]
    lines = [
        "# Findings: the paper's claims, re-measured",
        "",
        f"Computed by `tpv.experiments.findings` from the study JSON files beside this page (profile "
        f"`{config.name}`, run folder key `{config.fingerprint()}`); every number below is in those files.",
        "",
        markdown_table(["Paper's claim", "Paper", "Study", "Here", "Verdict"], body),
        "",
        f"Rules: significant = two-sample Student's t-test over origins, p < 0.05 after Bonferroni over the "
        f"table's comparisons; a sum keeps a task when it scores ≥ {KEEP:.0%} of the task's own prompt (mean over "
        f"origins); held = every case, partly = some (for the pairwise sums: held = most pairs), not held = none; "
        f"not testable here = this run has no such task; not run = no results of this run for the study; a "
        f"comparison where neither side gives a valid answer (every generated answer matches no label, on every "
        f"origin) is not counted.",
        "",
    ]
    paths = [atomic_write_text(output_dir / "findings.md", "\n".join(lines))]
    payload = {
        "profile": config.name,
        "fingerprint": config.fingerprint(),
        "keep": KEEP,
        "findings": [asdict(f) for f in found],
    }
    paths.append(atomic_write_text(output_dir / "findings.json", json.dumps(payload, indent=1)))
    return paths
