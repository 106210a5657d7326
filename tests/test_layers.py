"""The layers of docs/architecture.md: imports point down only, as pyproject's import-linter contract states."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the stdlib's TOML reader arrived in 3.11; tpv requires its backport below that
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
LAYERS = [name.strip() for layer in CONTRACT["layers"] for name in layer.split("|")]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # A fresh interpreter whose first path entry is `root`, so the linter reads that tree's tpv and no other.
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_imports_point_down_the_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "planted",
    [
        "def _planted():\n    from tpv.engine import training  # reached for lazily, inside a function\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tpv.engine import training\n",
    ],
)
def test_the_contract_fails_on_an_upward_import(tmp_path, planted):
    shutil.copytree(ROOT / "tpv", tmp_path / "tpv", ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "tpv" / "core" / "origin.py", "a", encoding="utf-8") as module:
        module.write("\n\n" + planted)
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "0 kept, 1 broken" in result.stdout
    assert "tpv.core.origin -> tpv.engine.training" in result.stdout, result.stdout


def test_every_module_sits_in_a_layer_and_none_imports_the_package_root():
    graph = grimp.build_graph("tpv", cache_dir=None)
    outside = [
        m for m in graph.modules if m != "tpv" and not any(m == layer or m.startswith(layer + ".") for layer in LAYERS)
    ]
    assert not outside, f"{outside} belong to no layer; add them to one (pyproject.toml, docs/architecture.md)"
    # tpv/__init__.py re-exports from every layer, so importing it from inside would be an import upward.
    assert graph.find_modules_that_directly_import("tpv") == set()
