"""Inputs for tests.

Public tests use a fixed seed so a student sees the same failure twice; hidden tests
draw from fresh OS entropy at grading time, so their expected values exist nowhere
before grading. Every check message names the shapes it used, so a failure can be
reproduced without knowing the values.
"""
from __future__ import annotations

import numpy as np
import torch

PUBLIC_SEED = 20240611

# The worked example of the source Q&A ("The cat sat on the mat", d_k = 3), exactly as
# printed there. The book's chapter 3 and the attention-scores exercise both use it.
SENTENCE = ["The", "cat", "sat", "on", "the", "mat"]
WORKED_Q = np.array([[0.2, 0.3, 0.4], [0.1, 0.5, 0.2], [0.3, 0.2, 0.1],
                     [0.4, 0.1, 0.3], [0.2, 0.4, 0.1], [0.5, 0.3, 0.2]])
WORKED_K = np.array([[0.3, 0.2, 0.1], [0.4, 0.1, 0.3], [0.2, 0.3, 0.4],
                     [0.1, 0.5, 0.2], [0.3, 0.2, 0.4], [0.2, 0.4, 0.1]])
WORKED_V = np.array([[0.7, 0.5, 0.3], [0.4, 0.6, 0.2], [0.2, 0.3, 0.5],
                     [0.1, 0.8, 0.4], [0.6, 0.4, 0.2], [0.3, 0.2, 0.1]])


def rng(hidden: bool) -> np.random.Generator:
    """A NumPy generator: fixed for public tests, fresh entropy for hidden ones."""
    return np.random.default_rng(None if hidden else PUBLIC_SEED)


def torch_generator(r: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from a NumPy one (so one draw decides everything)."""
    return torch.Generator().manual_seed(int(r.integers(0, 2**62)))


def draw_sizes(r: np.random.Generator, **ranges: tuple[int, int]) -> dict[str, int]:
    """Draw named sizes, each uniformly from an inclusive (low, high) range."""
    return {name: int(r.integers(lo, hi + 1)) for name, (lo, hi) in ranges.items()}


def normal(r: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    """Standard-normal float64 array of the given shape, times `scale`."""
    return r.standard_normal(shape) * scale
