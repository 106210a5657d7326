"""Deprecated alias of the previous layout's ``tpv.evaluation`` (scoring a prompt): use ``from tpv import evaluate``."""

from tpv.core._moved import moved_module, public_names
from tpv.data.encoding import is_seq2seq_model
from tpv.engine import evaluation as _target
from tpv.engine.prefix import generate_after_prefix

# Helpers the old module imported, and so offered, that now live elsewhere.
_EXTRA = {"generate_after_prefix": generate_after_prefix, "is_seq2seq_model": is_seq2seq_model}

__getattr__, __dir__ = moved_module(__name__, _target, "from tpv import evaluate", extra=_EXTRA)
__all__ = public_names(_target, _EXTRA)
