"""Checks for the scaled-dot-product-attention exercise (PyTorch tensors, float64).

Test cells call, with the student's function and `hidden=False` (public test: fixed
seed) or `hidden=True` (inputs drawn at grading time):

    check_causal_mask(causal_mask)                   boolean (seq, seq), True = may attend
    check_attention(scaled_dot_product_attention)    no mask, batched (..., seq, d)
    check_masking(scaled_dot_product_attention)      boolean and additive float masks
    check_fully_masked_rows(scaled_dot_product_attention)  zero weights/output, no NaN
    check_gradients(scaled_dot_product_attention)    autograd gradients w.r.t. q, k, v

The student's function must return (output, weights) and is called with
`F.scaled_dot_product_attention` tripwired: the exercise is to write it from scratch.
Expected values and gradients come from `autograder.reference`, which is built on that
same built-in, in float64.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from autograder import inputs, reference
from autograder.checks import (as_array, call_student, context, diagnose, expect_close, expect_finite,
                               expect_rows_sum_to_one, expect_shape, expect_type, fail, passed,
                               student_gradients)

FORBID = ("scaled_dot_product_attention",)
WHAT = "scaled_dot_product_attention(query, key, value{})"
MASK_KINDS = ("attn_mask may be boolean (True = may attend) or float (added to the scores): "
              "look at attn_mask.dtype.")
NAN_FORWARD = ("A query whose every key is masked has only -inf scores, and softmax of them is "
               "0/0 = NaN. Such a query must get all-zero weights and so an all-zero output "
               "(F.scaled_dot_product_attention returns zeros there too).")
NAN_BACKWARD = ("Your forward pass is right, but NaN reaches the gradient: softmax of a row of only "
                "-inf is NaN, and replacing the NaN afterwards (torch.where, nan_to_num, masked_fill on "
                "the weights) does not remove it from the backward pass, which multiplies by it. Give "
                "fully masked rows finite scores before the softmax, then set their weights to zero.")
DETACHED = ("Every step must stay inside PyTorch's autograd: no .detach(), no .numpy() / NumPy round "
            "trip, no torch.tensor(...) of an intermediate result.")


# ------------------------------------------------------------------------- inputs
def _tensor(r, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy(inputs.normal(r, *shape, scale=scale))


def _qkv(r, lead: tuple, seq_q: int, seq_k: int, d_k: int, d_v: int) -> tuple[torch.Tensor, ...]:
    return _tensor(r, *lead, seq_q, d_k), _tensor(r, *lead, seq_k, d_k), _tensor(r, *lead, seq_k, d_v)


def _sizes(r) -> tuple[int, int, int, int]:
    """seq_q, seq_k, d_k, d_v with seq_q != seq_k and d_v != d_k, so mix-ups show in shapes."""
    s = inputs.draw_sizes(r, seq_q=(2, 7), d_k=(2, 12))
    return s["seq_q"], s["seq_q"] + int(r.integers(1, 4)), s["d_k"], s["d_k"] + int(r.integers(1, 4))


def _bool_mask(r, shape: tuple, dead_rows: bool = False) -> torch.Tensor:
    """Random boolean mask (True = may attend). Every row keeps one allowed key unless
    `dead_rows`, which blocks some rows entirely (at least one)."""
    mask = r.random(shape) < 0.6
    np.put_along_axis(mask, r.integers(0, shape[-1], size=(*shape[:-1], 1)), True, axis=-1)
    if dead_rows:
        dead = r.random(shape[:-1]) < 0.3
        dead.flat[int(r.integers(0, dead.size))] = True
        mask[dead] = False
    return torch.from_numpy(mask)


def _float_mask(r, shape: tuple, dead_rows: bool = False) -> torch.Tensor:
    """Additive float mask: small random biases, -inf where a key is blocked."""
    blocked = ~_bool_mask(r, shape, dead_rows).numpy()
    return torch.from_numpy(np.where(blocked, -np.inf, r.standard_normal(shape)))


def _describe(label: str, q, k, v, mask=None) -> str:
    text = f"Test case: {label}; query {tuple(q.shape)}, key {tuple(k.shape)}, value {tuple(v.shape)}"
    if mask is not None:
        kind = "boolean" if mask.dtype == torch.bool else "additive float"
        text += f", {kind} attn_mask {tuple(mask.shape)}"
    return text + "."


# ------------------------------------------------------------------------ collect
def _call(fn, q, k, v, mask, error_hint: str = ""):
    """Run the student's function (built-in tripwired); return its (output, weights) tensors."""
    args = (q, k, v) if mask is None else (q, k, v, mask)
    what = WHAT.format("" if mask is None else ", attn_mask")
    result = call_student(fn, *args, what=what, forbid=FORBID, error_hint=error_hint)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"{what} should return a pair (output, weights), got a {type(result).__name__}.")
    for name, x in zip(("output", "weights"), result):
        expect_type(x, torch.Tensor, f"The {name} returned")
    return result


def _collect_forward(fn, q, k, v, mask=None) -> tuple[np.ndarray, np.ndarray]:
    hint = MASK_KINDS if mask is not None and mask.dtype != torch.bool else ""
    output, weights = _call(fn, q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone(), hint)
    return as_array(output, "output"), as_array(weights, "weights")


def _collect_grads(fn, q, k, v, mask, grad_output) -> list[np.ndarray]:
    """Gradients of sum(output * grad_output) w.r.t. query, key, value, via the student's graph."""
    args = (q, k, v) if mask is None else (q, k, v, mask)
    what = "Backpropagating through " + WHAT.format("" if mask is None else ", attn_mask")
    grads = student_gradients(fn, *args, wrt=(0, 1, 2), cotangent=grad_output, what=what, forbid=FORBID,
                              error_hint=f"The output is not connected to query, key and value in autograd, "
                                         f"so no gradient can flow back to the model. {DETACHED}")
    for name, grad in zip(("query", "key", "value"), grads):
        if grad is None:
            fail(f"No gradient reached `{name}`: somewhere between {name} and the output the computation "
                 f"left autograd (e.g. the weights were detached). {DETACHED}")
    return [as_array(g, f"the gradient w.r.t. {name}") for name, g in zip(("query", "key", "value"), grads)]


# -------------------------------------------------------------------------- judge
def _softmax0(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax with rows of only -inf set to zero (the convention for fully masked rows)."""
    return np.nan_to_num(reference.softmax(scores, axis), nan=0.0)


def _has_fully_masked_rows(q, k, mask) -> bool:
    if mask is None:
        return False
    blocked = np.isneginf(reference.additive_mask(mask).numpy())
    return bool(np.broadcast_to(blocked, (*q.shape[:-1], k.shape[-2])).all(axis=-1).any())


def _judge_forward(output, weights, q, k, v, mask=None) -> None:
    expected_out, expected_w = reference.attention(q, k, v, mask)
    d_k = q.shape[-1]
    scores = reference.dot_product_scores(q, k)
    scaled = scores / math.sqrt(d_k)
    add = np.zeros(()) if mask is None else reference.additive_mask(mask).numpy()
    dead = _has_fully_masked_rows(q, k, mask)
    mistakes = {
        "the scores were not scaled: divide them by sqrt(d_k) before the softmax": _softmax0(scores + add),
        "the scores were divided by d_k instead of sqrt(d_k)": _softmax0(scores / d_k + add),
        "the softmax ran over the queries (dim=-2) instead of over the keys (dim=-1)": _softmax0(scaled + add, -2),
    }
    if mask is not None:
        mistakes["the mask was ignored"] = reference.attention(q, k, v)[1]
        if mask.dtype == torch.bool:
            allowed = np.broadcast_to(mask.numpy(), scores.shape)
            mistakes.update({
                "the mask's meaning is inverted: here, as in F.scaled_dot_product_attention, True means "
                "'may attend' (nn.MultiheadAttention's boolean masks use the opposite convention)":
                    reference.attention(q, k, v, ~mask)[1],
                "the mask was applied after the softmax, so the remaining weights no longer sum to 1: "
                "mask the scores (set them to -inf) before the softmax": reference.softmax(scaled) * allowed,
                "masked scores were set to 0 instead of -inf, and exp(0) = 1 still gives them weight":
                    reference.softmax(scaled * allowed),
            })
        if dead:
            mistakes["a fully masked row got its weight spread evenly over the keys: filling blocked "
                     "scores with a large negative number such as -1e9 instead of -inf does that. A query "
                     "with no allowed key must get zero weights"] = reference.softmax(
                np.where(np.isneginf(add), -1e9, scaled + add))
    mistake = diagnose(weights, mistakes)
    expect_shape(weights, expected_w.shape, "Your weights tensor", mistake)
    expect_finite(weights, "Your weights tensor", NAN_FORWARD if dead else "")
    with context(before=mistake):
        expect_rows_sum_to_one(weights, "attention weights", allow_zero_rows=dead)
        expect_close(weights, expected_w, "Your weights tensor")
    expect_finite(output, "Your output tensor", NAN_FORWARD if dead else "")
    expect_close(output, expected_out, "Your output tensor",
                 hint=diagnose(output, {"the output weights the keys instead of the values": expected_w @ k.numpy()})
                 or "Each output row is the weighted sum of the value vectors: weights @ value.")


def _judge_grads(grads, q, k, v, mask, grad_output) -> None:
    expected = reference.attention_grads(q, k, v, grad_output, mask)
    for name, got, want in zip(("query", "key", "value"), grads, expected):
        what = f"The gradient of sum(output * G) w.r.t. {name}"
        expect_finite(got, what, NAN_BACKWARD if _has_fully_masked_rows(q, k, mask) else "")
        expect_close(got, want, what, hint="Part of the computation is invisible to autograd (.item(), "
                                            ".tolist(), a NumPy step) or the forward pass is wrong.")


def _run_forward(fn, label, q, k, v, mask=None) -> None:
    with context(before=_describe(label, q, k, v, mask)):
        output, weights = _collect_forward(fn, q, k, v, mask)
        _judge_forward(output, weights, q, k, v, mask)


def _run_grads(fn, label, r, q, k, v, mask=None) -> None:
    grad_output = _tensor(r, *q.shape[:-1], v.shape[-1])
    with context(before=_describe(label + " (gradients)", q, k, v, mask)):
        _judge_grads(_collect_grads(fn, q, k, v, mask, grad_output), q, k, v, mask, grad_output)


def _done(what: str, n: int, hidden: bool) -> None:
    passed(f"{what} matches PyTorch's reference on {n} {'hidden' if hidden else 'public'} case{'s' if n > 1 else ''}.")


# ------------------------------------------------------------------------ the API
def check_causal_mask(causal_mask, hidden: bool = False) -> None:
    """causal_mask(seq_len) -> boolean (seq_len, seq_len), True where j <= i."""
    r = inputs.rng(hidden)
    sizes = sorted({int(n) for n in r.integers(2, 17, size=3)}) if hidden else [1, 5]
    for n in sizes:
        with context(before=f"Test case: causal_mask({n}){' (hidden test)' if hidden else ''}."):
            got = call_student(causal_mask, n, what=f"causal_mask({n})")
            expect_type(got, torch.Tensor, f"causal_mask({n})")
            if got.dtype != torch.bool:
                fail(f"causal_mask({n}) has dtype {got.dtype}, expected torch.bool. Here a mask is boolean, True "
                     f"where position i may attend to position j (j <= i), the convention of "
                     f"F.scaled_dot_product_attention. (A float mask of 0 and -inf is the additive form.)")
            got = as_array(got, "causal_mask")
            expected = reference.causal_mask(n).numpy().astype(np.float64)
            mistakes = {
                "True where attention is NOT allowed (nn.Transformer's convention); here True means "
                "'may attend'": 1.0 - expected,
                "the upper triangle: position i would see the future (j > i). Keep j <= i (the lower triangle)":
                    expected.T,
                "the diagonal is False: a position must be able to attend to itself": np.tril(expected, -1),
            }
            expect_close(got, expected, f"causal_mask({n})", hint=diagnose(got, mistakes))
    _done("causal_mask", len(sizes), hidden)


def check_attention(scaled_dot_product_attention, hidden: bool = False) -> None:
    """No mask: output (..., seq_q, d_v) and weights (..., seq_q, seq_k)."""
    r = inputs.rng(hidden)
    if not hidden:
        cases = [("batch of 2, no mask", _qkv(r, (2,), 4, 6, 3, 5))]
    else:
        batch, heads = (int(n) for n in r.integers(2, 4, size=2))
        cases = [("hidden test, no batch axis", _qkv(r, (), *_sizes(r))),
                 ("hidden test, (batch, seq, d)", _qkv(r, (batch,), *_sizes(r))),
                 ("hidden test, (batch, heads, seq, d)", _qkv(r, (batch, heads), *_sizes(r)))]
    for label, qkv in cases:
        _run_forward(scaled_dot_product_attention, label, *qkv)
    _done("scaled_dot_product_attention", len(cases), hidden)


def check_masking(scaled_dot_product_attention, hidden: bool = False) -> None:
    """Boolean masks (True = may attend) and additive float masks, broadcast over batch axes."""
    r = inputs.rng(hidden)
    if not hidden:
        q, k, v = _qkv(r, (2,), 4, 6, 3, 5)
        cases = [("a boolean (seq_q, seq_k) mask shared by the batch", q, k, v, _bool_mask(r, (4, 6)))]
    else:
        batch, heads = (int(n) for n in r.integers(2, 4, size=2))
        seq_q, seq_k, d_k, d_v = _sizes(r)
        q, k, v = _qkv(r, (batch,), seq_q, seq_k, d_k, d_v)
        cases = [("hidden test, a boolean mask per batch element", q, k, v, _bool_mask(r, (batch, seq_q, seq_k)))]
        q, k, v = _qkv(r, (batch,), *_sizes(r))
        cases.append(("hidden test, an additive float mask (-inf = blocked)", q, k, v,
                      _float_mask(r, (q.shape[-2], k.shape[-2]))))
        q, k, v = _qkv(r, (batch, heads), seq_q, seq_q, d_k, d_v)
        cases.append(("hidden test, a causal mask over (batch, heads, seq, d)", q, k, v, reference.causal_mask(seq_q)))
        q, k, v = _qkv(r, (batch,), *_sizes(r))
        cases.append(("hidden test, a padding mask (batch, 1, seq_k) hiding some keys", q, k, v,
                      _bool_mask(r, (batch, 1, k.shape[-2]))))
    for label, q, k, v, mask in cases:
        _run_forward(scaled_dot_product_attention, label, q, k, v, mask)
    _done("scaled_dot_product_attention with masks", len(cases), hidden)


def check_fully_masked_rows(scaled_dot_product_attention, hidden: bool = False) -> None:
    """A query with no allowed key: zero weights, zero output, no NaN (forward; hidden: backward too)."""
    r = inputs.rng(hidden)
    if not hidden:
        q, k, v = _qkv(r, (1,), 3, 5, 4, 2)
        mask = _bool_mask(r, (3, 5))
        mask[1] = False
        _run_forward(scaled_dot_product_attention, "the second query may attend to no key", q, k, v, mask)
        _done("scaled_dot_product_attention on a fully masked row", 1, hidden)
        return
    batch = int(r.integers(2, 4))
    cases = []
    for kind, make in (("boolean", _bool_mask), ("additive float", _float_mask)):
        seq_q, seq_k, d_k, d_v = _sizes(r)
        cases.append((f"hidden test, {kind} mask with fully masked rows", *_qkv(r, (batch,), seq_q, seq_k, d_k, d_v),
                      make(r, (batch, seq_q, seq_k), dead_rows=True)))
    for label, q, k, v, mask in cases:
        _run_forward(scaled_dot_product_attention, label, q, k, v, mask)
        _run_grads(scaled_dot_product_attention, label, r, q, k, v, mask)
    _done("scaled_dot_product_attention on fully masked rows (forward and gradients)", len(cases), hidden)


def check_gradients(scaled_dot_product_attention, hidden: bool = False) -> None:
    """Autograd gradients of a scalar loss w.r.t. query, key and value match the reference's."""
    r = inputs.rng(hidden)
    if not hidden:
        cases = [("batch of 2, no mask", *_qkv(r, (2,), 3, 5, 4, 3), None)]
    else:
        batch, heads = (int(n) for n in r.integers(2, 4, size=2))
        q, k, v = _qkv(r, (batch,), *_sizes(r))
        cases = [("hidden test, boolean mask", q, k, v, _bool_mask(r, (q.shape[-2], k.shape[-2])))]
        q, k, v = _qkv(r, (batch, heads), *_sizes(r))
        cases.append(("hidden test, (batch, heads, seq, d) with an additive float mask", q, k, v,
                      _float_mask(r, (q.shape[-2], k.shape[-2]))))
    for label, q, k, v, mask in cases:
        _run_grads(scaled_dot_product_attention, label, r, q, k, v, mask)
    _done("Backpropagation through scaled_dot_product_attention", len(cases), hidden)
