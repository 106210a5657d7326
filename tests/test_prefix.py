"""The shared-prefix engine gives today's loss, gradient, scores and (correctly placed) generations."""

import pytest
import torch

from conftest import toy_examples
from tpv import init_prompt_tuning, make_origin
from tpv.core.errors import TPVError
from tpv.data.encoding import collate, encode_examples
from tpv.engine.prefix import (
    FULL,
    SHARED_PREFIX,
    choose_engine,
    generate_after_prefix,
    input_positions,
    prefixed_hidden_states,
    prompt_prefix,
)
from tpv.engine.scoring import input_hidden_states, prompt_tuning_loss


def _prompt_tuned(model, virtual=5):
    return init_prompt_tuning(model, origin=make_origin(model, virtual, seed=0))


@pytest.fixture(params=["llama", "gpt2"])
def causal(request, make_tiny_model, word_tokenizer, toy_task):
    peft_model = _prompt_tuned(make_tiny_model(request.param))
    encoded = encode_examples(word_tokenizer, toy_task, toy_examples(6), seq2seq=False)
    return peft_model, collate(encoded, 0, seq2seq=False)


def _loss_and_grad(peft_model, batch, shared_prefix):
    prompt = peft_model.prompt_encoder["default"].embedding.weight
    prompt.grad = None
    loss = prompt_tuning_loss(peft_model, batch, shared_prefix=shared_prefix)
    loss.backward()
    return loss.detach(), prompt.grad.clone()


def assert_same_loss_and_gradient(peft_model, batch):
    shared_loss, shared_grad = _loss_and_grad(peft_model, batch, True)
    full_loss, full_grad = _loss_and_grad(peft_model, batch, False)
    torch.testing.assert_close(shared_loss, full_loss, rtol=1e-4, atol=0)
    cosine = torch.nn.functional.cosine_similarity(shared_grad.flatten(), full_grad.flatten(), dim=0)
    assert cosine >= 0.9999, f"gradient cosine {cosine.item():.6f}"
    torch.testing.assert_close(shared_grad, full_grad, rtol=1e-3, atol=1e-6)


def test_shared_prefix_loss_and_gradient_equal_the_full_forward(causal):
    peft_model, batch = causal
    assert choose_engine(peft_model) == SHARED_PREFIX
    assert_same_loss_and_gradient(peft_model, batch)


def test_broadcast_prefix_shares_memory_and_survives_a_forward(causal):
    peft_model, batch = causal
    with torch.no_grad():
        prefix = prompt_prefix(peft_model)
        stored = [(k.clone(), v.clone()) for k, v in prefix.keys_values]
        cache = prefix.cache_for(batch["input_ids"].shape[0])
        for layer, (keys, _) in zip(cache.layers, prefix.keys_values):
            # A stride of 0 over the batch: every row reads the one stored prompt, nothing is copied per row.
            assert layer.keys.stride(0) == 0 and layer.keys.data_ptr() == keys.data_ptr()
        first = prefixed_hidden_states(peft_model, prefix, batch["input_ids"], batch["attention_mask"])
        second = prefixed_hidden_states(peft_model, prefix, batch["input_ids"], batch["attention_mask"])
    for (keys, values), (old_keys, old_values) in zip(prefix.keys_values, stored):
        assert keys.shape[0] == 1 and torch.equal(keys, old_keys) and torch.equal(values, old_values)
    torch.testing.assert_close(first, second)


def test_scoring_hidden_states_match_between_engines(causal):
    peft_model, batch = causal
    with torch.no_grad():
        full = input_hidden_states(peft_model, batch["input_ids"], batch["attention_mask"])
        shared = input_hidden_states(
            peft_model, batch["input_ids"], batch["attention_mask"], prefix=prompt_prefix(peft_model)
        )
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(shared[real], full[real], rtol=1e-4, atol=1e-5)


def test_left_padded_rows_see_the_positions_of_training(causal):
    peft_model, batch = causal
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(1)
    width = ids.shape[1]
    left_ids = torch.stack([torch.cat([ids.new_zeros(width - n), row[:n]]) for row, n in zip(ids, lengths)])
    left_mask = torch.stack([torch.cat([mask.new_zeros(width - n), mask.new_ones(n)]) for n in lengths])
    assert input_positions(left_mask, 5, left_padded=True)[left_mask.bool()].min() == 5
    with torch.no_grad():
        prefix = prompt_prefix(peft_model)
        right = prefixed_hidden_states(peft_model, prefix, ids, mask)
        left = prefixed_hidden_states(
            peft_model, prefix, left_ids, left_mask, position_ids=input_positions(left_mask, 5, left_padded=True)
        )
    torch.testing.assert_close(left[left_mask.bool()], right[mask.bool()], rtol=1e-4, atol=1e-5)


def test_generation_after_the_prefix_matches_peft_and_ignores_left_padding(make_tiny_model):
    peft_model = _prompt_tuned(make_tiny_model("llama"))
    rows = [[5, 9, 12, 7, 30], [40, 8]]
    with torch.no_grad():
        prefix = prompt_prefix(peft_model)
        alone = []
        for row in rows:
            ids = torch.tensor([row])
            ours = generate_after_prefix(
                peft_model, prefix, ids, torch.ones_like(ids), max_new_tokens=6, eos_token_id=None, pad_token_id=0
            )
            peft = peft_model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, pad_token_id=0
            )[:, ids.shape[1] :]
            # Unpadded, PEFT's generate places tokens right, so the two must agree token for token.
            assert ours.tolist() == peft.tolist()
            alone.append(ours[0].tolist())
        ids = torch.tensor([rows[0], [0, 0, 0] + rows[1]])
        mask = torch.tensor([[1] * 5, [0, 0, 0, 1, 1]])
        batched = generate_after_prefix(
            peft_model, prefix, ids, mask, max_new_tokens=6, eos_token_id=None, pad_token_id=0
        )
    assert batched.tolist() == alone


def test_generation_stops_rows_whose_answer_is_decided(make_tiny_model):
    peft_model = _prompt_tuned(make_tiny_model("llama"))
    ids = torch.tensor([[5, 9, 12], [4, 8, 10]])
    calls = []

    def after_two(row, new_ids):
        calls.append((row, len(new_ids)))
        return len(new_ids) >= 2

    with torch.no_grad():
        out = generate_after_prefix(
            peft_model,
            prompt_prefix(peft_model),
            ids,
            torch.ones_like(ids),
            max_new_tokens=10,
            eos_token_id=None,
            pad_token_id=0,
            finished=after_two,
        )
    assert out.shape == (2, 2) and max(n for _, n in calls) == 2


def test_encoder_decoder_and_forced_choices(make_tiny_model):
    t5 = _prompt_tuned(make_tiny_model("t5"))
    assert choose_engine(t5) == FULL
    with pytest.raises(TPVError, match="encoder-decoder"):
        choose_engine(t5, shared_prefix=True)
    llama = _prompt_tuned(make_tiny_model("llama"))
    assert choose_engine(llama, shared_prefix=False) == FULL
    assert choose_engine(llama, gradient_checkpointing=True) == FULL
    with pytest.raises(TPVError, match="shared_prefix must be"):
        choose_engine(llama, shared_prefix="yes")


def test_an_attention_implementation_without_prefix_masks_falls_back(make_tiny_model):
    peft_model = _prompt_tuned(make_tiny_model("llama"))
    peft_model.get_base_model().config._attn_implementation = "flex_attention"
    assert choose_engine(peft_model) == FULL
    with pytest.raises(TPVError, match="flex_attention"):
        choose_engine(peft_model, shared_prefix=True)


@pytest.mark.slow
def test_default_model_loss_and_gradient_equal_the_full_forward():
    from tpv.bridge.models import load_model
    from tpv.data import get_task, load_split

    model, tokenizer = load_model(dtype=torch.float32)
    peft_model = _prompt_tuned(model, virtual=20)
    task = get_task("sst2")
    encoded = encode_examples(tokenizer, task, load_split("sst2", "train")[:8], seq2seq=False)
    assert choose_engine(peft_model) == SHARED_PREFIX
    assert_same_loss_and_gradient(peft_model, collate(encoded, tokenizer.pad_token_id, seq2seq=False))
