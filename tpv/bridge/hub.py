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
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tpv.core._io import PathLike, atomic_write_text, read_text
from tpv.core._version import __version__
from tpv.core.errors import TPVError, TPVFileNotFoundError, TPVOSError, TPVRepoNotFoundError
from tpv.core.vector import BaseTaskPromptVector

VECTOR_FILENAME = "task_prompt_vector.tpv.safetensors"
CARD_FILENAME = "README.md"
TAGS = ("tpv", "task-prompt-vector", "prompt-tuning", "peft")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, ModelCard

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
    revision: str | None = None,
    create_pr: bool = False,
) -> Path:
    """Write ``vector`` and its model card into ``folder`` (created if needed); return the folder.

    Args:
        vector: the vector to share.
        folder: the target folder; existing files of the same names are replaced atomically.
        scores: optional results, ``{task: score}`` or ``{task: {metric: score}}``, shown in the card.
        push_to_hub: also upload the folder to the Hub (as ``transformers``' ``save_pretrained`` does).
        repo_id: the Hub repository for ``push_to_hub``; by default the folder's name.
        private, token, commit_message, revision, create_pr: as for :func:`push_to_hub`.

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
            revision=revision,
            create_pr=create_pr,
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
    path = local_or_hub(
        repo_id_or_folder,
        "the vector",
        allow_patterns=["*.tpv.safetensors", CARD_FILENAME],
        fix="pass the id of a repository written by push_to_hub",
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        force_download=force_download,
    )
    return path if path.is_file() else _vector_file_in(path)


def local_or_hub(
    path_or_repo_id: PathLike,
    what: str,
    *,
    allow_patterns: list[str] | None = None,
    fix: str = "check the repo id",
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """A local file or folder as it is, else the snapshot folder of the Hub repo ``path_or_repo_id``.

    A path that exists wins over a Hub id of the same spelling, as in ``transformers``' ``from_pretrained``.
    The download goes through ``huggingface_hub.snapshot_download``, so the Hub cache, ``HF_HUB_OFFLINE`` and
    ``HF_TOKEN`` work as for any Hub model; the keyword arguments are passed to it unchanged.

    Args:
        path_or_repo_id: a local file or folder, or a Hub repo id such as ``"user/name"``.
        what: what is fetched, for messages (e.g. ``"the adapter"``).
        allow_patterns: the repository files to download (default: all).
        fix: what to do when the repo is not found, for messages.
        revision, token, cache_dir, local_files_only, force_download: as for ``from_pretrained``.

    Returns:
        The local path: ``path_or_repo_id`` itself, or the snapshot folder in the Hub cache.

    Raises:
        TPVFileNotFoundError: a missing path that is no Hub repo id.
        TPVRepoNotFoundError: a repo, revision or file the Hub (or, offline, the cache) does not have.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> local_or_hub(folder, "the vector") == Path(folder)
        True
    """
    if not isinstance(path_or_repo_id, (str, os.PathLike)) or os.fspath(path_or_repo_id) == "":
        raise TPVError(f"{what} needs a local path or a Hub repo id like 'user/name', got {path_or_repo_id!r}")
    path = Path(path_or_repo_id).expanduser()
    if path.exists():
        return path
    text = os.fspath(path_or_repo_id)
    if not _is_repo_id(text):
        raise TPVFileNotFoundError(
            f"{text!r} is neither an existing folder or file nor a Hub repo id like 'user/name'; "
            f"check the path, or {fix}"
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
            allow_patterns=allow_patterns,
            library_name="tpv",
            library_version=__version__,
        )
    except Exception as error:  # huggingface_hub raises many types (HTTP, offline, not found); one line each
        raise _download_error(error, text, what, local_files_only, revision) from error
    return Path(folder)


# What a Hub repo of sources may hold: vector files and PEFT adapter folders (at the top or one per subfolder).
SOURCE_PATTERNS = [
    "*.tpv.safetensors",
    "*adapter_config.json",
    "*adapter_model.safetensors",
    "*adapter_model.bin",
    "*tpv_origin.safetensors",
    "*" + CARD_FILENAME,
]


def resolve_sources(
    sources,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
):
    """``sources`` as :func:`tpv.auto_init` takes them, with each Hub repo id replaced by its local folder.

    A path (or each path of a list) that exists locally, ``"zoo"``, a dict of vectors: returned unchanged. A
    repo id is downloaded with ``huggingface_hub.snapshot_download`` (vector files and adapter folders only).

    Args:
        sources: ``"zoo"``, a dict name → vector, a folder, a Hub repo id, or a list of paths and repo ids.
        revision, token, cache_dir, local_files_only: as for ``from_pretrained``.

    Example:
        >>> resolve_sources("zoo"), resolve_sources({})
        ('zoo', {})
    """
    options = {"revision": revision, "token": token, "cache_dir": cache_dir, "local_files_only": local_files_only}

    def resolved(item):
        if not isinstance(item, (str, os.PathLike)) or Path(item).exists() or not _is_repo_id(os.fspath(item)):
            return item  # the loader says what is wrong with it, as before
        return local_or_hub(item, "the sources", allow_patterns=SOURCE_PATTERNS, **options)

    if isinstance(sources, str) and sources == "zoo":
        return sources
    if isinstance(sources, (str, os.PathLike)):
        return resolved(sources)
    if isinstance(sources, (list, tuple)):
        # In a list, a repo is one source: a PEFT adapter, or a vector shared with push_to_hub (its one file).
        return [_one_source(resolved(item)) for item in sources]
    return sources


def _one_source(item):
    if not isinstance(item, Path) or not item.is_dir() or (item / "adapter_config.json").is_file():
        return item
    files = sorted(item.glob("*.tpv.safetensors"))
    return files[0] if len(files) == 1 else item


def _download_error(error: Exception, repo_id: str, what: str, local_files_only: bool, revision) -> TPVError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = local_files_only or isinstance(error, LocalEntryNotFoundError)
    where = "in the local Hub cache" if offline else "from the Hugging Face Hub"
    at = f" at revision {revision!r}" if revision else ""
    detail = " ".join(str(error).split())[:300]
    message = f"cannot get {what} {repo_id!r}{at} {where} ({type(error).__name__}: {detail}); check the repo id, " + (
        "download it once without local_files_only (and without HF_HUB_OFFLINE=1)"
        if offline
        else "your network, and pass token= for a private repository"
    )
    missing = (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, FileNotFoundError)
    if isinstance(error, missing):
        return TPVRepoNotFoundError(message)
    return TPVOSError(message) if isinstance(error, OSError) else TPVError(message)


def push_to_hub(
    vector: BaseTaskPromptVector,
    repo_id: str,
    *legacy,
    scores: Scores | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    """Upload ``vector`` with its model card to the Hub model repository ``repo_id`` (created if needed).

    Args:
        vector: the vector to share.
        repo_id: ``"user/name"`` or ``"org/name"``.
        scores: optional results, ``{task: score}`` or ``{task: {metric: score}}``: a table in the card and
            its ``model-index``, which the Hub indexes.
        private: create the repository private.
        token: a Hub token (default: the one saved by ``hf auth login``).
        commit_message: the commit message (default names the vector).
        revision: the branch to push to (created from the default branch if missing).
        create_pr: open a pull request instead of committing to the branch.

    Returns:
        ``huggingface_hub``'s ``CommitInfo`` (``.commit_url``, ``.oid``, ``.pr_url``; ``.repo_url`` is the
        repository's URL), as ``transformers``' ``push_to_hub`` returns.
    """
    options = _legacy_options(
        legacy, {"scores": scores, "private": private, "token": token, "commit_message": commit_message}
    )
    repo_id = _checked_repo_id(repo_id)
    model_card(vector, options["scores"])  # check the scores before creating the repository
    # The folder is written locally first, so the upload is one commit of exactly the shared format.
    with tempfile.TemporaryDirectory(prefix="tpv-push-") as staging:
        save_pretrained(vector, staging, options["scores"])
        return _upload(
            Path(staging),
            repo_id,
            private=options["private"],
            token=options["token"],
            commit_message=options["commit_message"] or f"Upload task prompt vector {vector.name}",
            revision=revision,
            create_pr=create_pr,
        )


_LEGACY_ORDER = ("scores", "private", "token", "commit_message")


def _legacy_options(legacy: tuple, options: dict) -> dict:
    # push_to_hub(repo_id, scores, private, token, commit_message) was the old, positional spelling.
    if not legacy:
        return options
    if len(legacy) > len(_LEGACY_ORDER):
        raise TPVError(
            f"push_to_hub takes repo_id and keyword arguments, got {len(legacy) + 1} positional ones; "
            "pass scores=, private=, token=, commit_message= by name"
        )
    names = _LEGACY_ORDER[: len(legacy)]
    warnings.warn(
        f"passing {', '.join(names)} to push_to_hub by position is deprecated and will stop working in the "
        f"next release; write push_to_hub(repo_id, {', '.join(f'{n}=...' for n in names)})",
        DeprecationWarning,
        stacklevel=3,
    )
    return {**options, **dict(zip(names, legacy))}


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

    if scores is not None and not isinstance(scores, Mapping):
        raise TPVError(f"scores must map task → score (or task → {{metric: score}}), got {scores!r}")
    tags = list(TAGS) + [task for task in vector.tasks if task not in TAGS]
    results = _eval_results(vector, scores or {})
    data = ModelCardData(
        library_name="tpv",
        base_model=vector.base_model or None,
        tags=tags,
        model_name=f"task prompt vector {vector.name}" if results else None,
        eval_results=results or None,
    )
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
        raise TPVFileNotFoundError(
            f"'{folder}' has no {CARD_FILENAME}; pass a folder written by tpv.bridge.hub.save_pretrained"
        )
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


def _eval_results(vector: BaseTaskPromptVector, scores: Scores) -> list:
    from huggingface_hub import EvalResult

    # The Hub's model-index needs a pipeline type: tpv scores prompts by generating the answer text.
    pipeline = "text2text-generation" if vector.task_type == "SEQ_2_SEQ_LM" else "text-generation"
    return [
        EvalResult(
            task_type=pipeline,
            dataset_type=task,
            dataset_name=task,
            metric_type=metric,
            metric_value=_checked_score(score, task),
        )
        for task, value in scores.items()
        for metric, score in (value.items() if isinstance(value, Mapping) else [("score", value)])
    ]


def _score_text(score, task: str) -> str:
    return f"{_checked_score(score, task):.4g}"


def _checked_score(score, task: str) -> float:
    if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score or abs(score) == float("inf"):
        raise TPVError(f"score for task {task!r} is {score!r}; pass numbers (finite), e.g. scores={{'sst2': 0.91}}")
    return float(score)


def _vector_file_in(folder: Path) -> Path:
    preferred = folder / VECTOR_FILENAME
    if preferred.is_file():
        return preferred
    found = sorted(folder.glob("*.tpv.safetensors"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise TPVFileNotFoundError(
            f"'{folder}' holds no *.tpv.safetensors file; write one with vector.save_pretrained(folder)"
        )
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


def _upload(
    folder: Path,
    repo_id: str,
    *,
    private: bool,
    token: str | None,
    commit_message: str,
    revision: str | None = None,
    create_pr: bool = False,
) -> CommitInfo:
    from huggingface_hub import HfApi

    api = HfApi(token=token, library_name="tpv")
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None and not revision.startswith("refs/pr/"):
        # As transformers' push_to_hub: a new branch starts from the default one.
        api.create_branch(repo_id=repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=folder,
        commit_message=commit_message,
        allow_patterns=["*.tpv.safetensors", CARD_FILENAME],
        revision=revision,
        create_pr=create_pr,
    )
