"""examples/compose_vectors.ipynb runs end to end (tiny model by default) with nbclient."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "compose_vectors.ipynb"


def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.delenv("TPV_NOTEBOOK_MODEL", raising=False)  # the tiny model; the real one is a manual run
    monkeypatch.setenv("TPV_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "yelp_polarity  validation macro-F1" in text and "imdb macro-F1" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "the similarity heatmap was not shown"
