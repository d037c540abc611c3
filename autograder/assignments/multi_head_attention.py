"""Checks for the exercise `multi-head-attention` (solutions/multi-head-attention/).

The student writes `MultiHeadAttention(d_model, num_heads)`, an `nn.Module` with four
`nn.Linear(d_model, d_model)` projections `W_q, W_k, W_v, W_o`, the helpers
`split_heads` / `merge_heads`, and `forward(query, key, value, key_padding_mask=None,
attn_mask=None) -> (output, weights averaged over heads)`, with the masks of
`nn.MultiheadAttention` (boolean True = NOT allowed; float masks are added).

The reference is `torch.nn.MultiheadAttention(batch_first=True)` holding copies of the
student's own projections (`autograder.reference.multihead_from_projections`); both run
in float64. Classic mistakes are named by running the same reference on transformed
parameters (e.g. W_q scaled by sqrt(d_k / d_model) is "scaled by sqrt(d_model)"), so no
from-scratch attention lives here.

Every check is `collect_*` (runs the student's code, returns plain NumPy arrays and
numbers, including the student's parameters) followed by `judge_*` (builds the
reference from those arrays and compares). Test cells call `check_*` only.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from autograder.checks import (MODULE_HINT, CheckFailed, as_array, call_student, diagnose, expect_close,
                               expect_rows_sum_to_one, expect_shape, fail, load_student_state, passed,
                               student_isinstance, student_state, submodule_types)
from autograder.inputs import normal, rng
from autograder.reference import multihead_attention, multihead_from_projections

__all__ = ["check_split_heads", "check_merge_heads", "check_forward", "check_key_padding_mask",
           "check_attn_mask", "check_attention_weights"]

# Built-ins a from-scratch implementation must not call (see autograder.checks).
FORBID = ("multi_head_attention", "scaled_dot_product_attention")
PROJECTIONS = ("W_q", "W_k", "W_v", "W_o")
# Both sides run in float64: real differences are ~1e-15, classic mistakes ~1e-2 or more.
ATOL, RTOL = 1e-7, 1e-6

Evidence = dict  # plain Python: ints, strings, NumPy arrays, None


# ------------------------------------------------------------------------- inputs
def _sizes(r: np.random.Generator, hidden: bool) -> dict[str, int]:
    """Sizes with d_k different from both d_model and num_heads (so that scaling by
    sqrt(d_model) or splitting the heads the wrong way round cannot pass by luck)."""
    if not hidden:
        return dict(batch=2, seq_q=5, seq_k=7, d_model=12, num_heads=3)
    while True:
        num_heads, d_k = int(r.integers(2, 5)), int(r.integers(2, 7))
        seq_q, seq_k = int(r.integers(3, 8)), int(r.integers(3, 9))
        if d_k != num_heads and seq_q != seq_k:
            break
    return dict(batch=int(r.integers(2, 4)), seq_q=seq_q, seq_k=seq_k, d_model=num_heads * d_k,
                num_heads=num_heads)


def _describe(s: dict[str, int]) -> str:
    return f"d_model={s['d_model']}, num_heads={s['num_heads']}, d_k={s['d_model'] // s['num_heads']}"


def _padding_mask(r, batch: int, seq_k: int) -> np.ndarray:
    """Boolean (batch, seq_k), True = padding. Every sequence keeps its first key and
    pads at least its last one, so no query is left without a key."""
    lengths = r.integers(1, seq_k, size=batch)  # 1 .. seq_k - 1 real keys
    return np.arange(seq_k)[None, :] >= lengths[:, None]


def _random_blocked(r, seq_q: int, seq_k: int) -> np.ndarray:
    """Boolean (seq_q, seq_k), True = not allowed. Key 0 is always allowed (so it can be
    combined with a padding mask) and every row blocks at least one key."""
    blocked = r.random((seq_q, seq_k)) < 0.4
    blocked[:, 0] = False
    for i in np.flatnonzero(~blocked.any(axis=1)):
        blocked[i, r.integers(1, seq_k)] = True
    return blocked


def _causal_blocked(seq: int) -> np.ndarray:
    """Boolean (seq, seq), True above the diagonal: position i may not see j > i."""
    return np.triu(np.ones((seq, seq), dtype=bool), k=1)


def _scenario(label: str, query, key=None, value=None, key_padding_mask=None, attn_mask=None) -> dict:
    self_attention = key is None
    return dict(label=label, self_attention=self_attention, query=query,
                key=query if self_attention else key, value=query if self_attention else value,
                key_padding_mask=key_padding_mask, attn_mask=attn_mask)


def _self_and_cross(r, s) -> list[dict]:
    b, sq, sk, d = s["batch"], s["seq_q"], s["seq_k"], s["d_model"]
    return [
        _scenario(f"self-attention, query = key = value of shape {(b, sq, d)}", normal(r, b, sq, d)),
        _scenario(f"cross-attention, query {(b, sq, d)}, key and value {(b, sk, d)} (different tensors)",
                  normal(r, b, sq, d), normal(r, b, sk, d), normal(r, b, sk, d)),
    ]


# ------------------------------------------------------------- running student code
def _build(cls, s: dict[str, int], r: np.random.Generator):
    """Instantiate the student's class, validate its projections, give them fresh
    parameters drawn from `r` and switch it to float64.

    The module may live in this process (public tests) or in the sandboxed grading
    kernel (a handle): it is touched only through `autograder.checks`' student helpers.
    """
    d, h = s["d_model"], s["num_heads"]
    what = f"MultiHeadAttention(d_model={d}, num_heads={h})"
    # No tripwires here: the built-ins matter in forward (checked there), and in grading
    # the static scan of the answer cell would otherwise cost split/merge points too.
    module = call_student(cls, d, h, what=what)
    if not student_isinstance(module, nn.Module):
        fail(f"{what} should create an nn.Module. {MODULE_HINT}")
    types = submodule_types(module)
    for name, kind in types.items():
        if kind.endswith(".MultiheadAttention"):
            fail(f"Your MultiHeadAttention contains a torch.nn.MultiheadAttention submodule "
                 f"(`self.{name}`). This exercise asks you to build multi-head attention from "
                 f"scratch out of the four nn.Linear projections W_q, W_k, W_v, W_o; "
                 f"nn.MultiheadAttention is the reference the autograder compares you with, "
                 f"so this test gives no points for using it.")
    for name in PROJECTIONS:
        if name not in types:
            fail(f"{what} has no submodule `{name}`. Create it in __init__: "
                 f"`self.{name} = nn.Linear(d_model, d_model)`.")
        if not student_isinstance(getattr(module, name), nn.Linear):
            fail(f"`self.{name}` should be an nn.Linear, got {types[name].rsplit('.', 1)[-1]}.")
    state = student_state(module, what)
    for name in PROJECTIONS:
        weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        if weight is not None and weight.shape != (d, d):
            fail(f"`self.{name}` maps {weight.shape[1]} -> {weight.shape[0]} features; with "
                 f"d_model={d} it should map {d} -> {d}. All heads share one d_model x d_model "
                 f"projection: split_heads cuts the heads out of its output.")
        if bias is None:
            fail(f"`self.{name}` was created with bias=False. Keep the default bias=True, as "
                 f"nn.MultiheadAttention (the reference) has biases.")
    fresh = dict(state)  # parameters drawn here: public tests are reproducible
    for name in PROJECTIONS:
        fresh[f"{name}.weight"] = normal(r, d, d, scale=1 / math.sqrt(d))
        fresh[f"{name}.bias"] = normal(r, d, scale=0.1)
    load_student_state(module, fresh, what)  # also .double() and .eval()
    return module


def _parameters(module) -> dict[str, np.ndarray]:
    """The student's projections as plain arrays (read back after running their code)."""
    state = student_state(module, "MultiHeadAttention")
    return {f"{n}.{p}": state[f"{n}.{p}"] for n in PROJECTIONS for p in ("weight", "bias")}


def _tensor(x):
    if x is None:
        return None
    return torch.from_numpy(np.array(x))  # bool stays bool, floats are float64


def _run_forward(module, sc: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """Call forward on one scenario; return (output, weights or None) as arrays."""
    q = _tensor(sc["query"])
    k, v = (q, q) if sc["self_attention"] else (_tensor(sc["key"]), _tensor(sc["value"]))
    masks = {}
    for name in ("key_padding_mask", "attn_mask"):
        if sc[name] is not None:
            masks[name] = _tensor(sc[name])
    args = ", ".join(["query, key, value"] + [f"{n}={n}" for n in masks])
    what = f"forward({args}) on {sc['label']}"
    with torch.no_grad():
        result = call_student(module, q, k, v, what=what, forbid=FORBID, **masks)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"{what} returned a {type(result).__name__}; it should return a pair "
             f"(output, weights), like nn.MultiheadAttention.")
    output = as_array(result[0], f"{what} (the output)")
    weights = None
    if result[1] is not None:
        try:
            weights = as_array(result[1], f"{what} (the weights)")
        except CheckFailed:
            weights = None
    return output, weights


def _probe_heads(module, s: dict) -> dict:
    """split_heads / merge_heads on a small fixed input, so that a failing forward can say
    when Part 1 is the culprit. Errors here are not the forward checks' business."""
    x = np.random.default_rng(0).standard_normal((2, 3, s["d_model"]))
    h, d_k = s["num_heads"], s["d_model"] // s["num_heads"]
    heads = x.reshape(2, 3, h, d_k).transpose(0, 2, 1, 3)
    probe = dict(x=x, heads=heads, split=None, merge=None)
    for name, arg in (("split", x), ("merge", heads)):
        try:
            result = call_student(getattr(module, f"{name}_heads"), _tensor(arg), what=f"{name}_heads")
            probe[name] = as_array(result, f"{name}_heads")
        except (CheckFailed, AttributeError):
            pass
    return probe


def _heads_hint(probe: dict | None) -> str:
    if probe is None:
        return ""
    split_ok = probe["split"] is not None and probe["split"].shape == probe["heads"].shape \
        and np.allclose(probe["split"], probe["heads"])
    merge_ok = probe["merge"] is not None and probe["merge"].shape == probe["x"].shape \
        and np.allclose(probe["merge"], probe["x"])
    broken = [f"{n}_heads" for n, ok in (("split", split_ok), ("merge", merge_ok)) if not ok]
    if not broken:
        return ""
    return (f"Your {' and '.join(broken)} do{'es' if len(broken) == 1 else ''} not pass the Part 1 "
            f"test yet, and forward relies on {'it' if len(broken) == 1 else 'them'}: fix Part 1 first. ")


def _collect(cls, hidden: bool, make_scenarios) -> Evidence:
    r = rng(hidden)
    s = _sizes(r, hidden)
    module = _build(cls, s, r)
    probe = _probe_heads(module, s)
    scenarios = make_scenarios(r, s)
    for sc in scenarios:
        # A failure is kept as evidence and reported by the judge in scenario order, so the
        # student hears about the first scenario that goes wrong.
        sc["output"] = sc["weights"] = sc["error"] = None
        try:
            sc["output"], sc["weights"] = _run_forward(module, sc)
        except CheckFailed as failure:
            sc["error"] = str(failure)
    return dict(sizes=s, hidden=hidden, params=_parameters(module), scenarios=scenarios, heads=probe)


# -------------------------------------------------------------------- the reference
def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    return layer


def _reference(params: dict, s: dict, sc: dict, **change) -> tuple[np.ndarray, np.ndarray]:
    """nn.MultiheadAttention with the student's parameters on one scenario.

    `change` overrides parameters or scenario entries; the diagnoses use it to compute
    what a classic mistake would have produced, with the built-in module only.
    """
    p = {**params, **{k: v for k, v in change.items() if "." in k}}
    sc = {**sc, **{k: v for k, v in change.items() if "." not in k}}
    layers = [_linear(p[f"{n}.weight"], p[f"{n}.bias"]) for n in PROJECTIONS]
    ref = multihead_from_projections(s["d_model"], s["num_heads"], *layers)
    with warnings.catch_warnings():  # e.g. mixed bool / float masks: never on stderr
        warnings.simplefilter("ignore")
        return multihead_attention(ref, sc["query"], sc["key"], sc["value"],
                                   key_padding_mask=sc["key_padding_mask"], attn_mask=sc["attn_mask"])


def _scaled_query(params: dict, factor: float) -> dict:
    """Parameters whose query projection is multiplied by `factor`: the scores are then
    q.k * factor / sqrt(d_k), which is how a wrong scale is reproduced."""
    return {"W_q.weight": params["W_q.weight"] * factor, "W_q.bias": params["W_q.bias"] * factor}


def _wrong_head_order(params: dict, s: dict, merge_too: bool) -> dict:
    """Splitting as view(batch, seq, d_k, heads) gives head h the features h, h + heads,
    h + 2*heads, ...: the same as the right split after permuting the projections' output
    features. A merge done the same wrong way permutes W_o's input features back."""
    h, d_k = s["num_heads"], s["d_model"] // s["num_heads"]
    perm = np.array([head + j * h for head in range(h) for j in range(d_k)])
    changed = {}
    for n in ("W_q", "W_k", "W_v"):
        changed[f"{n}.weight"] = params[f"{n}.weight"][perm]
        changed[f"{n}.bias"] = params[f"{n}.bias"][perm]
    if merge_too:
        changed["W_o.weight"] = params["W_o.weight"][:, perm]
    return changed


def _common_candidates(params: dict, s: dict, sc: dict, pick: int) -> dict[str, np.ndarray]:
    """Classic mistakes that do not involve masks; `pick` 0 = output, 1 = weights."""
    d, h = s["d_model"], s["num_heads"]
    d_k = d // h
    cands = {
        f"you scaled the scores by sqrt(d_model) = {math.sqrt(d):.3f} instead of sqrt(d_k) = "
        f"{math.sqrt(d_k):.3f}. Each head compares {d_k}-dimensional queries and keys, so "
        f"d_k = d_model // num_heads is the right scale":
            _reference(params, s, sc, **_scaled_query(params, math.sqrt(d_k / d)))[pick],
        "you did not scale the scores at all: divide q @ k^T by sqrt(d_k)":
            _reference(params, s, sc, **_scaled_query(params, math.sqrt(d_k)))[pick],
        f"your heads are split in the wrong order: viewing the features as (d_k, heads) gives head "
        f"h the features h, h+{h}, h+{2 * h}, ... instead of the block h*d_k:(h+1)*d_k; view them "
        f"as (batch, seq, num_heads, d_k), then transpose(1, 2)":
            _reference(params, s, sc, **_wrong_head_order(params, s, merge_too=True))[pick],
        "your heads are split in the wrong order (features viewed as (d_k, heads) instead of "
        "(heads, d_k)); head h must get the block of features h*d_k:(h+1)*d_k":
            _reference(params, s, sc, **_wrong_head_order(params, s, merge_too=False))[pick],
    }
    if pick == 0:
        cands["there is no output projection: after merging the heads, apply self.W_o"] = \
            _reference(params, s, sc, **{"W_o.weight": np.eye(d), "W_o.bias": np.zeros(d)})[0]
    if not sc["self_attention"]:
        cands["you swapped key and value: W_k projects the key, W_v the value"] = \
            _reference(params, s, sc, key=sc["value"], value=sc["key"])[pick]
    return cands


def _mask_candidates(params: dict, s: dict, sc: dict, pick: int) -> dict[str, np.ndarray]:
    """Classic mask mistakes for one scenario."""
    cands = {}
    for name in ("key_padding_mask", "attn_mask"):
        mask = sc[name]
        if mask is None:
            continue
        cands[f"`{name}` was ignored: your result is what you get without it"] = \
            _reference(params, s, sc, **{name: None})[pick]
        if mask.dtype == bool:
            cands[f"you inverted the meaning of `{name}`: you treated True as 'may attend' (the "
                  f"convention of F.scaled_dot_product_attention). In this exercise, as in "
                  f"nn.MultiheadAttention, True means NOT allowed"
                  + (" (padding)" if name == "key_padding_mask" else "")
                  + ": that key must get weight 0"] = _reference(params, s, sc, **{name: ~mask})[pick]
        else:
            cands[f"you subtracted the float `{name}`; a float mask is added to the scores"] = \
                _reference(params, s, sc, **{name: -mask})[pick]
    return cands


def _after_softmax_weights(params: dict, s: dict, sc: dict) -> np.ndarray:
    """Averaged weights of a module that zeroes the blocked entries after the softmax."""
    weights = _reference(params, s, sc, key_padding_mask=None, attn_mask=None)[1]
    blocked = np.zeros(weights.shape, dtype=bool)
    if sc["key_padding_mask"] is not None:
        blocked |= np.isneginf(sc["key_padding_mask"])[:, None, :] if sc["key_padding_mask"].dtype != bool \
            else sc["key_padding_mask"][:, None, :]
    if sc["attn_mask"] is not None:
        blocked |= np.isneginf(sc["attn_mask"])[None] if sc["attn_mask"].dtype != bool else sc["attn_mask"][None]
    return np.where(blocked, 0.0, weights)


def _averaged(weights: np.ndarray | None, s: dict, sc: dict) -> np.ndarray | None:
    """The student's weights as (batch, seq_q, seq_k), averaging per-head weights ourselves
    (averaging is judged by check_attention_weights, not by the mask checks)."""
    if weights is None:
        return None
    b, sq, sk = sc["query"].shape[0], sc["query"].shape[1], sc["key"].shape[1]
    if weights.shape == (b, sq, sk):
        if np.allclose(weights.sum(axis=-1), s["num_heads"], atol=1e-6):
            return weights / s["num_heads"]  # summed over heads: check_attention_weights says so
        return weights
    if weights.shape == (b, s["num_heads"], sq, sk):
        return weights.mean(axis=1)
    return None


def _general_hint(got: np.ndarray, expected: np.ndarray, weights: np.ndarray | None) -> str:
    """Hints when no single classic mistake explains the difference."""
    finite = np.isfinite(got)
    if finite.all() and np.abs(got - expected).max() < 1e-4:
        return ("The differences are tiny: is part of your computation in float32 (for example "
                "a tensor made with torch.tensor(...) without dtype)? The check runs your module "
                "in float64 and compares to 1e-7.")
    if weights is not None and weights.ndim >= 2 and np.isfinite(weights).all() \
            and not np.allclose(weights.sum(axis=-1), 1.0, atol=1e-6):
        return ("Your attention weights do not sum to 1 over the keys: softmax missing, or taken "
                "over the wrong axis? It must run over the last axis (keys), dim=-1.")
    return ("Check, in order: q, k, v = W_q(query), W_k(key), W_v(value), each split into heads; "
            "per head softmax(q @ k^T / sqrt(d_k)) over the keys (last axis); weights @ v; merge "
            "the heads; apply W_o.")


_NAN_HINT = ("A NaN comes from a softmax over nothing but -inf (0/0). Either a query had every "
             "key masked: the test masks always leave each query at least one allowed key under "
             "this exercise's convention (True = NOT allowed), so did you invert a mask? Or the "
             "softmax ran over the wrong axis (over the queries, a padded key's column is all "
             "-inf): it must run over the keys, dim=-1.")


def _judge_scenarios(ev: Evidence, what_checked: str, with_weights: bool, mask_mistakes: bool) -> None:
    s, params = ev["sizes"], ev["params"]
    for sc in ev["scenarios"]:
        if sc["error"]:
            fail(sc["error"])
        expected_out, expected_w = _reference(params, s, sc)
        got = sc["output"]
        where = f"on {sc['label']} ({_describe(s)})"
        for name in ("key_padding_mask", "attn_mask"):
            mask = sc[name]
            if mask is not None:
                kind = "bool, True = NOT allowed" if mask.dtype == bool else "float, added to the scores"
                where += f", with {name} {tuple(mask.shape)} ({kind})"
        expect_shape(got, expected_out.shape, f"The output of forward {where}",
                     "The output is (batch, seq_q, d_model): one d_model vector per query.")
        weights = _averaged(sc["weights"], s, sc)
        if not np.allclose(got, expected_out, atol=ATOL, rtol=RTOL):
            cands = _mask_candidates(params, s, sc, 0) if mask_mistakes else {}
            cands.update(_common_candidates(params, s, sc, 0))
            hint = diagnose(got, cands, atol=ATOL)
            if not hint and mask_mistakes and weights is not None:
                hint = diagnose(weights, {
                    "you applied the mask after the softmax (zeroing the blocked weights), so "
                    "the rows no longer sum to 1; set the blocked scores to -inf BEFORE the softmax":
                        _after_softmax_weights(params, s, sc),
                    **_mask_candidates(params, s, sc, 1)}, atol=ATOL)
            if not hint and np.isnan(got).any():
                hint = _NAN_HINT
            hint = hint or _heads_hint(ev.get("heads")) + _general_hint(got, expected_out, sc["weights"])
            expect_close(got, expected_out, f"The output of forward {where}", atol=ATOL, rtol=RTOL,
                         hint=hint)
        if with_weights and weights is not None and not np.allclose(weights, expected_w, atol=ATOL, rtol=RTOL):
            cands = _mask_candidates(params, s, sc, 1)
            cands["you applied the mask after the softmax (zeroing the blocked weights); set the "
                  "blocked scores to -inf BEFORE the softmax"] = _after_softmax_weights(params, s, sc)
            hint = diagnose(weights, cands, atol=ATOL) or (_NAN_HINT if np.isnan(weights).any() else "")
            expect_close(weights, expected_w, f"The attention weights (averaged over heads) {where}",
                         atol=ATOL, rtol=RTOL, hint=hint)
    passed(f"{what_checked} matches torch.nn.MultiheadAttention ({_describe(s)}"
           f"{', sizes drawn at grading time' if ev['hidden'] else ''}).")


# ------------------------------------------------------------- split / merge heads
def collect_split_heads(cls, hidden: bool = False) -> Evidence:
    r = rng(hidden)
    s = _sizes(r, hidden)
    module = _build(cls, s, r)
    x = normal(r, s["batch"], s["seq_q"], s["d_model"])
    got = call_student(module.split_heads, _tensor(x),
                       what=f"split_heads(x) with x of shape {x.shape}")
    return dict(sizes=s, hidden=hidden, x=x, got=as_array(got, "split_heads(x)"))


def judge_split_heads(ev: Evidence) -> None:
    s, x, got = ev["sizes"], ev["x"], ev["got"]
    b, seq, d, h = s["batch"], s["seq_q"], s["d_model"], s["num_heads"]
    d_k = d // h
    expected = x.reshape(b, seq, h, d_k).transpose(0, 2, 1, 3)  # head h: features h*d_k:(h+1)*d_k
    what = f"split_heads(x) for x of shape {x.shape} ({_describe(s)})"
    hints = {(b, seq, h, d_k): "You have (batch, seq, heads, d_k): now move the heads axis in front "
                               "of seq with transpose(1, 2).",
             (b * h, seq, d_k): "nn.MultiheadAttention folds the heads into the batch internally, "
                                "but here they keep their own axis: (batch, heads, seq, d_k).",
             (b, h, seq, d): "Each head gets only d_k = d_model // num_heads features, not d_model."}
    expect_shape(got, expected.shape, what, hints.get(tuple(got.shape),
                 "Expected (batch, num_heads, seq, d_k)."))
    hint = diagnose(got, {
        f"heads split in the wrong order: viewing the features as (d_k, heads) gives head h the "
        f"features h, h+{h}, h+{2 * h}, ... instead of the contiguous block h*d_k:(h+1)*d_k "
        f"(nn.MultiheadAttention's order); view as (batch, seq, num_heads, d_k), then transpose(1, 2)":
            x.reshape(b, seq, d_k, h).transpose(0, 3, 1, 2),
        "you reshaped straight to (batch, heads, seq, d_k), which mixes positions and heads; "
        "view as (batch, seq, num_heads, d_k) first, then transpose(1, 2)":
            x.reshape(b, h, seq, d_k)}, atol=ATOL)
    expect_close(got, expected, what, atol=ATOL, rtol=RTOL, hint=hint or
                 "Head h must hold features h*d_k:(h+1)*d_k of every position.")
    passed(f"split_heads: (batch, seq, d_model) -> (batch, heads, seq, d_k) in the right order "
           f"({_describe(s)}{', sizes drawn at grading time' if ev['hidden'] else ''}).")


def check_split_heads(cls, hidden: bool = False) -> None:
    """split_heads(x): (batch, seq, d_model) -> (batch, heads, seq, d_k), head h taking
    features h*d_k:(h+1)*d_k (nn.MultiheadAttention's head order)."""
    judge_split_heads(collect_split_heads(cls, hidden))


def collect_merge_heads(cls, hidden: bool = False) -> Evidence:
    r = rng(hidden)
    s = _sizes(r, hidden)
    module = _build(cls, s, r)
    h, d_k = s["num_heads"], s["d_model"] // s["num_heads"]
    x = normal(r, s["batch"], h, s["seq_q"], d_k)
    got = call_student(module.merge_heads, _tensor(x),
                       what=f"merge_heads(x) with x of shape {x.shape}")
    return dict(sizes=s, hidden=hidden, x=x, got=as_array(got, "merge_heads(x)"))


def judge_merge_heads(ev: Evidence) -> None:
    s, x, got = ev["sizes"], ev["x"], ev["got"]
    b, h, seq, d_k = x.shape
    d = s["d_model"]
    expected = x.transpose(0, 2, 1, 3).reshape(b, seq, d)
    what = f"merge_heads(x) for x of shape {x.shape} ({_describe(s)})"
    hints = {(b, seq, h, d_k): "You moved the heads back next to d_k; now reshape to (batch, seq, d_model).",
             (b, h, seq, d_k): "merge_heads should undo split_heads: (batch, heads, seq, d_k) -> "
                               "(batch, seq, d_model)."}
    expect_shape(got, expected.shape, what, hints.get(tuple(got.shape), "Expected (batch, seq, d_model)."))
    hint = diagnose(got, {
        "you reshaped without first moving the heads axis back next to d_k, which mixes positions "
        "and heads; transpose(1, 2) first, then reshape to (batch, seq, d_model)":
            x.reshape(b, seq, d),
        "heads merged in the wrong order: you laid the features out as (d_k, heads); head h's "
        "d_k features go back to the contiguous block h*d_k:(h+1)*d_k":
            x.transpose(0, 2, 3, 1).reshape(b, seq, d)}, atol=ATOL)
    expect_close(got, expected, what, atol=ATOL, rtol=RTOL, hint=hint or
                 "merge_heads must be the exact inverse of split_heads.")
    passed(f"merge_heads: (batch, heads, seq, d_k) -> (batch, seq, d_model), the inverse of "
           f"split_heads ({_describe(s)}{', sizes drawn at grading time' if ev['hidden'] else ''}).")


def check_merge_heads(cls, hidden: bool = False) -> None:
    """merge_heads(x): (batch, heads, seq, d_k) -> (batch, seq, d_model), the inverse of split_heads."""
    judge_merge_heads(collect_merge_heads(cls, hidden))


# ----------------------------------------------------------------------- forward
def collect_forward(cls, hidden: bool = False) -> Evidence:
    return _collect(cls, hidden, _self_and_cross)


def judge_forward(ev: Evidence) -> None:
    _judge_scenarios(ev, "forward (the output, self- and cross-attention, no masks)",
                     with_weights=False, mask_mistakes=False)


def check_forward(cls, hidden: bool = False) -> None:
    """The output of forward(query, key, value) without masks, self- and cross-attention."""
    judge_forward(collect_forward(cls, hidden))


def collect_attention_weights(cls, hidden: bool = False) -> Evidence:
    return _collect(cls, hidden, _self_and_cross)


def judge_attention_weights(ev: Evidence) -> None:
    s, params = ev["sizes"], ev["params"]
    h = s["num_heads"]
    for sc in ev["scenarios"]:
        if sc["error"]:
            fail(sc["error"])
        expected = _reference(params, s, sc)[1]
        b, sq, sk = expected.shape
        what = f"The weights tensor returned by forward on {sc['label']} ({_describe(s)})"
        w = sc["weights"]
        if w is None:
            fail(f"{what}: forward returned None (or no array) as weights. Return the attention "
                 f"weights averaged over the heads, shape (batch, seq_q, seq_k).")
        hints = {(b, h, sq, sk): "These are the weights of every head: average them over the heads "
                                 "axis (weights.mean(dim=1)), as nn.MultiheadAttention does by "
                                 "default (average_attn_weights=True).",
                 (b * h, sq, sk): "These are per-head weights with heads folded into the batch: "
                                  "average over the heads, shape (batch, seq_q, seq_k)."}
        expect_shape(w, expected.shape, what, hints.get(tuple(w.shape),
                     "Expected (batch, seq_q, seq_k), averaged over the heads."))
        if np.allclose(w.sum(axis=-1), h, atol=1e-6):
            fail(f"{what}: every row sums to {h} = num_heads. You summed the heads' weights; "
                 f"average them instead (weights.mean(dim=1)).")
        expect_rows_sum_to_one(w, f"attention weights on {sc['label']}")
        if not np.allclose(w, expected, atol=ATOL, rtol=RTOL):
            cands = _common_candidates(params, s, sc, 1)
            hint = diagnose(w, cands, atol=ATOL) or _heads_hint(ev.get("heads")) + _general_hint(w, expected, None)
            expect_close(w, expected, what, atol=ATOL, rtol=RTOL, hint=hint)
    passed(f"forward's attention weights (averaged over heads) match torch.nn.MultiheadAttention "
           f"({_describe(s)}{', sizes drawn at grading time' if ev['hidden'] else ''}).")


def check_attention_weights(cls, hidden: bool = False) -> None:
    """The weights returned by forward: (batch, seq_q, seq_k), averaged over the heads."""
    judge_attention_weights(collect_attention_weights(cls, hidden))


# -------------------------------------------------------------------------- masks
def _padding_scenarios(r, s) -> list[dict]:
    b, sq, sk, d = s["batch"], s["seq_q"], s["seq_k"], s["d_model"]
    pad_self, pad_cross, pad_float = (_padding_mask(r, b, sk) for _ in range(3))
    bias = np.where(pad_float, -np.inf, normal(r, b, sk))
    return [
        _scenario(f"self-attention of shape {(b, sk, d)}", normal(r, b, sk, d), key_padding_mask=pad_self),
        _scenario(f"cross-attention, query {(b, sq, d)}, key and value {(b, sk, d)}", normal(r, b, sq, d),
                  normal(r, b, sk, d), normal(r, b, sk, d), key_padding_mask=pad_cross),
        _scenario(f"cross-attention, query {(b, sq, d)}, key and value {(b, sk, d)}", normal(r, b, sq, d),
                  normal(r, b, sk, d), normal(r, b, sk, d), key_padding_mask=bias),
    ]


def collect_key_padding_mask(cls, hidden: bool = False) -> Evidence:
    return _collect(cls, hidden, _padding_scenarios)


def judge_key_padding_mask(ev: Evidence) -> None:
    _judge_scenarios(ev, "forward with key_padding_mask (bool and float)", with_weights=True,
                     mask_mistakes=True)


def check_key_padding_mask(cls, hidden: bool = False) -> None:
    """forward with key_padding_mask (batch, seq_k): bool True = padding, float = added."""
    judge_key_padding_mask(collect_key_padding_mask(cls, hidden))


def _attn_mask_scenarios(r, s) -> list[dict]:
    b, sq, sk, d = s["batch"], s["seq_q"], s["seq_k"], s["d_model"]
    causal_bias = np.where(_causal_blocked(sq), -np.inf, normal(r, sq, sq))
    return [
        _scenario(f"causal self-attention of shape {(b, sq, d)}", normal(r, b, sq, d),
                  attn_mask=_causal_blocked(sq)),
        _scenario(f"cross-attention, query {(b, sq, d)}, key and value {(b, sk, d)}", normal(r, b, sq, d),
                  normal(r, b, sk, d), normal(r, b, sk, d), attn_mask=_random_blocked(r, sq, sk)),
        _scenario(f"self-attention of shape {(b, sq, d)}", normal(r, b, sq, d), attn_mask=causal_bias),
        _scenario(f"cross-attention with both masks, query {(b, sq, d)}, key and value {(b, sk, d)}",
                  normal(r, b, sq, d), normal(r, b, sk, d), normal(r, b, sk, d),
                  key_padding_mask=_padding_mask(r, b, sk), attn_mask=_random_blocked(r, sq, sk)),
    ]


def collect_attn_mask(cls, hidden: bool = False) -> Evidence:
    return _collect(cls, hidden, _attn_mask_scenarios)


def judge_attn_mask(ev: Evidence) -> None:
    _judge_scenarios(ev, "forward with attn_mask (bool and float, alone and with key_padding_mask)",
                     with_weights=True, mask_mistakes=True)


def check_attn_mask(cls, hidden: bool = False) -> None:
    """forward with attn_mask (seq_q, seq_k): bool True = not allowed, float = added;
    also together with key_padding_mask."""
    judge_attn_mask(collect_attn_mask(cls, hidden))
