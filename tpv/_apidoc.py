"""Generate docs/api.md from the docstrings: ``python -m tpv._apidoc > docs/api.md``.

The reference is organised by public object, as PEFT's package reference is: what ``from tpv import …`` offers,
in groups a reader looks for, and nothing from inside the layers. tests/test_docs.py checks that docs/api.md
equals this output, and :func:`render` refuses a public name that no group places, so the page cannot drift
from the code nor leave out what the package exports.
"""

from __future__ import annotations

import importlib
import inspect
import types

# Every name of `tpv.__all__`, once, in the order a reader meets them.
SECTIONS = (
    ("Vectors and origins", ("TaskPromptVector", "Origin", "make_origin", "combine", "similarity_matrix")),
    (
        "PEFT prompts",
        ("init_prompt_tuning", "get_prompt", "set_prompt", "load_prompt_adapter", "origin_from_peft_config"),
    ),
    ("Models", ("load_model", "DEFAULT_MODEL", "hardware_summary")),
    ("Tasks and data", ("Task", "get_task", "list_tasks", "register_task", "load_split", "few_shot")),
    ("Training", ("train_prompt", "TrainResult", "OriginCallback", "PromptTuningTrainer")),
    ("Evaluation", ("evaluate",)),
    ("Merging and negating", ("merge", "negate", "forget")),
    (
        "Choosing sources and λ",
        ("auto_init", "InitPlan", "load_sources", "select_sources")
        + ("search_scale", "ScaleSearch", "evaluation_score_fn", "validation_data"),
    ),
    ("The zoo", ("zoo", "build_zoo")),
    ("Sharing on the Hub", ("model_card", "read_card")),
    ("Plots", ("plot_similarity",)),
    ("Errors", ("TPVError", "TPVOSError", "TPVFileNotFoundError", "TPVRepoNotFoundError")),
    ("Version", ("__version__",)),
)

# The previous layout's module paths (tpv/models.py, …): they still import, with a DeprecationWarning.
DEPRECATED_PATHS = (
    ("tpv.models", "from tpv import load_model"),
    ("tpv.tasks", "from tpv import Task, get_task, list_tasks, load_split, few_shot"),
    ("tpv.training", "from tpv import train_prompt, TrainResult, OriginCallback"),
    ("tpv.evaluation", "from tpv import evaluate"),
    ("tpv.hub", "from tpv import TaskPromptVector, read_card, model_card"),
    ("tpv.peft_io", "from tpv import init_prompt_tuning, get_prompt, set_prompt"),
    ("tpv.zoo", "from tpv import zoo"),
    ("tpv.stats", "import tpv.experiments.stats"),  # the studies' statistics: not part of the top-level API
)


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else "(no docstring)"


def _code(line: str) -> list[str]:
    return ["```text", line, "```", ""]


def _members(cls: type) -> list[tuple[str, object]]:
    # The class's own public methods first, then those it inherits from tpv's classes (TaskPromptVector's
    # arithmetic lives in the core's BaseTaskPromptVector); a library base such as transformers' Trainer is theirs.
    seen: dict[str, object] = {}
    for owner in cls.__mro__:
        if not owner.__module__.startswith("tpv"):
            continue
        for name, member in vars(owner).items():
            documented = inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod, property))
            if name.startswith("_") or name in seen or not documented:
                continue
            function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
            if function.__doc__:
                seen[name] = member
    return list(seen.items())


def _class(name: str, cls: type) -> list[str]:
    out = [f"### `{name}`", "", *_code(f"class {name}{_signature(cls)}"), _doc(cls), ""]
    for member_name, member in _members(cls):
        if isinstance(member, property):
            out += [f"#### `{name}.{member_name}` (property)", "", _doc(member), ""]
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        out += [f"#### `{name}.{member_name}`", "", *_code(f"{member_name}{_signature(function)}"), _doc(function), ""]
    return out


def _module(name: str, module: types.ModuleType) -> list[str]:
    out = [f"### `{name}`", "", inspect.cleandoc(module.__doc__ or ""), ""]
    for member_name in getattr(module, "__all__", ()):
        member = getattr(module, member_name)
        if inspect.isfunction(member):
            out += [f"#### `{name}.{member_name}`", "", *_code(f"def {member_name}{_signature(member)}")]
            out += [_doc(member), ""]
    return out


def _entry(name: str, obj) -> list[str]:
    if inspect.isclass(obj):
        return _class(name, obj)
    if inspect.ismodule(obj):
        return _module(name, obj)
    if callable(obj):
        return [f"### `{name}`", "", *_code(f"def {name}{_signature(obj)}"), _doc(obj), ""]
    # the version's value would make the page stale at every release
    return [f"### `{name}`", "", *_code(f"{name}: str" if name == "__version__" else f"{name} = {obj!r}")]


def _check_sections(exported: list[str]) -> None:
    placed = [name for _, names in SECTIONS for name in names]
    unplaced = sorted(set(exported) - set(placed))
    extra = sorted(set(placed) - set(exported))
    twice = sorted({name for name in placed if placed.count(name) > 1})
    if unplaced or extra or twice:
        raise ValueError(
            f"tpv/_apidoc.py SECTIONS is out of step with tpv.__all__: place {unplaced}, drop {extra}, "
            f"list once {twice}"
        )


def _public(package, name: str):
    # A public module is read from its own path: after a user's (or a test's) `import tpv.zoo`, the import system
    # leaves the deprecation alias module in the package attribute `tpv.zoo`, and the reference must not follow it.
    if name in package._MODULES:
        return importlib.import_module(package._MODULES[name])
    return getattr(package, name)


def render() -> str:
    """The whole API reference as Markdown."""
    package = importlib.import_module("tpv")
    _check_sections(package.__all__)
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python -m tpv._apidoc > docs/api.md`; a test keeps it in sync.",
        "",
        inspect.cleandoc(package.__doc__ or ""),
        "",
        "Everything below is imported from the package root, `from tpv import …`: that is the stable API. The "
        "command line is `tpv --help`.",
        "",
    ]
    for title, names in SECTIONS:
        out += [f"## {title}", ""]
        for name in names:
            out += _entry(name, _public(package, name))
    out += [
        "## Deprecated import paths",
        "",
        "The previous layout's modules still import, with a `DeprecationWarning` that names the import to use; "
        "they will be removed in a future release.",
        "",
        "| old path | use now |",
        "| --- | --- |",
        *(f"| `{old}` | `{new}` |" for old, new in DEPRECATED_PATHS),
    ]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
