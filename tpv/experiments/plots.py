"""Figures: the similarity heatmap of the paper's Figure 2 (matplotlib, the optional ``plot`` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tpv.core._io import atomic_target
from tpv.core.errors import TPVError


def plot_similarity(
    names: Sequence[str],
    matrix,
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Write a labelled heatmap PNG of a similarity matrix, each cell printed with its value (paper Fig. 2).

    Args:
        names: row/column labels, as returned by :func:`tpv.similarity_matrix`.
        matrix: the ``(n, n)`` matrix (tensor, array or nested list).
        path: the PNG to write (atomically; parent folders are created).
        title: an optional title.

    Returns:
        The path written.

    Example:
        >>> import tempfile, torch
        >>> from tpv import similarity_matrix
        >>> names, matrix = similarity_matrix({"sst2": torch.ones(2, 3), "yelp": torch.eye(2, 3)})
        >>> path = plot_similarity(names, matrix, tempfile.mkdtemp() + "/similarity.png")
        >>> path.read_bytes()[:4]
        b'\\x89PNG'
    """
    values = _square(names, matrix)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise TPVError('plot_similarity needs matplotlib; install it with pip install "tpv[plot]"') from error

    size = len(names)
    # A bare Figure on the Agg canvas draws off-screen without touching pyplot's global backend or state,
    # so plotting from a notebook or a headless job behaves the same.
    figure = Figure(figsize=(1.0 + 0.75 * size, 0.8 + 0.65 * size), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=min(0.0, float(values.min())), vmax=1.0)
    axes.set_xticks(range(size), labels=list(names), rotation=45, ha="right")
    axes.set_yticks(range(size), labels=list(names))
    # White text on the darker half of the colour map keeps every value readable.
    threshold = (min(0.0, float(values.min())) + 1.0) / 2  # the middle of the colour scale (vmin, vmax)
    for row in range(size):
        for column in range(size):
            value = values[row, column]
            colour = "white" if value > threshold else "black"
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    return _atomic_savefig(figure, Path(path))


def _square(names, matrix) -> np.ndarray:
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    try:
        values = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TPVError(f"the similarity matrix must be numeric, got {matrix!r:.80}") from error
    size = len(names)
    if values.shape != (size, size) or size == 0:
        raise TPVError(
            f"a similarity matrix of shape {values.shape} does not fit {size} names {list(names)}; pass the "
            "names and matrix returned by tpv.similarity_matrix"
        )
    if not np.isfinite(values).all():
        raise TPVError("the similarity matrix holds NaN/inf; recompute it with tpv.similarity_matrix")
    return values


def _atomic_savefig(figure, path: Path) -> Path:
    with atomic_target(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
