"""Origins: determinism, the paper's vocabulary sampling, files."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from tpv import Origin, TPVError, make_origin


def test_sample_vocab_rows_are_vocabulary_embeddings(make_tiny_model):
    model = make_tiny_model("llama")
    origin = make_origin(model, num_virtual_tokens=5, seed=3)
    vocab = model.get_input_embeddings().weight
    for row in origin.tensor:
        assert (vocab == row).all(dim=1).any(), "every origin row must be a row of the vocabulary"
    assert origin.shape == (5, 16) and origin.num_transformer_submodules == 1
    assert origin.recipe == "sample_vocab(seed=3)"


def test_same_seed_is_bit_identical_across_processes(make_tiny_model, tmp_path):
    model = make_tiny_model("gpt2")
    model.save_pretrained(tmp_path / "m")
    code = (
        "import sys, torch; from transformers import AutoModelForCausalLM; from tpv import make_origin;"
        f"m = AutoModelForCausalLM.from_pretrained(r'{tmp_path / 'm'}');"
        "o = make_origin(m, 7, seed=11); print(o.sha256)"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(2)
    }
    assert len(runs) == 1
    assert make_origin(model, 7, seed=11).sha256 == runs.pop()
    assert make_origin(model, 7, seed=12).sha256 != make_origin(model, 7, seed=11).sha256


def test_seq2seq_gets_two_submodules(make_tiny_model):
    origin = make_origin(make_tiny_model("t5"), num_virtual_tokens=4, seed=0)
    assert origin.shape == (8, 16) and origin.num_transformer_submodules == 2


def test_normal_method_matches_the_vocabulary_scale(make_tiny_model):
    model = make_tiny_model("llama")
    origin = make_origin(model, num_virtual_tokens=200, seed=0, method="normal")
    vocab_std = float(model.get_input_embeddings().weight.std())
    assert float(origin.tensor.std()) == pytest.approx(vocab_std, rel=0.1)
    assert origin.recipe.startswith("normal(seed=0, std=")
    assert torch.equal(
        make_origin(model, 200, seed=0, method="normal", std=0.5).tensor,
        make_origin(model, 200, seed=0, method="normal", std=0.5).tensor,
    )


def test_save_load_round_trip(make_tiny_model, tmp_path):
    origin = make_origin(make_tiny_model("t5"), 3, seed=9, method="normal")
    origin.save(tmp_path / "o.origin.safetensors")
    loaded = Origin.load(tmp_path / "o.origin.safetensors")
    assert torch.equal(loaded.tensor, origin.tensor)
    assert (loaded.seed, loaded.method, loaded.recipe, loaded.num_transformer_submodules) == (
        9,
        "normal",
        origin.recipe,
        2,
    )


def test_errors(make_tiny_model, tmp_path):
    model = make_tiny_model("llama")
    with pytest.raises(TPVError, match="unknown origin method 'text'"):
        make_origin(model, 4, method="text")
    with pytest.raises(TPVError, match="num_virtual_tokens must be a positive int, got 0"):
        make_origin(model, 0)
    with pytest.raises(TPVError, match="cannot find the input embeddings of str"):
        make_origin("gpt2", 4)
    with pytest.raises(TPVError, match="origin holds 1 NaN/inf"):
        Origin(torch.tensor([[float("nan"), 0.0]]), num_virtual_tokens=1)
    with pytest.raises(TPVError, match="3 rows but num_virtual_tokens=2"):
        Origin(torch.zeros(3, 2), num_virtual_tokens=2)
    from safetensors.torch import save_file

    save_file({"task_prompt_vector": torch.zeros(2, 2)}, tmp_path / "v.safetensors", metadata={"format": "tpv/1"})
    with pytest.raises(TPVError, match="not a tpv origin file: it is a task prompt vector file"):
        Origin.load(tmp_path / "v.safetensors")


def _official_create_origin_ids(n_origins: int, rows: int, vocab_size: int) -> list[list[int]]:
    # A re-implementation of the official scripts/create_origin.py (kinit-sk/task-prompt-vectors@3866c35) on a
    # small vocabulary: the global NumPy stream seeded 1024, one permutation per origin, in order.
    saved = np.random.get_state()
    try:
        np.random.seed(seed=1024)
        return [np.random.permutation(range(min(5000, vocab_size)))[:rows].tolist() for _ in range(n_origins)]
    finally:
        np.random.set_state(saved)


@pytest.mark.parametrize("vocab_size", [64, 5003])
def test_paper_method_is_the_official_scripts_ith_origin(vocab_size):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab_size, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
        )
    )
    vocab = model.get_input_embeddings().weight
    official = _official_create_origin_ids(3, 6, vocab_size)
    for i in range(3):
        origin = make_origin(model, 6, seed=i, method="paper")
        assert torch.equal(origin.tensor, vocab[official[i]].float()), f"origin {i}"
        assert origin.recipe == f"paper(seed={i})"
    assert len(set(official[0])) == 6, "drawn without replacement"
    if vocab_size > 5000:
        assert max(max(ids) for ids in official) < 5000


def test_paper_method_takes_both_submodules_rows_from_one_permutation(make_tiny_model):
    model = make_tiny_model("t5")
    origin = make_origin(model, 4, seed=1, method="paper")
    vocab = model.get_input_embeddings().weight
    ids = _official_create_origin_ids(2, 8, vocab.shape[0])[1]
    assert origin.shape == (8, 16) and torch.equal(origin.tensor, vocab[ids].float())


def test_paper_method_rejects_impossible_draws(make_tiny_model):
    model = make_tiny_model("llama")
    with pytest.raises(TPVError, match="numbered from 0"):
        make_origin(model, 4, seed=-1, method="paper")
    with pytest.raises(TPVError, match="distinct ids"):
        make_origin(model, model.get_input_embeddings().weight.shape[0] + 1, seed=0, method="paper")


def test_a_rebuilt_text_origin_keeps_its_recipe_through_a_file(tmp_path):
    origin = Origin(
        torch.ones(3, 4),
        num_virtual_tokens=3,
        method="text",
        options={"text": 'say "yes"', "tokenizer": "gpt2"},
    )
    assert origin.recipe == 'text("say \\"yes\\"", tokenizer=gpt2)'
    origin.save(tmp_path / "t.origin.safetensors")
    loaded = Origin.load(tmp_path / "t.origin.safetensors")
    assert loaded.recipe == origin.recipe and loaded.method == "text" and torch.equal(loaded.tensor, origin.tensor)
    assert Origin(torch.ones(2, 4), num_virtual_tokens=2, seed=3, method="peft_random").recipe == "peft_random(seed=3)"
