"""Every ```python block of README.md and docs/**/*.md runs, importing from `tpv` only; docs/api.md matches the code.

Conventions (docs/index.md states them for readers):

- Code in the pages and in examples/ imports only the public API: ``import tpv`` / ``from tpv import …``, never a
  layer module (``tpv.bridge…``, ``tpv.engine…``), so what the docs teach is what stays stable.

- The blocks of one page run in order in one namespace, in a fresh temporary working directory, so a page reads
  like a notebook.
- ``tpv.load_model()`` is replaced by a tiny Llama with a word-level tokenizer, so pages written for the
  real default model run in seconds; everything else (data from TPV_DATA_DIR, training, files) is real.
- ```` ```python network ```` blocks talk to the Hugging Face Hub, which the test machine cannot reach: they run
  against stand-ins for huggingface_hub's two network calls (``HfApi`` and ``snapshot_download``, the
  ``stand_in_hub`` fixture of conftest.py) that keep uploads in a local folder and serve them back.
- ```` ```python default-model ```` blocks need the real default model (e.g. the zoo's vectors fit only its
  shape); tests/test_auto_init.py and tests/test_zoo.py run the same calls on it as slow tests.
"""

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from conftest import make_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


def blocks(page: Path) -> list[tuple[int, str, str]]:
    text = page.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def _tiny_load_model(name_or_path=None, *, dtype="auto", device="cpu", attn_implementation=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tpv.bridge.precision import resolve_dtype

    dtype = resolve_dtype(dtype, device)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config).to(dtype).eval()
    model.config._name_or_path = "tiny-llama"
    tokenizer = make_word_tokenizer()
    tokenizer.padding_side = "left"
    return model, tokenizer


def non_public_imports(code: str) -> list[str]:
    """The imports of ``code`` that reach below the package root: ``tpv.x`` in any spelling."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("tpv.")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tpv."):
            found.append(f"from {node.module} import …")
    return found


def _code_units() -> list[tuple[str, str]]:
    units = [(f"{p.relative_to(ROOT)}:{line}", code) for p in PAGES for line, _, code in blocks(p)]
    units += [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in EXAMPLES]
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        units += [
            (f"{notebook.relative_to(ROOT)} cell {i}", "".join(cell["source"]))
            for i, cell in enumerate(cells)
            if cell["cell_type"] == "code"
        ]
    return units


def test_pages_and_examples_import_from_tpv_only():
    units = _code_units()
    assert len(units) > 20  # the pages, the example scripts and the notebook's cells were all found
    offending = {where: found for where, code in units if (found := non_public_imports(code))}
    assert not offending, f"import these from `tpv` (add them to tpv/__init__.py if missing): {offending}"


def test_the_import_check_catches_each_spelling():
    for code in (
        "from tpv.bridge.models import load_model",
        "import tpv.engine.training",
        "import tpv.data as data",
        "def f():\n    from tpv.compose.merge import forget",
    ):
        assert non_public_imports(code), code
    assert non_public_imports("import tpv\nfrom tpv import load_model, zoo\nimport tpvx") == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path, monkeypatch, stand_in_hub):
    import tpv
    import tpv.bridge.models

    # `from tpv import load_model` in a page reads the package's attribute; tpv's own code calls the layer's.
    monkeypatch.setattr(tpv, "load_model", _tiny_load_model)
    monkeypatch.setattr(tpv.bridge.models, "load_model", _tiny_load_model)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, tags, code in blocks(page):
        if "default-model" in tags.split():
            continue  # needs the real default model (the zoo's shape); a slow test covers the same calls
        calls_before = len(stand_in_hub)
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{page.relative_to(ROOT)}, block at line {line} failed: {error!r}") from error
        if "network" in tags.split():
            assert len(stand_in_hub) > calls_before, f"{page.name}:{line} is tagged network but made no Hub call"


def test_every_docs_page_is_checked():
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    for page in (
        "docs/index.md",
        "docs/concepts.md",
        "docs/file-format.md",
        "docs/api.md",
        "docs/howto/reuse-peft-adapters.md",
        "docs/howto/choose-sources-and-scale.md",
        "docs/howto/negate-a-task.md",
        "docs/howto/multi-gpu.md",
        "docs/howto/share-vectors.md",
        "docs/howto/start-from-zoo.md",
    ):
        assert page in names, page


def test_api_reference_is_in_sync_with_the_docstrings():
    from tpv._apidoc import render

    current = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert current == render(), "docs/api.md is stale: run `python -m tpv._apidoc > docs/api.md`"


def test_api_reference_ignores_a_deprecated_alias_left_in_the_package(monkeypatch):
    """`import tpv.zoo` (the old path) leaves its alias module in the attribute tpv.zoo; the reference reads the real
    module."""
    import sys
    import warnings

    import tpv
    from tpv._apidoc import render

    monkeypatch.setattr(tpv, "zoo", tpv.zoo, raising=False)  # whatever `tpv.zoo` is now is restored afterwards
    monkeypatch.delitem(sys.modules, "tpv.zoo", raising=False)  # so that the import below runs the alias again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import tpv.zoo  # noqa: F401
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == render()


def test_api_reference_is_organised_by_public_object():
    import tpv
    from tpv._apidoc import SECTIONS

    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `([^`]+)`$", page, re.M))
    assert headings == set(tpv.__all__), "each public name has one entry, and nothing else has one"
    assert [f"## {title}" for title, _ in SECTIONS] == re.findall(r"^## (?!Deprecated).*$", page, re.M)
    for internal in ("RunLock", "digest_of", "build_parser", "BaseTaskPromptVector", "tpv.engine.run_folder"):
        assert f"`{internal}" not in page, f"{internal} is an internal and has no place in the reference"
    assert "| `tpv.models` | `from tpv import load_model` |" in page


def test_api_reference_refuses_a_public_name_it_does_not_place(monkeypatch):
    import tpv
    from tpv._apidoc import render

    monkeypatch.setattr(tpv, "__all__", [*tpv.__all__, "hardware_summary_v2"])
    with pytest.raises(ValueError, match=r"place \[.*'hardware_summary_v2'\]"):
        render()


DEFAULT_MODEL_PAGES = [p for p in PAGES if any("default-model" in tags.split() for _, tags, _ in blocks(p))]


def _cut_data_dir(source: Path, target: Path, rows: int) -> None:
    for split_file in source.glob("*/*.jsonl"):
        folder = target / split_file.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        with open(split_file, encoding="utf-8") as lines:
            head = [line for _, line in zip(range(rows), lines)]
        (folder / split_file.name).write_text("".join(head), encoding="utf-8")


def _user_folder(data_dir: Path, folder: Path) -> None:
    # The how-to's "your own data" folder, my_reviews/ with `review` and `stars` columns, made from SST-2 rows.
    folder.mkdir()
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (data_dir / "sst2" / f"{split}.jsonl").read_text().splitlines()]
        text = "".join(json.dumps({"review": r["sentence"], "stars": ["one", "five"][r["label"]]}) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(text, encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("page", DEFAULT_MODEL_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_default_model_workflows_run(page, tmp_path, monkeypatch, stand_in_hub):
    """Every block of the pages that need the real default model (the README's tour, start-from-zoo), run on it.

    Only `from tpv import …` is used, as the pages are written. Each split is cut to its first 16 rows and each
    `train_prompt` to 2 steps, so that the calls, not the scores, are what this checks in minutes on a CPU; the
    model, the zoo and the code are real.
    """
    import os

    import tpv

    train_prompt = tpv.train_prompt

    def two_steps(*args, **kwargs):
        return train_prompt(*args, **{**kwargs, "max_steps": 2})

    monkeypatch.setattr(tpv, "train_prompt", two_steps)
    data_dir = tmp_path / "data"
    _cut_data_dir(Path(os.environ.get("TPV_DATA_DIR", ROOT.parent / "shared" / "data")), data_dir, rows=16)
    monkeypatch.setenv("TPV_DATA_DIR", str(data_dir))
    work = tmp_path / "work"
    work.mkdir()
    _user_folder(data_dir, work / "my_reviews")
    monkeypatch.chdir(work)
    namespace = {"__name__": "__docs__"}
    for line, _, code in blocks(page):
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"{page.relative_to(ROOT)}, block at line {line} failed: {error!r}") from error
    assert any(isinstance(value, tpv.InitPlan) for value in namespace.values()), "no plan was made"
