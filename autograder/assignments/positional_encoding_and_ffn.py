"""Checks for the exercise `positional-encoding-and-ffn` (chapter 6).

The student writes

    positional_encoding(seq_len, d_model) -> (seq_len, d_model) float64 tensor
        PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model));
        for an odd d_model the last column (index d_model - 1, even) is a sine;
    FeedForward(d_model, d_ff, activation="relu" | "gelu"), an nn.Module with `linear1`
        (nn.Linear(d_model, d_ff)) and `linear2` (nn.Linear(d_ff, d_model));
        forward(x) = linear2(activation(linear1(x))), position-wise, no dropout.

References: the paper's formula written entry by entry (`reference.sinusoidal_encoding`;
PyTorch has no module for it), and the feed-forward path of nn.TransformerEncoderLayer
holding the student's linear1/linear2 (`reference.feed_forward`). Wrong answers are
compared with the classic mistakes (sin/cos swapped, halves concatenated instead of
interleaved, exponent i or j instead of 2i, no activation, GELU's tanh approximation).

Every check is `collect_*` (runs the student's code, returns plain NumPy evidence) then
`judge_*`; the student's module is reached through method calls only, so the checks
work alike in the student's kernel and from the sandboxed grader.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from autograder import inputs, reference
from autograder.checks import (as_array, call_student, context, diagnose, expect_close, expect_shape, fail,
                               load_student_state, passed, student_state)

__all__ = ["check_positional_encoding", "check_positional_encoding_odd", "check_feed_forward_relu",
           "check_feed_forward_gelu"]

ATOL, RTOL = 1e-9, 1e-7  # float64 on both sides: real differences are ~1e-13 (angles up to ~100)
FORBID = ("transformer_layers",)  # the feed-forward is written from scratch, not borrowed
ODD_HINT = ("For an odd d_model there is one more sine column (even indices 0, 2, ..., d_model-1) than "
            "cosine columns (1, 3, ..., d_model-2): pe[:, 0::2] has (d_model+1)//2 columns and pe[:, 1::2] "
            "has d_model//2, so the cosines use only the first d_model//2 frequencies.")

Evidence = dict  # plain Python: ints, strings, NumPy arrays


# ================================================================ positional encoding
def _pe_sizes(hidden: bool, odd: bool) -> list[tuple[int, int]]:
    if not hidden:
        return [(6, 5), (10, 7)] if odd else [(6, 8), (50, 16)]
    r = inputs.rng(True)
    sizes = []
    for _ in range(3):
        seq_len = int(r.integers(1, 81))
        d_model = 2 * int(r.integers(1, 33)) + (1 if odd else 0)  # odd 3..65, or even 2..64
        sizes.append((seq_len, d_model))
    return sizes


def collect_positional_encoding(positional_encoding, hidden: bool = False, odd: bool = False) -> Evidence:
    cases = []
    for seq_len, d_model in _pe_sizes(hidden, odd):
        what = f"positional_encoding(seq_len={seq_len}, d_model={d_model})"
        got = call_student(positional_encoding, seq_len, d_model, what=what, error_hint=ODD_HINT if odd else "")
        dtype = str(got.dtype) if isinstance(got, (torch.Tensor, np.ndarray)) else type(got).__name__
        cases.append(dict(seq_len=seq_len, d_model=d_model, what=what, dtype=dtype, got=as_array(got, what)))
    return dict(hidden=hidden, odd=odd, cases=cases)


def _variant(seq_len: int, d_model: int, *, exponent: str = "2i", layout: str = "interleaved",
             even: str = "sin", start: int = 0, multiply: bool = False) -> np.ndarray:
    """A classic wrong positional encoding (the right one is exponent 2i, interleaved,
    sine on even columns, positions from 0, division)."""
    pos = np.arange(start, start + seq_len, dtype=np.float64)[:, None]
    j = np.arange(d_model)
    if layout == "interleaved":
        pair, first = j // 2, j % 2 == 0
    else:  # the first ceil(d/2) columns one function, the rest the other
        half = (d_model + 1) // 2
        pair, first = np.where(j < half, j, j - half), j < half
    k = {"2i": 2 * pair, "i": pair, "j": j}[exponent]
    scale = 10000.0 ** (k / d_model)
    angle = pos * scale if multiply else pos / scale
    sin, cos = np.sin(angle), np.cos(angle)
    return np.where(first, sin, cos) if even == "sin" else np.where(first, cos, sin)


def _pe_mistakes(seq_len: int, d_model: int) -> dict[str, np.ndarray]:
    return {
        "cos on the even columns and sin on the odd ones: column 2i is the sine, 2i+1 the cosine":
            _variant(seq_len, d_model, even="cos"),
        "all sines first, then all cosines (concatenated halves): the two must be interleaved, "
        "sin in column 2i and cos in column 2i+1": _variant(seq_len, d_model, layout="halves"),
        "the exponent is i/d_model instead of 2i/d_model (i is the pair index; 2i is the even "
        "column index)": _variant(seq_len, d_model, exponent="i"),
        "the exponent uses the column index j for every column; columns 2i and 2i+1 share one "
        "frequency, 10000^(2i/d_model)": _variant(seq_len, d_model, exponent="j"),
        "positions start at 1; the first position is 0 (its row is 0, 1, 0, 1, ...)":
            _variant(seq_len, d_model, start=1),
        "pos was multiplied by 10000^(2i/d_model) instead of divided": _variant(seq_len, d_model, multiply=True),
    }


def judge_positional_encoding(ev: Evidence) -> None:
    for c in ev["cases"]:
        seq_len, d_model, got = c["seq_len"], c["d_model"], c["got"]
        expected = reference.sinusoidal_encoding(seq_len, d_model)
        with context(before=f"Test case: seq_len={seq_len}, d_model={d_model}"
                            f"{' (odd)' if d_model % 2 else ''}{', drawn at grading time' if ev['hidden'] else ''}."):
            if got.shape == (d_model, seq_len) and seq_len != d_model:
                fail(f"{c['what']} has shape {got.shape}: rows must be positions and columns features, "
                     f"(seq_len, d_model) = {(seq_len, d_model)}.")
            expect_shape(got, expected.shape, c["what"], "One row per position, one column per feature; "
                                                         "no batch axis.")
            if c["dtype"] not in ("torch.float64", "float64"):
                fail(f"{c['what']} returned {c['dtype']} values; build the table in float64 "
                     f"(dtype=torch.float64): the test compares to 1e-9.")
            hint = diagnose(got, _pe_mistakes(seq_len, d_model), atol=ATOL)
            if not hint and d_model % 2:
                hint = "Check the last column: for an odd d_model it is a sine (its index d_model-1 is even)."
            expect_close(got, expected, c["what"], atol=ATOL, rtol=RTOL, hint=hint)
    sizes = ", ".join(f"({c['seq_len']}, {c['d_model']})" for c in ev["cases"])
    passed(f"positional_encoding matches the formula for (seq_len, d_model) = {sizes}"
           f"{', drawn at grading time' if ev['hidden'] else ''}.")


def check_positional_encoding(positional_encoding, hidden: bool = False) -> None:
    """positional_encoding(seq_len, d_model) for even d_model."""
    judge_positional_encoding(collect_positional_encoding(positional_encoding, hidden, odd=False))


def check_positional_encoding_odd(positional_encoding, hidden: bool = False) -> None:
    """positional_encoding(seq_len, d_model) for odd d_model: the last column is a sine."""
    judge_positional_encoding(collect_positional_encoding(positional_encoding, hidden, odd=True))


# ======================================================================= feed-forward
def _ffn_sizes(hidden: bool) -> dict[str, int]:
    if not hidden:
        return dict(batch=2, seq=5, d_model=8, d_ff=32)
    r = inputs.rng(True)
    s = inputs.draw_sizes(r, batch=(1, 4), seq=(2, 9), d_model=(3, 24))
    s["d_ff"] = s["d_model"] * int(r.integers(2, 5)) + int(r.integers(0, 3))  # d_ff != d_model
    return s


def collect_feed_forward(cls, activation: str, hidden: bool = False, explicit: bool = True) -> Evidence:
    """Build FeedForward(d_model, d_ff[, activation=...]), give it fresh float64 parameters,
    run it on a (batch, seq, d_model) input (and, hidden, on a (n, d_model) one)."""
    r = inputs.rng(hidden)
    s = _ffn_sizes(hidden)
    d, d_ff = s["d_model"], s["d_ff"]
    kwargs = {"activation": activation} if explicit else {}
    what = f"FeedForward({d}, {d_ff}{f', activation={activation!r}' if explicit else ''})"
    module = call_student(cls, d, d_ff, what=what, forbid=FORBID, **kwargs)
    state = student_state(module, what)
    shapes = {"linear1.weight": (d_ff, d), "linear1.bias": (d_ff,), "linear2.weight": (d, d_ff),
              "linear2.bias": (d,)}
    for name, shape in shapes.items():
        if name not in state:
            fail(f"{what} has no parameter `{name}` (it has {sorted(state) or 'none'}). Create "
                 f"self.linear1 = nn.Linear(d_model, d_ff) and self.linear2 = nn.Linear(d_ff, d_model), "
                 f"with their biases.")
        if state[name].shape != shape:
            fail(f"{what}: `{name}` has shape {state[name].shape}, expected {shape}. linear1 widens "
                 f"d_model={d} to d_ff={d_ff}, linear2 brings it back to d_model.")
    fresh = {name: inputs.normal(r, *v.shape, scale=(1 / math.sqrt(v.shape[-1]) if v.ndim == 2 else 0.5))
             for name, v in state.items()}
    load_student_state(module, fresh, what)
    params = student_state(module, what)
    xs = [inputs.normal(r, s["batch"], s["seq"], d)]
    if hidden:
        xs.append(inputs.normal(r, int(r.integers(2, 7)), d))  # position-wise: any leading axes
    outputs = []
    for x in xs:
        call = f"{what}.forward(x) with x of shape {x.shape}"
        outputs.append(as_array(call_student(module, torch.from_numpy(x.copy()), what=call, forbid=FORBID), call))
    return dict(hidden=hidden, activation=activation, what=what, params=params, xs=xs, outputs=outputs)


def _ffn(params: dict, x: np.ndarray, activation) -> np.ndarray:
    return reference.feed_forward(x, params["linear1.weight"], params["linear1.bias"], params["linear2.weight"],
                                  params["linear2.bias"], activation)


def _ffn_mistakes(params: dict, x: np.ndarray, activation: str) -> dict[str, np.ndarray]:
    other = "gelu" if activation == "relu" else "relu"
    names = {"relu": "ReLU", "gelu": "GELU"}
    mistakes = {
        "no activation between linear1 and linear2: two linear maps in a row are one linear map, "
        "so the block could not compute anything a single nn.Linear cannot": _ffn(params, x, lambda h: h),
        f"{names[other]} was used where activation={activation!r} was asked: choose the activation "
        f"from the `activation` argument": _ffn(params, x, other),
    }
    if activation == "gelu":
        mistakes["GELU's tanh approximation (approximate='tanh'); use the exact GELU, F.gelu(x) or "
                 "nn.GELU() with the default approximate='none'"] = _ffn(
                     params, x, functools.partial(F.gelu, approximate="tanh"))
    return mistakes


def judge_feed_forward(ev: Evidence) -> None:
    params, activation = ev["params"], ev["activation"]
    for x, got in zip(ev["xs"], ev["outputs"]):
        expected = _ffn(params, x, activation)
        with context(before=f"Test case: {ev['what']}, x of shape {x.shape}"
                            f"{', sizes drawn at grading time' if ev['hidden'] else ''}."):
            expect_shape(got, expected.shape, "Your output", "The block maps each position's d_model "
                                                              "vector to a new d_model vector: same shape as x.")
            expect_close(got, expected, "Your output", atol=ATOL, rtol=RTOL,
                         hint=diagnose(got, _ffn_mistakes(params, x, activation), atol=ATOL)
                         or "Expected linear2(activation(linear1(x))).")
    passed(f"{ev['what']} matches the feed-forward path of nn.TransformerEncoderLayer "
           f"(activation={activation!r}) with your weights{', sizes drawn at grading time' if ev['hidden'] else ''}.")


def check_feed_forward_relu(cls, hidden: bool = False) -> None:
    """FeedForward(d_model, d_ff) (public: default activation) and activation="relu" (hidden)."""
    judge_feed_forward(collect_feed_forward(cls, "relu", hidden, explicit=hidden))


def check_feed_forward_gelu(cls, hidden: bool = False) -> None:
    """FeedForward(d_model, d_ff, activation="gelu"), the exact (erf) GELU."""
    judge_feed_forward(collect_feed_forward(cls, "gelu", hidden))
