"""The transfer study (issue 27): starts for a task nobody tuned a vector for, on tasks left out of the zoo.

Each target is taken out of the candidate vectors (the shipped zoo, or a zoo tuned in the run folder), and these
starts are compared on it:

- ``origin``: the random origin auto_init builds on (``make_origin``'s ``sample_vocab``, one per seed);
- ``zoo_origin``: the origin the zoo's vectors were tuned from;
- ``auto_init@n``: :func:`tpv.auto_init` with ``exclude=[target]`` on ``n`` validation examples, built on the
  seed's random origin (its plan's decision is recorded);
- ``family_sum``: the zoo origin + the λ=1 sum of the target's family in the zoo (the paper's initialisation);
- ``best_single``: the zoo origin + the one vector best on the target's validation examples.

Every start is scored at 0 shots on test; the profile's ``kshot_starts`` are also prompt-tuned on k examples (the
same k for every start of a seed), with validation every ``eval_every`` steps and the best checkpoint on it kept.
Part 2's factors are 0-shot tables on test. Intervals are 95 % Student-t intervals over seeds; a start built on
the zoo origin has one 0-shot score (no seed changes it), so its 0-shot comparisons carry the origins' spread
only. Everything is cached in the run folder's score store by target, start, k and seed.
"""

from __future__ import annotations

import json

from tpv.core.progress import progress_bar
from tpv.data import get_task
from tpv.experiments.result import StudyResult
from tpv.experiments.studies.left_out.factors import factors, in_template_of
from tpv.experiments.studies.left_out.plan import plan_units
from tpv.experiments.studies.left_out.report import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_TESTABLE,
    cell,
    factor_tables,
    findings_table,
    interval,
    kshot_tables,
    notes,
    plot,
    scale_note,
    steps_to_reach,
    transfer_findings,
    verdict,
    write_findings,
    zero_shot_table,
)
from tpv.experiments.studies.left_out.starts import (
    AUTO_INIT_PASSES,
    NAME,
    START_LABELS,
    TITLE,
    Zoo,
    auto_plan,
    auto_prompt,
    best_single,
    candidates,
    combination,
    family_members,
    k_shot,
    load_zoo,
    start,
    start_prompt,
    test_score,
    validation_fields,
)

__all__ = [
    "AUTO_INIT_PASSES",
    "HELD",
    "INCONCLUSIVE",
    "NAME",
    "NOT_HELD",
    "NOT_TESTABLE",
    "START_LABELS",
    "TITLE",
    "Zoo",
    "auto_plan",
    "best_single",
    "candidates",
    "cell",
    "combination",
    "family_members",
    "findings_table",
    "in_template_of",
    "interval",
    "k_shot",
    "load_zoo",
    "plan_units",
    "run",
    "run_shard",
    "scale_note",
    "start",
    "steps_to_reach",
    "test_score",
    "transfer_findings",
    "validation_fields",
    "verdict",
    "write_findings",
]


# ---- the study ----------------------------------------------------------------------------------------------


def run_shard(lab, index: int, count: int, progress: bool = True) -> dict:
    """Targets ``index``, ``index + count``, … (1-based) of the profile into the run folder's cache, no page:
    ``count`` processes share the machine, and :func:`run` afterwards finds every score cached."""
    zoo = load_zoo(lab)
    targets = lab.config.left_out.targets[index - 1 :: count]
    for target in progress_bar(targets, progress, f"transfer targets (shard {index}/{count})"):
        _target(lab, zoo, target, [])
    return {"targets": targets}


def run(lab, progress: bool = True) -> StudyResult:
    config = lab.config
    settings = config.left_out
    zoo = load_zoo(lab)
    rows: list[dict] = []
    summary: dict = {"zoo": zoo.kind, "at_chance": sorted(zoo.at_chance), "targets": {}}
    for target in progress_bar(settings.targets, progress, "transfer targets"):
        summary["targets"][target] = _target(lab, zoo, target, rows)
    figures = [plot(lab, target, summary["targets"][target]) for target in settings.targets if settings.shots]
    figures = [f for f in figures if f is not None]
    found = transfer_findings(summary, config)
    summary["findings"] = found
    sections = [zero_shot_table(summary, config), kshot_tables(summary, config), factor_tables(summary, config)]
    sections.append("## Findings\n\n" + findings_table(found))
    return StudyResult(NAME, TITLE, "\n\n".join(s for s in sections if s), rows, summary, figures, notes(config, zoo))


def _target(lab, zoo: Zoo, target: str, rows: list) -> dict:
    config, settings = lab.config, lab.config.left_out
    seeds = config.seeds
    found: dict = {"family": zoo.family.get(target, get_task(target).family), "zero_shot": {}, "auto_init": {}}
    members = family_members(zoo, target)
    found["family_members"] = members
    found["best_single"] = best_single(lab, zoo, target)

    def record(start_name, seed, score, **extra):
        rows.append({"target": target, "start": start_name, "shots": 0, "seed": seed, "score": score, **extra})

    zero = found["zero_shot"]
    zero["origin"] = [test_score(lab, target, f"origin@{s}", start_prompt(lab.origin(s), None)) for s in seeds]
    for s, v in zip(seeds, zero["origin"]):
        record("origin", s, v)
    for name in ("zoo_origin", "family_sum", "best_single"):
        made = start(lab, zoo, target, name, seeds[0])
        if made is None:
            continue
        origin, vector, key = made
        zero[name] = [test_score(lab, target, key, start_prompt(origin, vector))]
        record(name, None, zero[name][0], key=key)
    for n in settings.auto_validation:
        plans = [auto_plan(lab, zoo, target, n, s) for s in seeds]
        scores = [
            test_score(
                lab,
                target,
                f"auto_init{n}:{p['code']}@{s}" if p["chosen"] else f"origin@{s}",
                lambda p=p: auto_prompt(p),
            )
            for p, s in zip(plans, seeds)
        ]
        zero[f"auto_init@{n}"] = scores
        found["auto_init"][str(n)] = [p["decision"] for p in plans]
        # Each plan whole (its choosing and confirming examples, interval, cost), as auto_init reported it.
        found.setdefault("auto_init_plans", {})[str(n)] = [p["plan"] for p in plans]
        for s, v, p in zip(seeds, scores, plans):
            record(f"auto_init@{n}", s, v, decision=p["decision"], auto_init_seconds=p["seconds"])
    found["kshot"] = {str(k): _kshot_target(lab, zoo, target, k, rows) for k in settings.shots}
    found["factors"] = factors(lab, zoo, target, rows)
    return found


def _kshot_target(lab, zoo: Zoo, target: str, k: int, rows: list) -> dict:
    config, settings = lab.config, lab.config.left_out
    runs: dict[str, list[dict]] = {}
    for name in settings.kshot_starts:
        made = [k_shot(lab, zoo, target, name, k, s) for s in config.seeds]
        if all(r is not None for r in made):  # a start this target does not have (no family vector) is left out
            runs[name] = [r for r in made if r is not None]
    reference = [max(score for _, score in r["curve"]) for r in runs["origin"]]
    out = {}
    for name, found in runs.items():
        reached = [steps_to_reach(r["curve"], ref) for r, ref in zip(found, reference)]
        best = [max(score for _, score in r["curve"]) for r in found]
        out[name] = {
            "curves": [r["curve"] for r in found],
            "test": [r["test"] for r in found],
            "best_validation": best,
            "steps_to_origin_best": reached,
        }
        for seed, r, steps in zip(config.seeds, found, reached):
            rows.append(
                {
                    "target": target,
                    "start": name,
                    "shots": k,
                    "seed": seed,
                    "score": r["test"],
                    "best_validation": max(score for _, score in r["curve"]),
                    "steps_to_origin_best": steps,
                    "curve": json.dumps(r["curve"]),
                }
            )
    return out
