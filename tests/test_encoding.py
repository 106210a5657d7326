"""Tokenising once, truncation that keeps the answer cue, minimal padding."""

import pytest

from conftest import toy_examples
from tpv import TPVError
from tpv.data.encoding import ENCODING_CACHE, IGNORE_INDEX, collate, encode_examples, length_sorted_batches


def test_causal_targets_end_with_eos_and_labels_cover_only_them(word_tokenizer, toy_task):
    encoded = encode_examples(word_tokenizer, toy_task, [{"text": "good movie", "label": 1}], seq2seq=False)
    ids = word_tokenizer.convert_ids_to_tokens(list(encoded[0].input_ids))
    assert ids == ["text:", "good", "movie", "label:"]
    assert word_tokenizer.convert_ids_to_tokens(list(encoded[0].target_ids)) == ["positive", "</s>"]
    batch = collate(encoded * 2, 0, seq2seq=False)
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 4 + list(encoded[0].target_ids)


def test_truncation_keeps_head_and_answer_cue(word_tokenizer, toy_task):
    long = {"text": " ".join(["movie"] * 100) + " good", "label": 1}
    (encoded,) = encode_examples(word_tokenizer, toy_task, [long], seq2seq=False, max_length=40)
    assert len(encoded) <= 40
    tokens = word_tokenizer.convert_ids_to_tokens(list(encoded.input_ids))
    assert tokens[0] == "text:" and tokens[-2:] == ["good", "label:"]


def test_batches_group_similar_lengths():
    lengths = [5, 50, 6, 49, 7, 48]
    batches = length_sorted_batches(lengths, 2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert [sorted(lengths[i] for i in b) for b in batches] == [[49, 50], [7, 48], [5, 6]]


def test_cache_tokenises_once_and_notices_edits(word_tokenizer, toy_task):
    data = toy_examples(5)
    first = ENCODING_CACHE.get(word_tokenizer, toy_task, data, seq2seq=False, max_length=64)
    assert ENCODING_CACHE.get(word_tokenizer, toy_task, data, seq2seq=False, max_length=64) is first
    data[0] = {"text": "awful", "label": 0}
    assert ENCODING_CACHE.get(word_tokenizer, toy_task, data, seq2seq=False, max_length=64) is not first


def test_empty_data_is_an_error(word_tokenizer, toy_task):
    with pytest.raises(TPVError, match="no examples to encode for task 'toy'"):
        encode_examples(word_tokenizer, toy_task, [], seq2seq=False)


def test_generation_batches_pad_on_the_left(word_tokenizer, toy_task):
    from tpv.data.encoding import collate_for_generation

    encoded = encode_examples(
        word_tokenizer,
        toy_task,
        [{"text": "good", "label": 1}, {"text": "a very dull plot", "label": 0}],
        seq2seq=False,
    )
    batch = collate_for_generation(encoded, 0)
    short, long = (list(e.input_ids) for e in encoded)
    assert batch["input_ids"].tolist() == [[0] * (len(long) - len(short)) + short, long]
    assert batch["attention_mask"].tolist() == [[0] * (len(long) - len(short)) + [1] * len(short), [1] * len(long)]


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_the_tokenizers_padding_side_changes_no_result(make_tiny_model, word_tokenizer, toy_task, tmp_path, kind):
    from tpv import make_origin
    from tpv.engine.training import train_prompt

    examples = toy_examples(12, seed=5)
    texts = [toy_task.format(e)[0] for e in examples]
    assert len({len(t.split()) for t in texts}) > 1  # rows of different lengths, so every batch pads
    padded = {}
    runs = {}
    for side in ("left", "right"):
        word_tokenizer.padding_side = side
        # The flip is real: the tokenizer's own padding puts the pads at the other end.
        padded[side] = word_tokenizer(texts, padding=True)["input_ids"]
        model = make_tiny_model(kind)
        result = train_prompt(
            model,
            word_tokenizer,
            toy_task,
            make_origin(model, 3, seed=0),
            toy_examples(16),
            output_dir=tmp_path / side,
            max_steps=3,
            batch_size=8,
            progress=False,
            training_args={"save_strategy": "no"},
        )
        runs[side] = {
            "losses": [record["loss"] for record in result.history if "loss" in record],
            "rank": result.evaluate(examples, batch_size=5, return_predictions=True),
            "generate": result.evaluate(
                examples, method="generate", max_new_tokens=3, batch_size=5, return_predictions=True
            ),
        }
    assert padded["left"] != padded["right"]
    assert len(runs["left"]["losses"]) == 3 and runs["left"] == runs["right"]
