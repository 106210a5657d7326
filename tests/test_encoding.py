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
