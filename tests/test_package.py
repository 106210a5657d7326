"""The installed package: public API and import hygiene."""

import subprocess
import sys

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
