"""tpv: task prompt vectors for Hugging Face PEFT prompt tuning."""

from .errors import TPVError
from .origin import Origin, make_origin
from .peft_io import get_prompt, init_prompt_tuning, set_prompt
from .similarity import similarity_matrix
from .vector import TaskPromptVector, combine

__version__ = "0.1.0"

__all__ = [
    "Origin",
    "TPVError",
    "TaskPromptVector",
    "__version__",
    "combine",
    "get_prompt",
    "init_prompt_tuning",
    "make_origin",
    "set_prompt",
    "similarity_matrix",
]
