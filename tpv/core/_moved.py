"""Deprecation aliases for module paths that moved: the previous layout's ``tpv.models``, ``tpv.tasks``, …

Each alias is a small module at the old path (``tpv/models.py``) that warns once, when imported, and then serves
every attribute from the module that now holds it, so that scripts written against the old layout keep running
for a release while their authors move to ``from tpv import …``.
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Callable, Mapping


def warn_moved(old: str, target: types.ModuleType, use: str, *, stacklevel: int = 3) -> None:
    """Warn, from an alias module's body, that module ``old`` moved to ``target`` and ``use`` replaces it."""
    # The alias module's body and the import machinery sit between this call and the user's `import`
    # statement; warnings skips the machinery's frames, so 3 lands on the user's line.
    warnings.warn(
        f"`{old}` is deprecated and will be removed in a future release: use `{use}` "
        f"(the implementation now lives in `{target.__name__}`)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_module(
    old: str,
    target: types.ModuleType,
    use: str,
    *,
    extra: Mapping[str, object] | None = None,
    submodules: Mapping[str, types.ModuleType] | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Warn that module ``old`` moved to ``target``; return the alias's module ``__getattr__`` and ``__dir__``.

    Args:
        old: the alias's own ``__name__`` (the old import path).
        target: the module that now holds the names.
        use: the import to write instead, quoted in the warning (e.g. ``from tpv import load_model``).
        extra: names the old module had that now live elsewhere (e.g. a function that became a method).
        submodules: the old package's submodules by their short name, so that ``import old.files`` still
            finds the one module object and does not load a second copy.

    Returns:
        ``(__getattr__, __dir__)`` for the alias module (PEP 562).
    """
    extra = dict(extra or {})
    warn_moved(old, target, use, stacklevel=4)
    for name, module in (submodules or {}).items():
        sys.modules.setdefault(f"{old}.{name}", module)

    def __getattr__(name: str) -> object:
        if name in extra:
            return extra[name]
        try:
            return getattr(target, name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None

    def __dir__() -> list[str]:
        return sorted(set(dir(target)) | set(extra))

    return __getattr__, __dir__


def public_names(target: types.ModuleType, extra: Mapping[str, object] | None = None) -> list[str]:
    """What ``from old import *`` gave: the target's ``__all__`` (or its public non-module names) plus ``extra``."""
    names = getattr(target, "__all__", None)
    if names is None:
        names = [n for n, v in vars(target).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)]
    return sorted({*names, *(extra or {})})
