"""evaluate(): rank and generate agree on a model whose answers are forced; scores and bookkeeping."""

import pytest
import torch

from conftest import make_word_tokenizer, toy_examples
from tpv import TPVError, get_prompt, init_prompt_tuning, make_origin
from tpv.data import Task
from tpv.engine.evaluation import evaluate, label_token_ids
from tpv.engine.metrics import accuracy, macro_f1


def _forced_model(tokenizer, next_token: dict[str, str]):
    """A Llama whose one layer adds nothing: the next token depends only on the current one, so answers are forced.

    With one-hot embeddings, the final norm keeps token i's direction, and lm_head row j, column i decides how
    strongly token i is followed by token j. The layer (attention and MLP outputs zeroed) gives the shared-prefix
    engine keys and values to cache.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = 32
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=vocab,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(torch.eye(vocab))
        head = torch.zeros(vocab, vocab)
        ids = tokenizer.convert_tokens_to_ids
        for current, following in next_token.items():
            head[ids(following), ids(current)] = 10.0
        model.get_output_embeddings().weight.copy_(head)
        model.model.layers[0].self_attn.o_proj.weight.zero_()
        model.model.layers[0].mlp.down_proj.weight.zero_()
    return model


@pytest.fixture
def forced(word_tokenizer):
    # The template ends with the text itself, so its last word alone decides the answer.
    task = Task("forced", "sentiment", "{text}", ("negative", "positive"))
    rules = {
        "good": "positive",
        "great": "positive",
        "fun": "positive",
        "bad": "negative",
        "awful": "negative",
        "dull": "negative",
        "positive": "</s>",
        "negative": "</s>",
        "movie": "film",
    }
    model = _forced_model(word_tokenizer, rules)
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 2, seed=0))
    return peft_model, task


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_rank_and_generate_agree_on_forced_answers(forced, word_tokenizer, shared_prefix):
    peft_model, task = forced
    data = toy_examples(24, seed=1)
    ranked = evaluate(
        peft_model,
        word_tokenizer,
        task,
        data,
        method="rank",
        batch_size=5,
        return_predictions=True,
        shared_prefix=shared_prefix,
    )
    generated = evaluate(
        peft_model,
        word_tokenizer,
        task,
        data,
        method="generate",
        batch_size=5,
        return_predictions=True,
        shared_prefix=shared_prefix,
    )
    assert ranked["predictions"] == generated["predictions"] == [ex["label"] for ex in data]
    assert ranked["macro_f1"] == generated["macro_f1"] == 1.0
    assert ranked["accuracy"] == 1.0 and generated["invalid"] == 0


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_unparseable_generations_count_as_wrong(forced, word_tokenizer, shared_prefix):
    peft_model, task = forced
    data = [{"text": "movie", "label": 1}, {"text": "good", "label": 1}]  # "movie" -> "film": no label word
    result = evaluate(
        peft_model,
        word_tokenizer,
        task,
        data,
        method="generate",
        max_new_tokens=3,
        return_predictions=True,
        shared_prefix=shared_prefix,
    )
    assert result["predictions"] == [-1, 1]
    assert result["invalid"] == 1 and result["accuracy"] == 0.5
    # The official code's binary F1 of label 1: one hit, one miss (the invalid answer), no false alarm.
    assert result["binary_f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_classification_generation_stops_once_the_label_is_decided(word_tokenizer, shared_prefix):
    task = Task("forced", "sentiment", "{text}", ("negative", "positive"))
    # "movie" and "film" follow each other forever and never emit EOS.
    model = _forced_model(word_tokenizer, {"movie": "film", "film": "movie", "good": "positive"})
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 2, seed=0))
    steps = []
    peft_model.get_base_model().model.register_forward_hook(lambda *_: steps.append(1))
    data = [{"text": "movie", "label": 1}, {"text": "good", "label": 1}]
    result = evaluate(
        peft_model,
        word_tokenizer,
        task,
        data,
        method="generate",
        max_new_tokens=100,
        return_predictions=True,
        shared_prefix=shared_prefix,
    )
    assert result["predictions"] == [-1, 1]
    # One-token labels: at most 1 + 1 new tokens (plus the prompt's one pass on the shared prefix), not 100.
    assert len(steps) <= 3


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_prompt_argument_is_swapped_in_and_restored(make_tiny_model, word_tokenizer, toy_task, shared_prefix):
    from tpv import set_prompt

    model = make_tiny_model("llama")
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    before = get_prompt(peft_model).clone()
    swapped = torch.randn(before.shape, generator=torch.Generator().manual_seed(1)) * 5
    data = toy_examples(8)
    # What the model body is fed: the prompt's rows come first (the whole forward's [prompt; input], or the
    # shared prefix's one pass over the prompt alone).
    fed = []
    peft_model.get_base_model().model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["inputs_embeds"][0, :3].detach().clone()), with_kwargs=True
    )

    with_swapped = evaluate(
        peft_model, word_tokenizer, toy_task, data, prompt=swapped, return_predictions=True, shared_prefix=shared_prefix
    )
    assert torch.equal(get_prompt(peft_model), before)
    assert any(torch.equal(rows, swapped) for rows in fed)
    assert not any(torch.equal(rows, before) for rows in fed)

    # The same as setting that prompt on the model for good.
    fed.clear()
    set_prompt(peft_model, swapped)
    assert (
        evaluate(peft_model, word_tokenizer, toy_task, data, return_predictions=True, shared_prefix=shared_prefix)
        == with_swapped
    )
    assert not any(torch.equal(rows, before) for rows in fed)


def test_shared_first_tokens_fall_back_to_whole_sequences(make_tiny_model, word_tokenizer):
    task = Task("shared", "sentiment", "text: {text} label:", ("very bad", "very good"))
    tokenizer = make_word_tokenizer()
    assert [ids[0] for ids in label_token_ids(tokenizer, task, False)] == [tokenizer.convert_tokens_to_ids("very")] * 2
    model = make_tiny_model("llama")
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    result = evaluate(peft_model, tokenizer, task, toy_examples(6), batch_size=4, return_predictions=True)
    assert set(result["predictions"]) <= {0, 1}


def test_seq2seq_rank_and_generate_run(make_tiny_model, word_tokenizer, toy_task):
    model = make_tiny_model("t5")
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    data = toy_examples(6)
    labels = [example["label"] for example in data]
    for method in ("rank", "generate"):
        result = evaluate(
            peft_model, word_tokenizer, toy_task, data, method=method, max_new_tokens=3, return_predictions=True
        )
        predictions = result["predictions"]
        assert result["n"] == len(predictions) == 6 and set(predictions) <= {-1, 0, 1}
        assert result["invalid"] == predictions.count(-1)
        assert result["accuracy"] == pytest.approx(accuracy(predictions, labels))
        assert result["macro_f1"] == pytest.approx(macro_f1(predictions, labels, labels=[0, 1]))
    # Rank scoring never answers outside the label words.
    assert -1 not in evaluate(peft_model, word_tokenizer, toy_task, data, return_predictions=True)["predictions"]


def test_errors(forced, word_tokenizer):
    peft_model, task = forced
    with pytest.raises(TPVError, match="unknown evaluation method 'beam'"):
        evaluate(peft_model, word_tokenizer, task, toy_examples(2), method="beam")
    with pytest.raises(TPVError, match="no examples to evaluate task 'forced'"):
        evaluate(peft_model, word_tokenizer, task, [])


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_exact_match_needs_the_bare_label_word(word_tokenizer, shared_prefix):
    # "bad" -> "negative" -> EOS is an exact answer; "good" -> "positive" -> "film" is not (the official code's
    # exact match), though it starts with a label word.
    task = Task("forced", "sentiment", "{text}", ("negative", "positive"))
    rules = {"good": "positive", "bad": "negative", "positive": "film", "negative": "</s>", "film": "</s>"}
    model = _forced_model(word_tokenizer, rules)
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 2, seed=0))
    data = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}]
    prefix = evaluate(
        peft_model, word_tokenizer, task, data, method="generate", return_predictions=True, shared_prefix=shared_prefix
    )
    exact = evaluate(
        peft_model,
        word_tokenizer,
        task,
        data,
        method="generate",
        answer_match="exact",
        return_predictions=True,
        shared_prefix=shared_prefix,
    )
    assert prefix["predictions"] == [1, 0] and prefix["invalid"] == 0
    assert exact["predictions"] == [-1, 0] and exact["invalid"] == 1
    with pytest.raises(TPVError, match="unknown answer_match 'loose'"):
        evaluate(peft_model, word_tokenizer, task, data, method="generate", answer_match="loose")


def test_format_scores_is_one_line_for_evaluate_and_trainer_metrics():
    from tpv.engine.evaluation import format_scores

    evaluated = {"n": 200, "method": "rank", "invalid": 0, "accuracy": 0.82, "macro_f1": 0.81234, "binary_f1": 0.8}
    assert (
        format_scores(evaluated, "macro_f1")
        == "macro_f1 0.8123, accuracy 0.8200, binary_f1 0.8000 (200 examples, rank)"
    )
    generated = {**evaluated, "method": "generate", "invalid": 3}
    assert format_scores(generated, "macro_f1", digits=2).endswith("(200 examples, generate, 3 matched no label)")
    # A Trainer's metrics: the eval_ prefix goes, and its timings are no scores.
    trainer = {"eval_loss": 0.5, "eval_runtime": 1.5, "eval_samples_per_second": 9.0, "eval_pearson": 0.7, "epoch": 1.0}
    assert format_scores(trainer, "pearson") == "pearson 0.7000, loss 0.5000"
