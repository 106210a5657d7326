"""Score a prompt-tuned model on a task: rank the label words in one batched pass, or generate and parse."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from tpv.bridge.peft_io import get_prompt, set_prompt
from tpv.core.errors import TPVError
from tpv.core.progress import progress_bar
from tpv.data import Task
from tpv.data.encoding import (
    DEFAULT_MAX_LENGTH,
    ENCODING_CACHE,
    Encoded,
    collate,
    collate_for_generation,
    length_sorted_batches,
    pad_token_id,
    resolve_task,
)
from tpv.engine.metrics import compute_metric
from tpv.engine.prefix import SHARED_PREFIX, choose_engine, prompt_prefix
from tpv.engine.scoring import PeftPrompted, PromptedModel, label_word_logits, sequence_log_likelihoods

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

METHODS = ("rank", "generate")


def evaluate(
    peft_model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    task: str | Task,
    data: Sequence[dict],
    *,
    method: str = "rank",
    batch_size: int = 32,
    prompt: torch.Tensor | None = None,
    adapter_name: str = "default",
    max_length: int = DEFAULT_MAX_LENGTH,
    max_new_tokens: int = 128,
    answer_match: str = "prefix",
    return_predictions: bool = False,
    progress: bool = False,
    shared_prefix: bool | None = None,
) -> dict:
    """Score ``peft_model`` (optionally with ``prompt`` swapped in for the call) on ``data``.

    ``rank`` compares the label words' log-likelihoods after each input in one batched forward pass (only the
    label words' rows of the vocabulary projection are computed when their first tokens differ; otherwise whole
    label sequences are scored). ``generate`` decodes greedily up to ``max_new_tokens`` or EOS, as the paper
    does, and maps the text to a label; text that matches no label counts as wrong and is counted in
    ``invalid``; ``answer_match="exact"`` accepts only the bare label word (the official code's exact match),
    ``"prefix"`` text that starts with it. For classification tasks a row stops as soon as its label is decided
    (the text matches a label word, or can no longer become one; under ``"exact"`` a complete label word goes on
    to the next token, which must be EOS), and at most the longest label's token count + 1 new tokens are
    decoded: an exact match of a label never needs more. Regression and generation tasks are always generated.

    On decoder-only models the soft prompt's keys and values are computed once per call and shared by every
    batch (``shared_prefix=None`` chooses automatically, True insists, False recomputes the prompt per row as
    PEFT does); generation then also places left-padded inputs at the positions training gave them.

    Returns:
        ``{task.metric: value, "accuracy": …, "invalid": n, "n": len(data), "method": …}`` (scores in [0, 1]),
        plus ``"binary_f1"`` (F1 of label 1) for binary tasks and ``"predictions"`` when asked.
    """
    _check_options(task, method, answer_match, data, batch_size)
    get_prompt(peft_model, adapter_name)  # a model without this prompt-tuning adapter fails here, in one line
    with _prompt_swapped(peft_model, prompt, adapter_name), _eval_mode(peft_model), torch.inference_mode():
        engine = choose_engine(peft_model, shared_prefix)
        prefix = prompt_prefix(peft_model, adapter_name) if engine == SHARED_PREFIX else None
        return evaluate_prompted(
            PeftPrompted(peft_model, adapter_name, prefix),
            tokenizer,
            task,
            data,
            method=method,
            batch_size=batch_size,
            max_length=max_length,
            max_new_tokens=max_new_tokens,
            answer_match=answer_match,
            return_predictions=return_predictions,
            progress=progress,
        )


def evaluate_prompted(
    model: PromptedModel,
    tokenizer,
    task: str | Task,
    data: Sequence[dict],
    *,
    method: str = "rank",
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_new_tokens: int = 128,
    answer_match: str = "prefix",
    return_predictions: bool = False,
    progress: bool = False,
) -> dict:
    """:func:`evaluate` for any :class:`tpv.engine.scoring.PromptedModel`, its model in eval mode for the call: how a
    method with its own kind of prompt (ATTEMPT) is scored by the same code.

    Returns:
        :func:`evaluate`'s dict.
    """
    task = _check_options(task, method, answer_match, data, batch_size)
    if not task.is_classification:
        method = "generate"
    encoded = ENCODING_CACHE.get(tokenizer, task, data, seq2seq=model.seq2seq, max_length=max_length)
    references = [example[task.label_key] for example in data]
    with _eval_mode(model.lm), torch.inference_mode():
        if method == "rank":
            predictions = _rank(model, tokenizer, task, encoded, batch_size, progress)
        else:
            texts = _generate(
                model, tokenizer, task, encoded, batch_size, max_new_tokens, progress, exact=answer_match == "exact"
            )
            predictions = [task.parse_prediction(text, exact=answer_match == "exact") for text in texts]
    return score_predictions(task, predictions, references, method, return_predictions)


# Trainer adds these to its eval metrics; they describe the run, not the prompt's skill.
_NOT_SCORES = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def format_scores(scores: Mapping, metric: str | None = None, digits: int = 4) -> str:
    """One line for scores: :func:`evaluate`'s dict, or a ``Trainer``'s metrics (their ``eval_`` prefix dropped).

    ``metric`` (the task's) comes first, then accuracy, binary F1 and the other numbers in name order; the
    count of examples, the method and the answers that matched no label close the line when present. Every
    place that prints what a scoring or training run got (``tpv eval``, ``tpv train``,
    :meth:`TrainResult.summary`) prints it through here.

    Example:
        >>> format_scores({"macro_f1": 0.8123, "accuracy": 0.82, "n": 200, "method": "rank", "invalid": 0},
        ...               "macro_f1")
        'macro_f1 0.8123, accuracy 0.8200 (200 examples, rank)'
    """
    numbers = {}
    for key, value in scores.items():
        name = str(key).removeprefix("eval_")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or name in ("n", "invalid", *_NOT_SCORES):
            continue
        numbers[name] = float(value)
    first = [name for name in (metric, "accuracy", "binary_f1") if name is not None and name in numbers]
    ordered = first + sorted(set(numbers) - set(first))
    line = ", ".join(f"{name} {numbers[name]:.{digits}f}" for name in ordered)
    about = [f"{scores['n']} examples"] if isinstance(scores.get("n"), int) else []
    about += [str(scores["method"])] if scores.get("method") else []
    invalid = scores.get("invalid")
    about += [f"{invalid} matched no label"] if isinstance(invalid, int) and invalid else []
    return line + (f" ({', '.join(about)})" if about else "")


def _check_options(task, method, answer_match, data, batch_size) -> Task:
    task = resolve_task(task)
    if method not in METHODS:
        raise TPVError(f"unknown evaluation method {method!r}; use one of {list(METHODS)}")
    if answer_match not in ("prefix", "exact"):
        raise TPVError(f"unknown answer_match {answer_match!r}; use 'prefix' or 'exact'")
    if not data:
        raise TPVError(f"no examples to evaluate task {task.name!r} on; pass a non-empty list")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TPVError(f"batch_size must be ≥ 1, got {batch_size}")
    return task


def score_predictions(
    task: Task, predictions: list, references: list, method: str, return_predictions: bool = False
) -> dict:
    """The dict :func:`evaluate` returns, from predictions (label ids, numbers or texts) and the references.

    Returns:
        ``{task.metric: …, "accuracy": …, "invalid": …, "n": …, "method": method}`` as :func:`evaluate` says.
    """
    result: dict = {"n": len(references), "method": method}
    if task.is_classification:
        gold = [task.label_id(r) for r in references]
        labels = list(range(task.num_labels or 0))
        result["invalid"] = sum(p == -1 for p in predictions)
        result["accuracy"] = compute_metric("accuracy", predictions, gold)
        by_label = {"labels": labels} if task.metric == "macro_f1" else {}
        result[task.metric] = compute_metric(task.metric, predictions, gold, **by_label)
        if task.num_labels == 2:
            # The official code's metric for binary tasks, beside the paper's macro-F1 (tpv.engine.metrics.binary_f1).
            result["binary_f1"] = compute_metric("binary_f1", predictions, gold)
    elif task.regression:
        result["invalid"] = sum(math.isnan(p) for p in predictions)
        # An unparseable score counts as 0, the bottom of the scale, rather than being dropped.
        numeric = [0.0 if math.isnan(p) else p for p in predictions]
        result[task.metric] = compute_metric(task.metric, numeric, [float(r) for r in references])
    else:
        result["invalid"] = sum(not p for p in predictions)
        for metric in (task.metric, *task.extra_metrics):
            result[metric] = compute_metric(metric, predictions, references)
    if return_predictions:
        result["predictions"] = predictions
    return result


def _rank(model: PromptedModel, tokenizer, task, encoded, batch_size, progress) -> list[int]:
    label_ids = label_token_ids(tokenizer, task, model.seq2seq)
    first = [ids[0] for ids in label_ids]
    pad = pad_token_id(tokenizer)
    device = model.device
    predictions = [0] * len(encoded)
    if len(set(first)) == len(first):
        token_ids = torch.tensor(first, device=device)
        batches = length_sorted_batches([len(e.input_ids) for e in encoded], batch_size)
        for indices in progress_bar(batches, progress, f"rank {task.name}"):
            batch = _to(collate([encoded[i] for i in indices], pad, seq2seq=model.seq2seq, with_targets=False), device)
            logits = label_word_logits(model, batch["input_ids"], batch["attention_mask"], token_ids)
            for i, label in zip(indices, logits.argmax(dim=1).tolist()):
                predictions[i] = label
        return predictions
    # Label words share a first token: score each whole label sequence (summed log-likelihood).
    eos = () if model.seq2seq else (tokenizer.eos_token_id,)
    per_batch = max(1, batch_size // len(label_ids))
    batches = length_sorted_batches([len(e.input_ids) for e in encoded], per_batch)
    for indices in progress_bar(batches, progress, f"rank {task.name}"):
        candidates = [Encoded(encoded[i].input_ids, tuple(ids) + eos) for i in indices for ids in label_ids]
        scores = sequence_log_likelihoods(model, _to(collate(candidates, pad, seq2seq=model.seq2seq), device))
        for row, i in enumerate(indices):
            predictions[i] = int(scores[row * len(label_ids) : (row + 1) * len(label_ids)].argmax())
    return predictions


def label_token_ids(tokenizer, task: Task, seq2seq: bool) -> list[list[int]]:
    """Token ids of each label word as it appears as a target (after a space for causal LMs)."""
    label_words = task.label_words or ()
    words = list(label_words) if seq2seq else [" " + w for w in label_words]
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    if any(not i for i in ids):
        raise TPVError(f"task {task.name!r}: a label word tokenises to nothing ({task.label_words}); change the words")
    return ids


def _generate(
    model: PromptedModel, tokenizer, task, encoded, batch_size, max_new_tokens, progress, exact: bool = False
) -> list[str]:
    pad = pad_token_id(tokenizer)
    finished = None
    if task.is_classification:
        longest = max(len(ids) for ids in label_token_ids(tokenizer, task, model.seq2seq))
        max_new_tokens = min(max_new_tokens, longest + 1)
        finished = _label_decided(tokenizer, task, exact)
    texts = [""] * len(encoded)
    batches = length_sorted_batches([len(e.input_ids) for e in encoded], batch_size)
    for indices in progress_bar(batches, progress, "generate"):
        batch = _to(collate_for_generation([encoded[i] for i in indices], pad), model.device)
        output = model.generate_prompted(
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
            finished=finished,
        )
        for i, row in zip(indices, output.tolist()):
            texts[i] = tokenizer.decode(row, skip_special_tokens=True)
    return texts


def _label_decided(tokenizer, task: Task, exact: bool = False):
    # parse_prediction reads the stripped text's start, longest label word first: once no longer label word can
    # still start the text, more tokens cannot change the label it maps to. An exact match also needs what
    # follows a complete label word (EOS, or text that makes the answer invalid), so it waits one token more.
    words = [word.lower() for word in task.label_words or ()]

    def decided(row: int, new_ids: list[int]) -> bool:
        text = tokenizer.decode(new_ids, skip_special_tokens=True).strip().lower()
        if exact:
            return bool(text) and not any(word.startswith(text) for word in words)
        return bool(text) and not any(len(word) > len(text) and word.startswith(text) for word in words)

    return decided


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@contextlib.contextmanager
def _prompt_swapped(peft_model, prompt, adapter_name):
    if prompt is None:
        yield
        return
    saved = get_prompt(peft_model, adapter_name)
    set_prompt(peft_model, prompt, adapter_name)
    try:
        yield
    finally:
        set_prompt(peft_model, saved, adapter_name)


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
