"""tpv: task prompt vectors for Hugging Face PEFT prompt tuning."""

from .auto_init import InitPlan, auto_init
from .errors import TPVError
from .merge import merge
from .origin import Origin, make_origin
from .peft_io import get_prompt, init_prompt_tuning, set_prompt
from .plots import plot_similarity
from .search import search_scale
from .selection import select_sources
from .similarity import similarity_matrix
from .vector import TaskPromptVector, combine

__version__ = "0.1.0"

__all__ = [
    "InitPlan",
    "Origin",
    "TPVError",
    "TaskPromptVector",
    "__version__",
    "auto_init",
    "combine",
    "get_prompt",
    "init_prompt_tuning",
    "make_origin",
    "merge",
    "plot_similarity",
    "search_scale",
    "select_sources",
    "set_prompt",
    "similarity_matrix",
]
