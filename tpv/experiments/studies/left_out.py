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

import hashlib
import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tpv.core.progress import progress_bar
from tpv.data import get_task
from tpv.experiments.result import AT_CHANCE_MARK, StudyResult, markdown_table

TITLE = "Starts on tasks left out of the zoo (transfer)"
NAME = "transfer"
CONFIDENCE = 0.95
# What the dry run assumes one auto_init call costs, in scoring passes over its validation examples: the bound
# issue 27 sets for the rewritten auto_init (successive halving); the old exhaustive search took about 28.
AUTO_INIT_PASSES = 6
HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE = "held", "not held", "inconclusive", "not testable here"
START_LABELS = {
    "origin": "random origin (sample_vocab, per seed)",
    "zoo_origin": "zoo origin",
    "auto_init": "auto_init",
    "family_sum": "family sum, λ = 1 (paper's init)",
    "best_single": "best single source (on validation)",
}


@dataclass
class Zoo:
    """The candidate vectors (targets included: each is excluded in turn), their origin, chance and families."""

    vectors: dict
    origin: object
    at_chance: set
    family: dict
    kind: str


# ---- the zoo and the starts ---------------------------------------------------------------------------------


def load_zoo(lab) -> Zoo:
    """The shipped zoo, or one tuned in the run folder from the paper's origin 0 (``left_out.sources``)."""
    if "left_out_zoo" in lab._vectors:
        return lab._vectors["left_out_zoo"]
    config = lab.config
    if config.left_out.sources == "zoo":
        from tpv.compose import zoo

        if config.prompt.num_virtual_tokens != zoo.origin().num_virtual_tokens:
            from tpv.core.errors import TPVError

            raise TPVError(
                f"prompt.num_virtual_tokens = {config.prompt.num_virtual_tokens} but the zoo's vectors have "
                f"{zoo.origin().num_virtual_tokens}; set it to {zoo.origin().num_virtual_tokens}"
            )
        rows = zoo.available()
        found = Zoo(
            zoo.vectors(include_at_chance=True),
            zoo.origin(),
            {row["task"] for row in rows if row.get("at_chance")},
            {row["task"]: row["family"] for row in rows},
            "the shipped zoo (tpv.compose.zoo)",
        )
    else:
        from tpv.core.origin import make_origin

        origin = make_origin(lab.load()[0], config.prompt.num_virtual_tokens, seed=0, method="paper")
        vectors = {
            task: lab.train(
                task,
                0,
                lab.data(task, "train"),
                f"left_out_zoo/{task}",
                steps=config.source.steps_for(task),
                origin=origin,
            )
            for task in config.left_out.candidates
        }
        kind = f"a zoo tuned in the run folder ({config.source.steps} steps each, from the paper's origin 0)"
        found = Zoo(vectors, origin, set(), {t: get_task(t).family for t in vectors}, kind)
    lab._vectors["left_out_zoo"] = found
    return found


def candidates(zoo: Zoo, target: str) -> list[str]:
    return sorted(name for name in zoo.vectors if name != target)


def family_members(zoo: Zoo, target: str) -> list[str]:
    family = zoo.family.get(target, get_task(target).family)
    return [name for name in candidates(zoo, target) if zoo.family[name] == family]


def _auto_init_code() -> str:
    # Cached plans are keyed by the code that made them: a rewritten auto_init must not reuse old decisions.
    from tpv.compose import auto_init

    return hashlib.sha256(inspect.getsource(auto_init).encode()).hexdigest()[:10]


def combination(zoo: Zoo, names: list[str], method: str = "sum"):
    """The vectors ``names`` combined: ``sum``, ``mean``, ``ties`` (tpv.merge) or ``norm_matched`` (the sum
    rescaled to its members' mean norm)."""
    from tpv.core.vector import combine

    vectors = [zoo.vectors[n] for n in names]
    if method == "sum" or len(vectors) == 1:
        return combine(vectors)
    if method == "norm_matched":
        total = combine(vectors)
        return total * (float(np.mean([v.norm() for v in vectors])) / total.norm())
    from tpv.compose.merge import merge

    return merge({n: zoo.vectors[n] for n in names}, method=method)


def auto_plan(lab, zoo: Zoo, target: str, n: int, seed: int) -> dict:
    """auto_init's plan for ``target`` on its first ``n`` validation examples from origin ``seed`` (cached, with
    its start prompt saved beside the run's prompts)."""
    from tpv.core._io import atomic_target

    code = _auto_init_code()
    path = lab.run_dir / "prompts" / "left_out" / "auto_init" / code / target / f"n{n}_seed{seed}.safetensors"

    def compute():
        import time

        from safetensors.torch import save_file

        from tpv.compose.auto_init import auto_init

        config = lab.config
        sources = "zoo" if config.left_out.sources == "zoo" else {k: zoo.vectors[k] for k in candidates(zoo, target)}
        started = time.perf_counter()
        plan = auto_init(
            lab.fresh_model(),
            lab.tokenizer,
            target,
            sources,
            validation=lab.data(target, "validation")[:n],
            origin=lab.origin(seed),
            exclude=[target],
            max_validation=n,
            batch_size=config.prompt.eval_batch_size,
            max_length=config.prompt.max_length,
            data_dir=config.data.resolved_dir(),
            progress=False,
        )
        with atomic_target(path) as tmp:
            save_file({"prompt": plan.prompt.detach().float().cpu().contiguous()}, str(tmp))
        decision = f"{' + '.join(plan.chosen)} at λ {plan.scale:g}" if plan.chosen else "kept the origin"
        return {
            "decision": decision,
            "chosen": list(plan.chosen),
            "plan": plan.to_dict(),
            "code": code,
            "seconds": time.perf_counter() - started,
        }

    record = lab.store.cached(f"transfer/auto_init/{code}/{target}/n{n}/seed{seed}", compute)
    return {**record, "path": str(path)}


def _auto_prompt(record: dict):
    from safetensors.torch import load_file

    return load_file(record["path"])["prompt"]


def best_single(lab, zoo: Zoo, target: str) -> str:
    """The candidate whose vector on the zoo origin scores best on the target's selection examples."""
    n = lab.config.left_out.selection_examples
    scores = {
        name: validation_fields(
            lab, target, f"single:{name}@zoo", lambda name=name: zoo.vectors[name].apply_to(zoo.origin), n
        )["score"]
        for name in candidates(zoo, target)
    }
    return max(sorted(scores), key=lambda name: scores[name])


def start(lab, zoo: Zoo, target: str, name: str, seed: int):
    """``(origin, init vector or None, cache key)`` of start ``name``; None when it does not exist here."""
    if name == "origin":
        return lab.origin(seed), None, f"origin@{seed}"
    if name == "zoo_origin":
        return zoo.origin, None, "zoo_origin"
    if name == "auto_init":
        from tpv.bridge.vector import TaskPromptVector

        n = lab.config.left_out.kshot_auto_validation
        record = auto_plan(lab, zoo, target, n, seed)
        if not record["chosen"]:
            # auto_init kept the origin: the origin's start, so the origin's run (computed once).
            return start(lab, zoo, target, "origin", seed)
        origin = lab.origin(seed)
        vector = TaskPromptVector.from_prompts(_auto_prompt(record), origin, task=target)
        return origin, vector, f"auto_init{n}:{record['code']}@{seed}"
    if name == "family_sum":
        members = family_members(zoo, target)
        if not members:
            return None
        return zoo.origin, combination(zoo, members), f"family_sum:{'+'.join(members)}@zoo"
    if name == "best_single":
        best = best_single(lab, zoo, target)
        return zoo.origin, zoo.vectors[best], f"single:{best}@zoo"
    raise AssertionError(name)


# ---- scoring ------------------------------------------------------------------------------------------------


def validation_fields(lab, task: str, key: str, prompt_fn, n: int) -> dict:
    """:meth:`Lab.evaluated` on the first ``n`` validation examples."""
    built: list = []

    def run(method):
        from tpv.engine.evaluation import evaluate

        if not built:
            built.append(prompt_fn())
        protocol = lab.config.protocol
        return evaluate(
            lab.eval_model,
            lab.tokenizer,
            lab.task(task),
            lab.data(task, "validation")[:n],
            prompt=built[0],
            method=method,
            batch_size=lab.config.prompt.eval_batch_size,
            max_length=lab.config.prompt.max_length,
            max_new_tokens=protocol.max_new_tokens,
            answer_match=protocol.answer_match,
        )

    return lab.evaluated(task, key, run, split=f"validation{n}")


def test_score(lab, task: str, key: str, prompt_fn) -> float:
    return lab.score(task, f"transfer:{key}", prompt_fn)


def _prompt(origin, vector, scale: float = 1.0):
    return lambda: origin.tensor if vector is None else vector.apply_to(origin, scale)


def k_shot(lab, zoo: Zoo, target: str, name: str, k: int, seed: int) -> dict | None:
    """The k-shot run of start ``name``: its validation curve (step 0 = the start), best step and test score."""
    made = start(lab, zoo, target, name, seed)
    if made is None:
        return None
    origin, vector, key = made
    settings = lab.config.left_out
    metric = get_task(target).metric

    # Each score is its own cache entry, none computed inside another's: a rerun then looks up every entry the
    # first run did, and the page's "computed by" counts come back the same.
    step0 = validation_fields(lab, target, key, _prompt(origin, vector), settings.eval_examples)["score"]
    trained: list = []

    def train():
        if not trained:
            folder = f"left_out/{target}/{key.replace(':', '_').replace('@', '_').replace('+', '_')}/k{k}/seed{seed}"
            trained.append(
                lab.train(
                    target,
                    seed,
                    lab.shots(target, k, seed),
                    folder,
                    steps=settings.steps,
                    init_vector=vector,
                    checkpoint=(settings.eval_examples, settings.eval_every, "score"),
                    origin=origin,
                    full_result=True,
                )
            )
        return trained[0]

    def curve():
        history = train().history
        return [[int(r["step"]), float(r[f"eval_{metric}"])] for r in history if f"eval_{metric}" in r and "step" in r]

    points = lab.store.cached(f"transfer/kshot/{target}/{key}/k{k}/seed{seed}/steps{settings.steps}", curve)
    test = test_score(lab, target, f"{key}/k{k}/seed{seed}", lambda: train().vector.apply_to(origin))
    # One point per step: the last evaluation, at the final step, can repeat the one before it.
    return {
        "curve": [
            [step, value] for step, value in dict([(0, step0), *((step, value) for step, value in points)]).items()
        ],
        "test": test,
    }


# ---- statistics ---------------------------------------------------------------------------------------------


def interval(values) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval over seeds; one value (or a constant set) has a zero-width interval
    only when every value is equal, and NaN bounds when there is a single value."""
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    from scipy import stats

    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def cell(values, scale: float = 100, digits: int = 1) -> str:
    mean, low, high = interval(values)
    if math.isnan(mean):
        return "—"
    if math.isnan(low):
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


# ---- the study ----------------------------------------------------------------------------------------------


def run(lab, progress: bool = True) -> StudyResult:
    config = lab.config
    settings = config.left_out
    zoo = load_zoo(lab)
    rows: list[dict] = []
    summary: dict = {"zoo": zoo.kind, "at_chance": sorted(zoo.at_chance), "targets": {}}
    for target in progress_bar(settings.targets, progress, "transfer targets"):
        summary["targets"][target] = _target(lab, zoo, target, rows)
    figures = [_plot(lab, target, summary["targets"][target]) for target in settings.targets if settings.shots]
    figures = [f for f in figures if f is not None]
    found = transfer_findings(summary, config)
    summary["findings"] = found
    sections = [_zero_shot_table(summary, config), _kshot_tables(summary, config), _factor_tables(summary, config)]
    sections.append("## Findings\n\n" + findings_table(found))
    return StudyResult(NAME, TITLE, "\n\n".join(s for s in sections if s), rows, summary, figures, _notes(config, zoo))


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
    zero["origin"] = [test_score(lab, target, f"origin@{s}", _prompt(lab.origin(s), None)) for s in seeds]
    for s, v in zip(seeds, zero["origin"]):
        record("origin", s, v)
    for name in ("zoo_origin", "family_sum", "best_single"):
        made = start(lab, zoo, target, name, seeds[0])
        if made is None:
            continue
        origin, vector, key = made
        zero[name] = [test_score(lab, target, key, _prompt(origin, vector))]
        record(name, None, zero[name][0], key=key)
    for n in settings.auto_validation:
        plans = [auto_plan(lab, zoo, target, n, s) for s in seeds]
        scores = [
            test_score(
                lab,
                target,
                f"auto_init{n}:{p['code']}@{s}" if p["chosen"] else f"origin@{s}",
                lambda p=p: _auto_prompt(p),
            )
            for p, s in zip(plans, seeds)
        ]
        zero[f"auto_init@{n}"] = scores
        found["auto_init"][str(n)] = [p["decision"] for p in plans]
        for s, v, p in zip(seeds, scores, plans):
            record(f"auto_init@{n}", s, v, decision=p["decision"], auto_init_seconds=p["seconds"])
    found["kshot"] = {str(k): _kshot_target(lab, zoo, target, k, rows) for k in settings.shots}
    found["factors"] = _factors(lab, zoo, target, rows)
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


def _factors(lab, zoo: Zoo, target: str, rows: list) -> dict:
    config, settings = lab.config, lab.config.left_out
    members = family_members(zoo, target)
    # Without another vector of its family in the zoo, the factors are measured on the best single source.
    names = members or [best_single(lab, zoo, target)]
    base = "family sum" if members else f"best single source ({names[0]})"
    vector = combination(zoo, names)
    key = f"family_sum:{'+'.join(names)}" if members else f"single:{names[0]}"
    out: dict = {"on": base}

    def score(tag, origin, vec, scale=1.0, origin_tag="zoo"):
        value = test_score(
            lab, target, f"{tag}@{origin_tag}" + (f"x{scale:g}" if scale != 1 else ""), _prompt(origin, vec, scale)
        )
        rows.append(
            {
                "target": target,
                "start": f"factor:{tag}",
                "shots": 0,
                "seed": None,
                "score": value,
                "scale": scale,
                "origin": origin_tag,
            }
        )
        return value

    if "origin" in settings.factors:
        out["origin"] = {
            "zoo": score(key, zoo.origin, vector),
            "fresh": [score(key, lab.origin(s), vector, origin_tag=str(s)) for s in config.seeds],
        }
    if "scale" in settings.factors:
        out["scale"] = {f"{x:g}": score(key, zoo.origin, vector, x) for x in settings.scales}
    if "merge" in settings.factors and len(names) > 1:
        out["merge"] = {
            m: score(f"{m}:{'+'.join(names)}", zoo.origin, combination(zoo, names, m)) for m in settings.merges
        }
    if "quality" in settings.factors and zoo.at_chance:
        n = settings.selection_examples
        val = {
            c: validation_fields(lab, target, f"single:{c}@zoo", _prompt(zoo.origin, zoo.vectors[c]), n)["score"]
            for c in candidates(zoo, target)
        }
        groups = {
            "learned": [c for c in val if c not in zoo.at_chance],
            "at chance": [c for c in val if c in zoo.at_chance],
        }
        out["quality"] = {}
        for group, names_in in groups.items():
            if names_in:
                pick = max(sorted(names_in), key=lambda c: val[c])
                out["quality"][group] = {
                    "source": pick,
                    "validation": val[pick],
                    "test": score(f"single:{pick}", zoo.origin, zoo.vectors[pick]),
                }
    if "template" in settings.factors:
        out["template"] = _template_factor(lab, zoo, target, best_single(lab, zoo, target), rows)
    return out


def in_template_of(task, source):
    """``task`` with ``source``'s template, its fields renamed in order to ``task``'s; the label words stay the
    target's (only the input's wording changes). None when the two tasks have different numbers of fields."""
    import dataclasses

    if len(task.fields) != len(source.fields):
        return None
    template = source.template
    # Through placeholders no template uses, so that renaming a→b and b→a cannot collide.
    for i, name in enumerate(source.fields):
        template = template.replace("{" + name + "}", "{\0" + str(i) + "}")
    for i, name in enumerate(task.fields):
        template = template.replace("{\0" + str(i) + "}", "{" + name + "}")
    return dataclasses.replace(task, name=f"{task.name}_in_{source.name}_template", template=template, fields=())


def _template_factor(lab, zoo: Zoo, target: str, source: str, rows: list) -> dict:
    # The best single source's vector and the zoo origin alone, each scored in the target's own template and in
    # the source's: does a vector carry over better when the input reads as its own task's did?
    variant = in_template_of(get_task(target), get_task(source))
    if variant is None:
        return {"source": source, "skipped": f"{target} and {source} have different numbers of input fields"}
    found: dict = {"source": source, "template": variant.template}
    for tag, vector in (("zoo_origin", None), (f"single:{source}", zoo.vectors[source])):
        own = test_score(lab, target, f"{tag}@zoo" if vector is not None else "zoo_origin", _prompt(zoo.origin, vector))

        def run(method, vector=vector):
            from tpv.engine.evaluation import evaluate

            protocol = lab.config.protocol
            return evaluate(
                lab.eval_model,
                lab.tokenizer,
                variant,
                lab.data(target, "test"),
                prompt=_prompt(zoo.origin, vector)(),
                method=method,
                batch_size=lab.config.prompt.eval_batch_size,
                max_length=lab.config.prompt.max_length,
                max_new_tokens=protocol.max_new_tokens,
                answer_match=protocol.answer_match,
            )

        theirs = lab.evaluated(target, f"transfer:{tag}@zoo/template:{source}", run)["score"]
        found[tag] = {"target_template": own, "source_template": theirs}
        rows.append(
            {
                "target": target,
                "start": f"factor:template:{tag}",
                "shots": 0,
                "seed": None,
                "score": theirs,
                "template": source,
            }
        )
    return found


# ---- pages --------------------------------------------------------------------------------------------------


def _zero_shot_table(summary: dict, config) -> str:
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
        "vector of the target's family. auto_init's decision per seed is in the JSON (`auto_init`). "
        f"{AT_CHANCE_MARK}: a zoo vector whose prompt stayed at chance on validation when the zoo was built."
    )


def _marked(task: str, at_chance) -> str:
    return f"{task}{AT_CHANCE_MARK}" if task in at_chance else task


def _kshot_tables(summary: dict, config) -> str:
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
                body.append(
                    [
                        target,
                        START_LABELS[name],
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
            f"{settings.eval_every} steps (step 0 = the start), best checkpoint on it scored on test; the same {k} "
            "examples for every start of a seed. Steps to the origin run's best: the first evaluation at which the "
            "start's validation score reaches the best the random-origin run of the same seed reached; a run that "
            f"never does is counted as {settings.steps + settings.eval_every} (a lower bound), and the cell says how "
            "many did."
        )
    return "\n\n".join(parts)


def _factor_tables(summary: dict, config) -> str:
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


def _notes(config, zoo: Zoo) -> list[str]:
    metric_note = ", ".join(sorted({f"{t}: {get_task(t).metric}" for t in config.left_out.targets}))
    return [
        f"Candidates: {zoo.kind}; each target is excluded from them (auto_init gets `exclude=[target]`). "
        f"Seeds {config.seeds}; scoring by {config.protocol.scoring[0]}; metrics {metric_note}.",
        f"auto_init's code is keyed by its source's hash (`{_auto_init_code()}`): a rewritten auto_init recomputes "
        "its plans.",
    ]


def _plot(lab, target: str, found: dict):
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
            below = verdict([-d for d in diff]) == HELD
            found.append(
                {
                    **_finding(f"auto_init@{n} is not significantly below the origin (0 shots)", target, diff),
                    "verdict": NOT_HELD if below else HELD,
                }
            )
        for k, runs in data["kshot"].items():
            for name, run_ in runs.items():
                if name == "origin":
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
    return found


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
        "Score differences ×100; step differences in steps (origin's steps to its own best − the start's)."
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


# ---- the dry run's plan -------------------------------------------------------------------------------------


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
