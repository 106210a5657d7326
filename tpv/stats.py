"""Deprecated alias of the previous layout's ``tpv.stats`` (the studies' statistics).

Use ``import tpv.experiments.stats``: the statistics serve the studies and are not part of the top-level API.
"""

from tpv.core._moved import moved_module, public_names
from tpv.experiments import stats as _target

__getattr__, __dir__ = moved_module(__name__, _target, "import tpv.experiments.stats")
__all__ = public_names(_target)
