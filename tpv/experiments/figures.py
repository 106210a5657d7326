"""Figures of the studies not covered by ``tpv.experiments.plots``: a value heatmap and few-shot curves
(matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tpv.core.errors import TPVError
from tpv.experiments.plots import _atomic_savefig


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise TPVError('the experiment figures need matplotlib; install it with pip install "tpv[plot]"') from error
    figure = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_heatmap(rows: list[str], columns: list[str], matrix, path: Path, title: str, label: str) -> Path:
    """A heatmap with each cell's value printed; NaN cells (no value) are left blank."""
    values = np.asarray(matrix, dtype=np.float64)
    figure = _figure(1.2 + 0.8 * len(columns), 0.9 + 0.65 * len(rows))
    axes = figure.add_subplot()
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = axes.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", vmin=min(low, 0.5), vmax=max(high, 1.0))
    axes.set_xticks(range(len(columns)), labels=columns, rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), labels=rows)
    for i in range(len(rows)):
        for j in range(len(columns)):
            if np.isfinite(values[i, j]):
                axes.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8, label=label)
    return _atomic_savefig(figure, Path(path))


def plot_curves(shots: list[int], curves: dict[str, tuple[list[float], list[float]]], path: Path, title: str,
                ylabel: str) -> Path:
    """One line per method: mean over origins with a ± std band, against the number of shots."""
    figure = _figure(5.5, 3.8)
    axes = figure.add_subplot()
    for name, (mean_list, std_list) in curves.items():
        means, stds = np.asarray(mean_list, dtype=float), np.nan_to_num(np.asarray(std_list, dtype=float))
        axes.plot(shots, means, marker="o", label=name)
        axes.fill_between(shots, means - stds, means + stds, alpha=0.15)
    if min(shots) > 0:
        axes.set_xscale("log")
    axes.set_xticks(shots, labels=[str(k) for k in shots])
    axes.set_xlabel("shots")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize=7)
    return _atomic_savefig(figure, Path(path))
