"""TaskPromptVector: algebra (property tests), files, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv import Origin, TaskPromptVector, TPVError, combine

SHAPE = (6, 4)


def _vec(seed: int, task: str = "a", shape=SHAPE, **kwargs) -> TaskPromptVector:
    tensor = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return TaskPromptVector(tensor, tasks={task: 1.0}, **kwargs)


seeds = st.integers(0, 2**16)
scales = st.floats(0.05, 20.0)


@settings(max_examples=40, deadline=None)
@given(seeds, seeds)
def test_add_then_subtract_recovers_the_first(seed_a, seed_b):
    a, b = _vec(seed_a, "a"), _vec(seed_b, "b")
    torch.testing.assert_close(((a + b) - b).tensor, a.tensor)
    assert ((a + b) - b).tasks == {"a": 1.0, "b": 0.0}


@settings(max_examples=25, deadline=None)
@given(seeds)
def test_a_plus_minus_a_is_zero_and_sum_of_one_is_itself(seed):
    a = _vec(seed)
    assert torch.count_nonzero((a + (-a)).tensor) == 0
    assert torch.equal(sum([a]).tensor, a.tensor)
    assert sum([a]).tasks == a.tasks


@settings(max_examples=40, deadline=None)
@given(seeds, seeds, scales)
def test_cosine_is_symmetric_unit_on_self_and_scale_invariant(seed_a, seed_b, k):
    a, b = _vec(seed_a, "a"), _vec(seed_b, "b")
    for pooling in ("mean", "flat", "per_token"):
        assert a.cosine(a, pooling) == pytest.approx(1.0, abs=1e-5)
        assert (k * a).cosine(b, pooling) == pytest.approx(a.cosine(b, pooling), abs=1e-5)
        assert a.cosine(b, pooling) == pytest.approx(b.cosine(a, pooling), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(seeds, seeds, st.floats(-3, 3))
def test_from_prompts_inverts_apply_to(seed_v, seed_o, scale):
    v = _vec(seed_v)
    origin = Origin(
        torch.randn(*SHAPE, generator=torch.Generator().manual_seed(seed_o)),
        num_virtual_tokens=6,
        seed=seed_o,
        method="normal",
    )
    rebuilt = TaskPromptVector.from_prompts(v.apply_to(origin), origin, task="a")
    torch.testing.assert_close(rebuilt.tensor, v.tensor, rtol=0, atol=1e-5)
    prompt = (scale * v).apply_to(origin)
    torch.testing.assert_close(prompt, origin.tensor + scale * v.tensor)


def test_coefficients_track_the_expression_and_repr_reads_like_it():
    a, b = _vec(0, "sst2", base_model="m"), _vec(1, "yelp", base_model="m")
    combo = 0.5 * b + a
    assert combo.tasks == {"yelp": 0.5, "sst2": 1.0}
    assert repr(combo) == "TaskPromptVector(0.5·yelp + 1·sst2, 6×4, base=m)"
    assert repr(a - b / 2) == "TaskPromptVector(1·sst2 - 0.5·yelp, 6×4, base=m)"
    torch.testing.assert_close(combo.tensor, 0.5 * b.tensor + a.tensor)


def test_operations_never_mutate_their_inputs():
    a, b = _vec(0, "a"), _vec(1, "b")
    before_a, before_b = a.tensor.clone(), b.tensor.clone()
    for result in (a + b, a - b, -a, 2 * a, a / 3, sum([a, b]), a.to("cpu"), combine([(a, 2.0), b])):
        assert result is not a and result.tensor.data_ptr() != a.tensor.data_ptr()
    origin = torch.zeros(SHAPE)
    a.apply_to(origin, 2.0)
    assert torch.equal(a.tensor, before_a) and torch.equal(b.tensor, before_b)
    assert a.tasks == {"a": 1.0} and torch.count_nonzero(origin) == 0


def test_tensor_is_float32_even_from_half_input():
    v = TaskPromptVector(torch.ones(2, 3, dtype=torch.float16), tasks={"a": 1})
    assert v.tensor.dtype == torch.float32 and (v * 2).tensor.dtype == torch.float32


def test_norm_and_cosine_poolings_match_hand_computation():
    a = TaskPromptVector(torch.tensor([[1.0, 0.0], [1.0, 2.0]]), tasks={"a": 1})
    b = TaskPromptVector(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), tasks={"b": 1})
    assert a.norm() == pytest.approx(math.sqrt(6))
    # mean-pooled: (1, 1) vs (0.5, 0.5) -> 1
    assert a.cosine(b, "mean") == pytest.approx(1.0)
    assert a.cosine(b, "flat") == pytest.approx(1 / (math.sqrt(6) * math.sqrt(2)))
    assert a.cosine(b, "per_token") == pytest.approx((0 + 1 / math.sqrt(5)) / 2)


def test_seq2seq_untrained_rows_do_not_pollute_pooling():
    trained = torch.randn(3, 4)
    full = torch.cat([trained, torch.zeros(3, 4)])
    v = TaskPromptVector(full, tasks={"a": 1}, num_virtual_tokens=3, num_transformer_submodules=2)
    w = TaskPromptVector(
        torch.cat([trained.flip(0), torch.zeros(3, 4)]),
        tasks={"b": 1},
        num_virtual_tokens=3,
        num_transformer_submodules=2,
    )
    assert v.active_tensor.shape == (3, 4)
    # Per-token cosine over all 6 rows would be undefined (zero rows); over the trained rows it is defined.
    assert v.cosine(w, "per_token") == pytest.approx(
        float(torch.nn.functional.cosine_similarity(trained, trained.flip(0), dim=-1).mean()), abs=1e-6
    )
    assert v.norm() == pytest.approx(float(trained.norm()))


def test_save_load_round_trip_keeps_everything(tmp_path):
    v = 0.5 * _vec(
        0,
        "sst2",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        task_type="CAUSAL_LM",
        origin="sample_vocab(seed=0)",
    ) + _vec(1, "yelp", base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    path = v.save(tmp_path / "combo.tpv.safetensors")
    loaded = TaskPromptVector.load(path)
    assert torch.equal(loaded.tensor, v.tensor)
    assert (loaded.tasks, loaded.base_model, loaded.task_type, loaded.origin) == (
        {"sst2": 0.5, "yelp": 1.0},
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "CAUSAL_LM",
        "sample_vocab(seed=0)",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["combo.tpv.safetensors"]  # no temp file left behind


# ---- errors ------------------------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes_and_the_fix():
    with pytest.raises(TPVError, match=r"shape \(6, 4\) and \(5, 4\): num_virtual_tokens differ \(6 vs 5\)"):
        _vec(0) + _vec(1, shape=(5, 4))
    with pytest.raises(TPVError, match=r"token_dim differs \(4 vs 3\)"):
        _vec(0).cosine(_vec(1, shape=(6, 3)))


def test_base_model_mismatch():
    with pytest.raises(TPVError, match=r"different base models \('t5-base' vs 'gpt2'\)"):
        _vec(0, base_model="t5-base") + _vec(1, base_model="gpt2")
    with pytest.raises(TPVError, match="different base models"):
        _vec(0, base_model="t5-base").apply_to(Origin(torch.zeros(SHAPE), 6, base_model="gpt2"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensor_or_scale(bad):
    with pytest.raises(TPVError, match="1 NaN/inf values"):
        TaskPromptVector(torch.tensor([[0.0, bad]]), tasks={"a": 1})
    with pytest.raises(TPVError, match=f"scale {bad}: the scale must be finite"):
        _vec(0).apply_to(torch.zeros(SHAPE), scale=bad)
    with pytest.raises(TPVError, match="must be finite"):
        _vec(0) * bad


def test_adding_a_non_vector_and_combining_nothing():
    with pytest.raises(TPVError, match="cannot add a Tensor and a TaskPromptVector"):
        _vec(0) + torch.zeros(SHAPE)
    with pytest.raises(TPVError, match="cannot add a int and a TaskPromptVector"):
        1 + _vec(0)
    with pytest.raises(TPVError, match="cannot combine an empty list of vectors"):
        combine([])
    with pytest.raises(TPVError, match="divide a task prompt vector by 0"):
        _vec(0) / 0
    with pytest.raises(TPVError, match="a real number is needed"):
        _vec(0) * "2"


def test_zero_vector_cosine_is_an_error():
    with pytest.raises(TPVError, match="all zeros"):
        (_vec(0) - _vec(0)).cosine(_vec(1))


def test_load_rejects_other_files_and_names_them(tmp_path):
    origin = Origin(torch.zeros(SHAPE), 6, seed=0, method="normal")
    origin.save(tmp_path / "o.origin.safetensors")
    with pytest.raises(TPVError, match="it is a tpv origin file"):
        TaskPromptVector.load(tmp_path / "o.origin.safetensors")
    pickled = tmp_path / "v.pt"
    torch.save({"x": torch.zeros(2)}, pickled)
    with pytest.raises(TPVError, match="not a safetensors file .it is a zip archive, probably a PyTorch pickle"):
        TaskPromptVector.load(pickled)
    with pytest.raises(TPVError, match="no such file"):
        TaskPromptVector.load(tmp_path / "missing.tpv.safetensors")
    from safetensors.torch import save_file

    save_file({"prompt_embeddings": torch.zeros(2, 2)}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(TPVError, match="PEFT prompt-tuning adapter weights"):
        TaskPromptVector.load(tmp_path / "adapter_model.safetensors")


def test_load_rejects_nan_in_file(tmp_path):
    from safetensors.torch import save_file

    v = _vec(0)
    v.save(tmp_path / "v.tpv.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "v.tpv.safetensors"), "pt") as f:
        meta = f.metadata()
    save_file({"task_prompt_vector": torch.full(SHAPE, float("nan"))}, tmp_path / "nan.tpv.safetensors", metadata=meta)
    with pytest.raises(TPVError, match="NaN/inf"):
        TaskPromptVector.load(tmp_path / "nan.tpv.safetensors")


def test_to_dtype_is_refused_with_the_fix():
    with pytest.raises(TPVError, match=r"vector.apply_to\(origin\).to\(dtype\)"):
        _vec(0).to(torch.float16)


def test_origin_is_a_recipe_string_that_reads_like_an_origin(tmp_path):
    from tpv.core.origin import OriginRecipe

    vector = TaskPromptVector(torch.ones(2, 3), tasks={"a": 1.0}, origin="sample_vocab(seed=0)")
    # Still the str it always was (comparisons, JSON, file metadata), and `.recipe` as on Origin objects.
    assert vector.origin == "sample_vocab(seed=0)" and isinstance(vector.origin, str)
    assert isinstance(vector.origin, OriginRecipe) and vector.origin.recipe == "sample_vocab(seed=0)"
    assert (vector + vector).origin.recipe == "sample_vocab(seed=0)"
    loaded = TaskPromptVector.load(vector.save(tmp_path / "a.tpv.safetensors"))
    assert loaded.origin.recipe == "sample_vocab(seed=0)"
    assert TaskPromptVector(torch.ones(2, 3), tasks={"a": 1.0}).origin is None
