"""tpv: task prompt vectors for Hugging Face PEFT prompt tuning."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from .errors import TPVError

__version__ = "0.1.0"

# Public name → the module that defines it. Imported on first use (PEP 562), so that `import tpv.cli` — and
# with it `tpv --help` — does not pay seconds for torch and transformers before it has parsed its arguments.
_EXPORTS = {
    "InitPlan": "auto_init",
    "auto_init": "auto_init",
    "Origin": "origin",
    "TaskPromptVector": "vector",
    "combine": "vector",
    "get_prompt": "peft_io",
    "init_prompt_tuning": "peft_io",
    "make_origin": "origin",
    "merge": "merge",
    "plot_similarity": "plots",
    "search_scale": "search",
    "select_sources": "selection",
    "set_prompt": "peft_io",
    "similarity_matrix": "similarity",
}

__all__ = sorted(["TPVError", "__version__", *_EXPORTS])

if TYPE_CHECKING:
    from .auto_init import InitPlan, auto_init
    from .merge import merge
    from .origin import Origin, make_origin
    from .peft_io import get_prompt, init_prompt_tuning, set_prompt
    from .plots import plot_similarity
    from .search import search_scale
    from .selection import select_sources
    from .similarity import similarity_matrix
    from .vector import TaskPromptVector, combine


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tpv' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    # Importing the submodule tpv.merge sets the attribute tpv.merge to that module, which would shadow the
    # function tpv.merge that eager imports used to put there; the function keeps the name.
    def __setattr__(self, name, value):
        if not (name == "merge" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
