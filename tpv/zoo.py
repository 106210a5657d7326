"""Deprecated alias of the previous layout's ``tpv.zoo`` (the shipped vectors): use ``from tpv import zoo``.

``from tpv import zoo`` does not come here: the package serves that name itself (``tpv.__getattr__``), without a
warning. Only the module path ``import tpv.zoo`` / ``from tpv.zoo import …`` runs this alias.
"""

from tpv.compose import zoo as _target
from tpv.core._moved import moved_module, public_names

__getattr__, __dir__ = moved_module(__name__, _target, "from tpv import zoo")
__all__ = public_names(_target)
