"""Forward passes of a prompt-tuned model that project onto the vocabulary only where a token is scored.

The vocabulary projection is about a quarter of a small LM's forward FLOPs, yet prompt tuning scores only
the few target tokens of each example. These functions run the frozen transformer body on
``[soft prompt; input]`` and apply the output embeddings to the scored positions alone (or, for ranking
label words, to the label words' rows alone). Decoder-only models read the input after a shared prefix (the
soft prompt's keys and values computed once, see :mod:`tpv.engine.prefix`) unless told otherwise. Models whose
logits need extra processing (soft-capping, logit scaling) or encoder-decoder models run their whole forward
instead.

Every function takes a PEFT prompt-tuning model or any :class:`PromptedModel`: the one seam through which a
method that builds its prompt another way (ATTEMPT's per-input mixture, :mod:`tpv.compose.baselines.attempt`) is
scored by the same code. Batches follow the padding convention of :mod:`tpv.data.encoding` (right padding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from tpv.data.encoding import IGNORE_INDEX, is_seq2seq_model
from tpv.engine.prefix import (
    SHARED_PREFIX,
    PromptPrefix,
    choose_engine,
    generate_after_prefix,
    has_fast_path,
    prefixed_hidden_states,
    prompt_prefix,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class PromptedModel:
    """A frozen transformers model that reads a soft prompt before every input: what the scorers run.

    A subclass says where the prompt comes from by implementing :meth:`prompted_inputs` and the two attributes
    below; the forward passes follow from it. :class:`PeftPrompted` wraps a PEFT prompt-tuning adapter (one
    prompt for every row); ``tpv.compose.baselines.attempt.Attempt`` builds one prompt per input.

    """

    @property
    def lm(self) -> PreTrainedModel:
        """The transformers model the prompt is fed to (not wrapped by PEFT)."""
        raise NotImplementedError

    @property
    def num_virtual_tokens(self) -> int:
        """The prompt's length in front of the (encoder's) input."""
        raise NotImplementedError

    @property
    def seq2seq(self) -> bool:
        return is_seq2seq_model(self.lm)

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def prompted_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """``(inputs_embeds, attention_mask)`` of ``[soft prompt; input]`` in the model's dtype (for an
        encoder-decoder model, the encoder's input)."""
        raise NotImplementedError

    def input_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states of the input tokens after the prompt (decoder-only): ``(batch, length, hidden)``."""
        embeds, mask = self.prompted_inputs(input_ids, attention_mask)
        hidden = self.lm.base_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        return hidden[:, self.num_virtual_tokens :]

    def forward_prompted(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """The model's whole forward over ``[soft prompt; input]`` (its logits cover the prompt's positions too,
        for a decoder-only model); ``kwargs`` go to the model (``labels``, ``decoder_input_ids``)."""
        embeds, mask = self.prompted_inputs(input_ids, attention_mask)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False, **kwargs)

    def generate_prompted(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        max_new_tokens: int,
        eos_token_id: int | None,
        pad_token_id: int,
        finished=None,
    ) -> torch.Tensor:
        """Greedy decoding of left-padded inputs: the generated tokens only, one row per input.

        ``finished(row, new_token_ids)`` may stop a row early where the engine supports it.
        """
        embeds, mask = self.prompted_inputs(input_ids, attention_mask)
        return self.lm.generate(  # type: ignore[operator]  # mypy sees nn.Module's generic __getattr__
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )


class PeftPrompted(PromptedModel):
    """The soft prompt of a PEFT prompt-tuning adapter, optionally run once as a shared ``prefix``."""

    def __init__(self, peft_model, adapter_name: str = "default", prefix: PromptPrefix | None = None):
        self.peft_model = peft_model
        self.adapter_name = adapter_name
        self.prefix = prefix

    @property
    def lm(self) -> PreTrainedModel:
        return self.peft_model.get_base_model()

    @property
    def num_virtual_tokens(self) -> int:
        return self.peft_model.peft_config[self.adapter_name].num_virtual_tokens

    def prompted_inputs(self, input_ids, attention_mask):
        embeds = self.lm.get_input_embeddings()(input_ids)
        weight = self.peft_model.prompt_encoder[self.adapter_name].embedding.weight
        prompt = weight[: self.num_virtual_tokens].to(embeds.dtype)
        batch = input_ids.shape[0]
        embeds = torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
        return embeds, torch.cat([attention_mask.new_ones(batch, self.num_virtual_tokens), attention_mask], dim=1)

    def input_hidden_states(self, input_ids, attention_mask):
        if self.prefix is not None:
            return prefixed_hidden_states(self.peft_model, self.prefix, input_ids, attention_mask)
        return super().input_hidden_states(input_ids, attention_mask)

    def forward_prompted(self, input_ids, attention_mask, **kwargs):
        # PEFT's own forward: it also places the decoder's prompt rows of encoder-decoder models.
        return self.peft_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def generate_prompted(
        self, input_ids, attention_mask, *, max_new_tokens, eos_token_id, pad_token_id, finished=None
    ):
        if self.prefix is not None:
            return generate_after_prefix(
                self.peft_model,
                self.prefix,
                input_ids,
                attention_mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos_token_id,
                pad_token_id=pad_token_id,
                finished=finished,
            )
        output = self.peft_model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
        width = input_ids.shape[1]
        # A decoder-only model returns the input ahead of the new tokens.
        if not self.seq2seq and output.shape[1] >= width and torch.equal(output[:, :width], input_ids):
            output = output[:, width:]
        return output


def prompted(model, adapter_name: str = "default", prefix: PromptPrefix | None = None) -> PromptedModel:
    """``model`` as a :class:`PromptedModel`: itself when it is one, else its PEFT adapter ``adapter_name``."""
    return model if isinstance(model, PromptedModel) else PeftPrompted(model, adapter_name, prefix)


def input_hidden_states(
    peft_model, input_ids, attention_mask, adapter_name: str = "default", prefix: PromptPrefix | None = None
) -> torch.Tensor:
    """Last hidden states of the input tokens (after the soft prompt): shape ``(batch, length, hidden)``.

    With ``prefix`` the input runs against the prompt's stored keys and values; without, ``[prompt; input]`` runs
    whole and the prompt's positions are dropped.
    """
    return prompted(peft_model, adapter_name, prefix).input_hidden_states(input_ids, attention_mask)


def target_logits(
    model, batch: dict, adapter_name: str = "default", prefix: PromptPrefix | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict a target token, and those targets: ``(n, vocab)``, ``(n,)``."""
    model = prompted(model, adapter_name, prefix)
    labels, input_ids, attention_mask = batch["labels"], batch["input_ids"], batch["attention_mask"]
    if model.seq2seq:
        logits = model.forward_prompted(input_ids, attention_mask, labels=labels).logits
        keep = labels != IGNORE_INDEX
        return logits[keep], labels[keep]
    # Token t of the input is predicted by the position one step earlier.
    rows, cols = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)
    if has_fast_path(model.lm):
        scored = model.input_hidden_states(input_ids, attention_mask)[rows, cols]
        return model.lm.get_output_embeddings()(scored), labels[rows, cols + 1]
    logits = model.forward_prompted(input_ids, attention_mask).logits
    return logits[:, logits.shape[1] - labels.shape[1] :][rows, cols], labels[rows, cols + 1]


def _scored_rows(labels: torch.Tensor, seq2seq: bool) -> torch.Tensor:
    # The batch row of every logit target_logits returns, in the same order.
    scored = labels != IGNORE_INDEX if seq2seq else labels[:, 1:] != IGNORE_INDEX
    return scored.nonzero(as_tuple=True)[0]


def prompt_tuning_loss(
    model, batch: dict, adapter_name: str = "default", shared_prefix: bool | None = None
) -> torch.Tensor:
    """Mean cross-entropy over target tokens, on the fast path where the model allows it.

    On the shared-prefix engine (chosen by :func:`tpv.engine.prefix.choose_engine` from ``shared_prefix``; PEFT
    models only) the prompt runs once at batch size 1 and its gradient gathers every row's contribution through
    the broadcast.
    """
    prefix = None
    if (
        not isinstance(model, PromptedModel)
        and has_fast_path(model)
        and choose_engine(model, shared_prefix) == SHARED_PREFIX
    ):
        prefix = prompt_prefix(model, adapter_name)
    logits, targets = target_logits(model, batch, adapter_name, prefix)
    return F.cross_entropy(logits.float(), targets)


def label_word_logits(
    model, input_ids, attention_mask, token_ids, adapter_name="default", prefix: PromptPrefix | None = None
):
    """Logits of ``token_ids`` at the position after each right-padded input: shape ``(batch, len(token_ids))``.

    Only the label words' rows of the output embeddings are applied; ranking among them needs no softmax over
    the whole vocabulary, because the normaliser is shared. ``prefix`` (from :func:`tpv.engine.prefix.prompt_prefix`)
    reuses the prompt's keys and values instead of recomputing them.
    """
    model = prompted(model, adapter_name, prefix)
    if model.seq2seq:
        start = model.lm.config.decoder_start_token_id
        decoder_input_ids = torch.full((input_ids.shape[0], 1), start, dtype=torch.long, device=input_ids.device)
        logits = model.forward_prompted(input_ids, attention_mask, decoder_input_ids=decoder_input_ids).logits
        return logits[:, 0, token_ids]
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    if not has_fast_path(model.lm):
        logits = model.forward_prompted(input_ids, attention_mask).logits
        last = logits.shape[1] - input_ids.shape[1] + attention_mask.sum(dim=1) - 1
        return logits[rows, last][:, token_ids]
    hidden = model.input_hidden_states(input_ids, attention_mask)
    scored = hidden[rows, attention_mask.sum(dim=1) - 1]
    head = model.lm.get_output_embeddings()
    bias = head.bias[token_ids] if getattr(head, "bias", None) is not None else None
    return F.linear(scored, head.weight[token_ids], bias)


def sequence_log_likelihoods(
    model, batch: dict, adapter_name: str = "default", prefix: PromptPrefix | None = None
) -> torch.Tensor:
    """Summed log-probability of each row's target tokens: shape ``(batch,)``; for labels sharing a first token."""
    model = prompted(model, adapter_name, prefix)
    logits, targets = target_logits(model, batch)
    token_scores = torch.log_softmax(logits.float(), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    rows = _scored_rows(batch["labels"], model.seq2seq)
    return torch.zeros(batch["labels"].shape[0], device=token_scores.device).index_add_(0, rows, token_scores)
