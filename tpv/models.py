"""Deprecated alias of the previous layout's ``tpv.models`` (model loading): use ``from tpv import load_model``."""

from tpv.bridge import models as _target
from tpv.core._moved import moved_module, public_names

__getattr__, __dir__ = moved_module(__name__, _target, "from tpv import load_model")
__all__ = public_names(_target)
