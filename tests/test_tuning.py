"""tune_prompt: a few prompt-tuning steps without a Trainer, seeded, on the engine's loss."""

import pytest
import torch

from conftest import toy_examples
from tpv import TPVError, init_prompt_tuning, make_origin
from tpv.compose.tuning import tune_prompt
from tpv.data import Task
from tpv.engine.evaluation import evaluate


def _task() -> Task:
    return Task("toy", "sentiment", "text: {text} label:", ("negative", "positive"), metric="accuracy")


def _peft_model():
    from tpv.experiments.tiny import tiny_llama

    model = tiny_llama(initializer_range=0.5)
    return init_prompt_tuning(model, origin=make_origin(model, 4, seed=0))


def _skewed(n: int, seed: int) -> list[dict]:
    """85% positive examples: a prompt can learn the label prior even where the tiny model cannot read the text."""
    examples = toy_examples(4 * n, seed)
    positive = [e for e in examples if e["label"] == 1]
    negative = [e for e in examples if e["label"] == 0]
    return positive[: int(0.85 * n)] + negative[: n - int(0.85 * n)]


def test_tuning_learns_the_toy_task_and_is_repeatable(word_tokenizer):
    train, validation = _skewed(96, 0), _skewed(64, 1)
    first = _peft_model()
    before = evaluate(first, word_tokenizer, _task(), validation)["accuracy"]
    seen = []
    prompt = tune_prompt(first, word_tokenizer, _task(), train, steps=40, on_step=seen.append)
    after = evaluate(first, word_tokenizer, _task(), validation)["accuracy"]
    assert seen == list(range(1, 41)) and after > before
    # Same start, same seed: the same batches and the same prompt; another seed, another prompt.
    assert torch.equal(tune_prompt(_peft_model(), word_tokenizer, _task(), train, steps=40), prompt)
    assert not torch.equal(tune_prompt(_peft_model(), word_tokenizer, _task(), train, steps=40, seed=1), prompt)


def test_tuning_leaves_the_base_model_frozen(word_tokenizer):
    peft_model = _peft_model()
    weights = {name: p.detach().clone() for name, p in peft_model.get_base_model().named_parameters()}
    tune_prompt(peft_model, word_tokenizer, _task(), toy_examples(16), steps=2)
    for name, parameter in peft_model.get_base_model().named_parameters():
        assert torch.equal(parameter, weights[name]), name


def test_bad_input_is_one_tpverror(word_tokenizer):
    with pytest.raises(TPVError, match="steps must be a positive int, got 0"):
        tune_prompt(_peft_model(), word_tokenizer, _task(), toy_examples(8), steps=0)
    with pytest.raises(TPVError, match="no training examples to tune a prompt for task 'toy'"):
        tune_prompt(_peft_model(), word_tokenizer, _task(), [], steps=1)
