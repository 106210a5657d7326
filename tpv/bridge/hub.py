"""Sharing vectors: a folder format with a model card, pushed to and pulled from the Hugging Face Hub.

A shared vector is a folder (or a Hub model repository) holding

- ``task_prompt_vector.tpv.safetensors``: the vector in the ``tpv/1`` format, and
- ``README.md``: a ``huggingface_hub.ModelCard``, YAML front matter (``library_name: tpv``, ``base_model``,
  ``tags``) and a body listing the tasks and coefficients, the shapes, the origin recipe and any scores.

``huggingface_hub`` (installed with peft) is imported inside the functions that use it, so ``import tpv`` stays
light.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tpv.core._io import PathLike, atomic_write_text, read_text
from tpv.core._version import __version__
from tpv.core.errors import TPVError
from tpv.core.vector import BaseTaskPromptVector

VECTOR_FILENAME = "task_prompt_vector.tpv.safetensors"
CARD_FILENAME = "README.md"
TAGS = ("tpv", "task-prompt-vector", "prompt-tuning", "peft")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

Scores = Mapping[str, float | Mapping[str, float]]


def save_pretrained(
    vector: BaseTaskPromptVector,
    folder: PathLike,
    scores: Scores | None = None,
    *,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> Path:
    """Write ``vector`` and its model card into ``folder`` (created if needed); return the folder.

    Args:
        vector: the vector to share.
        folder: the target folder; existing files of the same names are replaced atomically.
        scores: optional results, ``{task: score}`` or ``{task: {metric: score}}``, shown in the card.
        push_to_hub: also upload the folder to the Hub (as ``transformers``' ``save_pretrained`` does).
        repo_id: the Hub repository for ``push_to_hub``; by default the folder's name.
        private, token, commit_message: as for :func:`push_to_hub`.

    Example:
        >>> import tempfile, torch
        >>> v = BaseTaskPromptVector(torch.ones(2, 3), tasks={"sst2": 1.0},
        ...                          base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
        >>> folder = save_pretrained(v, tempfile.mkdtemp(), scores={"sst2": 0.91})
        >>> sorted(p.name for p in folder.iterdir())
        ['README.md', 'task_prompt_vector.tpv.safetensors']
        >>> vector_file(folder).name
        'task_prompt_vector.tpv.safetensors'
    """
    if not isinstance(vector, BaseTaskPromptVector):
        raise TPVError(f"save_pretrained takes a TaskPromptVector, got a {type(vector).__name__}")
    if not isinstance(folder, (str, os.PathLike)) or os.fspath(folder) == "":
        raise TPVError(f"save_pretrained needs a folder path, got {folder!r}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TPVError(f"'{folder}' is a file; pass a folder to save the vector and its model card into")
    target = _checked_repo_id(repo_id if repo_id is not None else folder.resolve().name) if push_to_hub else ""
    card = model_card(vector, scores)  # first, so bad scores leave no half-written folder
    vector.save(folder / VECTOR_FILENAME)
    atomic_write_text(folder / CARD_FILENAME, str(card))
    if push_to_hub:
        _upload(
            folder,
            target,
            private=private,
            token=token,
            commit_message=commit_message or f"Upload task prompt vector {vector.name}",
        )
    return folder


def vector_file(
    repo_id_or_folder: PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """The vector file of a shared vector in a local folder (or that file itself), else downloaded from the Hub.

    :meth:`tpv.TaskPromptVector.from_pretrained` loads what this finds; the file is found here, below the
    public class, so that the class imports this module and not the other way round.

    The keyword arguments mean what they mean to ``transformers``' ``from_pretrained``; they are passed to
    ``huggingface_hub.snapshot_download`` unchanged, so the Hub cache, ``HF_HUB_OFFLINE`` and ``HF_TOKEN`` work
    as for any Hub model.

    Args:
        repo_id_or_folder: a folder written by :func:`save_pretrained`, a ``*.tpv.safetensors`` file, or a
            Hub repo id such as ``"user/sst2-smollm2-tpv"``.
        revision: the Hub branch, tag or commit.
        token: a Hub token for private repositories (default: the one saved by ``hf auth login``).
        cache_dir: the Hub cache folder to use instead of huggingface_hub's default.
        local_files_only: use only the Hub cache; never go to the network.
        force_download: download again even when the cache holds the files.
    """
    if not isinstance(repo_id_or_folder, (str, os.PathLike)) or os.fspath(repo_id_or_folder) == "":
        raise TPVError(f"from_pretrained needs a folder, a vector file or a Hub repo id, got {repo_id_or_folder!r}")
    path = Path(repo_id_or_folder)
    if path.is_dir():
        return _vector_file_in(path)
    if path.is_file():
        return path
    text = os.fspath(repo_id_or_folder)
    if not _is_repo_id(text):
        raise TPVError(
            f"{text!r} is neither an existing folder or file nor a Hub repo id like 'user/name'; "
            "check the path, or pass the id of a repository written by push_to_hub"
        )
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id=text,
            revision=revision,
            token=token,
            cache_dir=None if cache_dir is None else Path(cache_dir),
            local_files_only=local_files_only,
            force_download=force_download,
            allow_patterns=["*.tpv.safetensors", CARD_FILENAME],
            library_name="tpv",
            library_version=__version__,
        )
    except Exception as error:  # huggingface_hub raises many types (HTTP, offline, not found); one line each
        where = "in the local Hub cache" if local_files_only else "from the Hugging Face Hub"
        raise TPVError(
            f"cannot get the vector {text!r} {where} ({type(error).__name__}: {error}); check the repo id, "
            + (
                "download it once without local_files_only"
                if local_files_only
                else "your network, and pass token= for a private repository"
            )
        ) from error
    return _vector_file_in(Path(folder))


def push_to_hub(
    vector: BaseTaskPromptVector,
    repo_id: str,
    scores: Scores | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload ``vector`` with its model card to the Hub model repository ``repo_id`` (created if needed).

    Args:
        vector: the vector to share.
        repo_id: ``"user/name"`` or ``"org/name"``.
        scores: optional results shown in the card, ``{task: score}`` or ``{task: {metric: score}}``.
        private: create the repository private.
        token: a Hub token (default: the one saved by ``hf auth login``).
        commit_message: the commit message (default names the vector).

    Returns:
        The repository's URL.
    """
    repo_id = _checked_repo_id(repo_id)
    model_card(vector, scores)  # check the scores before creating the repository
    # The folder is written locally first, so the upload is one commit of exactly the shared format.
    with tempfile.TemporaryDirectory(prefix="tpv-push-") as staging:
        save_pretrained(vector, staging, scores)
        return _upload(
            Path(staging),
            repo_id,
            private=private,
            token=token,
            commit_message=commit_message or f"Upload task prompt vector {vector.name}",
        )


def model_card(vector: BaseTaskPromptVector, scores: Scores | None = None) -> ModelCard:
    """The model card of a shared vector, a ``huggingface_hub.ModelCard``: metadata and a Markdown body.

    ``str(card)`` is the ``README.md`` text; ``card.data`` the metadata (``library_name: tpv``, ``base_model``,
    ``tags``), which the Hub indexes.

    Example:
        >>> import torch
        >>> card = model_card(BaseTaskPromptVector(torch.ones(2, 3), tasks={"sst2": 1.0, "yelp_polarity": 0.5}))
        >>> card.data.library_name, card.data.tags[-2:]
        ('tpv', ['sst2', 'yelp_polarity'])
        >>> "| yelp_polarity | 0.5 |" in card.text
        True
    """
    from huggingface_hub import ModelCard, ModelCardData

    tags = list(TAGS) + [task for task in vector.tasks if task not in TAGS]
    data = ModelCardData(library_name="tpv", base_model=vector.base_model or None, tags=tags)
    rows, dim = vector.shape
    body = [
        f"# Task prompt vector: {vector.name}",
        "",
        "A task prompt vector τ = θ_tuned − θ_origin: the change prompt tuning made to a soft prompt, made with "
        "tpv (task prompt vectors for PEFT prompt tuning)"
        + (f" of `{vector.base_model}`." if vector.base_model else "."),
        "It applies to any origin of the same shape (θ = θ_origin + λ·τ) and adds to other vectors.",
        "",
        "## Tasks and coefficients",
        "",
        "| task | coefficient |",
        "| --- | --- |",
        *(f"| {task} | {coef:g} |" for task, coef in vector.tasks.items()),
        "",
        "## Shape",
        "",
        f"- tensor: {rows} × {dim} (float32, PEFT's prompt layout)",
        f"- num_virtual_tokens: {vector.num_virtual_tokens}",
        f"- num_transformer_submodules: {vector.num_transformer_submodules}",
        f"- token_dim: {dim}",
        f"- task_type: {vector.task_type or 'unknown'}",
        "",
        "## Origin recipe",
        "",
        f"`{vector.origin}` (the origin it was tuned from; the vector applies to any origin of this shape)"
        if vector.origin
        else "unknown (the vector applies to any origin of this shape)",
        "",
    ]
    if vector.merge:
        body += ["## Merge", "", f"`{vector.merge}`", ""]
    if scores is not None and not isinstance(scores, Mapping):
        raise TPVError(f"scores must map task → score (or task → {{metric: score}}), got {scores!r}")
    if scores:
        body += ["## Scores", "", "| task | metric | score |", "| --- | --- | --- |"]
        for task, value in scores.items():
            for metric, score in value.items() if isinstance(value, Mapping) else [("score", value)]:
                body.append(f"| {task} | {metric} | {_score_text(score, task)} |")
        body.append("")
    body += [
        "## Usage",
        "",
        "```python",
        "from tpv import TaskPromptVector, init_prompt_tuning, make_origin",
        "from tpv.bridge.models import load_model",
        "",
        'vector = TaskPromptVector.from_pretrained("REPO_ID")',
        f"model, tokenizer = load_model({json.dumps(vector.base_model) if vector.base_model else ''})",
        f"origin = make_origin(model, num_virtual_tokens={vector.num_virtual_tokens}, seed=0)",
        "peft_model = init_prompt_tuning(model, vector, origin=origin, scale=1.0)",
        "```",
        "",
    ]
    # ModelCard's own layout: YAML front matter that huggingface_hub writes, then the body.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def read_card(folder: PathLike) -> dict:
    """The metadata of a shared vector's card as a dict (``tags`` as a list), read by ``huggingface_hub``.

    Example:
        >>> import tempfile, torch
        >>> folder = save_pretrained(BaseTaskPromptVector(torch.ones(1, 2), tasks={"rte": 1.0}), tempfile.mkdtemp())
        >>> read_card(folder)["tags"][-1]
        'rte'
    """
    import yaml  # ModelCard's YAML reader, installed with huggingface_hub
    from huggingface_hub import ModelCard

    card_path = Path(folder) / CARD_FILENAME
    if not card_path.is_file():
        raise TPVError(f"'{folder}' has no {CARD_FILENAME}; pass a folder written by tpv.bridge.hub.save_pretrained")
    text = read_text(card_path, "the model card", "write it with tpv.bridge.hub.save_pretrained")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise TPVError(
            f"'{folder}/{CARD_FILENAME}' has no YAML front matter; write it with tpv.bridge.hub.save_pretrained"
        )
    try:
        return ModelCard(text).data.to_dict()
    except (ValueError, yaml.YAMLError) as error:  # the front matter is not YAML, or not a mapping
        raise TPVError(
            f"'{folder}/{CARD_FILENAME}' has broken YAML front matter ({error}); "
            "write it with tpv.bridge.hub.save_pretrained"
        ) from error


def _is_repo_id(text) -> bool:
    if not isinstance(text, str) or not _REPO_ID.match(text) or text.count("/") > 1:
        return False
    # The Hub's own rules for names, so a bad id fails here in one line rather than after a network round trip.
    return all(
        part
        and len(part) <= 96
        and ".." not in part
        and "--" not in part
        and part[0] not in ".-"
        and part[-1] not in ".-"
        for part in text.split("/")
    )


def _score_text(score, task: str) -> str:
    if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score or abs(score) == float("inf"):
        raise TPVError(f"score for task {task!r} is {score!r}; pass numbers (finite), e.g. scores={{'sst2': 0.91}}")
    return f"{score:.4g}"


def _vector_file_in(folder: Path) -> Path:
    preferred = folder / VECTOR_FILENAME
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("*.tpv.safetensors"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise TPVError(f"'{folder}' holds no *.tpv.safetensors file; write one with vector.save_pretrained(folder)")
    raise TPVError(
        f"'{folder}' holds {len(found)} vector files {[p.name for p in found]} and no {VECTOR_FILENAME}; "
        "pass the path of the one you want"
    )


def _checked_repo_id(repo_id) -> str:
    if not _is_repo_id(repo_id):
        raise TPVError(
            f"bad Hub repo id {repo_id!r}; use 'user/name' with letters, digits, '-', '_' or '.' (no '..' "
            "or '--', not starting or ending with '.' or '-', at most 96 characters)"
        )
    return repo_id


def _upload(folder: Path, repo_id: str, *, private: bool, token: str | None, commit_message: str) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name="tpv")
    repo = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        commit_message=commit_message,
        allow_patterns=["*.tpv.safetensors", CARD_FILENAME],
    )
    return str(getattr(repo, "url", None) or f"https://huggingface.co/{repo_id}")
