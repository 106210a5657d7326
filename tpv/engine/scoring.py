"""Forward passes of a prompt-tuned model that project onto the vocabulary only where a token is scored.

The vocabulary projection is about a quarter of a small LM's forward FLOPs, yet prompt tuning scores only
the few target tokens of each example. These functions run the frozen transformer body on
``[soft prompt; input]`` and apply the output embeddings to the scored positions alone (or, for ranking
label words, to the label words' rows alone). Decoder-only models read the input after a shared prefix (the
soft prompt's keys and values computed once, see :mod:`tpv.engine.prefix`) unless told otherwise. Models whose
logits need extra processing (soft-capping, logit scaling) or encoder-decoder models use PEFT's own forward instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tpv.data.encoding import IGNORE_INDEX, is_seq2seq_model
from tpv.engine.prefix import (
    SHARED_PREFIX,
    PromptPrefix,
    choose_engine,
    has_fast_path,
    prefixed_hidden_states,
    prompt_prefix,
)


def prompt_config(peft_model, adapter_name: str = "default"):
    return peft_model.peft_config[adapter_name]


def causal_hidden_states(peft_model, input_ids, attention_mask, adapter_name: str = "default") -> torch.Tensor:
    """Last hidden states of ``[soft prompt; input]``: shape ``(batch, virtual tokens + length, hidden)``."""
    base = peft_model.get_base_model()
    virtual = prompt_config(peft_model, adapter_name).num_virtual_tokens
    embeds = base.get_input_embeddings()(input_ids)
    prompt = peft_model.prompt_encoder[adapter_name].embedding.weight[:virtual].to(embeds.dtype)
    batch = input_ids.shape[0]
    embeds = torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
    mask = torch.cat([attention_mask.new_ones(batch, virtual), attention_mask], dim=1)
    return base.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state


def input_hidden_states(peft_model, input_ids, attention_mask, adapter_name: str = "default",
                        prefix: PromptPrefix | None = None) -> torch.Tensor:
    """Last hidden states of the input tokens (after the soft prompt): shape ``(batch, length, hidden)``.

    With ``prefix`` the input runs against the prompt's stored keys and values; without, ``[prompt; input]`` runs
    whole and the prompt's positions are dropped.
    """
    if prefix is not None:
        return prefixed_hidden_states(peft_model, prefix, input_ids, attention_mask)
    virtual = prompt_config(peft_model, adapter_name).num_virtual_tokens
    return causal_hidden_states(peft_model, input_ids, attention_mask, adapter_name)[:, virtual:]


def target_logits(peft_model, batch: dict, adapter_name: str = "default",
                  prefix: PromptPrefix | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a target token, and those targets: ``(n, vocab)``, ``(n,)``."""
    labels = batch["labels"]
    hidden = input_hidden_states(peft_model, batch["input_ids"], batch["attention_mask"], adapter_name, prefix)
    # Token t of the input is predicted by the hidden state one step earlier.
    rows, cols = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
    scored = hidden[rows, cols]
    logits = peft_model.get_base_model().get_output_embeddings()(scored)
    return logits, labels[rows, cols + 1]


def prompt_tuning_loss(peft_model, batch: dict, adapter_name: str = "default",
                       shared_prefix: bool | None = None) -> torch.Tensor:
    """Mean cross-entropy over target tokens; the fast path where the model allows it, else PEFT's forward.

    On the shared-prefix engine (chosen by :func:`tpv.engine.prefix.choose_engine` from ``shared_prefix``) the prompt
    runs once at batch size 1 and its gradient gathers every row's contribution through the broadcast.
    """
    if has_fast_path(peft_model):
        prefix = None
        if choose_engine(peft_model, shared_prefix) == SHARED_PREFIX:
            prefix = prompt_prefix(peft_model, adapter_name)
        logits, targets = target_logits(peft_model, batch, adapter_name, prefix)
        return F.cross_entropy(logits.float(), targets)
    return peft_model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss


def label_word_logits(peft_model, input_ids, attention_mask, token_ids: torch.Tensor, adapter_name="default",
                      prefix: PromptPrefix | None = None):
    """Logits of ``token_ids`` at the position after each right-padded input: shape ``(batch, len(token_ids))``.

    Only the label words' rows of the output embeddings are applied; ranking among them needs no softmax over
    the whole vocabulary, because the normaliser is shared. ``prefix`` (from :func:`tpv.engine.prefix.prompt_prefix`)
    reuses the prompt's keys and values instead of recomputing them.
    """
    if is_seq2seq_model(peft_model) or not has_fast_path(peft_model):
        return _generic_next_token_logits(peft_model, input_ids, attention_mask)[:, token_ids]
    hidden = input_hidden_states(peft_model, input_ids, attention_mask, adapter_name, prefix)
    last = attention_mask.sum(dim=1) - 1
    scored = hidden[torch.arange(hidden.shape[0]), last]
    head = peft_model.get_base_model().get_output_embeddings()
    bias = head.bias[token_ids] if getattr(head, "bias", None) is not None else None
    return F.linear(scored, head.weight[token_ids], bias)


def _generic_next_token_logits(peft_model, input_ids, attention_mask) -> torch.Tensor:
    if is_seq2seq_model(peft_model):
        base = peft_model.get_base_model()
        start = base.config.decoder_start_token_id
        decoder_input_ids = torch.full((input_ids.shape[0], 1), start, dtype=torch.long, device=input_ids.device)
        out = peft_model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        return out.logits[:, 0]
    out = peft_model(input_ids=input_ids, attention_mask=attention_mask)
    last = out.logits.shape[1] - input_ids.shape[1] + attention_mask.sum(dim=1) - 1
    return out.logits[torch.arange(input_ids.shape[0]), last]


def sequence_log_likelihoods(peft_model, batch: dict, adapter_name: str = "default",
                             prefix: PromptPrefix | None = None) -> torch.Tensor:
    """Summed log-probability of each row's target tokens: shape ``(batch,)``; for labels sharing a first token."""
    labels = batch["labels"]
    if has_fast_path(peft_model):
        logits, targets = target_logits(peft_model, batch, adapter_name, prefix)
        rows = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    else:
        out = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
        logits = out.logits
        if not is_seq2seq_model(peft_model):
            logits = logits[:, logits.shape[1] - labels.shape[1] :][:, :-1]
            labels = labels[:, 1:]
        mask = labels != IGNORE_INDEX
        rows = mask.nonzero(as_tuple=True)[0]
        logits, targets = logits[mask], labels[mask]
    token_scores = torch.log_softmax(logits.float(), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return torch.zeros(labels.shape[0], device=token_scores.device).index_add_(0, rows, token_scores)
