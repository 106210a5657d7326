"""The public :class:`TaskPromptVector`: the core's vector plus the ways in and out that go through Hugging Face.

The arithmetic and the file format live in the core (:class:`tpv.core.vector.BaseTaskPromptVector`), which
imports neither peft nor huggingface_hub. This subclass adds the constructors and sharing that need the
bridge, so every import points down: the core never reaches up for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from tpv.bridge import hub, peft_io
from tpv.core._io import PathLike
from tpv.core.origin import Origin
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

    @classmethod
    def from_peft(
        cls,
        model_or_folder,
        origin: Origin | torch.Tensor | PathLike | None = None,
        task: str | None = None,
        adapter_name: str = "default",
    ) -> TaskPromptVector:
        """Build a vector from a prompt-tuned ``PeftModel`` or a saved adapter folder.

        The origin is taken from ``origin`` if given, else from what :func:`tpv.init_prompt_tuning` recorded:
        the model's own record or ``tpv_origin.safetensors`` beside the adapter files.
        """
        return peft_io.vector_from_peft(cls, model_or_folder, origin=origin, task=task, adapter_name=adapter_name)

    @classmethod
    def from_pretrained(cls, repo_id_or_folder: PathLike, *, revision: str | None = None,
                        token: str | None = None) -> TaskPromptVector:
        """Load a shared vector from a folder, a vector file or a Hugging Face Hub repo id.

        Args:
            repo_id_or_folder: a folder written by :meth:`save_pretrained`, a ``*.tpv.safetensors`` file, or a
                Hub repo id such as ``"user/sst2-smollm2-tpv"`` (downloaded with ``huggingface_hub``).
            revision: the Hub branch, tag or commit.
            token: a Hub token for private repositories.

        Example:
            >>> import tempfile
            >>> folder = TaskPromptVector(torch.ones(2, 3), tasks={"sst2": 1.0}).save_pretrained(tempfile.mkdtemp())
            >>> TaskPromptVector.from_pretrained(folder).tasks
            {'sst2': 1.0}
        """
        return cls.load(hub.vector_file(repo_id_or_folder, revision=revision, token=token))

    def save_pretrained(self, folder: PathLike, scores: Mapping | None = None) -> Path:
        """Write the vector and a model card into ``folder`` (see :func:`tpv.bridge.hub.save_pretrained`)."""
        return hub.save_pretrained(self, folder, scores=scores)

    def push_to_hub(self, repo_id: str, scores: Mapping | None = None, private: bool = False,
                    token: str | None = None) -> str:
        """Upload the vector and its model card to the Hub; return the URL (see :func:`tpv.bridge.hub.push_to_hub`)."""
        return hub.push_to_hub(self, repo_id, scores=scores, private=private, token=token)
