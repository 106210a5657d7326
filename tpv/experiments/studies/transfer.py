"""Initialising a target task's prompt from its family's sources: the shared core of studies 4 and 5.

Methods (paper §4.3): ``random`` (the origin itself), ``spot:<source>`` (SPoT with one source prompt),
``spot_multi`` (SPoT with one prompt tuned on both sources' mixed data), ``attempt`` (ATTEMPT over the source
prompts; see ``protocol.attempt``), ``sum`` (ours as the official ``create_and_save_combinations.py``: origin +
τ_a + τ_b, λ = 1, no target data) and ``sum_search`` (origin + λ(τ_a + τ_b) with λ chosen on the target's
validation set: tpv's own row, not the paper's). 0 shots scores the initialisation as it is; k shots
prompt-tunes it on k target examples for a fixed step budget (``transfer.steps``, keeping the best checkpoint
on held validation examples when ``transfer.checkpoint_examples`` is set) and scores the result. Scores are
cached per (target, method, shots, origin), so study 5 reuses study 4's runs.
"""

from __future__ import annotations

from tpv.experiments.config import Family
from tpv.experiments.result import AT_CHANCE_MARK


def methods(lab, family: Family) -> list[str]:
    out = []
    for method in lab.config.transfer.methods:
        out += [f"spot:{s}" for s in family.sources] if method == "spot" else [method]
    return out


def label(method: str, family: Family, at_chance=()) -> str:
    """The row name of ``method``'s initialisation, † after each source in ``at_chance`` (see
    :func:`tpv.experiments.result.marked`)."""
    mark = lambda task: f"{task}{AT_CHANCE_MARK}" if task in at_chance else task  # noqa: E731
    joined = " + ".join(mark(source) for source in family.sources)
    if method.startswith("spot:"):
        return f"{mark(method[5:])} (SPoT)"
    return {
        "random": "Random",
        "spot_multi": f"{joined} (SPoT)",
        "attempt": f"{joined} (ATTEMPT)",
        "sum": f"{joined} (ours, λ = 1)",
        "sum_search": f"{joined} (sum, λ on target validation)",
    }[method]


def transfer_score(lab, family: Family, target: str, method: str, shots: int, seed: int) -> float:
    """Test score on ``target`` of ``method``'s initialisation from origin ``seed`` after ``shots`` examples."""
    return transfer_fields(lab, family, target, method, shots, seed)["score"]


def transfer_fields(lab, family: Family, target: str, method: str, shots: int, seed: int) -> dict:
    """:meth:`Lab.evaluated`'s fields for ``method`` on ``target`` after ``shots`` examples from origin ``seed``,
    plus ``scale`` (the λ of the sum rows)."""
    key = f"transfer:{method}<-{'+'.join(family.sources)}@{seed}/shots{shots}"
    scale = {}
    if method.startswith("sum"):
        scale = {"scale": _init_vectors(lab, family, target, method, seed, build=False)[1]}
    if method == "attempt":
        return {**lab.evaluated(target, key, _attempt_runner(lab, family, target, shots, seed)), **scale}
    if shots == 0:
        return {**lab.score_fields(target, key, lambda: _initial_prompt(lab, family, target, method, seed)), **scale}

    def prompt():
        transfer = lab.config.transfer
        vectors, init_scale = _init_vectors(lab, family, target, method, seed)
        tuned = lab.train(
            target,
            seed,
            lab.shots(target, shots, seed),
            f"transfer/{target}/{method.replace(':', '_')}/seed{seed}/shots{shots}",
            steps=transfer.steps,
            init_vector=vectors,
            init_scale=init_scale,
            checkpoint=(transfer.checkpoint_examples, transfer.checkpoint_every, transfer.checkpoint_metric),
        )
        return tuned.apply_to(lab.origin(seed))

    return {**lab.score_fields(target, key, prompt), **scale}


def shard_transfer(lab, index: int, count: int, shots, targets, name: str, progress: bool = True) -> dict:
    """Every ``count``-th (target, method, origin) from the ``index``-th (1-based), each at every k of ``shots``
    (one unit keeps a λ search and a SPoT-multi prompt in one process), into the run folder's cache; ``targets``
    None: every target of the families."""
    from tpv.core.progress import progress_bar

    config = lab.config
    jobs = [(f, t) for f in config.transfer.families for t in f.targets if targets is None or t in targets]
    units = [(f, t, m, seed) for f, t in jobs for m in methods(lab, f) for seed in config.seeds][index - 1 :: count]
    for family, target, method, seed in progress_bar(units, progress, f"{name} (shard {index}/{count})"):
        for k in shots:
            transfer_fields(lab, family, target, method, k, seed)
    return {"units": len(units)}


def _init_vectors(lab, family, target, method, seed, build: bool = True):
    if method == "random":
        return None, 1.0
    if method.startswith("spot:"):
        return lab.source_vector(method[5:], seed), 1.0
    if method == "spot_multi":
        return lab.multi_vector(family.sources, seed), 1.0
    vectors = lambda: [lab.source_vector(s, seed) for s in family.sources]  # noqa: E731
    if method == "sum":
        return (vectors() if build else None), 1.0
    if method == "sum_search":
        scale = lab.search_scale(f"sum:{'+'.join(family.sources)}", vectors, seed, [target])
        return (vectors() if build else None), scale
    raise AssertionError(method)


def _initial_prompt(lab, family, target, method, seed):
    from tpv.core.vector import combine

    vectors, scale = _init_vectors(lab, family, target, method, seed)
    origin = lab.origin(seed)
    if vectors is None:
        return origin.tensor
    return (vectors if not isinstance(vectors, list) else combine(vectors)).apply_to(origin, scale)


def _attempt_runner(lab, family, target, shots, seed):
    from tpv.data import get_task

    modules = []

    def run(method):
        if not modules:
            module = lab.attempt(family.sources, seed)
            if shots:
                # k-shot training sees the target's shots only (ATTEMPT's single-task setting).
                lab.train_attempt(
                    module,
                    get_task(target),
                    lab.shots(target, shots, seed),
                    f"transfer/{target}/attempt/seed{seed}/shots{shots}",
                    lab.config.transfer.steps,
                    seed,
                )
            modules.append(module)
        protocol = lab.config.protocol
        return modules[0].evaluate(
            lab.tokenizer,
            lab.task(target),
            lab.data(target, "test"),
            method=method,
            batch_size=lab.config.prompt.eval_batch_size,
            max_length=lab.config.prompt.max_length,
            max_new_tokens=protocol.max_new_tokens,
            answer_match=protocol.answer_match,
        )

    return run
