"""tpv: task prompt vectors for Hugging Face PEFT prompt tuning.

Everything a workflow needs is importable from here, and this is the stable API: ``from tpv import …``. The
subpackages (``core`` → ``bridge`` → ``data`` → ``engine`` → ``compose`` → ``experiments``, see
docs/architecture.md) are the implementation and may move; the previous layout's module paths
(``tpv.models``, ``tpv.tasks``, ``tpv.training``, …) still import, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tpv.core._version import __version__
from tpv.core.errors import TPVError, TPVFileNotFoundError, TPVOSError, TPVRepoNotFoundError

# Public name → the module that defines it, grouped as docs/api.md presents them. Imported on first use (PEP 562),
# so that `import tpv.cli` — and with it `tpv --help` — does not pay seconds for torch and transformers before it
# has parsed its arguments.
_EXPORTS = {
    # vectors and origins
    "TaskPromptVector": "tpv.bridge.vector",
    "Origin": "tpv.core.origin",
    "make_origin": "tpv.core.origin",
    "combine": "tpv.core.vector",
    "similarity_matrix": "tpv.core.similarity",
    "plot_similarity": "tpv.experiments.plots",
    # PEFT prompts
    "init_prompt_tuning": "tpv.bridge.peft_io",
    "get_prompt": "tpv.bridge.peft_io",
    "set_prompt": "tpv.bridge.peft_io",
    "origin_from_peft_config": "tpv.bridge.peft_io",
    "load_prompt_adapter": "tpv.bridge.peft_io",
    # models
    "load_model": "tpv.bridge.models",
    "DEFAULT_MODEL": "tpv.bridge.models",
    "hardware_summary": "tpv.bridge.precision",
    # tasks and data
    "Task": "tpv.data.task",
    "get_task": "tpv.data.registry",
    "list_tasks": "tpv.data.registry",
    "register_task": "tpv.data.registry",
    "load_split": "tpv.data.loading",
    "few_shot": "tpv.data.shots",
    # training and evaluation
    "train_prompt": "tpv.engine.training",
    "TrainResult": "tpv.engine.training",
    "OriginCallback": "tpv.engine.training",
    "PromptTuningTrainer": "tpv.engine.training",
    "evaluate": "tpv.engine.evaluation",
    # composing
    "merge": "tpv.compose.merge",
    "negate": "tpv.compose.merge",
    "forget": "tpv.compose.merge",
    "search_scale": "tpv.compose.search",
    "ScaleSearch": "tpv.compose.search",
    "evaluation_score_fn": "tpv.compose.search",
    "validation_data": "tpv.compose.search",
    "select_sources": "tpv.compose.selection",
    "auto_init": "tpv.compose.auto_init",
    "InitPlan": "tpv.compose.auto_init",
    "load_sources": "tpv.compose.auto_init",
    "build_zoo": "tpv.compose.zoo.build",
    # sharing on the Hub (TaskPromptVector.from_pretrained / save_pretrained / push_to_hub are methods)
    "model_card": "tpv.bridge.hub",
    "read_card": "tpv.bridge.hub",
}
# Public modules reachable as attributes of tpv: `from tpv import zoo` (the vectors shipped with tpv).
_MODULES = {"zoo": "tpv.compose.zoo"}

_ERRORS = ["TPVError", "TPVOSError", "TPVFileNotFoundError", "TPVRepoNotFoundError"]

__all__ = ["__version__", *_ERRORS, *_EXPORTS, *_MODULES]

if TYPE_CHECKING:
    from tpv.bridge.hub import model_card, read_card
    from tpv.bridge.models import DEFAULT_MODEL, load_model
    from tpv.bridge.peft_io import (
        get_prompt,
        init_prompt_tuning,
        load_prompt_adapter,
        origin_from_peft_config,
        set_prompt,
    )
    from tpv.bridge.precision import hardware_summary
    from tpv.bridge.vector import TaskPromptVector
    from tpv.compose import zoo
    from tpv.compose.auto_init import InitPlan, auto_init, load_sources
    from tpv.compose.merge import forget, merge, negate
    from tpv.compose.search import ScaleSearch, evaluation_score_fn, search_scale, validation_data
    from tpv.compose.selection import select_sources
    from tpv.compose.zoo.build import build_zoo
    from tpv.core.origin import Origin, make_origin
    from tpv.core.similarity import similarity_matrix
    from tpv.core.vector import combine
    from tpv.data.loading import load_split
    from tpv.data.registry import get_task, list_tasks, register_task
    from tpv.data.shots import few_shot
    from tpv.data.task import Task
    from tpv.engine.evaluation import evaluate
    from tpv.engine.training import OriginCallback, PromptTuningTrainer, TrainResult, train_prompt
    from tpv.experiments.plots import plot_similarity


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        # The previous layout's modules (tpv.models, …) are not attributes: `from tpv import models` falls back
        # to importing the alias module tpv/models.py, which warns.
        raise AttributeError(f"module 'tpv' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_MODULES))
