"""Merge methods: one parametrised test over the registry, TIES by hand, parity with PEFT's merge_utils, negation."""

import sys

import pytest
import torch
from safetensors import safe_open

from tpv import TaskPromptVector, TPVError
from tpv.compose.merge import MERGE_METHODS, forget, merge, negate
from tpv.core.provenance import merge_record


def _vectors(count=3, shape=(4, 6), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        TaskPromptVector(torch.randn(*shape, generator=generator), tasks={f"t{i}": 1.0}, base_model="m")
        for i in range(count)
    ]


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_every_method_keeps_shape_is_deterministic_records_provenance_and_mutates_nothing(method, tmp_path):
    vectors = _vectors()
    before = [v.tensor.clone() for v in vectors]
    options = {"seed": 7} if method.startswith("dare") else {}
    merged = merge(vectors, method=method, weights=[1.0, 0.5, 2.0], **options)
    again = merge(vectors, method=method, weights=[1.0, 0.5, 2.0], **options)

    assert merged.shape == vectors[0].shape and merged.tensor.dtype == torch.float32
    assert torch.isfinite(merged.tensor).all() and merged.tensor.abs().sum() > 0
    assert torch.equal(merged.tensor, again.tensor)
    for vector, original in zip(vectors, before):
        assert torch.equal(vector.tensor, original)
    assert merged.base_model == "m" and merged.num_virtual_tokens == 4
    per_task = 1 / 3 if method == "mean" else 1.0
    assert merged.tasks == pytest.approx({"t0": per_task, "t1": 0.5 * per_task, "t2": 2.0 * per_task})
    record = merge_record(merged)
    assert record["method"] == method and record["weights"] == {"0": 1.0, "1": 0.5, "2": 2.0}
    assert record.get("seed") == options.get("seed")
    loaded = TaskPromptVector.load(merged.save(tmp_path / "merged.tpv.safetensors"))
    assert merge_record(loaded) == record and torch.equal(loaded.tensor, merged.tensor)


def test_dare_seed_changes_the_drop_and_leaves_the_global_rng_alone():
    vectors = _vectors()
    state = torch.get_rng_state()
    first = merge(vectors, method="dare_linear", seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(first.tensor, merge(vectors, method="dare_linear", seed=1).tensor)


def test_sum_and_mean_are_the_papers_arithmetic():
    a, b, c = _vectors()
    torch.testing.assert_close(merge([a, b, c]).tensor, (a + b + c).tensor)
    torch.testing.assert_close(merge({"a": a, "b": b}, weights={"a": 0.5, "b": 2.0}).tensor, (0.5 * a + 2 * b).tensor)
    torch.testing.assert_close(merge([a, b], method="mean").tensor, ((a + b) / 2).tensor)


def _ties_inputs():
    rows = [[3.0, -1.0, 0.5, 2.0], [2.0, 4.0, -0.2, -3.0], [-1.0, -2.0, 0.1, 1.5]]
    return [TaskPromptVector(torch.tensor([row]), tasks={f"t{i}": 1.0}) for i, row in enumerate(rows)]


def test_ties_gives_the_textbook_result():
    # Trim to the top 50 % by magnitude: [3, 0, 0, 2], [0, 4, 0, -3], [0, -2, 0, 1.5].
    # Elected signs (summed mass 3, 2, 0, 0.5): all +. Disjoint mean of the agreeing entries:
    # 3, 4 (the -2 disagrees), 0 (nothing kept), (2 + 1.5) / 2 (the -3 disagrees).
    merged = merge(_ties_inputs(), method="ties", density=0.5)
    assert merged.tensor.tolist() == [[3.0, 4.0, 0.0, 1.75]]


def _merged_with_peft_merge_utils(vectors, method, weights, density, seed=0):
    # What merge() computed when it called PEFT's merge_utils (tpv <= 0.1.0), composed the same way.
    from peft.utils import merge_utils

    stacked = torch.stack([v.tensor for v in vectors])
    w = torch.tensor(weights).view(-1, 1, 1)
    if method.startswith("dare"):
        generator = torch.Generator().manual_seed(seed)
        stacked = stacked * (torch.rand(stacked.shape, generator=generator) < density) / density
    else:
        stacked = torch.stack([merge_utils.magnitude_based_pruning(t, density) for t in stacked])
    if method == "magnitude_prune":
        return (stacked * w).sum(dim=0)
    weighted = stacked * w
    mask = merge_utils.calculate_majority_sign_mask(weighted, "total")
    return merge_utils.disjoint_merge(weighted, mask)


@pytest.mark.parametrize(
    "method, density",
    [("ties", 0.2), ("ties", 0.5), ("dare_ties", 0.5), ("magnitude_prune", 0.2), ("magnitude_prune", 0.7)],
)
def test_tpv_merge_equals_the_same_arithmetic_through_peft_merge_utils(method, density):
    vectors = _vectors(count=4, shape=(7, 9), seed=3)
    weights = [1.0, -0.5, 2.0, 0.25]
    options = {"seed": 5} if method.startswith("dare") else {}
    ours = merge(vectors, method=method, weights=weights, density=density, **options).tensor
    peft_result = _merged_with_peft_merge_utils(vectors, method, weights, density, **options)
    torch.testing.assert_close(ours, peft_result, rtol=0, atol=0)
    assert not torch.allclose(ours, merge(vectors, weights=weights).tensor)  # pruning and election did something


def test_merge_does_not_depend_on_peft(monkeypatch):
    expected = merge(_vectors(), method="ties").tensor
    monkeypatch.setitem(sys.modules, "peft.utils.merge_utils", None)  # importing it now raises ImportError
    torch.testing.assert_close(merge(_vectors(), method="ties").tensor, expected, rtol=0, atol=0)
    assert merge(_ties_inputs(), method="ties", density=0.5).tensor.tolist() == [[3.0, 4.0, 0.0, 1.75]]


def test_bad_calls_are_refused_with_the_fix():
    a, b, _ = _vectors()
    with pytest.raises(TPVError, match=r"unknown merge method 'avg'; use one of \['dare_linear', 'dare_ties'"):
        merge([a, b], method="avg")
    with pytest.raises(TPVError, match="empty list"):
        merge([])
    with pytest.raises(TPVError, match=r"cannot merge vectors of shape \(4, 6\) and \(5, 6\)"):
        merge([a, _vectors(1, shape=(5, 6))[0]])
    with pytest.raises(TPVError, match=r"unknown options \['k'\]; it accepts \['density', 'majority_sign_method'\]"):
        merge([a, b], method="ties", k=20)
    with pytest.raises(TPVError, match=r"density must be in \(0, 1\]"):
        merge([a, b], method="ties", density=0)
    with pytest.raises(TPVError, match="got 1 weights"):
        merge([a, b], weights=[1.0])
    with pytest.raises(TPVError, match="one weight per vector name"):
        merge({"a": a, "b": b}, weights={"a": 1.0})
    with pytest.raises(TPVError, match="is a Tensor"):
        merge([a, b.tensor])


def test_unmerged_vectors_write_the_old_metadata_and_old_files_load(tmp_path):
    vector = _vectors(1)[0]
    path = vector.save(tmp_path / "old.tpv.safetensors")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert "merge" not in metadata
    loaded = TaskPromptVector.load(path)
    assert loaded.merge is None and merge_record(loaded) is None


def test_merged_vectors_keep_their_records_through_arithmetic():
    a, b, c = _vectors()
    combined = merge([a, b], method="ties") + merge([b, c], method="mean")
    assert sorted(r["method"] for r in merge_record(combined)["combined"]) == ["mean", "ties"]
    assert merge_record(2 * merge([a, b], method="ties"))["method"] == "ties"


def test_negate_and_forget_remove_a_task():
    sst2, rte = _vectors(2)
    both = sst2 + rte
    assert negate(both, rte).tasks == {"t0": 1.0, "t1": 0.0}
    torch.testing.assert_close(negate(both, rte).tensor, sst2.tensor)
    prompt = both.apply_to(torch.zeros(4, 6))
    torch.testing.assert_close(forget(prompt, rte, scale=1.0), sst2.tensor)
    torch.testing.assert_close(
        forget(both, rte, 0.5, origin=torch.ones(4, 6)), torch.ones(4, 6) + (both - 0.5 * rte).tensor
    )
    assert torch.equal(prompt, both.apply_to(torch.zeros(4, 6)))
    with pytest.raises(TPVError, match="origin is only used with a vector"):
        forget(prompt, rte, origin=torch.zeros(4, 6))
    with pytest.raises(TPVError, match="cannot apply a vector of shape"):
        forget(torch.zeros(2, 6), rte)
