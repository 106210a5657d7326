"""The installed package: public API, import hygiene, and the previous layout's paths as deprecation aliases."""

import importlib
import subprocess
import sys
import warnings

import pytest

import tpv

OPTIONAL = [
    "scipy",
    "sklearn",
    "matplotlib",
    "gguf",
    "datasets",
    "nbclient",
    "yaml",
    "hypothesis",
    "accelerate",
    "huggingface_hub",
    "pandas",
]


def test_import_tpv_pulls_in_only_required_dependencies():
    code = f"import sys, tpv; print([m for m in {OPTIONAL!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_exported():
    for name in ("TaskPromptVector", "make_origin", "init_prompt_tuning", "get_prompt", "set_prompt", "TPVError"):
        assert name in tpv.__all__ and hasattr(tpv, name)
    assert issubclass(tpv.TPVError, ValueError)


def test_demo_script_installs_what_the_cli_plot_needs():
    import re
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the stdlib's TOML reader arrived in 3.11; tpv requires its backport below that
        import tomli as tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (root / "examples" / "demo.sh").read_text()
    [extras] = re.findall(r'pip install -q -e "\.\[([\w,]+)\]"', script)
    optional = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = {re.split(r"[<>=\[]", req)[0] for extra in extras.split(",") for req in optional[extra]}
    # `tpv vector similarity --plot` draws with matplotlib (tpv/experiments/plots.py); the demo's environment
    # must have it.
    assert "matplotlib" in installed, f"examples/demo.sh installs [{extras}], which lacks matplotlib"


def test_merge_is_both_a_function_and_a_module_at_their_documented_spellings():
    """`from tpv import merge` is the function; `tpv.compose.merge.forget` (docs/results/compose.md) the module's."""
    import importlib

    import tpv
    from tpv import merge

    module = importlib.import_module("tpv.compose.merge")
    assert callable(merge) and merge is module.merge and tpv.merge is merge
    assert callable(tpv.compose.merge.forget)


# The previous layout's modules and the public names each defined there (git show 3b749b3^:tpv/<module>.py), with
# where each lives now; tpv.tasks re-exported its package's names.
OLD_LAYOUT = {
    "tpv.models": ("tpv.bridge.models", ["DEFAULT_MODEL", "cache_dir", "default_model_path", "load_model"]),
    "tpv.tasks": (
        "tpv.data",
        ["FAMILIES", "FileTask", "METRIC_NAMES", "NO_ANSWER", "SPLITS", "TASKS", "Task"]
        + ["few_shot", "get_task", "list_tasks", "load_split", "register_task"],
    ),
    "tpv.training": (
        "tpv.engine.training",
        ["DEFAULT_NUM_VIRTUAL_TOKENS", "RESULT_FILENAME", "TrainResult", "OriginCallback", "PromptTuningTrainer"]
        + ["train_prompt", "check_training_inputs"],
    ),
    "tpv.evaluation": ("tpv.engine.evaluation", ["METHODS", "evaluate", "label_token_ids"]),
    "tpv.hub": (
        "tpv.bridge.hub",
        ["VECTOR_FILENAME", "CARD_FILENAME", "TAGS", "save_pretrained", "push_to_hub", "model_card", "read_card"],
    ),
    "tpv.peft_io": (
        "tpv.bridge.peft_io",
        ["ORIGIN_FILENAME", "PROMPT_KEY", "get_prompt", "set_prompt", "init_prompt_tuning", "record_origin"]
        + ["recorded_origin", "save_origins", "vector_from_peft", "read_adapter_config", "load_prompt_adapter"],
    ),
    "tpv.zoo": ("tpv.compose.zoo", ["ZOO_DIR", "ZooTable", "manifest", "available", "load", "vectors", "pending"]),
    "tpv.stats": ("tpv.experiments.stats", ["ALPHA", "TTest", "mean_std", "ttest", "format_cell"]),
}


@pytest.fixture
def forget_old_paths(monkeypatch):
    """Make the next import of an old path run its alias module again, as in a fresh interpreter; undo it after.

    The doctest collection (`--doctest-modules`) may have imported the aliases already, binding `tpv.models`, ….
    """
    import tpv

    for name in list(sys.modules):
        if name.startswith(tuple(OLD_LAYOUT)):
            monkeypatch.delitem(sys.modules, name)
    for old in OLD_LAYOUT:
        attribute = old.split(".")[1]
        if attribute in vars(tpv):
            monkeypatch.delattr(tpv, attribute)  # `tpv.zoo` is served again by tpv.__getattr__
    yield
    for name in list(sys.modules):
        if name.startswith(tuple(OLD_LAYOUT)):
            del sys.modules[name]  # what the test imported; monkeypatch puts back what was there before


def _run_as_user_script(code: str) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "user_script.py", "exec"), {})
    return [w for w in caught if issubclass(w.category, DeprecationWarning)]


@pytest.mark.parametrize("old", OLD_LAYOUT)
def test_old_module_paths_import_with_a_warning_that_names_the_new_import(old, forget_old_paths):
    new, names = OLD_LAYOUT[old]
    [warning] = _run_as_user_script(f"import {old}")
    message = str(warning.message)
    assert f"`{old}` is deprecated" in message
    # every old path but the studies' statistics now has its names at the top level
    assert ("use `from tpv import" in message) == (old != "tpv.stats"), message
    assert f"now lives in `{new}`" in message
    alias, target = sys.modules[old], importlib.import_module(new)
    for name in names:
        assert getattr(alias, name) is getattr(target, name), f"{old}.{name}"


@pytest.mark.parametrize("old", OLD_LAYOUT)
def test_old_from_imports_and_star_imports_still_work(old, forget_old_paths):
    new, names = OLD_LAYOUT[old]
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exec(f"from {old} import {', '.join(names)}", namespace)
        exec(f"from {old} import *", star := {})
    target = importlib.import_module(new)
    for name in names:
        assert namespace[name] is getattr(target, name)
        assert star[name] is getattr(target, name), f"`from {old} import *` lacks {name}"


def test_old_names_that_moved_elsewhere_still_resolve(forget_old_paths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from tpv.evaluation import generate_after_prefix
        from tpv.hub import TaskPromptVector, from_pretrained
        from tpv.tasks.files import from_files
    assert from_pretrained == tpv.TaskPromptVector.from_pretrained and TaskPromptVector is tpv.TaskPromptVector
    assert generate_after_prefix is importlib.import_module("tpv.engine.prefix").generate_after_prefix
    # one module object under both names, not a second copy of tpv/data/files.py
    assert sys.modules["tpv.tasks.files"] is importlib.import_module("tpv.data.files")
    assert from_files is sys.modules["tpv.data.files"].from_files
    with pytest.raises(AttributeError, match="module 'tpv.hub' has no attribute 'nothing'"):
        sys.modules["tpv.hub"].nothing  # noqa: B018


def test_from_tpv_import_zoo_does_not_warn_and_import_tpv_zoo_does(forget_old_paths):
    import tpv

    real = importlib.import_module("tpv.compose.zoo")
    assert _run_as_user_script("from tpv import zoo") == []
    assert tpv.zoo is real
    [warning] = _run_as_user_script("import tpv.zoo")
    assert "use `from tpv import zoo`" in str(warning.message)
    # the module path is the alias now bound to tpv.zoo; it serves the real module's names
    assert tpv.zoo is sys.modules["tpv.zoo"] and tpv.zoo.load is real.load and tpv.zoo.ZOO_DIR == real.ZOO_DIR
    assert _run_as_user_script("from tpv import zoo") == []


def test_merge_stays_the_function_and_old_modules_are_no_attributes(forget_old_paths):
    import tpv

    assert callable(tpv.merge) and not isinstance(tpv.merge, type(sys))
    for name in ("models", "tasks", "training"):
        assert name not in tpv.__all__ and name not in dir(tpv)


def test_the_flat_api_covers_a_workflow():
    """What the README and the how-tos import: everything from `tpv`, nothing from a layer."""
    import tpv

    workflow = [
        "load_model", "train_prompt", "TrainResult", "OriginCallback", "evaluate", "Task", "get_task", "list_tasks",
        "load_split", "few_shot", "merge", "negate", "forget", "search_scale", "evaluation_score_fn",
        "validation_data", "select_sources", "zoo", "auto_init", "InitPlan", "load_sources", "read_card",
        "model_card", "Origin", "make_origin", "TaskPromptVector", "TPVError", "TPVOSError", "TPVFileNotFoundError",
        "TPVRepoNotFoundError",
    ]  # fmt: skip
    for name in workflow:
        assert name in tpv.__all__ and getattr(tpv, name) is not None, name
    assert len(set(tpv.__all__)) == len(tpv.__all__)
    for name in tpv.__all__:
        assert name in dir(tpv)


def test_the_warnings_point_at_the_users_import_line():
    """In a fresh interpreter (pytest's import hook adds a frame of its own), each warning names the user's file."""
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        f"for old in {list(OLD_LAYOUT)!r}:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        exec(compile('import ' + old, 'user_script.py', 'exec'), {})\n"
        "    print(old, [(w.category.__name__, w.filename, w.lineno) for w in caught])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) == len(OLD_LAYOUT), out
    for old, line in zip(OLD_LAYOUT, out.splitlines()):
        assert line == f"{old} [('DeprecationWarning', 'user_script.py', 1)]"
