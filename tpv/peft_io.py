"""Deprecated alias of the previous layout's ``tpv.peft_io`` (PEFT prompts and adapter folders).

Use ``from tpv import init_prompt_tuning, get_prompt, set_prompt``.
"""

from tpv.bridge import peft_io as _target
from tpv.bridge.vector import TaskPromptVector
from tpv.core._moved import moved_module, public_names

# The old module imported, and so offered, the vector class.
_EXTRA = {"TaskPromptVector": TaskPromptVector}

__getattr__, __dir__ = moved_module(
    __name__, _target, "from tpv import init_prompt_tuning, get_prompt, set_prompt", extra=_EXTRA
)
__all__ = public_names(_target, _EXTRA)
