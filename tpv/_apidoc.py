"""Generate docs/api.md from the docstrings: ``python -m tpv._apidoc > docs/api.md``.

tests/test_docs.py checks that docs/api.md equals this output, so the reference cannot drift from the code.
"""

from __future__ import annotations

import importlib
import inspect

# The public modules, in the order a reader meets them: the layers bottom up (docs/architecture.md).
MODULES = (
    "tpv",
    "tpv.core.vector",
    "tpv.core.provenance",
    "tpv.core.origin",
    "tpv.core.similarity",
    "tpv.bridge.vector",
    "tpv.bridge.peft_io",
    "tpv.bridge.hub",
    "tpv.bridge.models",
    "tpv.bridge.precision",
    "tpv.data",
    "tpv.data.files",
    "tpv.engine.training",
    "tpv.engine.run_folder",
    "tpv.engine.evaluation",
    "tpv.compose.merge",
    "tpv.compose.search",
    "tpv.compose.selection",
    "tpv.compose.auto_init",
    "tpv.compose.zoo",
    "tpv.experiments.plots",
    "tpv.cli",
)


def _public(module) -> list[tuple[str, object]]:
    names = getattr(module, "__all__", None)
    if module.__name__ == "tpv":
        return []  # the package re-exports; each object is documented in its own module
    if names is None:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    return [
        (name, getattr(module, name))
        for name in names
        if inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))
    ]


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else "(no docstring)"


def render() -> str:
    """The whole API reference as Markdown."""
    exported = ", ".join(f"`{n}`" for n in importlib.import_module("tpv").__all__)
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python -m tpv._apidoc > docs/api.md`; a test keeps it in sync. "
        f"The package `tpv` re-exports: {exported}.",
        "",
    ]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        out += [f"## `{module_name}`", "", inspect.cleandoc(module.__doc__ or ""), ""]
        for name, obj in _public(module):
            kind = "class" if inspect.isclass(obj) else "def"
            out += [f"### `{name}`", "", "```text", f"{kind} {name}{_signature(obj)}", "```", "", _doc(obj), ""]
            if inspect.isclass(obj):
                for member_name, member in vars(obj).items():
                    if member_name.startswith("_") or not (
                        inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod, property))
                    ):
                        continue
                    func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    if isinstance(member, property):
                        if not member.__doc__:
                            continue
                        out += [f"#### `{name}.{member_name}` (property)", "", _doc(member), ""]
                        continue
                    if not func.__doc__:
                        continue
                    out += [
                        f"#### `{name}.{member_name}`",
                        "",
                        "```text",
                        f"{member_name}{_signature(func)}",
                        "```",
                        "",
                        _doc(func),
                        "",
                    ]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
