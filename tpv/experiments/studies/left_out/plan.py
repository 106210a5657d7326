"""The transfer study's work for the dry run (``tpv.experiments.plan.build_plan``)."""

from __future__ import annotations

from tpv.data import get_task
from tpv.experiments.studies.left_out.starts import AUTO_INIT_PASSES


def plan_units(lab) -> list[tuple[str, list[tuple]]]:
    """The study's work as ``(what, [(task, steps, scored examples[, batch]), …])`` for ``plan.build_plan``;
    nothing is loaded but the data (the zoo's families come from its manifest)."""
    from tpv.experiments.plan import GENERATED_TOKEN_COST, scoring_factor

    config, settings = lab.config, lab.config.left_out
    seeds = len(config.seeds)
    if settings.sources == "zoo":
        from tpv.compose import zoo

        families = {t: row["family"] for t, row in zoo.manifest()["tasks"].items()}
    else:
        families = {t: get_task(t).family for t in settings.candidates}

    def scored(task, examples, split="validation"):
        # Regression targets are always generated; every scored example of them costs a generation.
        generated = 1 if get_task(task).is_classification else 1 + GENERATED_TOKEN_COST * config.protocol.max_new_tokens
        if split == "test":
            examples = min(examples, len(lab.data(task, "test"))) * scoring_factor(config)
        return round(examples * generated)

    units: dict[str, list[tuple]] = {}

    def add(what, unit):
        units.setdefault(what, []).append(unit)

    for task in settings.candidates if settings.sources == "tuned" else []:
        add("tune the zoo's candidate prompts in the run folder", (task, config.source.steps_for(task), 0))
    test = config.data.test_examples
    for target in settings.targets:
        family = families.get(target, get_task(target).family)
        members = [t for t, f in families.items() if f == family and t != target]
        others = [t for t in families if t != target]
        # 0 shots: every origin, the zoo-origin starts, and auto_init's start at each validation size and seed.
        starts = seeds + 2 + bool(members) + len(settings.auto_validation) * seeds
        add("score the starts at 0 shots (test)", (target, 0, scored(target, test, "test") * starts))
        add(
            "choose the best single source (validation)",
            (
                target,
                0,
                scored(target, len(others) * min(settings.selection_examples, len(lab.data(target, "validation")))),
            ),
        )
        passes = sum(min(n, len(lab.data(target, "validation"))) for n in settings.auto_validation) * seeds
        add(
            f"auto_init at {settings.auto_validation} validation examples (≈{AUTO_INIT_PASSES} passes each)",
            (target, 0, scored(target, passes * AUTO_INIT_PASSES)),
        )
        evaluations = settings.steps // settings.eval_every + 1
        for k in settings.shots:
            for name in settings.kshot_starts:
                if name == "family_sum" and not members:
                    continue
                for _ in range(seeds):
                    examples = scored(target, evaluations * settings.eval_examples) + scored(target, test, "test")
                    add(
                        f"k-shot prompt tuning (k in {settings.shots}, {settings.steps} steps, "
                        f"{len(settings.kshot_starts)} starts)",
                        (target, settings.steps, examples, min(config.prompt.batch_size, k)),
                    )
        factor_scores = 0
        if "origin" in settings.factors:
            factor_scores += seeds
        if "scale" in settings.factors:
            factor_scores += len([x for x in settings.scales if x != 1])
        if "merge" in settings.factors and len(members) > 1:
            factor_scores += len(settings.merges) - 1
        if "quality" in settings.factors and settings.sources == "zoo":
            factor_scores += 2
        if "template" in settings.factors:
            factor_scores += 2  # the zoo origin and the best single source, in the source's template
        add("part 2 factors at 0 shots (test)", (target, 0, scored(target, test, "test") * factor_scores))
    return list(units.items())
