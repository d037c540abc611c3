"""Checks for the attention-scores exercise (NumPy, float64).

Test cells call, with the student's function and `hidden=False` (public test: fixed
seed, runnable by the student) or `hidden=True` (inputs drawn at grading time):

    check_dot_product_scores(dot_product_scores)   Q (..., seq_q, d_k), K (..., seq_k, d_k)
    check_scale_scores(scale_scores)               scores (..., seq_q, seq_k), d_k
    check_softmax(softmax)                         x (any shape), axis
    check_attention(attention)                     -> (output, weights)

Expected values come from `autograder.reference` (PyTorch) on the same inputs. Wrong
answers are compared with the classic mistakes (no scaling, d_k instead of sqrt(d_k),
softmax over the wrong axis, the source's "softmax" that only divides by sqrt(d_k), ...)
so that the message names the mistake.
"""
from __future__ import annotations

import math

import numpy as np

from autograder import inputs, reference
from autograder.checks import (as_array, call_student, context, diagnose, expect_close, expect_finite,
                               expect_rows_sum_to_one, expect_shape, fail, passed)

# Shown when a softmax returns NaN/inf on large inputs.
UNSTABLE = ("np.exp overflows to inf above about 709, and inf / inf is NaN. Subtract the row max "
            "before exp (the max along `axis`, with keepdims=True, not the max of the whole array): "
            "softmax(x) = softmax(x - max(x)) exactly, and every exponent is then <= 0.")
TRANSPOSE_K = ("The scores are Q @ K^T: (seq_q, d_k) @ (d_k, seq_k) -> (seq_q, seq_k). "
               "Did you forget to transpose K?")
BATCHED = ("With leading batch axes, swap only the last two axes of K (np.swapaxes(K, -1, -2)); "
           "K.T reverses every axis, the batch axes too.")


# ------------------------------------------------------------------------- inputs
def _shapes(**arrays) -> str:
    return ", ".join(f"{name} {tuple(np.shape(a))}" for name, a in arrays.items())


def _random_qkv(r, lead: tuple, seq_q: int, seq_k: int, d_k: int, d_v: int, scale: float = 1.0):
    return (inputs.normal(r, *lead, seq_q, d_k, scale=scale), inputs.normal(r, *lead, seq_k, d_k, scale=scale),
            inputs.normal(r, *lead, seq_k, d_v))


def _qkv_cases(hidden: bool, large: bool = False) -> list[tuple[str, tuple[np.ndarray, ...], bool]]:
    """(label, (Q, K, V), huge scores?) cases. Public: the worked example and one small
    random case. Hidden: fresh shapes, one and two leading batch axes, and (if `large`)
    huge scores. seq_q != seq_k and d_v != d_k, so mixing them up shows in the shapes."""
    r = inputs.rng(hidden)
    if not hidden:
        return [("the worked example ('The cat sat on the mat', d_k = 3)",
                 (inputs.WORKED_Q, inputs.WORKED_K, inputs.WORKED_V), False),
                ("a small random case", _random_qkv(r, (), 4, 6, 3, 2), False)]

    def sizes():
        s = inputs.draw_sizes(r, seq_q=(2, 8), d_k=(2, 16))
        return s["seq_q"], s["seq_q"] + int(r.integers(1, 5)), s["d_k"], s["d_k"] + int(r.integers(1, 4))

    batch, heads = (int(n) for n in r.integers(2, 5, size=2))
    cases = [("hidden test, random shapes", _random_qkv(r, (), *sizes()), False),
             ("hidden test, batched inputs (batch, seq, d)", _random_qkv(r, (batch,), *sizes()), False),
             ("hidden test, two leading axes (batch, heads, seq, d)", _random_qkv(r, (batch, heads), *sizes()),
              False)]
    if large:
        cases.append(("hidden test, very large scores (|Q.K| in the thousands)",
                      _random_qkv(r, (batch,), 5, 7, 16, 4, scale=60.0), True))
    return cases


def _softmax_cases(hidden: bool) -> list[tuple[str, np.ndarray, int | None]]:
    """(label, x, axis) cases; axis None means the default (-1)."""
    r = inputs.rng(hidden)
    if not hidden:
        return [("a (3, 5) array, default axis", inputs.normal(r, 3, 5, scale=3.0), None),
                ("a batched (2, 3, 4) array, default axis", inputs.normal(r, 2, 3, 4, scale=3.0), None),
                ("a (4, 3) array with axis=0", inputs.normal(r, 4, 3, scale=3.0), 0)]
    cases = []
    for ndim in (2, 3, 4):
        shape = tuple(int(n) for n in r.integers(2, 7, size=ndim))
        axis = int(r.integers(-ndim, ndim))
        cases.append((f"hidden test, a random {shape} array with axis={axis}",
                      inputs.normal(r, *shape, scale=3.0), axis))
    rows = int(r.integers(3, 7))
    cases.append(("hidden test, large logits (values in the thousands), default axis",
                  inputs.normal(r, rows, 8, scale=1000.0), None))
    # Rows far apart: subtracting the max of the whole array underflows the low rows to 0/0.
    offsets = r.permutation(np.resize([-900.0, 0.0, 900.0], rows))[:, None]
    cases.append(("hidden test, rows centred at -900, 0 and +900, default axis",
                   inputs.normal(r, rows, 8) + offsets, None))
    return cases


# -------------------------------------------------------------------------- judge
def _other_axes_softmax(x: np.ndarray, axis: int) -> dict[str, np.ndarray]:
    ax = axis % x.ndim
    return {f"you normalized along axis {a} instead of axis {axis} (use the `axis` argument, "
            f"with keepdims=True)": reference.softmax(x, a) for a in range(x.ndim) if a != ax}


def _judge_distribution(got: np.ndarray, expected: np.ndarray, mistakes: dict, axis: int,
                        what: str, rows_what: str, nan_hint: str = "") -> None:
    """Shape, then finite, then rows summing to 1, then values; a matching mistake is named."""
    mistake = diagnose(got, mistakes)
    expect_shape(got, expected.shape, what, mistake)
    expect_finite(got, what, nan_hint)
    with context(before=mistake):
        expect_rows_sum_to_one(np.moveaxis(got, axis, -1), rows_what)
        expect_close(got, expected, what)


def _judge_scores(got: np.ndarray, Q: np.ndarray, K: np.ndarray, batched: bool) -> None:
    expected = reference.dot_product_scores(Q, K)
    d_k = Q.shape[-1]
    mistakes = {
        "you computed K @ Q^T: rows must be the queries and columns the keys": np.swapaxes(expected, -1, -2),
        "these are already divided by sqrt(d_k): return the raw dot products, scaling is "
        "scale_scores' job": expected / math.sqrt(d_k),
    }
    if K.shape[-2] == d_k:
        mistakes["you did not transpose K (Q @ K instead of Q @ K^T)"] = Q @ K
    expect_close(got, expected, "Your scores array",
                 hint=diagnose(got, mistakes) or (BATCHED if batched else
                                                  "Entry [i, j] is the dot product of query i and key j."))


def _judge_attention(output: np.ndarray, weights: np.ndarray, Q, K, V, large: bool) -> None:
    expected_out, expected_w = reference.attention(Q, K, V)
    d_k = Q.shape[-1]
    scores = reference.dot_product_scores(Q, K)
    scaled = scores / math.sqrt(d_k)
    mistakes = {
        "the scores were not scaled: divide them by sqrt(d_k) before the softmax": reference.softmax(scores),
        "the scores were divided by d_k instead of sqrt(d_k)": reference.softmax(scores / d_k),
        "the softmax ran over the queries (axis -2) instead of over the keys (axis -1)":
            reference.softmax(scaled, -2),
        "no softmax: these are the scaled scores themselves, as in the source's worked example "
        "('The': 0.13 / 1.732 = 0.075). Dividing by sqrt(d_k) is scaling, not a softmax: "
        "exponentiate, then normalize": scaled,
        "the weights are transposed (keys x queries): K @ Q^T instead of Q @ K^T":
            np.swapaxes(expected_w, -1, -2),
    }
    _judge_distribution(weights, expected_w, mistakes, -1, "Your weights array", "attention weights",
                        nan_hint=UNSTABLE if large else "")
    expect_close(output, expected_out, "Your output",
                 hint=diagnose(output, {"the output weights the keys K instead of the values V": expected_w @ K})
                 or "Each output row is the weighted sum of the value vectors: weights @ V, (seq_q, d_v).")


# ------------------------------------------------------------------------ the API
def check_dot_product_scores(dot_product_scores, hidden: bool = False) -> None:
    """dot_product_scores(Q, K) -> (..., seq_q, seq_k), the raw dot products."""
    cases = _qkv_cases(hidden)
    for label, (Q, K, _), _ in cases:
        batched = Q.ndim > 2
        with context(before=f"Test case: {label}; {_shapes(Q=Q, K=K)}."):
            got = as_array(call_student(dot_product_scores, Q.copy(), K.copy(), what="dot_product_scores(Q, K)",
                                        error_hint=BATCHED if batched else TRANSPOSE_K),
                           "dot_product_scores")
            _judge_scores(got, Q, K, batched)
    passed(f"dot_product_scores matches the reference on {len(cases)} {'hidden' if hidden else 'public'} cases.")


def _scale_cases(hidden: bool) -> list[tuple[str, np.ndarray, int]]:
    r = inputs.rng(hidden)
    if not hidden:
        worked = reference.dot_product_scores(inputs.WORKED_Q, inputs.WORKED_K)
        return [("the worked example's scores, d_k = 3", worked, 3),
                ("random (4, 6) scores, d_k = 16", inputs.normal(r, 4, 6), 16)]
    # d_k is drawn apart from seq_k, so "divided by sqrt(scores.shape[-1])" shows.
    return [(f"hidden test, random {shape} scores, d_k = {d_k}", inputs.normal(r, *shape, scale=5.0), d_k)
            for shape, d_k in [((int(r.integers(2, 9)), int(r.integers(2, 9))), int(r.integers(10, 65))),
                               ((int(r.integers(2, 5)), 5, 7), int(r.integers(10, 65))),
                               ((2, 3, 4, 6), int(r.integers(10, 65)))]]


def check_scale_scores(scale_scores, hidden: bool = False) -> None:
    """scale_scores(scores, d_k) -> scores / sqrt(d_k), same shape."""
    cases = _scale_cases(hidden)
    for label, scores, d_k in cases:
        with context(before=f"Test case: {label}; {_shapes(scores=scores)}."):
            got = as_array(call_student(scale_scores, scores.copy(), d_k, what=f"scale_scores(scores, {d_k})"),
                           "scale_scores")
            mistakes = {
                "the scores are unchanged: divide them by sqrt(d_k)": scores,
                "you divided by d_k instead of sqrt(d_k)": scores / d_k,
                "you multiplied by sqrt(d_k) instead of dividing": scores * math.sqrt(d_k),
                "you divided by sqrt(scores.shape[-1]), the number of keys; d_k is the size of the "
                "query and key vectors, given as the argument": scores / math.sqrt(scores.shape[-1]),
                "you applied a softmax too: scale_scores only scales, the softmax is the next step":
                    reference.softmax(scores / math.sqrt(d_k)),
            }
            expect_close(got, scores / math.sqrt(d_k), "Your scaled-scores array", hint=diagnose(got, mistakes))
    passed(f"scale_scores matches the reference on {len(cases)} {'hidden' if hidden else 'public'} cases.")


def check_softmax(softmax, hidden: bool = False) -> None:
    """softmax(x, axis=-1): exp, normalized along `axis`; stable for large inputs."""
    cases = _softmax_cases(hidden)
    for label, x, axis in cases:
        args = (x.copy(),) if axis is None else (x.copy(), axis)
        axis = -1 if axis is None else axis
        with context(before=f"Test case: {label}; {_shapes(x=x)}."):
            got = as_array(call_student(softmax, *args, what=f"softmax(x{'' if len(args) == 1 else f', {axis}'})",
                                        forbid=("softmax",),
                                        error_hint="If NumPy could not broadcast: keep the reduced axis "
                                                   "(x.max(axis=axis, keepdims=True), same for sum)."),
                           "softmax")
            n = x.shape[axis]
            with np.errstate(all="ignore"):  # the mistakes may overflow; no warnings for the student
                mistakes = {
                    **_other_axes_softmax(x, axis),
                    "no exp: you normalized x itself, softmax normalizes exp(x)":
                        x / x.sum(axis=axis, keepdims=True),
                    "exp without normalizing: divide by the sum of the exponentials along `axis`": np.exp(x),
                    f"you divided by sqrt({n}) as the source's worked example does: that is scaling, not a "
                    f"softmax (exponentiate, then normalize)": x / math.sqrt(n),
                }
            _judge_distribution(got, reference.softmax(x, axis), mistakes, axis, "Your softmax",
                                f"softmax output (along axis {axis})", nan_hint=UNSTABLE)
    passed(f"softmax matches the reference on {len(cases)} {'hidden' if hidden else 'public'} cases.")


def check_attention(attention, hidden: bool = False) -> None:
    """attention(Q, K, V) -> (output (..., seq_q, d_v), weights (..., seq_q, seq_k))."""
    cases = _qkv_cases(hidden, large=True)
    for label, (Q, K, V), huge in cases:
        with context(before=f"Test case: {label}; {_shapes(Q=Q, K=K, V=V)}."):
            result = call_student(attention, Q.copy(), K.copy(), V.copy(), what="attention(Q, K, V)")
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                fail(f"attention(Q, K, V) should return a pair (output, weights), got a {type(result).__name__}.")
            output, weights = as_array(result[0], "attention's output"), as_array(result[1], "attention's weights")
            _judge_attention(output, weights, Q, K, V, large=huge)
    if hidden:
        passed(f"attention matches the reference on {len(cases)} hidden cases.")
        return
    _, weights = reference.attention(inputs.WORKED_Q, inputs.WORKED_K, inputs.WORKED_V)
    passed(f"attention matches the reference on the worked example and a random case. The weights of "
           f"'The' are {np.array2string(weights[0], precision=3)}: they sum to 1, unlike the source's "
           f"0.075, 0.092, ... (scaled scores, no softmax).")
