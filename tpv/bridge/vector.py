"""The public :class:`TaskPromptVector`: the core's vector plus the ways in and out that go through Hugging Face.

The arithmetic and the file format live in the core (:class:`tpv.core.vector.BaseTaskPromptVector`), which
imports neither peft nor huggingface_hub. This subclass adds the constructors and sharing that need the
bridge, so every import points down: the core never reaches up for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from tpv.bridge import hub, peft_io
from tpv.core._io import PathLike
from tpv.core.origin import Origin, OriginRecipe
from tpv.core.vector import BaseTaskPromptVector

__all__ = ["TaskPromptVector"]


class TaskPromptVector(BaseTaskPromptVector):
    """A task prompt vector ``θ_tuned − θ_origin``: arithmetic, cosine and files (see
    :class:`~tpv.core.vector.BaseTaskPromptVector`), plus PEFT adapters and the Hugging Face Hub.

    Example:
        >>> a = TaskPromptVector(torch.ones(2, 3), tasks={"sst2": 1.0})
        >>> b = TaskPromptVector(torch.eye(2, 3), tasks={"yelp": 1.0})
        >>> 0.5 * b + a
        TaskPromptVector(0.5·yelp + 1·sst2, 2×3, base=None)
    """

    @property
    def origin(self) -> OriginRecipe | None:
        """The recipe of the origin the vector was tuned from (an :class:`~tpv.core.origin.OriginRecipe`, a
        ``str`` such as ``"sample_vocab(seed=0)"``), or ``None`` when unknown.

        ``vector.origin.recipe`` reads as ``TrainResult.origin.recipe`` does; the origin's tensor is not kept,
        as the vector applies to any origin of its shape.
        """
        return self._origin_recipe

    @origin.setter
    def origin(self, recipe: str | None) -> None:
        self._origin_recipe = None if recipe is None else OriginRecipe(recipe)

    @classmethod
    def from_peft(
        cls,
        model_or_folder,
        origin: Origin | torch.Tensor | PathLike | None = None,
        task: str | None = None,
        adapter_name: str = "default",
        *,
        model=None,
        seed: int | None = None,
        tokenizer=None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
    ) -> TaskPromptVector:
        """Build a vector from a prompt-tuned ``PeftModel``, a saved adapter folder, or a Hub adapter repo id.

        The origin is taken from ``origin`` if given (an :class:`Origin`, a tensor, an ``*.origin.safetensors``
        file, or the adapter folder holding ``tpv_origin.safetensors``), else from what
        :func:`tpv.init_prompt_tuning` recorded (the model's own record or ``tpv_origin.safetensors`` beside the
        adapter files), else rebuilt from the adapter's PEFT config (see :func:`tpv.origin_from_peft_config`):
        a ``PromptTuningInit.TEXT`` adapter always, a ``SAMPLE_VOCAB``/``RANDOM`` one with ``seed=``.

        Args:
            model_or_folder: a ``PeftModel``, an adapter folder, or a Hub repo id such as ``"user/adapter"`` (a
                local path of the same spelling wins).
            origin: the origin it was tuned from, when tpv did not record it.
            task: the vector's task name (default: the folder's, the repo's or the adapter's name).
            adapter_name: the PEFT adapter to read.
            model: the base model, to rebuild a PEFT-made origin of an adapter folder.
            seed: the ``torch.manual_seed`` set before ``get_peft_model``, for SAMPLE_VOCAB/RANDOM adapters.
            tokenizer: the tokenizer of a TEXT init, instead of loading ``tokenizer_name_or_path``.
            revision, token, cache_dir, local_files_only: as for ``from_pretrained`` (Hub ids only).
        """
        hub_options = {
            "revision": revision,
            "token": token,
            "cache_dir": cache_dir,
            "local_files_only": local_files_only,
        }
        if not isinstance(model_or_folder, (str, os.PathLike)):
            hub_options = {k: v for k, v in hub_options.items() if v not in (None, False)}
        return peft_io.vector_from_peft(
            cls,
            model_or_folder,
            origin=origin,
            task=task,
            adapter_name=adapter_name,
            model=model,
            seed=seed,
            tokenizer=tokenizer,
            **hub_options,
        )

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_folder: PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: PathLike | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> TaskPromptVector:
        """Load a shared vector from a folder, a vector file or a Hugging Face Hub repo id.

        The keyword arguments mean what they mean to ``transformers``' ``from_pretrained``; they are passed to
        ``huggingface_hub.snapshot_download`` unchanged (see :func:`tpv.bridge.hub.vector_file`).

        Args:
            repo_id_or_folder: a folder written by :meth:`save_pretrained`, a ``*.tpv.safetensors`` file, or a
                Hub repo id such as ``"user/sst2-smollm2-tpv"`` (downloaded with ``huggingface_hub``).
            revision: the Hub branch, tag or commit.
            token: a Hub token for private repositories (default: the one saved by ``hf auth login``).
            cache_dir: the Hub cache folder to use instead of huggingface_hub's default.
            local_files_only: use only the Hub cache; never go to the network.
            force_download: download again even when the cache holds the files.

        Example:
            >>> import tempfile
            >>> folder = TaskPromptVector(torch.ones(2, 3), tasks={"sst2": 1.0}).save_pretrained(tempfile.mkdtemp())
            >>> TaskPromptVector.from_pretrained(folder).tasks
            {'sst2': 1.0}
        """
        return cls.load(
            hub.vector_file(
                repo_id_or_folder,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                force_download=force_download,
            )
        )

    def save_pretrained(self, folder: PathLike, scores: Mapping | None = None, **kwargs) -> Path:
        """Write the vector and a model card into ``folder`` (see :func:`tpv.bridge.hub.save_pretrained`).

        ``push_to_hub=True`` (with ``repo_id``, ``private``, ``token``) also uploads it, as in ``transformers``.
        """
        return hub.save_pretrained(self, folder, scores=scores, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *legacy,
        scores: Mapping | None = None,
        private: bool = False,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ):
        """Upload the vector and its model card to the Hub; return ``huggingface_hub``'s ``CommitInfo``.

        ``scores`` go into the card's table and its ``model-index``. Passing ``scores`` (and the others) by
        position still works for one release, with a ``DeprecationWarning``. See
        :func:`tpv.bridge.hub.push_to_hub`.
        """
        return hub.push_to_hub(
            self,
            repo_id,
            *legacy,
            scores=scores,
            private=private,
            token=token,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
