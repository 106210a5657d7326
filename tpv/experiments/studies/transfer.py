"""Initialising a target task's prompt from its family's sources: the shared core of studies 4 and 5.

Methods (paper §4.3): ``random`` (the origin itself), ``spot:<source>`` (SPoT with one source prompt),
``spot_multi`` (SPoT with one prompt tuned on both sources' mixed data), ``attempt`` (ATTEMPT trained on the
sources' mixture, then on the target's shots) and ``sum`` (ours: origin + λ(τ_a + τ_b), λ chosen on the target's
validation set). 0 shots scores the initialisation as it is; k shots prompt-tunes it on k target examples for
a fixed step budget (``transfer.steps``) and scores the result. Scores are cached per
(target, method, shots, origin), so study 5 reuses study 4's runs.
"""

from __future__ import annotations

from tpv.experiments.config import Family


def methods(lab, family: Family) -> list[str]:
    out = []
    for method in lab.config.transfer.methods:
        out += [f"spot:{s}" for s in family.sources] if method == "spot" else [method]
    return out


def label(method: str, family: Family) -> str:
    joined = " + ".join(family.sources)
    if method.startswith("spot:"):
        return f"{method[5:]} (SPoT)"
    return {"random": "Random", "spot_multi": f"{joined} (SPoT)", "attempt": f"{joined} (ATTEMPT)",
            "sum": f"{joined} (ours)"}[method]


def transfer_score(lab, family: Family, target: str, method: str, shots: int, seed: int) -> float:
    """Test score on ``target`` of ``method``'s initialisation from origin ``seed`` after ``shots`` examples."""
    key = f"transfer:{method}<-{'+'.join(family.sources)}@{seed}/shots{shots}"
    if method == "attempt":
        return lab.store.cached(f"test/{target}/{key}", lambda: _attempt_score(lab, family, target, shots, seed))
    if shots == 0:
        return lab.score(target, key, lambda: _initial_prompt(lab, family, target, method, seed))
    def prompt():
        vectors, scale = _init_vectors(lab, family, target, method, seed)
        steps = lab.config.transfer.steps
        tuned = lab.train(target, seed, lab.shots(target, shots, seed),
                          f"transfer/{target}/{method.replace(':', '_')}/seed{seed}/shots{shots}", steps=steps,
                          init_vector=vectors, init_scale=scale)
        return tuned.apply_to(lab.origin(seed))
    return lab.score(target, key, prompt)


def _init_vectors(lab, family, target, method, seed):
    if method == "random":
        return None, 1.0
    if method.startswith("spot:"):
        return lab.source_vector(method[5:], seed), 1.0
    if method == "spot_multi":
        return lab.multi_vector(family.sources, seed), 1.0
    if method == "sum":
        vectors = lambda: [lab.source_vector(s, seed) for s in family.sources]  # noqa: E731
        scale = lab.search_scale(f"sum:{'+'.join(family.sources)}", vectors, seed, [target])
        return vectors(), scale
    raise AssertionError(method)


def _initial_prompt(lab, family, target, method, seed):
    from tpv.vector import combine

    vectors, scale = _init_vectors(lab, family, target, method, seed)
    origin = lab.origin(seed)
    if vectors is None:
        return origin.tensor
    return (vectors if not isinstance(vectors, list) else combine(vectors)).apply_to(origin, scale)


def _attempt_score(lab, family, target, shots, seed) -> float:
    from tpv.tasks import get_task

    module = lab.attempt(family.sources, seed)
    if shots:
        lab._train_attempt(module, get_task(target), lab.shots(target, shots, seed),
                           f"transfer/{target}/attempt/seed{seed}/shots{shots}", lab.config.transfer.steps, seed)
    result = module.evaluate(lab.tokenizer, target, lab.data(target, "test"),
                             batch_size=lab.config.prompt.eval_batch_size, max_length=lab.config.prompt.max_length)
    return float(result[get_task(target).metric])
