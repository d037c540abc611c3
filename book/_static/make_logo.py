"""Regenerate logo.png and favicon.png: a stylised attention heatmap.

Run from the repository root: .venv/bin/python book/_static/make_logo.py
The PNGs are committed; the build does not run this script.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

HERE = Path(__file__).parent


def attention_pattern(n=6, seed=3):
    """Causal attention weights (row softmax, future masked): a decoder's heatmap."""
    rng = np.random.default_rng(seed)
    scores = 0.8 * rng.normal(size=(n, n)) + 2.0 * np.eye(n)
    scores[np.triu_indices(n, k=1)] = -np.inf  # masked future: drawn transparent
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.where(weights > 0, weights, np.nan)


def save(path, pixels, n):
    fig = plt.figure(figsize=(1, 1), dpi=pixels)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(attention_pattern(n), cmap="viridis", interpolation="nearest")
    ax.set_axis_off()
    fig.savefig(path, dpi=pixels, transparent=True)
    plt.close(fig)


if __name__ == "__main__":
    save(HERE / "logo.png", 112, 6)  # shown at its natural size in the sidebar
    save(HERE / "favicon.png", 32, 4)
