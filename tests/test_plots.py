"""The similarity heatmap writes a real PNG, atomically, and explains a missing matplotlib."""

import builtins
import struct

import pytest
import torch

from tpv import TPVError, similarity_matrix
from tpv.experiments.plots import plot_similarity


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_writes_a_valid_png_and_no_temporary_file(tmp_path):
    names, matrix = similarity_matrix({"sst2": torch.randn(3, 4), "yelp": torch.randn(3, 4), "rte": torch.randn(3, 4)})
    path = plot_similarity(names, matrix, tmp_path / "figures" / "sim.png", title="similarity")
    width, height = _png_size(path)
    assert width > 100 and height > 100
    assert [p.name for p in path.parent.iterdir()] == ["sim.png"]


def test_mismatched_names_are_refused(tmp_path):
    with pytest.raises(TPVError, match=r"shape \(2, 2\) does not fit 3 names"):
        plot_similarity(["a", "b", "c"], torch.eye(2), tmp_path / "x.png")


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(TPVError, match=r'pip install "tpv\[plot\]"'):
        plot_similarity(["a"], [[1.0]], tmp_path / "x.png")
