"""tpv: task prompt vectors for Hugging Face PEFT prompt tuning.

The package is layered; each subpackage imports only from those listed before it (docs/architecture.md):
``core`` (the arithmetic and its files) → ``bridge`` (PEFT, the Hub, models) → ``data`` (tasks, encoding) →
``engine`` (training, scoring) → ``compose`` (merging, λ search, source choice, the zoo) → ``experiments`` →
the interfaces at the top level (this module, ``tpv.cli``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tpv.core._version import __version__
from tpv.core.errors import TPVError

# Public name → the module that defines it. Imported on first use (PEP 562), so that `import tpv.cli` — and
# with it `tpv --help` — does not pay seconds for torch and transformers before it has parsed its arguments.
_EXPORTS = {
    "InitPlan": "tpv.compose.auto_init",
    "auto_init": "tpv.compose.auto_init",
    "Origin": "tpv.core.origin",
    "TaskPromptVector": "tpv.bridge.vector",
    "combine": "tpv.core.vector",
    "get_prompt": "tpv.bridge.peft_io",
    "init_prompt_tuning": "tpv.bridge.peft_io",
    "make_origin": "tpv.core.origin",
    "merge": "tpv.compose.merge",
    "plot_similarity": "tpv.experiments.plots",
    "search_scale": "tpv.compose.search",
    "select_sources": "tpv.compose.selection",
    "set_prompt": "tpv.bridge.peft_io",
    "similarity_matrix": "tpv.core.similarity",
}
# Public modules reachable as attributes of tpv, so that `from tpv import zoo` reads as it did before the layers.
_MODULES = {"zoo": "tpv.compose.zoo"}

__all__ = sorted(["TPVError", "__version__", *_EXPORTS])

if TYPE_CHECKING:
    from tpv.bridge.peft_io import get_prompt, init_prompt_tuning, set_prompt
    from tpv.bridge.vector import TaskPromptVector
    from tpv.compose import zoo
    from tpv.compose.auto_init import InitPlan, auto_init
    from tpv.compose.merge import merge
    from tpv.compose.search import search_scale
    from tpv.compose.selection import select_sources
    from tpv.core.origin import Origin, make_origin
    from tpv.core.similarity import similarity_matrix
    from tpv.core.vector import combine
    from tpv.experiments.plots import plot_similarity


def __getattr__(name: str):
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'tpv' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_MODULES))
