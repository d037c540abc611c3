"""Plotting helpers shared by every chapter (one place, imported, never copied).

Chapters live next to this file, so `from plotting import show_heatmaps` works both
when Jupyter Book executes them and when a reader opens them in JupyterLab.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

SENTENCE = ["The", "cat", "sat", "on", "the", "mat"]


def _as_grid(matrices) -> np.ndarray:
    """Return matrices as a 4-D array (rows, cols, n_queries, n_keys)."""
    a = np.asarray(getattr(matrices, "detach", lambda: matrices)())
    if a.ndim == 2:
        return a[None, None]
    if a.ndim == 3:
        return a[None]
    if a.ndim == 4:
        return a
    raise ValueError(f"expected 2-D, 3-D or 4-D matrices, got shape {a.shape}")


def show_heatmaps(
    matrices,
    *,
    row_labels=None,
    col_labels=None,
    titles=None,
    xlabel: str = "key",
    ylabel: str = "query",
    annotate: bool | str = False,
    cmap: str = "Blues",
    vmin=None,
    vmax=None,
    panel_size: float = 2.6,
    suptitle: str | None = None,
):
    """Draw attention-like matrices as heatmaps in a grid of panels.

    matrices: (q, k), (panels, q, k) or (rows, cols, q, k), NumPy or torch.
    row_labels / col_labels: tick labels for queries / keys (e.g. the tokens).
    titles: one title per panel (flat list, row-major).
    annotate: False, True (2 decimals) or a format string such as "{:.3f}".
    Returns the matplotlib Figure (the notebook shows it once).
    """
    grid = _as_grid(matrices)
    n_rows, n_cols = grid.shape[:2]
    vmin = grid.min() if vmin is None else vmin
    vmax = grid.max() if vmax is None else vmax
    fmt = "{:.2f}" if annotate is True else annotate
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(panel_size * n_cols + 0.8, panel_size * n_rows),
        squeeze=False, sharex=True, sharey=True,
    )
    image = None
    for r in range(n_rows):
        for c in range(n_cols):
            ax, m = axes[r, c], grid[r, c]
            image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[r * n_cols + c], fontsize=9)
            if col_labels is not None:
                ax.set_xticks(range(m.shape[1]), col_labels, rotation=90, fontsize=8)
            if row_labels is not None:
                ax.set_yticks(range(m.shape[0]), row_labels, fontsize=8)
            if r == n_rows - 1:
                ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(ylabel)
            if fmt:
                mid = (vmin + vmax) / 2
                for i in range(m.shape[0]):
                    for j in range(m.shape[1]):
                        ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if m[i, j] > mid else "black")
    fig.colorbar(image, ax=axes, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_lines(x, series: dict, *, xlabel: str, ylabel: str, title: str | None = None,
               logx: bool = False, logy: bool = False, figsize=(5.5, 3.5)):
    """One line per entry of `series` ({label: y_values}) against a shared x."""
    fig, ax = plt.subplots(figsize=figsize)
    for label, y in series.items():
        ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
