"""Deprecated alias of the previous layout's ``tpv.training`` (prompt tuning).

Use ``from tpv import train_prompt, TrainResult, OriginCallback``.
"""

from tpv.core._moved import moved_module, public_names
from tpv.engine import training as _target

__getattr__, __dir__ = moved_module(__name__, _target, "from tpv import train_prompt, TrainResult, OriginCallback")
__all__ = public_names(_target)
