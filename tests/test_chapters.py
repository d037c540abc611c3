"""The chapters execute, their attention code agrees with PyTorch, and the worked
example's numbers (computed in chapter 3) are what PyTorch computes from the source's
vectors.

Each chapter is executed in a real Jupyter kernel (nbclient), from `book/` as Jupyter
Book does, then probed by one extra cell run in the same kernel.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nbclient import NotebookClient

from autograder.inputs import WORKED_K, WORKED_Q, WORKED_V

# Each chapter executes once per module: keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("chapters")

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
CHAPTERS = re.findall(r"file:\s*book/(\d\d_\w+)", (REPO / "_toc.yml").read_text())

# Run after a chapter, in its kernel: compare the chapter's `attention` (if it has one)
# with torch's scaled_dot_product_attention on random batched inputs, with and without
# a causal boolean mask, and report the largest differences as JSON.
PROBE = r'''
import json as _json, torch as _torch, torch.nn.functional as _F
_report = {"has_attention": "attention" in globals()}
if _report["has_attention"]:
    _g = _torch.Generator().manual_seed(7)
    _q = _torch.randn(2, 3, 5, 4, generator=_g, dtype=_torch.float64)   # (batch, heads, seq_q, d_k)
    _k = _torch.randn(2, 3, 7, 4, generator=_g, dtype=_torch.float64)   # (batch, heads, seq_k, d_k)
    _v = _torch.randn(2, 3, 7, 6, generator=_g, dtype=_torch.float64)   # (batch, heads, seq_k, d_v)
    _mask = _torch.ones(5, 7, dtype=_torch.bool).tril()                  # (seq_q, seq_k)
    for _name, _m in (("no_mask", None), ("causal_mask", _mask)):
        _out, _w = attention(_q, _k, _v, _m)
        _ref = _F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_m)
        _report[_name] = float((_torch.as_tensor(_out) - _ref).abs().max())
        _report[_name + "_rowsum"] = float((_torch.as_tensor(_w).sum(-1) - 1).abs().max())
for _name in ("output", "weights"):
    if _name in globals():
        _report[_name] = _torch.as_tensor(globals()[_name]).tolist()
print("PROBE" + _json.dumps(_report))
'''


def execute_chapter(name: str, timeout: int = 300) -> nbformat.NotebookNode:
    nb = jupytext.read(BOOK / f"{name}.md")
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(BOOK)}}).execute()
    return nb


def probe_report(nb) -> dict:
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return json.loads(text.split("PROBE", 1)[1])


def glued(nb) -> dict[str, str]:
    """{glue name: its text/plain value} for every myst-nb `glue` in the notebook.

    NumPy 2 scalars print as `np.float64(0.28)`: the wrapper is removed.
    """
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get("scrapbook", {})
            if record.get("name"):
                name = record["name"]
                text = out.get("data", {}).get(record.get("mime_prefix", "") + "text/plain", "")
                values[name] = re.sub(r"^np\.\w+\((.*)\)$", r"\1", text.strip())
    return values


@pytest.fixture(scope="module")
def executed():
    cache: dict[str, nbformat.NotebookNode] = {}

    def get(name):
        if name not in cache:
            cache[name] = execute_chapter(name)
        return cache[name]
    return get


def test_book_has_six_chapters():
    assert len(CHAPTERS) == 6, CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_executes_and_has_a_figure(executed, chapter):
    nb = executed(chapter)  # raises CellExecutionError with the traceback on any error
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{chapter} makes no figure"


@pytest.mark.parametrize("chapter", ["02_self_attention", "03_attention_scores"])
def test_chapter_attention_agrees_with_torch(executed, chapter):
    report = probe_report(executed(chapter))
    assert report["has_attention"], f"{chapter} defines no `attention` function"
    for key in ("no_mask", "causal_mask"):
        assert report[key] < 1e-12, f"{chapter}: attention differs from torch SDPA by {report[key]} ({key})"
        assert report[key + "_rowsum"] < 1e-12


def test_worked_example_values(executed):
    """Chapter 3's numbers equal PyTorch's on the source's own Q, K, V."""
    nb = executed("03_attention_scores")
    report, glue = probe_report(nb), glued(nb)
    q, k, v = (torch.tensor(a) for a in (WORKED_Q, WORKED_K, WORKED_V))
    expected_weights = torch.softmax(q @ k.T / math.sqrt(3), dim=-1)
    expected_output = F.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(np.array(report["weights"]), expected_weights.numpy(), atol=1e-12)
    np.testing.assert_allclose(np.array(report["output"]), expected_output.numpy(), atol=1e-12)
    # The source's errors the chapter must name, with the correct values from code.
    the_dot_the = float((q[0] @ k[4]).item())
    assert round(the_dot_the, 2) == 0.28          # the source prints 0.23
    assert float(glue["dot_The_the"]) == pytest.approx(the_dot_the)
    # Its six "softmax" values (scores / sqrt(3), as printed in the source) sum to 0.704.
    source_softmax = [0.075, 0.092, 0.133, 0.173, 0.11, 0.121]
    assert float(glue["source_softmax_sum"]) == pytest.approx(sum(source_softmax), abs=1e-9)
    assert float(glue["source_softmax_sum"]) == pytest.approx(0.704, abs=1e-9)
