"""The findings table: each claim of the paper that the five studies test, a verdict and the numbers behind it.

Verdicts are computed by fixed rules from the studies' JSON files (whose ``rows`` are the CSV's), not written by
hand, so every sentence of ``findings.md`` can be checked against the files beside it and a rerun rewrites it
byte for byte. A study whose JSON is missing, or was written by a run with other settings (another run folder
key), gives "not testable here" with "not run" in its evidence; so does a claim about tasks this run lacks.

The rules (``RULES``, stated on the page; the interval arithmetic in :mod:`tpv.experiments.verdicts`): every
verdict is read from a 95 % confidence interval of a difference, paired over origins, and a stated margin
(``SCORE_MARGIN``, ``COSINE_MARGIN``, ``KEEP``); verdicts are held, not held, inconclusive (the interval spans
both the margin and zero) or not testable here. No verdict is read from raw means or from non-significance.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tpv.core._io import atomic_write_text
from tpv.data import get_task
from tpv.experiments.result import markdown_table
from tpv.experiments.stats import mean_std
from tpv.experiments.verdicts import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_TESTABLE,
    Interval,
    all_of,
    at_par_or_better,
    better,
    most_of,
    paired_interval,
)

# Margins: the smallest difference that matters, stated on the page and in findings.json.
SCORE_MARGIN = 0.05  # 5 points of the task's metric (×100)
COSINE_MARGIN = 0.05
KEEP = 0.9  # a sum keeps a task at ≥ 90 % of its own prompt's score: margin 0.10 on the relative score
NOT_RUN = "not run"  # kept for imports; a study without results gives NOT_TESTABLE with this in its evidence
PARTLY = "partly"  # deprecated: verdicts are HELD, NOT_HELD, INCONCLUSIVE or NOT_TESTABLE


@dataclass
class Finding:
    """One of the paper's claims, where the paper shows it, our verdict, the numbers that decide it, the margin
    and the confidence intervals the verdict was read from."""

    claim: str
    paper: str
    study: str
    verdict: str
    evidence: str
    margin: str = ""
    intervals: list = field(default_factory=list)


def _load(output_dir: Path, study: str, fingerprint: str) -> dict | None:
    path = output_dir / f"{study}.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    return payload if payload.get("fingerprint") == fingerprint else None


def _points(margin: float) -> str:
    return f"{margin * 100:g} points of the task's metric (×100)"


def _cells(intervals: list[Interval], verdicts: list[str], scale: float = 100, digits: int = 1) -> str:
    return "; ".join(f"{i.format(scale, digits)} {v}" for i, v in zip(intervals, verdicts))


def _origin_independence(data: dict) -> Finding:
    claim = "A task prompt vector applied to another origin keeps its task's score."
    at_chance = set(data["summary"].get("at_chance", []))
    rows = [r for r in data["rows"] if r["task"] not in at_chance]
    intervals, verdicts = [], []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        seeds = sorted({r["vector_seed"] for r in mine})
        original = [next(r["score"] for r in mine if r["vector_seed"] == s and r["kind"] == "original") for s in seeds]
        # Each vector's scores on the other origins averaged, paired with its own origin's: the test is per vector.
        mixed = [
            float(np.mean([r["score"] for r in mine if r["vector_seed"] == s and r["kind"] == "mixed"])) for s in seeds
        ]
        if len(seeds) < 2:
            continue
        interval = paired_interval(task, mixed, original)
        intervals.append(interval)
        verdicts.append(at_par_or_better(interval, SCORE_MARGIN))
    if not intervals:
        return Finding(claim, "Table 1", "origin_independence", NOT_TESTABLE, "every source task is at chance.")
    evidence = (
        f"Δ = mixed − original ×100 per vector, paired over its {intervals[0].n} origins (each vector's scores on "
        f"the other origins averaged), 95 % CI: {_cells(intervals, verdicts)}"
        + (f"; left out as at chance: {', '.join(sorted(at_chance))}" if at_chance else "")
        + "."
    )
    return Finding(
        claim,
        "Table 1",
        "origin_independence",
        all_of(verdicts),
        evidence,
        _points(SCORE_MARGIN),
        [i.to_dict() for i in intervals],
    )


def _family_pairs(config: dict, tasks: list[str]) -> tuple[list, list]:
    family_of = {s: f["name"] for f in config["transfer"]["families"] for s in f["sources"] if s in tasks}
    pairs = list(itertools.combinations([t for t in tasks if t in family_of], 2))
    same = [p for p in pairs if family_of[p[0]] == family_of[p[1]]]
    return same, [p for p in pairs if family_of[p[0]] != family_of[p[1]]]


def _cosines(rows: list, kind: str) -> dict:
    """``{origin pair: {task pair: mean cosine}}``, both unordered: task a from origin i against b from j."""
    found: dict = {}
    for r in rows:
        if r["kind"] == kind:
            origins = tuple(sorted((r["origin_a"], r["origin_b"])))
            tasks = tuple(sorted((r["task_a"], r["task_b"])))
            found.setdefault(origins, {}).setdefault(tasks, []).append(r["cosine"])
    return {o: {t: float(np.mean(v)) for t, v in by_task.items()} for o, by_task in found.items()}


SHARED_ORIGINS = (
    " The origin pairs share origins (three origins make three pairs), so these intervals are narrower than "
    "independent replicates would give."
)
BY_CONSTRUCTION = (
    " Close to guaranteed by construction: a prompt is its origin plus its vector, and every origin's mean-pooled "
    "rows are an average of vocabulary embeddings, near the vocabulary's mean embedding, so two prompts share that "
    "component whatever their tasks; the vectors subtract it out."
)


def _similarity(data: dict) -> list[Finding]:
    vectors, prompts = _cosines(data["rows"], "task_prompt_vectors"), _cosines(data["rows"], "task_prompts")
    origin_pairs = sorted(vectors)
    tasks = data["summary"]["task_prompt_vectors"]["tasks"]
    margin = f"{COSINE_MARGIN:g} cosine"

    def over_pairs(table: dict, pairs: list) -> list[float]:
        return [float(np.mean([table[o][tuple(sorted(p))] for p in pairs])) for o in origin_pairs]

    found = []
    claim = "Vectors of tasks from the same problem family are more similar than vectors of unrelated tasks."
    same, cross = _family_pairs(data["config"], tasks)
    if not same or not cross or len(origin_pairs) < 2:
        found.append(Finding(claim, "§4.2, Figure 2", "similarity", NOT_TESTABLE, "no two families of sources."))
    else:
        interval = paired_interval("same − cross family", over_pairs(vectors, same), over_pairs(vectors, cross))
        verdict = better(interval, COSINE_MARGIN)
        evidence = (
            f"mean vector cosine of the {len(same)} same-family pairs minus that of the {len(cross)} cross-family "
            f"pairs, paired over {len(origin_pairs)} origin pairs, 95 % CI: {interval.format(1, 3)}." + SHARED_ORIGINS
        )
        found.append(Finding(claim, "§4.2, Figure 2", "similarity", verdict, evidence, margin, [interval.to_dict()]))
    claim = "Task prompt vectors have lower cosine similarities than task prompts."
    every = [(a, b) for i, a in enumerate(tasks) for b in tasks[i:]]
    if len(origin_pairs) < 2:
        found.append(Finding(claim, "§4.2, Figure 2(a) vs 2(b)", "similarity", NOT_TESTABLE, "one origin pair."))
    else:
        interval = paired_interval("prompt − vector", over_pairs(prompts, every), over_pairs(vectors, every))
        evidence = (
            f"mean cosine over all {len(every)} task pairs (diagonal included), prompts minus vectors, paired over "
            f"{len(origin_pairs)} origin pairs, 95 % CI: {interval.format(1, 3)}." + BY_CONSTRUCTION + SHARED_ORIGINS
        )
        found.append(
            Finding(
                claim,
                "§4.2, Figure 2(a) vs 2(b)",
                "similarity",
                better(interval, COSINE_MARGIN),
                evidence,
                margin,
                [interval.to_dict()],
            )
        )
    claim = "QNLI–TREC is high among prompt cosines and low among vector cosines."
    if "qnli" in tasks and "trec" in tasks and len(origin_pairs) >= 2:
        others = [p for p in itertools.combinations(tasks, 2) if set(p) != {"qnli", "trec"}]

        def against_median(table: dict) -> tuple[list[float], list[float]]:
            pair = [table[o][("qnli", "trec")] for o in origin_pairs]
            median = [float(np.median([table[o][tuple(sorted(p))] for p in others])) for o in origin_pairs]
            return pair, median

        p_pair, p_median = against_median(prompts)
        v_pair, v_median = against_median(vectors)
        high = paired_interval("prompts: QNLI–TREC − median", p_pair, p_median)
        low = paired_interval("vectors: median − QNLI–TREC", v_median, v_pair)
        verdicts = [better(high, COSINE_MARGIN), better(low, COSINE_MARGIN)]
        evidence = (
            f"QNLI–TREC against the median of the other cross-task pairs, paired over {len(origin_pairs)} origin "
            f"pairs, 95 % CI: {_cells([high, low], verdicts, 1, 3)}." + SHARED_ORIGINS
        )
        found.append(
            Finding(
                claim,
                "§4.2, Figure 2",
                "similarity",
                all_of(verdicts),
                evidence,
                margin,
                [high.to_dict(), low.to_dict()],
            )
        )
    else:
        found.append(
            Finding(
                claim, "§4.2, Figure 2", "similarity", NOT_TESTABLE, "QNLI or TREC is not a source task of this run."
            )
        )
    return found


def _pairwise_sums(data: dict, at_chance: set) -> Finding:
    claim = "The sum of two binary tasks' vectors keeps both tasks' single-task performance for most pairs."
    tasks = data["summary"]["tasks"]
    binary = [t for t in tasks if get_task(t).num_labels == 2 and t not in at_chance]
    pairs = list(itertools.combinations(binary, 2))
    margin = f"{1 - KEEP:.2f} of the own prompt's score (keeps ≥ {KEEP:.0%})"
    if not pairs:
        return Finding(claim, "§4.3, Figure 3", "pairwise_sums", NOT_TESTABLE, "fewer than two binary sources.")
    intervals, verdicts, skipped = [], [], []
    for a, b in pairs:
        mine = [r for r in data["rows"] if set(r["pair"].split("+")) == {a, b}]
        relative = {t: [r["relative"] for r in sorted(mine, key=lambda r: r["seed"]) if r["task"] == t] for t in (a, b)}
        # nan: a task's own prompt scored 0 on an origin, so there is no performance to keep.
        if any(len(v) < 2 or not np.all(np.isfinite(v)) for v in relative.values()):
            skipped.append(f"{a}+{b}")
            continue
        cells = [paired_interval(f"{a}+{b} on {t}", relative[t], [1.0] * len(relative[t])) for t in (a, b)]
        intervals += cells
        verdicts.append(all_of([at_par_or_better(c, 1 - KEEP) for c in cells]))
    if not verdicts:
        return Finding(
            claim, "§4.3, Figure 3", "pairwise_sums", NOT_TESTABLE, "the own prompts scored 0: " + ", ".join(skipped)
        )
    cell_verdicts = [at_par_or_better(c, 1 - KEEP) for c in intervals]
    evidence = (
        f"relative score − 1 (sum's score over the task's own prompt's, per origin), 95 % CI over origins: "
        f"{_cells(intervals, cell_verdicts, 1, 2)}; {verdicts.count(HELD)} of {len(verdicts)} pairs keep both tasks"
        + (f"; not testable (an own prompt scored 0): {', '.join(skipped)}" if skipped else "")
        + "."
    )
    return Finding(
        claim, "§4.3, Figure 3", "pairwise_sums", most_of(verdicts), evidence, margin, [i.to_dict() for i in intervals]
    )


def _cell(rows: list, target: str, method: str, shots: int) -> list[dict]:
    """The rows (one per origin) of ``method`` on ``target`` after ``shots`` examples."""
    return [r for r in rows if r["target"] == target and r["method"] == method and r["shots"] == shots]


def _scores(rows: list, target: str, method: str, shots: int) -> list[float]:
    return [r["score"] for r in sorted(_cell(rows, target, method, shots), key=lambda r: r["seed"])]


def _mean(rows: list, target: str, method: str, shots: int) -> float:
    return mean_std(_scores(rows, target, method, shots))[0]


def _paired(rows: list, target: str, ours: str, theirs: str, shots: int, label: str) -> Interval:
    """``ours − theirs`` on ``target``, paired by origin (both start from the same origin and see the same shots)."""
    mine = {r["seed"]: r["score"] for r in _cell(rows, target, ours, shots)}
    other = {r["seed"]: r["score"] for r in _cell(rows, target, theirs, shots)}
    seeds = sorted(set(mine) & set(other))
    return paired_interval(label, [mine[s] for s in seeds], [other[s] for s in seeds])


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


def _best_spot(rows: list, target: str, shots: int) -> str | None:
    spots = sorted({r["method"] for r in rows if r["target"] == target and r["method"].startswith("spot:")})
    # The comparator is the best SPoT by mean: the hardest one, so a held verdict holds against every SPoT.
    return max(spots, key=lambda m: _mean(rows, target, m, shots)) if spots else None


def _initialisation(data: dict) -> list[Finding]:
    rows = data["rows"]
    cells = sorted({(r["target"], r["shots"]) for r in rows}, key=lambda c: (c[0], c[1]))
    claim = "A sum of the source tasks' vectors initialises at par with or better than single-source SPoT."
    sum_method = _sum_method(rows)
    intervals, verdicts, silent = [], [], []
    for target, shots in cells:
        best = _best_spot(rows, target, shots)
        if best is None or len(_scores(rows, target, sum_method, shots)) < 2:
            continue
        if _silent(rows, target, sum_method, shots) and _silent(rows, target, best, shots):
            silent.append(f"{target} {shots} shots")
            continue
        interval = _paired(rows, target, sum_method, best, shots, f"{target} {shots} shots: {sum_method} − {best[5:]}")
        intervals.append(interval)
        verdicts.append(at_par_or_better(interval, SCORE_MARGIN))
    found = []
    if not intervals:
        why = "no sum or SPoT rows." if not silent else "no cell where the sum or SPoT answers validly."
        found.append(Finding(claim, "§4.3, Table 2", "initialisation", NOT_TESTABLE, why + _not_counted(silent)))
    else:
        evidence = (
            f"Δ ×100 against the best single-source SPoT (by mean), paired over origins, 95 % CI: "
            f"{_cells(intervals, verdicts)}." + _not_counted(silent)
        )
        found.append(
            Finding(
                claim,
                "§4.3, Table 2",
                "initialisation",
                all_of(verdicts),
                evidence,
                _points(SCORE_MARGIN),
                [i.to_dict() for i in intervals],
            )
        )
    claim = "At 0 shots a sum of task prompt vectors is a better start than a random prompt."
    zero = [t for t, k in cells if k == 0 and len(_scores(rows, t, "random", 0)) >= 2]
    zero = [t for t in zero if len(_scores(rows, t, sum_method, 0)) >= 2]
    silent = [t for t in zero if _silent(rows, t, sum_method, 0) and _silent(rows, t, "random", 0)]
    zero = [t for t in zero if t not in silent]
    intervals = [_paired(rows, t, sum_method, "random", 0, f"{t}: {sum_method} − random") for t in zero]
    verdicts = [better(i, SCORE_MARGIN) for i in intervals]
    invalid = "; ".join(
        f"{t} {sum_method}{_invalid_note(rows, t, sum_method, 0) or ' (0% invalid)'}, random"
        f"{_invalid_note(rows, t, 'random', 0) or ' (0% invalid)'}"
        for t in zero
    )
    evidence = (
        f"Δ ×100 paired over origins, 95 % CI: {_cells(intervals, verdicts)} (invalid answers: {invalid})."
        if zero
        else "no 0-shot rows."
    ) + _not_counted([f"{t} 0 shots" for t in silent])
    found.append(
        Finding(
            claim,
            "§4.3, Table 2",
            "initialisation",
            all_of(verdicts) if zero else NOT_TESTABLE,
            evidence,
            _points(SCORE_MARGIN),
            [i.to_dict() for i in intervals],
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
        spots = {r["method"] for r in rows if r["method"].startswith("spot:")}
        cells = [(t, k) for t in showcase for k in sorted({r["shots"] for r in rows if r["target"] == t})]
        silent = [(t, k) for t, k in cells if all(_silent(rows, t, m, k) for m in [sum_method, *spots])]
        cells = [cell for cell in cells if cell not in silent]
        intervals = []
        for target, shots in cells:
            best = _best_spot(rows, target, shots)
            if best is not None:
                label = f"{target} {shots}: sum − {best[5:]}"
                intervals.append(_paired(rows, target, sum_method, best, shots, label))
        verdicts = [better(i, SCORE_MARGIN) for i in intervals]
        evidence = (
            f"Δ ×100 against the best single-task SPoT (by mean), paired over origins, 95 % CI: "
            f"{_cells(intervals, verdicts)}." + _not_counted([f"{t} {k} shots" for t, k in silent])
        )
        verdict = all_of(verdicts) if cells else NOT_TESTABLE
        found.append(
            Finding(
                claim,
                "§4.4, Figure 4",
                "few_shot",
                verdict,
                evidence,
                _points(SCORE_MARGIN),
                [i.to_dict() for i in intervals],
            )
        )
    claim = "For SST-5, initialising from SST-2 alone is best."
    if "sst5" in targets and any(r["method"] == "spot:sst2" for r in rows):
        shot_counts = sorted({r["shots"] for r in rows if r["target"] == "sst5"})
        methods = sorted({r["method"] for r in rows if r["target"] == "sst5"} - {"spot:sst2"})
        silent = [k for k in shot_counts if all(_silent(rows, "sst5", m, k) for m in [*methods, "spot:sst2"])]
        shot_counts = [k for k in shot_counts if k not in silent]
        intervals, per_shot = [], []
        for shots in shot_counts:
            mine = [_paired(rows, "sst5", "spot:sst2", m, shots, f"{shots} shots: sst2 − {m}") for m in methods]
            intervals += mine
            per_shot.append(all_of([better(i, SCORE_MARGIN) for i in mine]))
        evidence = (
            f"SPoT from SST-2 minus every other start, ×100, paired over origins, 95 % CI: "
            f"{_cells(intervals, [better(i, SCORE_MARGIN) for i in intervals])}; best at a shot count = above every "
            "other start." + _not_counted([f"sst5 {k} shots" for k in silent])
        )
        verdict = all_of(per_shot) if shot_counts else NOT_TESTABLE
        found.append(
            Finding(
                claim,
                "§4.4, Figure 4",
                "few_shot",
                verdict,
                evidence,
                _points(SCORE_MARGIN),
                [i.to_dict() for i in intervals],
            )
        )
    else:
        found.append(
            Finding(claim, "§4.4, Figure 4", "few_shot", NOT_TESTABLE, "SST-5 is not a target, or SST-2 no source.")
        )
    return found


RULES = (
    "Rules: every verdict comes from a 95 % confidence interval (Student's t over origins: paired where both sides "
    "come from the same origin, as every comparison here) and the margin in its row. A claim that one thing is at "
    "par with or keeps another is held when the interval of the difference lies above −margin, not held when it "
    "lies below zero and reaches past −margin, and inconclusive when it spans both −margin and zero; a claim that "
    "one thing is better is held when the interval lies above zero, not held when it lies below +margin, and "
    "inconclusive when it spans both. A claim over several cells is held when every cell is held and not held "
    "when any cell is (for the pairwise sums: held when most pairs keep both tasks, not held when they cannot); "
    "else inconclusive. Not significant is never read as the same. Not testable here = this run has no such task "
    "or no results for the study (not run); a comparison where neither side gives a valid answer (every "
    "generated answer matches no label, on every origin) is not counted. With 3 origins the intervals are wide: "
    "inconclusive is the expected verdict for differences of a few points."
)

CLAIMS_PER_STUDY = {"origin_independence": 1, "similarity": 3, "pairwise_sums": 1, "initialisation": 2, "few_shot": 2}


def findings(output_dir: str | Path, config, fingerprint: str | None = None) -> list[Finding]:
    """The findings of the run that ``config`` describes, from the study JSONs in ``output_dir``; ``fingerprint``
    names another run folder key to read (study files written before the settings changed; see
    ``scripts/refresh_findings.py``)."""
    output_dir, fingerprint = Path(output_dir), fingerprint or config.fingerprint()
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
            missing = f"{NOT_RUN}: its JSON is missing or comes from a run with other settings"
            found += [Finding(f"(claims of study {study})", "", study, NOT_TESTABLE, missing)] * CLAIMS_PER_STUDY[study]
            continue
        found += build[study](data)
    return found


def write_findings(
    output_dir: str | Path, config, *, fingerprint: str | None = None, notes: tuple[str, ...] = ()
) -> list[Path]:
    """Write ``findings.md`` and ``findings.json`` into ``output_dir``; returns their paths. ``fingerprint`` reads
    the study files of another run folder key; ``notes`` go under the page's first paragraph (e.g. which results
    predate a protocol change)."""
    if not set(config.studies) & set(CLAIMS_PER_STUDY):
        # A run of tpv's own studies only (the transfer study) answers its own claims, not the paper's.
        from tpv.experiments.studies.left_out import write_findings as write_transfer_findings

        return write_transfer_findings(output_dir, config)
    output_dir = Path(output_dir)
    fingerprint = fingerprint or config.fingerprint()
    found = findings(output_dir, config, fingerprint)
    body = [
        [f.claim, f.paper, f"[{f.study}]({f.study}.md)", f.evidence, f.margin or "—", f"**{f.verdict}**"] for f in found
    ]
    lines = [
        "# Findings: the paper's claims, re-measured",
        "",
        f"Computed by `tpv.experiments.findings` from the study JSON files beside this page (profile "
        f"`{config.name}`, run folder key `{fingerprint}`); every number below is in those files.",
        "",
        *[line for note in notes for line in (note, "")],
        markdown_table(["Paper's claim", "Paper", "Study", "Here", "Margin", "Verdict"], body),
        "",
        RULES,
        "",
    ]
    paths = [atomic_write_text(output_dir / "findings.md", "\n".join(lines))]
    payload = {
        "profile": config.name,
        "fingerprint": fingerprint,
        "notes": list(notes),
        "keep": KEEP,
        "margins": {"score": SCORE_MARGIN, "cosine": COSINE_MARGIN, "relative": round(1 - KEEP, 10)},
        "verdicts": [HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE],
        "findings": [asdict(f) for f in found],
    }
    paths.append(atomic_write_text(output_dir / "findings.json", json.dumps(payload, indent=1)))
    return paths
