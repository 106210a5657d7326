"""Turn task examples into token ids once, and pad them into batches with as little padding as possible.

The padding convention, which every part of tpv follows (this is the one place it is written):

- tpv pads every batch itself, from the ids :func:`encode_examples` produced; the tokenizer's ``padding_side``
  is never read, so a tokenizer padding either way gives the same scores, answers and training losses.
- Scoring and training pad on the **right** (:func:`collate`): every row's real tokens sit at positions 0, 1, …
  after the soft prompt, as in training, and a row's last real token is found from the attention mask
  (``attention_mask.sum(1) - 1``), never read as ``[:, -1]``.
- Generation pads on the **left** (:func:`collate_for_generation`): new tokens are appended at the right end of
  every row. The positions of a left-padded row are counted from its mask (transformers' ``generate`` does so,
  and so does :func:`tpv.engine.prefix.input_positions` on the shared-prefix engine), so padding shifts no position.
- The pad id is the tokenizer's pad token, else its EOS (:func:`pad_token_id`); the attention mask keeps it out
  of every result.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tpv.core.errors import TPVError
from tpv.data import Task, get_task

IGNORE_INDEX = -100
DEFAULT_MAX_LENGTH = 256
# The answer cue ("sentiment:") sits at the end of every template, so truncation keeps the last tokens too.
_TAIL_TOKENS = 16


@dataclass(frozen=True)
class Encoded:
    """One example as token ids: the model input and the target the prompt must make the model produce."""

    input_ids: tuple[int, ...]
    target_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids) + len(self.target_ids)


def resolve_task(task: str | Task) -> Task:
    return task if isinstance(task, Task) else get_task(task)


def is_seq2seq_model(model) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base.config, "is_encoder_decoder", False))


def encode_examples(
    tokenizer, task: str | Task, examples: Sequence[dict], *, seq2seq: bool, max_length: int = DEFAULT_MAX_LENGTH
) -> list[Encoded]:
    """Tokenise every example of ``task`` once.

    Causal LMs read ``input`` then ``" " + target + eos``; seq2seq models read ``input`` (with the tokenizer's
    own special tokens) and produce ``target``. Inputs longer than ``max_length`` (target included) keep their
    head and their last 16 tokens, where the template's answer cue is.
    """
    task = resolve_task(task)
    if not examples:
        raise TPVError(f"no examples to encode for task {task.name!r}; pass a non-empty list")
    pairs = [task.format(example) for example in examples]
    inputs = tokenizer([p[0] for p in pairs], add_special_tokens=True)["input_ids"]
    if seq2seq:
        targets = tokenizer([p[1] for p in pairs], add_special_tokens=True)["input_ids"]
    else:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise TPVError("the tokenizer has no eos_token; set tokenizer.eos_token so targets can end")
        targets = [ids + [eos] for ids in tokenizer([" " + p[1] for p in pairs], add_special_tokens=False)["input_ids"]]
    return [Encoded(tuple(_truncate(i, max_length - len(t))), tuple(t)) for i, t in zip(inputs, targets)]


def _truncate(ids: list[int], budget: int) -> list[int]:
    budget = max(budget, _TAIL_TOKENS + 1)
    if len(ids) <= budget:
        return ids
    return ids[: budget - _TAIL_TOKENS] + ids[-_TAIL_TOKENS:]


def pad_token_id(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its EOS (which many causal LMs use)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TPVError("the tokenizer has neither pad_token nor eos_token; set tokenizer.pad_token")
    return pad


def collate(batch: Sequence[Encoded], pad_id: int, *, seq2seq: bool, with_targets: bool = True) -> dict:
    """Pad a batch to its own longest member (right padding), in Hugging Face's ``labels`` convention."""
    if seq2seq:
        out = _pad([e.input_ids for e in batch], pad_id)
        if with_targets:
            out["labels"] = _pad([e.target_ids for e in batch], IGNORE_INDEX)["input_ids"]
        return out
    sequences = [e.input_ids + e.target_ids if with_targets else e.input_ids for e in batch]
    out = _pad(sequences, pad_id)
    if with_targets:
        labels = torch.full_like(out["input_ids"], IGNORE_INDEX)
        for row, example in enumerate(batch):
            start = len(example.input_ids)
            labels[row, start : start + len(example.target_ids)] = torch.tensor(example.target_ids)
        out["labels"] = labels
    return out


def collate_for_generation(batch: Sequence[Encoded], pad_id: int) -> dict:
    """The inputs of a batch padded on the left, so that generated tokens append to every row's right end."""
    return _pad([e.input_ids for e in batch], pad_id, left=True)


def _pad(sequences: Sequence[Sequence[int]], pad_id: int, left: bool = False) -> dict:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        where = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, where] = torch.tensor(seq, dtype=torch.long)
        mask[row, where] = 1
    return {"input_ids": ids, "attention_mask": mask}


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices split into batches of similar length (longest first), so padding is minimal and the first batch
    shows the peak memory at once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class EncodingCache:
    """Remembers encodings per (tokenizer, task, formatted examples), so scoring many prompts tokenises once."""

    def __init__(self, size: int = 32):
        self._entries: OrderedDict = OrderedDict()
        self._size = size

    def get(self, tokenizer, task: Task, examples: Sequence[dict], *, seq2seq: bool, max_length: int) -> list[Encoded]:
        # Keyed by the formatted texts themselves (formatting costs microseconds, tokenising milliseconds), so a
        # list edited in place is never served stale encodings.
        texts = tuple(task.format(example) for example in examples)
        key = (
            id(tokenizer),
            getattr(tokenizer, "name_or_path", ""),
            len(tokenizer),
            task.name,
            hash(texts),
            seq2seq,
            max_length,
        )
        hit = self._entries.get(key)
        if hit is not None and hit[0] == texts:
            self._entries.move_to_end(key)
            return hit[1]
        encoded = encode_examples(tokenizer, task, examples, seq2seq=seq2seq, max_length=max_length)
        self._entries[key] = (texts, encoded)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return encoded


ENCODING_CACHE = EncodingCache()
