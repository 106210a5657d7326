"""Figures of the studies not covered by ``tpv.experiments.plots``: few-shot curves (matplotlib, lazy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tpv.experiments.plots import new_figure, save_figure


def plot_curves(
    shots: list[int], curves: dict[str, tuple[list[float], list[float]]], path: Path, title: str, ylabel: str
) -> Path:
    """One line per method: mean over origins with a ± std band, against the number of shots."""
    figure = new_figure(5.5, 3.8)
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
    return save_figure(figure, path)
