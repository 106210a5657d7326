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
    return plot_heatmap(
        names,
        names,
        values,
        path,
        title=title,
        label="cosine similarity",
        cmap="Blues",
        vmin=min(0.0, float(values.min())),
        vmax=1.0,
    )


def plot_heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    matrix,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    label: str = "",
    cmap: str = "Blues",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """Write a labelled heatmap PNG with each cell's value printed; NaN cells (no value) are left blank.

    Args:
        rows, columns: the labels.
        matrix: ``(len(rows), len(columns))`` numbers.
        path: the PNG to write (atomically; parent folders are created).
        title, label: the figure's title and the colour bar's label.
        cmap, vmin, vmax: the matplotlib colour map and its range (default: the finite values' range).

    Returns:
        The path written.
    """
    values = np.asarray(matrix, dtype=np.float64)
    figure = new_figure(1.0 + 0.8 * len(columns), 0.8 + 0.65 * len(rows))
    axes = figure.add_subplot()
    finite = values[np.isfinite(values)]
    if vmin is None:
        vmin = float(finite.min()) if finite.size else 0.0
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 1.0
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax)
    axes.set_xticks(range(len(columns)), labels=list(columns), rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), labels=list(rows))
    for row in range(len(rows)):
        for column in range(len(columns)):
            value = values[row, column]
            if np.isfinite(value):
                # White text on dark cells and black on light ones keeps every value readable on any colour map.
                red, green, blue, _ = image.cmap(image.norm(value))
                colour = "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"
                axes.text(column, row, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    if title:
        axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8, label=label)
    return save_figure(figure, path)


def new_figure(width: float, height: float):
    """A bare matplotlib ``Figure`` (inches) on the Agg canvas, or a TPVError saying how to install matplotlib.

    It draws off-screen without touching pyplot's global backend or state, so plotting from a notebook or a
    headless job behaves the same.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise TPVError('plotting needs matplotlib; install it with pip install "tpv[plot]"') from error
    figure = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically (parent folders are created); returns the path."""
    path = Path(path)
    with atomic_target(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


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
