"""Deprecated alias of the previous layout's ``tpv.hub`` (sharing on the Hub): use ``from tpv import …``."""

from tpv.bridge import hub as _target
from tpv.bridge.vector import TaskPromptVector
from tpv.core._moved import moved_module, public_names

# The old module's `from_pretrained` function is now the classmethod it called.
_EXTRA = {"TaskPromptVector": TaskPromptVector, "from_pretrained": TaskPromptVector.from_pretrained}

__getattr__, __dir__ = moved_module(
    __name__, _target, "from tpv import TaskPromptVector, read_card, model_card", extra=_EXTRA
)
__all__ = public_names(_target, _EXTRA)
