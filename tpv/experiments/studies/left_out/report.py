"""The transfer study's pages and findings: intervals over seeds, the Markdown tables, the validation
curves (PNG) and the held / not held / inconclusive verdicts, all computed from the study's summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tpv.data import get_task
from tpv.experiments.result import AT_CHANCE_MARK, markdown_table
from tpv.experiments.studies.left_out.starts import NAME, START_LABELS, Zoo, auto_init_code

CONFIDENCE = 0.95
HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE = "held", "not held", "inconclusive", "not testable here"


# ---- statistics ---------------------------------------------------------------------------------------------


def interval(values) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval over seeds (NaN bounds for a single value: no spread to estimate)."""
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    if values.min() == values.max():
        # No spread: the t-formula would give an interval a rounding error wide instead of none.
        return mean, mean, mean
    from scipy import stats

    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def cell(values, scale: float = 100, digits: int = 1) -> str:
    mean, low, high = interval(values)
    if math.isnan(mean):
        return "—"
    if math.isnan(low) or low == high:
        # One value, or the same value on every seed (a start built on the zoo origin): no spread to show.
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


def verdict(differences) -> str:
    """held when the interval of the differences is above 0, not held when below, else inconclusive."""
    _, low, high = interval(differences)
    if math.isnan(low):
        return INCONCLUSIVE
    return HELD if low > 0 else NOT_HELD if high < 0 else INCONCLUSIVE


def steps_to_reach(curve, reference: float) -> int | None:
    """The first validation step at which ``curve`` reaches ``reference`` (None: never within the budget)."""
    return next((step for step, score in curve if score >= reference), None)


# ---- pages --------------------------------------------------------------------------------------------------


def zero_shot_table(summary: dict, config) -> str:
    auto = [f"auto_init@{n}" for n in config.left_out.auto_validation]
    header = ["Target (family)", "Random origin", "Zoo origin", "Family sum", "Best single", *auto]
    body = []
    for target, found in summary["targets"].items():
        zero = found["zero_shot"]
        cells = [
            cell(zero[name]) if name in zero else "n/a"
            for name in ("origin", "zoo_origin", "family_sum", "best_single")
        ]
        decisions = []
        for n in config.left_out.auto_validation:
            chosen = found["auto_init"][str(n)]
            kept = sum(d == "kept the origin" for d in chosen)
            decisions.append(f"{cell(zero[f'auto_init@{n}'])} (kept origin {kept}/{len(chosen)})")
        at_chance = summary["at_chance"]
        members = ", ".join(_marked(m, at_chance) for m in found["family_members"])
        family = f"{cells[2]} ({members})" if members else cells[2]
        best = f"{cells[3]} ({_marked(found['best_single'], at_chance)})"
        body.append([f"{target} ({found['family']})", *cells[:2], family, best, *decisions])
    return (
        "## 0 shots (test)\n\n"
        + markdown_table(header, body)
        + "\n\nScores ×100 with 95 % intervals over seeds where the start changes with the seed (the random origin "
        "and auto_init, which builds on it); the zoo-origin starts are one score each. n/a: the zoo holds no other "
        "vector of the target's family. Best single: the candidate best on the target's first "
        f"{config.left_out.selection_examples} validation examples, not confirmed on others (auto_init's choice is "
        "the confirmed one). auto_init's decision per seed is in the JSON (`auto_init`). "
        f"{AT_CHANCE_MARK}: a zoo vector whose prompt stayed at chance on validation when the zoo was built."
    )


def _marked(task: str, at_chance) -> str:
    return f"{task}{AT_CHANCE_MARK}" if task in at_chance else task


def kshot_tables(summary: dict, config) -> str:
    settings = config.left_out
    if not settings.shots:
        return ""
    parts = []
    for k in settings.shots:
        header = [
            "Target",
            "Start",
            "0-shot validation",
            "Best validation",
            "Steps to the origin run's best",
            "Test after tuning",
        ]
        body = []
        for target, found in summary["targets"].items():
            for name, run_ in found["kshot"][str(k)].items():
                steps = run_["steps_to_origin_best"]
                budget = settings.steps + settings.eval_every  # never reached: counted one evaluation past the end
                counted = [s if s is not None else budget for s in steps]
                reached = sum(s is not None for s in steps)
                same = name != "origin" and _origins_runs(run_, found["kshot"][str(k)]["origin"])
                body.append(
                    [
                        target,
                        START_LABELS[name] + (" (kept the origin on every seed: the origin's runs)" if same else ""),
                        cell([c[0][1] for c in run_["curves"]]),
                        cell(run_["best_validation"]),
                        f"{cell(counted, scale=1, digits=0)} (reached {reached}/{len(steps)})",
                        cell(run_["test"]),
                    ]
                )
        parts.append(
            f"## {k}-shot prompt tuning\n\n"
            + markdown_table(header, body)
            + f"\n\n{settings.steps} steps, validation on {settings.eval_examples} examples every "
            f"{settings.eval_every} steps (step 0 = the start), the best of the checkpoints at steps "
            f"{settings.eval_every}, {2 * settings.eval_every}, …, {settings.steps} on it scored on test (the start "
            f"itself is on the curve but never the kept checkpoint); the same {k} "
            "examples for every start of a seed. Steps to the origin run's best: the first evaluation at which the "
            "start's validation score reaches the best the random-origin run of the same seed reached; a run that "
            f"never does is counted as {settings.steps + settings.eval_every} (a lower bound), and the cell says how "
            "many did."
        )
    return "\n\n".join(parts)


def factor_tables(summary: dict, config) -> str:
    settings = config.left_out
    parts = ["## What decides transfer (0 shots, test)"]
    targets = summary["targets"]
    if "origin" in settings.factors:
        body = [
            [
                t,
                f["factors"]["on"],
                cell([f["factors"]["origin"]["zoo"]]),
                cell(f["factors"]["origin"]["fresh"]),
                cell(f["zero_shot"]["origin"]),
            ]
            for t, f in targets.items()
        ]
        parts.append(
            "**Origin the vectors are applied to** (zoo origin vs a fresh random origin per seed)\n\n"
            + markdown_table(["Target", "Vectors", "On the zoo origin", "On fresh origins", "Fresh origin alone"], body)
        )
    if "quality" in settings.factors:
        body = []
        for t, f in targets.items():
            quality = f["factors"].get("quality")
            if quality:
                body.append(
                    [
                        t,
                        *(
                            f"{q['source']}: {q['test'] * 100:.1f}" if (q := quality.get(g)) else "—"
                            for g in ("learned", "at chance")
                        ),
                        cell(f["zero_shot"]["zoo_origin"]),
                    ]
                )
        parts.append(
            "**Vector quality** (the best learned and the best at-chance vector on validation, scored on test)\n\n"
            + (
                markdown_table(["Target", "Learned", "At chance", "Zoo origin"], body)
                if body
                else "Not measured: the candidate vectors carry no at-chance judgement (a zoo tuned in the run folder)."
            )
            + "\n\nLonger budgets of the same vectors: not measured (the zoo holds one budget per task)."
        )
    if "length" in settings.factors:
        parts.append(
            "**Prompt length 20 vs 50**: not measured: the zoo holds vectors of one length only "
            f"({config.prompt.num_virtual_tokens} virtual tokens); a zoo of 50-token vectors is needed."
        )
    if "template" in settings.factors:
        body = []
        for t, f in targets.items():
            found = f["factors"]["template"]
            if "skipped" in found:
                body.append([t, found["source"], "n/a", "n/a", "n/a", "n/a"])
                continue
            cells = [
                found[tag][side] * 100
                for tag in ("zoo_origin", f"single:{found['source']}")
                for side in ("target_template", "source_template")
            ]
            body.append([t, found["source"], *(f"{c:.1f}" for c in cells)])
        parts.append(
            "**Target's template vs the source's template** (the best single source; its template with the "
            "target's fields in order and the target's label words; zoo origin)\n\n"
            + markdown_table(
                [
                    "Target",
                    "Source",
                    "Zoo origin, target's template",
                    "Zoo origin, source's template",
                    "Origin + source vector, target's template",
                    "Origin + source vector, source's template",
                ],
                body,
            )
            + "\n\nn/a: the two tasks have different numbers of input fields."
        )
    if "scale" in settings.factors:
        scales = [f"{x:g}" for x in settings.scales]
        body = [
            [t, f["factors"]["on"], *(f"{f['factors']['scale'][x] * 100:.1f}" for x in scales)]
            for t, f in targets.items()
        ]
        parts.append(
            "**λ** (on the zoo origin)\n\n" + markdown_table(["Target", "Vectors", *(f"λ = {x}" for x in scales)], body)
        )
    if "merge" in settings.factors:
        body = [
            [t, *(f"{f['factors']['merge'][m] * 100:.1f}" for m in settings.merges)]
            for t, f in targets.items()
            if "merge" in f["factors"]
        ]
        parts.append(
            "**Combination of the family's vectors** (λ = 1, zoo origin; targets with two or more family "
            "vectors in the zoo)\n\n"
            + (
                markdown_table(["Target", *settings.merges], body)
                if body
                else "No target has two or more family vectors in the zoo."
            )
        )
    parts.append(
        "Each factor is measured at 0 shots only (k-shot runs of every factor level are cut for time); "
        "the zoo-origin cells are one score each, the fresh-origin ones have intervals over seeds."
    )
    return "\n\n".join(parts)


def notes(config, zoo: Zoo) -> list[str]:
    metric_note = ", ".join(sorted({f"{t}: {get_task(t).metric}" for t in config.left_out.targets}))
    return [
        f"Candidates: {zoo.kind}; each target is excluded from them (auto_init gets `exclude=[target]`). "
        f"Seeds {config.seeds}; scoring by {config.protocol.scoring[0]}; metrics {metric_note}.",
        f"auto_init's code is keyed by its source's hash (`{auto_init_code()}`): a rewritten auto_init recomputes "
        "its plans.",
    ]


def plot(lab, target: str, found: dict):
    from tpv.experiments.plots import new_figure, save_figure

    figure = new_figure(5.5, 3.8)
    axes = figure.add_subplot()
    for k, runs in found["kshot"].items():
        for name, run_ in runs.items():
            steps = [s for s, _ in run_["curves"][0]]
            if any([s for s, _ in c] != steps for c in run_["curves"]):
                continue
            values = np.asarray([[v for _, v in c] for c in run_["curves"]]) * 100
            axes.plot(steps, values.mean(axis=0), marker="o", label=f"{name} (k={k})")
    axes.set_xlabel("training step")
    axes.set_ylabel(f"validation {get_task(target).metric} ×100 (mean over seeds)")
    axes.set_title(f"{target}: validation curves by start")
    axes.legend(fontsize=7)
    return save_figure(figure, lab.output_dir / f"transfer_curves_{target}.png")


def scale_note(config) -> str:
    """The header sentence on the run's scale (``tpv.experiments.result.scale_note`` for this study)."""
    data, prompt, settings = config.data, config.prompt, config.left_out
    return (
        f"Scale of this run: test subsets of {data.test_examples} examples per task, at most "
        f"{data.train_examples} training and {data.validation_examples} validation examples; "
        f"{prompt.num_virtual_tokens} virtual tokens, batch {prompt.batch_size}, learning rate "
        f"{prompt.learning_rate:g}; targets {', '.join(settings.targets)}; k-shot runs of {settings.steps} steps "
        f"at k in {settings.shots} for starts {', '.join(settings.kshot_starts)}; auto_init at "
        f"{settings.auto_validation} validation examples."
    )


# ---- findings -----------------------------------------------------------------------------------------------


def transfer_findings(summary: dict, config) -> list[dict]:
    """One row per claim and target: the interval of (start − random origin) over seeds and its verdict."""
    found = []
    for target, data in summary["targets"].items():
        zero = data["zero_shot"]
        origin = zero["origin"]
        for name in ("family_sum", "best_single"):
            if name in zero:
                diff = [zero[name][0] - o for o in origin]
                found.append(_finding(f"{START_LABELS[name]} beats the random origin at 0 shots", target, diff))
        for n in config.left_out.auto_validation:
            diff = [a - o for a, o in zip(zero[f"auto_init@{n}"], origin)]
            found.append(_not_below(f"auto_init@{n} is not significantly below the origin (0 shots)", target, diff))
        for k, runs in data["kshot"].items():
            for name, run_ in runs.items():
                if name == "origin":
                    continue
                if _origins_runs(run_, runs["origin"]):
                    # auto_init kept the origin on every seed: its runs are the origin's, nothing to compare.
                    found.append(_same_runs(f"{START_LABELS[name]} beats the origin after {k}-shot tuning", target))
                    continue
                diff = [a - b for a, b in zip(run_["test"], runs["origin"]["test"])]
                found.append(
                    _finding(f"{START_LABELS[name]} beats the origin after {k}-shot tuning (test)", target, diff)
                )
                budget = config.left_out.steps + config.left_out.eval_every
                own = [steps_to_reach(c, max(v for _, v in c)) for c in runs["origin"]["curves"]]
                mine = [s if s is not None else budget for s in run_["steps_to_origin_best"]]
                fewer = [o - m for o, m in zip(own, mine)]
                found.append(
                    _finding(
                        f"{START_LABELS[name]} reaches the origin run's best validation in fewer steps ({k} shots)",
                        target,
                        fewer,
                        scale=1,
                    )
                )
    return (
        found
        + _average_target(summary, config)
        + _factor_findings(summary, config)
        + _auto_init_acceptance(found, summary, config)
    )


def _average_target(summary: dict, config) -> list[dict]:
    # The question behind the study, for a task nobody tuned for: over the targets (each target's mean difference
    # over seeds is one value, in its own metric), does a vector start beat the random origin?
    targets = summary["targets"].values()
    rows = []
    for name in ("family_sum", "best_single"):
        means = [
            float(np.mean([data["zero_shot"][name][0] - o for o in data["zero_shot"]["origin"]]))
            for data in targets
            if name in data["zero_shot"]
        ]
        if means:
            rows.append(_finding(f"{START_LABELS[name]} beats the random origin at 0 shots", _targets(means), means))
    for k in config.left_out.shots:
        for name in config.left_out.kshot_starts:
            if name == "origin":
                continue
            means = [
                float(np.mean([a - o for a, o in zip(runs[name]["test"], runs["origin"]["test"])]))
                for data in targets
                if name in (runs := data["kshot"].get(str(k), {}))
            ]
            if means:
                claim = f"{START_LABELS[name]} beats the origin after {k}-shot tuning (test)"
                rows.append(_finding(claim, _targets(means), means))
    return rows


def _factor_findings(summary: dict, config) -> list[dict]:
    # Part 2's choices (the defaults follow them), over the average target: a zoo-origin score is one value per
    # target and level, so each level's difference is one value per target and Student's t runs over the targets.
    factors = [data.get("factors", {}) for data in summary["targets"].values()]
    rows = []

    def add(claim: str, differences: list) -> None:
        if differences:
            rows.append(_finding(claim, _targets(differences), differences))

    scales = [f"{x:g}" for x in config.left_out.scales]
    if "1" in scales:
        for x in (x for x in scales if x != "1"):
            add(
                f"λ = {x} beats λ = 1 (the target's family sum, else its best single source; zoo origin, 0 shots)",
                [f["scale"][x] - f["scale"]["1"] for f in factors if "scale" in f],
            )
    for merge in (m for m in config.left_out.merges if m != "sum"):
        add(
            f"{merge} beats the plain sum of the family's vectors (λ = 1, zoo origin, 0 shots)",
            [f["merge"][merge] - f["merge"]["sum"] for f in factors if "merge" in f],
        )
    add(
        "the best learned zoo vector beats the best at-chance one (zoo origin, 0 shots)",
        [
            f["quality"]["learned"]["test"] - f["quality"]["at chance"]["test"]
            for f in factors
            if len(f.get("quality", {})) == 2
        ],
    )
    add(
        "the family sum (else best single) scores lower on fresh origins than on the zoo origin (0 shots)",
        [f["origin"]["zoo"] - float(np.mean(f["origin"]["fresh"])) for f in factors if "origin" in f],
    )
    add(
        "the target's template beats the source's (origin + best single source's vector, 0 shots)",
        [
            t[f"single:{t['source']}"]["target_template"] - t[f"single:{t['source']}"]["source_template"]
            for f in factors
            if "skipped" not in (t := f.get("template", {"skipped": True}))
        ],
    )
    return rows


def _targets(values) -> str:
    return f"average of {len(values)} targets"


def _auto_init_acceptance(found: list[dict], summary: dict, config) -> list[dict]:
    # Issue 27's acceptance, one row per validation size: no target where auto_init's start is significantly below
    # the origin on test. The per-target rows above hold the intervals.
    rows = []
    for n in config.left_out.auto_validation:
        claim = f"auto_init@{n} is not significantly below the origin (0 shots)"
        mine = [f for f in found if f["claim"] == claim]
        below = [f["target"] for f in mine if f["verdict"] == NOT_HELD]
        rows.append(
            {
                "claim": f"auto_init@{n} is never significantly below the origin on test, on any target",
                "target": f"all {len(mine)}",
                "difference": f"significantly below on: {', '.join(below)}" if below else "below on none",
                "verdict": NOT_HELD if below else HELD,
            }
        )
        # Three seeds a target only flag a large harm (t's half-width is 2.5 standard deviations); the targets
        # together say what a user's average task can expect: each target's mean difference is one value.
        pooled = [
            float(np.mean([a - o for a, o in zip(data["zero_shot"][f"auto_init@{n}"], data["zero_shot"]["origin"])]))
            for data in summary["targets"].values()
        ]
        claim = f"auto_init@{n} is not significantly below the origin on the average target"
        rows.append(_not_below(claim, _targets(pooled), pooled))
    return rows


def _not_below(claim: str, target: str, differences) -> dict:
    """auto_init's claim: held unless the interval of (start − origin) lies wholly below 0."""
    below = verdict([-d for d in differences]) == HELD
    found = {**_finding(claim, target, differences), "verdict": NOT_HELD if below else HELD}
    if differences and all(d == 0 for d in differences):
        found["difference"] = "0 everywhere (the same start: auto_init kept the origin)"
    return found


def _origins_runs(run_: dict, origin: dict) -> bool:
    """Whether a start's k-shot runs are the origin's own (auto_init kept the origin on every seed)."""
    return run_["curves"] == origin["curves"] and run_["test"] == origin["test"]


def _same_runs(claim: str, target: str) -> dict:
    return {
        "claim": claim,
        "target": target,
        "difference": "none: the start kept the origin on every seed, so its runs are the origin's",
        "verdict": NOT_TESTABLE,
    }


def _finding(claim: str, target: str, differences, scale: float = 100) -> dict:
    mean, low, high = interval(differences)
    shown = (
        f"{mean * scale:+.1f}" if math.isnan(low) else f"{mean * scale:+.1f} [{low * scale:+.1f}, {high * scale:+.1f}]"
    )
    return {"claim": claim, "target": target, "difference": shown, "verdict": verdict(differences)}


def findings_table(found: list[dict]) -> str:
    body = [[f["claim"], f["target"], f["difference"], f"**{f['verdict']}**"] for f in found]
    return (
        markdown_table(["Claim", "Target", "Difference (mean [95 % interval] over seeds)", "Verdict"], body)
        + "\n\nheld: the interval is above 0 (for auto_init: not below 0); not held: below 0; inconclusive: it "
        "contains 0 (not significant is not the same: the interval says how large a difference is still possible). "
        "Score differences ×100; step differences in steps (origin's steps to its own best − the start's; a run "
        "that never reaches it is counted one evaluation past the budget, which understates its steps and so "
        "favours the start). With 3 seeds a per-target interval is wide (Student's t with 2 degrees of freedom: "
        '±2.5 standard deviations of the seeds), so "not significantly below" there rules out only a large '
        "harm; the rows over the average target (each target's mean difference over seeds one value, in its own "
        "metric, Student's t over targets) say what a task nobody tuned for can expect."
    )


def write_findings(output_dir, config) -> list[Path]:
    """``findings.md`` / ``findings.json`` of a transfer run, from ``transfer.json`` beside them."""
    from tpv.core._io import atomic_write_text

    output_dir = Path(output_dir)
    path = output_dir / f"{NAME}.json"
    payload = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if payload is None or payload.get("fingerprint") != config.fingerprint():
        found: list[dict] = []
        text = "No results of this run's settings yet: run the profile (the JSON is missing or from other settings)."
    else:
        found = payload["summary"]["findings"]
        text = findings_table(found)
    lines = [
        "# Findings: starts on tasks left out of the zoo",
        "",
        f"Computed by `tpv.experiments.studies.left_out` from `{NAME}.json` beside this page (profile "
        f"`{config.name}`, run folder key `{config.fingerprint()}`); every number is in that file.",
        "",
        text,
        "",
    ]
    return [
        atomic_write_text(output_dir / "findings.md", "\n".join(lines)),
        atomic_write_text(
            output_dir / "findings.json",
            json.dumps({"profile": config.name, "fingerprint": config.fingerprint(), "findings": found}, indent=1),
        ),
    ]
