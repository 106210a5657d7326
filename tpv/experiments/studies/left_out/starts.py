"""The transfer study's candidates and starts: the zoo, auto_init's plans, the best single source, the
family sum; scoring on validation and test; the k-shot runs with their validation curves (all cached)."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass

import numpy as np

from tpv.data import get_task

TITLE = "Starts on tasks left out of the zoo (transfer)"
NAME = "transfer"
# What the dry run assumes one auto_init call costs, in scoring passes over its validation examples: the bound
# issue 27 sets for the rewritten auto_init (successive halving); the old exhaustive search took about 28.
AUTO_INIT_PASSES = 6
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
        from tpv.engine.run_folder import RunLock

        origin = make_origin(lab.load()[0], config.prompt.num_virtual_tokens, seed=0, method="paper")
        # Shards of one run share this zoo: the first tunes it, the others wait and load it from its folders.
        with RunLock(lab.run_dir / "prompts" / "left_out_zoo", wait=True):
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


def auto_init_code() -> str:
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

    code = auto_init_code()
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


def auto_prompt(record: dict):
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
        vector = TaskPromptVector.from_prompts(auto_prompt(record), origin, task=target)
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
    """:meth:`Lab.score_fields` on the first ``n`` validation examples."""
    return lab.score_fields(task, key, prompt_fn, split="validation", limit=n)


def test_score(lab, task: str, key: str, prompt_fn) -> float:
    return lab.score(task, f"transfer:{key}", prompt_fn)


def start_prompt(origin, vector, scale: float = 1.0):
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
    step0 = validation_fields(lab, target, key, start_prompt(origin, vector), settings.eval_examples)["score"]
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
