"""The smoke profile's model: a random tiny Llama and a word-level tokenizer over the tasks' own words.

The vocabulary holds every template and label word of the tasks used, so label words stay distinct tokens and
ranking works as on a real model; other words map to ``<unk>``, which is enough to run every study end to end.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import torch

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def tiny_llama(vocab_size: int = 128, seed: int = 0, **overrides):
    """A random tiny Llama (2 layers, 16 wide, ids 0/1/2 = pad/bos/eos) in eval mode, built from a config.

    The test suite's, the benchmarks' smoke runs' and the smoke profile's model; ``overrides`` are
    ``LlamaConfig`` fields (e.g. ``initializer_range=0.5`` for weights large enough that a prompt changes
    predictions).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    settings = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 256,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        **overrides,
    }
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **settings)).eval()


def build_tiny_model(folder: Path, tasks, examples: list[dict], seed: int = 0) -> Path:
    """Write the tiny model and tokenizer into ``folder`` (once) and return it, ready for ``load_model``."""
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = []
    for task in tasks:
        literal = "".join(text for text, _, _, _ in string.Formatter().parse(task.template))
        words += literal.lower().split()
        for label in task.label_words or ():
            words += label.lower().split()
    counts = Counter(w for e in examples for v in e.values() if isinstance(v, str) for w in v.lower().split())
    words += [w for w, _ in counts.most_common(200)]
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    model = tiny_llama(len(vocab), seed, hidden_size=32, intermediate_size=64, max_position_embeddings=512)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
