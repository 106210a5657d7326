"""SPoT's task mixture and ATTEMPT's attention mixture of prompts on a tiny Llama."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import toy_examples
from tpv import TPVError
from tpv.compose.baselines.attempt import Attempt, train_attempt
from tpv.compose.baselines.spot import mix_tasks, mixture_task
from tpv.data.encoding import collate, encode_examples
from tpv.data.mixture import TASK_TAG, MixtureTask
from tpv.engine.metrics import accuracy, macro_f1


def _pools():
    sst2 = [{"sentence": f"s{i}", "label": i % 2} for i in range(30)]
    rte = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": i % 2} for i in range(10)]
    return {"sst2": sst2, "rte": rte}


def test_spot_multi_mixes_both_sources_equally_or_by_size():
    equal = mix_tasks(_pools(), "equal", seed=0)
    assert sum(e[TASK_TAG] == "sst2" for e in equal) == sum(e[TASK_TAG] == "rte" for e in equal) == 10
    by_size = mix_tasks(_pools(), "size", seed=0)
    assert [sum(e[TASK_TAG] == t for e in by_size) for t in ("sst2", "rte")] == [30, 10]
    capped = mix_tasks(_pools(), "size", seed=0, total=20)
    assert [sum(e[TASK_TAG] == t for e in capped) for t in ("sst2", "rte")] == [15, 5]
    # In proportion to the full datasets' sizes (the paper's mixing) when the pools are capped subsets.
    weighted = mix_tasks(_pools(), "size", seed=0, weights={"sst2": 67349, "rte": 2490})
    assert [sum(e[TASK_TAG] == t for e in weighted) for t in ("sst2", "rte")] == [30, 1]
    weighted = mix_tasks(_pools(), "size", seed=0, weights={"sst2": 1000, "rte": 500})
    assert [sum(e[TASK_TAG] == t for e in weighted) for t in ("sst2", "rte")] == [20, 10]
    # The same for the same seed, and the inputs are left untagged.
    assert equal == mix_tasks(_pools(), "equal", seed=0)
    assert all(TASK_TAG not in e for pool in _pools().values() for e in pool)


def test_mixture_task_formats_each_example_with_its_own_template():
    task = mixture_task(["sst2", "rte"])
    mixed = mix_tasks(_pools(), seed=0)
    pairs = {e[TASK_TAG]: task.format(e) for e in mixed}
    assert pairs["sst2"][0].startswith("sentence:") and pairs["sst2"][1] in ("negative", "positive")
    assert pairs["rte"][0].startswith("premise:") and pairs["rte"][1] in ("entailment", "not entailment")
    with pytest.raises(TPVError, match="not one of the mixture's tasks"):
        task.format({"sentence": "x", "label": 0})
    with pytest.raises(TPVError, match="two or more distinct tasks"):
        MixtureTask.of(["sst2"])
    with pytest.raises(TPVError, match="unknown proportions 'half'"):
        mix_tasks(_pools(), "half")


def _attempt(make_tiny_model, sources=2, variant="tpv", kind="llama"):
    torch.manual_seed(0)
    model = make_tiny_model(kind)
    prompts = {f"s{i}": torch.randn(4, 16) * 0.5 for i in range(sources)}
    if variant == "reference":
        return Attempt(model, prompts)
    return Attempt(model, prompts, torch.randn(4, 16) * 0.5, bottleneck=8, variant="tpv")


def test_attempt_mixture_weights_sum_to_one_per_input(make_tiny_model, word_tokenizer, toy_task):
    attempt = _attempt(make_tiny_model, sources=3)
    batch = collate(
        encode_examples(word_tokenizer, toy_task, toy_examples(6), seq2seq=False), 0, seq2seq=False, with_targets=False
    )
    weights = attempt.mixture_weights(batch["input_ids"], batch["attention_mask"])
    assert weights.shape == (6, 4)  # 3 sources + the target prompt
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(6))
    assert (weights > 0).all()
    prompts = attempt.instance_prompts(batch["input_ids"], batch["attention_mask"])
    assert prompts.shape == (6, 4, 16)


def test_attempt_trains_only_the_target_prompt_and_attention(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    attempt = _attempt(make_tiny_model)
    frozen = {n: p.clone() for n, p in attempt.model.named_parameters()}
    sources = attempt.source_prompts.clone()
    batch = collate(encode_examples(word_tokenizer, toy_task, toy_examples(8), seq2seq=False), 0, seq2seq=False)
    attempt.loss(batch).backward()
    with_grad = {n for n, p in attempt.named_parameters() if p.grad is not None}
    assert with_grad == {
        "target_prompt",
        "down.weight",
        "down.bias",
        "up.weight",
        "up.bias",
        "norm.weight",
        "norm.bias",
    }
    attempt.zero_grad()
    result = train_attempt(
        attempt,
        word_tokenizer,
        toy_task,
        toy_examples(64),
        output_dir=tmp_path / "a",
        max_steps=40,
        batch_size=8,
        learning_rate=0.3,
        attention_learning_rate=1e-2,
        progress=False,
    )
    losses = result["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert all(torch.equal(p, frozen[n]) for n, p in attempt.model.named_parameters())
    assert torch.equal(attempt.source_prompts, sources)
    held_out = toy_examples(16, seed=3)
    scores = attempt.evaluate(word_tokenizer, toy_task, held_out, return_predictions=True)
    labels = [example["label"] for example in held_out]
    assert len(scores["predictions"]) == scores["n"] == 16 and set(scores["predictions"]) <= {0, 1}
    assert scores["macro_f1"] == pytest.approx(macro_f1(scores["predictions"], labels, labels=[0, 1]))
    assert scores["accuracy"] == pytest.approx(accuracy(scores["predictions"], labels))


def test_attempt_training_is_cached(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    kwargs = dict(output_dir=tmp_path / "a", max_steps=3, batch_size=4, progress=False)
    first = _attempt(make_tiny_model)
    assert not train_attempt(first, word_tokenizer, toy_task, toy_examples(16), **kwargs)["cached"]
    second = _attempt(make_tiny_model)
    assert train_attempt(second, word_tokenizer, toy_task, toy_examples(16), **kwargs)["cached"]
    assert torch.equal(first.target_prompt, second.target_prompt)
    with pytest.raises(TPVError, match="holds an ATTEMPT run with other settings"):
        train_attempt(_attempt(make_tiny_model), word_tokenizer, toy_task, toy_examples(15), **kwargs)


def _toy_batch(tokenizer, task, n, seq2seq=False, with_targets=True):
    return collate(
        encode_examples(tokenizer, task, toy_examples(n), seq2seq=seq2seq),
        0,
        seq2seq=seq2seq,
        with_targets=with_targets,
    )


def test_reference_attempt_follows_attempts_code(make_tiny_model, word_tokenizer, toy_task):
    attempt = _attempt(make_tiny_model, sources=2, variant="reference")
    # The target prompt starts from the first source prompt; bottleneck = prompt rows, no biases.
    assert torch.equal(attempt.target_prompt.detach(), attempt.source_prompts[0])
    assert (attempt.down.in_features, attempt.down.out_features) == (16, 4)
    assert attempt.down.bias is None and attempt.up.bias is None
    batch = _toy_batch(word_tokenizer, toy_task, 6, with_targets=False)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    # Recompute the weights by hand: input max-pooled (padding excluded), prompt keys max-pooled over tokens.
    embeds = attempt.model.get_input_embeddings()(ids).float()
    pooled = torch.stack([embeds[b, mask[b].bool()].max(dim=0).values for b in range(len(ids))])
    h = F.layer_norm(attempt.up(F.silu(attempt.down(pooled))), (16,))
    keys = torch.cat([attempt.source_prompts, attempt.target_prompt.detach().unsqueeze(0)]).max(dim=1).values
    expected = torch.softmax(h @ keys.T / (16 * math.e), dim=-1)
    torch.testing.assert_close(attempt.mixture_weights(ids, mask), expected)


def test_reference_attempt_never_trains_its_layer_norm(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    attempt = _attempt(make_tiny_model, variant="reference")
    attempt.loss(_toy_batch(word_tokenizer, toy_task, 8)).backward()
    assert {n for n, p in attempt.named_parameters() if p.grad is not None} == {
        "target_prompt",
        "down.weight",
        "up.weight",
    }
    attempt.zero_grad()
    train_attempt(
        attempt,
        word_tokenizer,
        toy_task,
        toy_examples(32),
        output_dir=tmp_path / "a",
        max_steps=10,
        batch_size=8,
        progress=False,
    )
    assert torch.equal(attempt.norm.weight, torch.ones(16)) and torch.equal(attempt.norm.bias, torch.zeros(16))


def test_attempt_on_a_tiny_t5(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    attempt = _attempt(make_tiny_model, variant="reference", kind="t5")
    frozen = {n: p.clone() for n, p in attempt.model.named_parameters()}
    batch = _toy_batch(word_tokenizer, toy_task, 6, seq2seq=True, with_targets=False)
    weights = attempt.mixture_weights(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(6))
    embeds, mask = attempt.prompted_inputs(batch["input_ids"], batch["attention_mask"])
    assert embeds.shape[1] == batch["input_ids"].shape[1] + 4 and mask.shape == embeds.shape[:2]
    before = attempt.evaluate(word_tokenizer, toy_task, toy_examples(16, seed=3), return_predictions=True)
    result = train_attempt(
        attempt,
        word_tokenizer,
        toy_task,
        toy_examples(64),
        output_dir=tmp_path / "t5",
        max_steps=40,
        batch_size=8,
        learning_rate=0.3,
        progress=False,
    )
    losses = result["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert all(torch.equal(p, frozen[n]) for n, p in attempt.model.named_parameters())
    after = attempt.evaluate(word_tokenizer, toy_task, toy_examples(16, seed=3))
    generated = attempt.evaluate(
        word_tokenizer, toy_task, toy_examples(16, seed=3), method="generate", max_new_tokens=3, answer_match="exact"
    )
    assert before["n"] == after["n"] == generated["n"] == 16 and 0 <= generated["invalid"] <= 16
    assert "binary_f1" in after


def test_attempt_generates_on_a_causal_lm(make_tiny_model, word_tokenizer, toy_task):
    attempt = _attempt(make_tiny_model, variant="reference")
    ranked = attempt.evaluate(word_tokenizer, toy_task, toy_examples(8))
    generated = attempt.evaluate(
        word_tokenizer, toy_task, toy_examples(8), method="generate", max_new_tokens=2, return_predictions=True
    )
    assert ranked["method"] == "rank" and generated["method"] == "generate"
    assert generated["invalid"] == sum(p == -1 for p in generated["predictions"])


def test_attempt_errors(make_tiny_model):
    model = make_tiny_model("llama")
    with pytest.raises(TPVError, match="must all be"):
        Attempt(model, {"a": torch.zeros(4, 16)}, torch.zeros(5, 16))
    with pytest.raises(TPVError, match="at least one source prompt"):
        Attempt(model, {}, torch.zeros(4, 16))
    with pytest.raises(TPVError, match="unknown ATTEMPT variant 'mean'"):
        Attempt(model, {"a": torch.zeros(4, 16)}, variant="mean")


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_attempt_scores_as_the_engine_does_for_the_same_effective_prompt(
    make_tiny_model, word_tokenizer, toy_task, kind
):
    from tpv import Origin, init_prompt_tuning
    from tpv.engine.evaluation import evaluate
    from tpv.engine.scoring import label_word_logits, prompt_tuning_loss

    # With every prompt equal to q, each input's instance prompt is q + (Σ_j a_j) q = 2q whatever the weights:
    # one fixed prompt, which a PEFT adapter on the same LM can hold too.
    torch.manual_seed(0)
    q = torch.randn(4, 16) * 0.5
    attempt = Attempt(make_tiny_model(kind), {"a": q, "b": q}, q, variant="tpv", bottleneck=8)
    inputs = _toy_batch(word_tokenizer, toy_task, 8, seq2seq=kind == "t5", with_targets=False)
    torch.testing.assert_close(
        attempt.instance_prompts(inputs["input_ids"], inputs["attention_mask"]), (2 * q).expand(8, -1, -1)
    )
    peft_model = init_prompt_tuning(make_tiny_model(kind), origin=Origin(2 * q, num_virtual_tokens=4))
    batch = _toy_batch(word_tokenizer, toy_task, 8, seq2seq=kind == "t5")
    torch.testing.assert_close(attempt.loss(batch), prompt_tuning_loss(peft_model, batch), rtol=1e-5, atol=1e-6)
    labels = torch.tensor(word_tokenizer.convert_tokens_to_ids(["negative", "positive"]))
    with torch.no_grad():
        torch.testing.assert_close(
            label_word_logits(attempt, inputs["input_ids"], inputs["attention_mask"], labels),
            label_word_logits(peft_model, inputs["input_ids"], inputs["attention_mask"], labels),
            rtol=1e-5,
            atol=1e-5,
        )
    data = toy_examples(16, seed=3)
    for method in ("rank", "generate"):
        ours = attempt.evaluate(
            word_tokenizer, toy_task, data, method=method, max_new_tokens=3, batch_size=5, return_predictions=True
        )
        engine = evaluate(
            peft_model,
            word_tokenizer,
            toy_task,
            data,
            method=method,
            max_new_tokens=3,
            batch_size=5,
            return_predictions=True,
        )
        assert ours == engine
