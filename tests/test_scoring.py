"""The fast forward paths agree with PEFT's own forward."""

import pytest
import torch

from conftest import toy_examples
from tpv import init_prompt_tuning, make_origin
from tpv.data.encoding import collate, encode_examples
from tpv.engine.scoring import has_fast_path, label_word_logits, prompt_tuning_loss, sequence_log_likelihoods


@pytest.fixture(params=["llama", "gpt2"])
def causal(request, make_tiny_model, word_tokenizer, toy_task):
    model = make_tiny_model(request.param)
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    encoded = encode_examples(word_tokenizer, toy_task, toy_examples(6), seq2seq=False)
    return peft_model, collate(encoded, 0, seq2seq=False)


def test_fast_loss_equals_peft_loss_and_gradient(causal):
    peft_model, batch = causal
    assert has_fast_path(peft_model)
    prompt = peft_model.prompt_encoder["default"].embedding.weight
    fast = prompt_tuning_loss(peft_model, batch)
    fast.backward()
    fast_grad, prompt.grad = prompt.grad.clone(), None
    reference = peft_model(**batch).loss
    reference.backward()
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_grad, prompt.grad, rtol=1e-4, atol=1e-6)


def test_label_word_logits_are_columns_of_the_full_logits(causal):
    peft_model, batch = causal
    inputs = collate(encode_examples_inputs(batch), 0, seq2seq=False, with_targets=False)
    token_ids = torch.tensor([6, 7])
    fast = label_word_logits(peft_model, inputs["input_ids"], inputs["attention_mask"], token_ids)
    full = peft_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    last = full.shape[1] - inputs["input_ids"].shape[1] + inputs["attention_mask"].sum(1) - 1
    torch.testing.assert_close(fast, full[torch.arange(full.shape[0]), last][:, token_ids], rtol=1e-5, atol=1e-5)


def encode_examples_inputs(batch):
    from tpv.data.encoding import Encoded

    rows = []
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        keep = (labels == -100) & (mask == 1)
        rows.append(Encoded(tuple(ids[keep].tolist()), ()))
    return rows


def test_sequence_log_likelihood_matches_a_hand_sum(causal):
    peft_model, batch = causal
    scores = sequence_log_likelihoods(peft_model, batch)
    logits = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, -batch["input_ids"].shape[1] :]
    log_probs = torch.log_softmax(logits[:, :-1], -1)
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    expected = (log_probs.gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2) * mask).sum(1)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_seq2seq_uses_peft_forward(make_tiny_model, word_tokenizer, toy_task):
    model = make_tiny_model("t5")
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    assert not has_fast_path(peft_model)
    batch = collate(encode_examples(word_tokenizer, toy_task, toy_examples(4), seq2seq=True), 0, seq2seq=True)
    torch.testing.assert_close(prompt_tuning_loss(peft_model, batch), peft_model(**batch).loss)
