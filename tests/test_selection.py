"""Source selection ranks a library by similarity to a target vector."""

import pytest
import torch

from tpv import TaskPromptVector, TPVError
from tpv.compose.selection import select_sources


def _library(seed=0, count=6, shape=(8, 16)):
    generator = torch.Generator().manual_seed(seed)
    return {
        f"task{i}": TaskPromptVector(torch.randn(*shape, generator=generator), tasks={f"task{i}": 1.0})
        for i in range(count)
    }


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("pooling", ["mean", "flat", "per_token"])
def test_a_planted_near_duplicate_ranks_first(seed, pooling):
    library = _library(seed)
    generator = torch.Generator().manual_seed(seed + 100)
    target = TaskPromptVector(
        library["task3"].tensor + 0.05 * torch.randn(8, 16, generator=generator), tasks={"target": 1.0}
    )
    ranked = select_sources(target, library, k=2, pooling=pooling)
    assert len(ranked) == 2 and ranked[0][0] == "task3" and ranked[0][1] > 0.99
    assert ranked[0][1] >= ranked[1][1]


def test_k_none_returns_all_sorted_and_folders_work(tmp_path):
    library = _library()
    for name, vector in library.items():
        vector.save(tmp_path / f"{name}.tpv.safetensors")
    target = library["task1"] * 2.0
    from_folder = select_sources(target, tmp_path, k=None)
    assert [name for name, _ in from_folder] == [name for name, _ in select_sources(target, library, k=None)]
    assert len(from_folder) == 6 and from_folder[0] == ("task1", pytest.approx(1.0))
    assert [score for _, score in from_folder] == sorted((score for _, score in from_folder), reverse=True)


def test_bad_input_is_refused(tmp_path):
    target = _library(count=1)["task0"]
    with pytest.raises(TPVError, match="k must be a positive int or None"):
        select_sources(target, _library(), k=0)
    with pytest.raises(TPVError, match="library is empty"):
        select_sources(target, {})
    with pytest.raises(TPVError, match=r"no \*.tpv.safetensors files in"):
        select_sources(target, tmp_path)
    with pytest.raises(TPVError, match="target must be a TaskPromptVector"):
        select_sources(target.tensor, _library())
    with pytest.raises(TPVError, match=r"cannot compare vectors of shape \(8, 16\) and \(4, 16\)"):
        select_sources(target, _library(shape=(4, 16)))


# ---- the rule that chooses a start without picking noise ------------------------------------------------------

import numpy as np  # noqa: E402

from tpv.compose.selection import (  # noqa: E402
    halving_rungs,
    paired_bootstrap,
    split_examples,
    successive_halving,
)
from tpv.engine.metrics import compute_metric  # noqa: E402


def _predictions(seed, n=60, labels=3, skill=0.5):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, labels, n)
    guess = np.where(rng.random(n) < skill, gold, rng.integers(0, labels, n))
    return gold.tolist(), guess.tolist(), rng.integers(0, labels, n).tolist()


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy"])
def test_the_bootstrap_recomputes_the_metric_on_every_resample(metric):
    gold, better, worse = _predictions(0)
    interval = paired_bootstrap(metric, better, worse, gold, labels=[0, 1, 2], resamples=200, seed=3)
    # The same resamples, computed the slow way: the metric of each resample, not a mean of per-example values.
    rows = np.random.default_rng(3).integers(0, len(gold), (200, len(gold)))
    options = {"labels": [0, 1, 2]} if metric == "macro_f1" else {}
    slow = [
        compute_metric(metric, [better[i] for i in r], [gold[i] for i in r], **options)
        - compute_metric(metric, [worse[i] for i in r], [gold[i] for i in r], **options)
        for r in rows
    ]
    assert interval.lower == pytest.approx(np.quantile(slow, 0.05, method="lower"))
    assert interval.difference == pytest.approx(
        compute_metric(metric, better, gold, **options) - compute_metric(metric, worse, gold, **options)
    )
    assert interval.above_zero and interval.n == 60


def test_the_bootstrap_is_deterministic_and_refuses_equal_or_noisy_differences():
    gold, better, worse = _predictions(1)
    assert paired_bootstrap("macro_f1", better, worse, gold) == paired_bootstrap("macro_f1", better, worse, gold)
    same = paired_bootstrap("macro_f1", worse, worse, gold)
    assert same.difference == 0.0 and same.lower == 0.0 and not same.above_zero
    # Two skill-less predictors: whatever the point difference, the bound does not clear 0.
    _, noise_a, noise_b = _predictions(2, skill=0.0)
    assert not paired_bootstrap("macro_f1", noise_a, noise_b, gold[:60]).above_zero


def test_the_bootstrap_handles_pearson():
    rng = np.random.default_rng(0)
    gold = rng.random(50).tolist()
    close = (np.array(gold) + 0.1 * rng.random(50)).tolist()
    interval = paired_bootstrap("pearson", close, rng.random(50).tolist(), gold, resamples=200)
    assert interval.above_zero


def test_bad_bootstrap_input_is_refused():
    with pytest.raises(TPVError, match="confidence must be in"):
        paired_bootstrap("accuracy", [1], [1], [1], confidence=1.5)
    with pytest.raises(TPVError, match="the same non-zero number of start, origin and reference values, got 2, 1"):
        paired_bootstrap("accuracy", [1, 0], [1], [1])


def test_the_split_is_disjoint_stratified_and_fixed_by_its_seed():
    labels = [0] * 30 + [1] * 10 + [2] * 4
    choose, confirm = split_examples(labels, 0.5, seed=7)
    assert sorted(choose + confirm) == list(range(44)) and len(confirm) == 22
    for label, count in ((0, 15), (1, 5), (2, 2)):
        assert sum(labels[i] == label for i in confirm) == count
    assert split_examples(labels, 0.5, seed=7) == (choose, confirm)
    assert split_examples(labels, 0.5, seed=8) != (choose, confirm)
    with pytest.raises(TPVError, match="confirm_fraction must be between 0 and 1"):
        split_examples(labels, 1.0)


@pytest.mark.parametrize("candidates, examples", [(1, 50), (9, 100), (15, 100), (40, 100), (12, 16)])
def test_successive_halving_costs_a_few_passes_and_keeps_the_best(candidates, examples):
    rng = np.random.default_rng(candidates)
    quality = rng.random(candidates)
    scored: dict[int, int] = {}

    def score(candidate, n):
        scored[candidate] = max(n, scored.get(candidate, 0))  # a caller that caches pays only for new examples
        return float(quality[candidate])

    ranked = successive_halving(list(range(candidates)), score, examples)
    assert ranked[0][0] == int(np.argmax(quality)) and ranked[0][2] == examples
    assert sorted(c for c, _, _ in ranked) == list(range(candidates))
    # The first rung scores every candidate on a few examples (at least 8, fewer only if there are fewer); each
    # later rung costs at most one pass over the examples: the log of the candidates, not their count.
    rungs = halving_rungs(candidates, examples)
    assert sum(scored.values()) <= candidates * rungs[0][1] + examples * (len(rungs) - 1)
    assert sum(scored.values()) < candidates * examples or candidates == 1
