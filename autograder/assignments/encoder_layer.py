"""Checks for the exercise `encoder-layer` (chapter 6).

The student writes

    LayerNorm(d_model, eps=1e-5)   from scratch; parameters `weight` (ones) and `bias`
        (zeros) as nn.LayerNorm; biased variance, eps inside the square root;
    EncoderLayer(d_model, num_heads, d_ff, norm_first=False) with `self_attn`
        (nn.MultiheadAttention(d_model, num_heads, batch_first=True): allowed, attention
        itself was the multi-head exercise), `linear1`, `linear2` (nn.Linear) and `norm1`,
        `norm2` (their own LayerNorm), and the methods
          attention_sublayer(x, key_padding_mask=None)   residual + norm around self-attention
          feed_forward_sublayer(x)                       residual + norm around linear2(relu(linear1))
          forward(x, key_padding_mask=None)              the two in a row
        post-LN (norm_first=False): x = norm(x + sublayer(x));
        pre-LN  (norm_first=True):  x = x + sublayer(norm(x)).
        key_padding_mask: (batch, seq) boolean, True = padding (PyTorch's convention).

References: nn.LayerNorm, and nn.TransformerEncoderLayer(dropout=0, batch_first=True,
activation="relu", norm_first=...) with the student's parameters loaded by name, run on
PyTorch's plain path (fast path off: `reference.run_encoder_layer`). Outputs at padded
positions are not compared. The from-scratch parts may not call nn.LayerNorm,
F.layer_norm or the Transformer layers (tripwires, and a scan of the answer cells when
grading in the sandbox).

Every check is `collect_*` (runs the student's code, returns plain NumPy evidence) then
`judge_*`; the student's modules are reached through method calls only.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from autograder import inputs, reference
from autograder.checks import (CheckFailed, as_array, call_student, context, diagnose, expect_close,
                               expect_shape, fail, load_student_state, passed, student_method, student_state,
                               submodule_types)

__all__ = ["check_layer_norm", "check_feed_forward_sublayer", "check_encoder_layer_post_ln",
           "check_encoder_layer_pre_ln"]

ATOL, RTOL = 1e-9, 1e-7  # float64 on both sides: real differences are ~1e-15
FORBID = ("transformer_layers",)
LAYER_NORM_FIRST = "(If the LayerNorm test fails, fix LayerNorm first: norm1 and norm2 are yours.)"
PARAMS = ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
          "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
          "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")

Evidence = dict  # plain Python: ints, floats, strings, NumPy arrays

# PyTorch classes the from-scratch parts may not contain (qualified names, as
# `submodule_types` reports them).
BUILT_IN = {"torch.nn.modules.normalization.LayerNorm": "torch.nn.LayerNorm",
            "torch.nn.modules.transformer.TransformerEncoderLayer": "torch.nn.TransformerEncoderLayer",
            "torch.nn.modules.transformer.TransformerEncoder": "torch.nn.TransformerEncoder",
            "torch.nn.modules.transformer.Transformer": "torch.nn.Transformer"}
MHA = "torch.nn.modules.activation.MultiheadAttention"


def _reject_built_ins(module, what: str) -> dict[str, str]:
    """Fail if the student's module holds a built-in LayerNorm or Transformer layer; return
    its submodule types."""
    types = submodule_types(module)
    for name, kind in types.items():
        if kind in BUILT_IN:
            where = f"self.{name}" if name else "your class itself"
            fail(f"{what}: {where} is a {BUILT_IN[kind]}. This exercise asks you to implement it from "
                 f"scratch (your own LayerNorm class); the built-in is the reference the tests compare "
                 f"you with, so they give no points for using it.")
    return types


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x))  # a copy: floats stay float64, booleans stay bool


def _fresh(state: dict[str, np.ndarray], r) -> dict[str, np.ndarray]:
    """Random values for every entry: norm gains near 1, biases non-zero, weights ~ 1/sqrt(fan_in)."""
    fresh = {}
    for name, value in state.items():
        parts = name.split(".")
        if parts[-1] == "weight" and (len(parts) == 1 or "norm" in parts[-2]) and value.ndim == 1:
            fresh[name] = 1.0 + 0.3 * inputs.normal(r, *value.shape)
        elif value.ndim == 2:
            fresh[name] = inputs.normal(r, *value.shape, scale=1 / math.sqrt(value.shape[1]))
        else:
            fresh[name] = inputs.normal(r, *value.shape, scale=0.3)
    return fresh


# ========================================================================= LayerNorm
def _ln_cases(hidden: bool) -> list[dict]:
    """Inputs whose rows have very different spreads (std from ~0.003 to ~3), so eps matters
    in some rows and not in others; eps drawn at grading time for hidden tests."""
    r = inputs.rng(hidden)
    if not hidden:
        sizes = [(2, 5, 8)]
        eps_values = [None, 1e-3]  # None: the default
    else:
        sizes = [(int(r.integers(1, 4)), int(r.integers(2, 7)), int(r.integers(3, 25))),
                 (int(r.integers(2, 7)), int(r.integers(3, 25)))]
        eps_values = [None, float(10 ** r.uniform(-5, -2))]
    cases = []
    for eps in eps_values:
        for shape in sizes:
            spread = 10 ** r.uniform(-2.5, 0.5, size=(*shape[:-1], 1))  # one scale per row
            x = inputs.normal(r, *shape) * spread + inputs.normal(r, *shape[:-1], 1)  # rows off-centre too
            cases.append(dict(eps=eps, x=x))
    return cases


def collect_layer_norm(cls, hidden: bool = False) -> Evidence:
    r = inputs.rng(hidden)
    cases = _ln_cases(hidden)
    for c in cases:
        d = c["x"].shape[-1]
        args = {} if c["eps"] is None else {"eps": c["eps"]}
        eps_text = "" if c["eps"] is None else f", eps={c['eps']:.3g}"
        what = f"LayerNorm({d}{eps_text})"
        module = call_student(cls, d, what=what, forbid=FORBID, **args)
        _reject_built_ins(module, what)
        state = student_state(module, what)
        for name in ("weight", "bias"):
            if name not in state:
                fail(f"{what} has no parameter `{name}` (it has {sorted(state) or 'none'}). Register the gain "
                     f"and the shift as nn.Parameter named `weight` and `bias`, as nn.LayerNorm does.")
            if state[name].shape != (d,):
                fail(f"{what}: `{name}` has shape {state[name].shape}, expected ({d},): one value per feature.")
        c["initial"] = {name: state[name] for name in ("weight", "bias")}
        load_student_state(module, _fresh(state, r), what)
        c["params"] = student_state(module, what)
        c["what"] = what
        call = f"{what}(x) with x of shape {c['x'].shape}"
        c["got"] = as_array(call_student(module, _t(c["x"]), what=call, forbid=FORBID), call)
    return dict(hidden=hidden, cases=cases)


def _ln_mistakes(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float, eps_given: bool) -> dict:
    n = x.shape[-1]
    ln = reference.layer_norm
    std = x.std(axis=-1, keepdims=True)  # biased
    mistakes = {
        "eps was added to the standard deviation, (x - mean) / (std + eps); it belongs inside the square "
        "root, (x - mean) / sqrt(var + eps)": (x - x.mean(axis=-1, keepdims=True)) / (std + eps) * w + b,
        "the unbiased variance (dividing by n - 1, torch.var's default); LayerNorm divides by n "
        "(unbiased=False / correction=0)": ln(x, w * math.sqrt((n - 1) / n), b, eps * (n - 1) / n),
        "no eps: (x - mean) / sqrt(var); add eps inside the square root": ln(x, w, b, 0.0),
        "the gain and shift were not applied (or not the ones stored in `weight` and `bias`)":
            ln(x, np.ones(n), np.zeros(n), eps),
        "weight and bias were swapped: y = x_hat * weight + bias": ln(x, b, w, eps),
    }
    if eps_given and not math.isclose(eps, 1e-5):
        mistakes["the eps argument was ignored (1e-5 was used); store it in __init__, self.eps = eps"] = \
            ln(x, w, b, 1e-5)
    if x.ndim >= 2 and x.shape[-2] > 1:
        other = np.swapaxes(ln(np.swapaxes(x, -1, -2), np.ones(x.shape[-2]), np.zeros(x.shape[-2]), eps), -1, -2)
        mistakes["the statistics were taken over the wrong axis (the sequence, not the features): "
                 "mean and variance over the last axis, keepdim=True"] = other * w + b
    return mistakes


def judge_layer_norm(ev: Evidence) -> None:
    for c in ev["cases"]:
        init, what = c["initial"], c["what"]
        if not (np.allclose(init["weight"], 1.0) and np.allclose(init["bias"], 0.0)):
            fail(f"{what} should start with weight = ones and bias = zeros (as nn.LayerNorm does), so that "
                 f"a fresh LayerNorm only normalizes.")
        eps = 1e-5 if c["eps"] is None else c["eps"]
        x, w, b = c["x"], c["params"]["weight"], c["params"]["bias"]
        expected = reference.layer_norm(x, w, b, eps)
        default = " (default eps, 1e-5)" if c["eps"] is None else ""
        with context(before=f"Test case: {what}{default}, x of shape {x.shape} with rows of very different "
                            f"spread, random weight and bias{', drawn at grading time' if ev['hidden'] else ''}."):
            hint = diagnose(c["got"], _ln_mistakes(x, w, b, eps, c["eps"] is not None), atol=ATOL)
            if not hint and c["eps"] is None:
                hint = "Is the default eps 1e-5, as in nn.LayerNorm?"
            expect_close(c["got"], expected, "Your LayerNorm's output", atol=ATOL, rtol=RTOL,
                         hint=hint or "Expected (x - mean) / sqrt(var + eps) * weight + bias, mean and biased "
                                      "variance over the last axis.")
    eps_used = sorted({1e-5 if c["eps"] is None else c["eps"] for c in ev["cases"]})
    passed(f"LayerNorm matches nn.LayerNorm on {len(ev['cases'])} {'hidden' if ev['hidden'] else 'public'} "
           f"cases (eps = {', '.join(f'{e:.3g}' for e in eps_used)}).")


def check_layer_norm(cls, hidden: bool = False) -> None:
    """LayerNorm(d_model, eps=1e-5) against nn.LayerNorm with the same weight, bias and eps."""
    judge_layer_norm(collect_layer_norm(cls, hidden))


# ===================================================================== encoder layer
def _sizes(r, hidden: bool) -> dict[str, int]:
    if not hidden:
        return dict(batch=2, seq=5, d_model=8, num_heads=2, d_ff=16)
    num_heads, d_k = int(r.integers(1, 5)), int(r.integers(2, 7))
    d_model = num_heads * d_k
    return dict(batch=int(r.integers(2, 5)), seq=int(r.integers(3, 10)), d_model=d_model, num_heads=num_heads,
                d_ff=d_model * int(r.integers(2, 5)) + int(r.integers(0, 3)))


def _describe(s: dict, norm_first: bool) -> str:
    return (f"EncoderLayer(d_model={s['d_model']}, num_heads={s['num_heads']}, d_ff={s['d_ff']}, "
            f"norm_first={norm_first})")


def _padding_mask(r, batch: int, seq: int) -> np.ndarray:
    """(batch, seq) boolean, True = padding; every sequence keeps at least its first token,
    the first one is padded by at least one position."""
    lengths = r.integers(1, seq + 1, size=batch)
    lengths[0] = min(lengths[0], seq - 1)
    return np.arange(seq)[None, :] >= lengths[:, None]


def _expected_shapes(s: dict) -> dict[str, tuple]:
    ref = torch.nn.TransformerEncoderLayer(s["d_model"], s["num_heads"], s["d_ff"], dropout=0.0, batch_first=True)
    return {name: tuple(value.shape) for name, value in ref.state_dict().items()}


def _build_layer(cls, s: dict, norm_first: bool, r) -> tuple[object, dict[str, np.ndarray], str]:
    what = _describe(s, norm_first)
    module = call_student(cls, s["d_model"], s["num_heads"], s["d_ff"], norm_first=norm_first, what=what,
                          forbid=FORBID)
    types = _reject_built_ins(module, what)
    if "self_attn" in types and types["self_attn"] != MHA:
        fail(f"{what}: self.self_attn is a {types['self_attn']}; use nn.MultiheadAttention(d_model, num_heads, "
             f"batch_first=True), whose parameters the tests copy into nn.TransformerEncoderLayer.")
    state = student_state(module, what)
    shapes = _expected_shapes(s)
    missing = [name for name in PARAMS if name not in state]
    if missing:
        hints = []
        if any(n.startswith("self_attn.") for n in missing):
            hints.append("self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)")
        if any(n.startswith("linear") for n in missing):
            hints.append("self.linear1 = nn.Linear(d_model, d_ff), self.linear2 = nn.Linear(d_ff, d_model)")
        if any(n.startswith("norm") for n in missing):
            hints.append("self.norm1 = LayerNorm(d_model), self.norm2 = LayerNorm(d_model) (your LayerNorm, "
                         "with parameters `weight` and `bias`)")
        fail(f"{what} is missing the parameters {missing}; the tests copy your parameters into "
             f"nn.TransformerEncoderLayer by these names. Create: " + "; ".join(hints) + ".")
    for name in PARAMS:
        if state[name].shape != shapes[name]:
            fail(f"{what}: `{name}` has shape {state[name].shape}, expected {shapes[name]}.")
    load_student_state(module, _fresh(state, r), what)
    params = student_state(module, what)
    return module, {name: params[name] for name in PARAMS}, what


def _run(fn, x: np.ndarray, mask: np.ndarray | None, what: str) -> np.ndarray:
    args = ", key_padding_mask" if mask is not None else ""
    call = f"{what}(x{args}) with x of shape {x.shape}"
    kwargs = {} if mask is None else {"key_padding_mask": _t(mask)}
    got = call_student(fn, _t(x), what=call, forbid=FORBID, **kwargs)
    return as_array(got, call)


def collect_encoder_layer(cls, norm_first: bool, hidden: bool = False) -> Evidence:
    r = inputs.rng(hidden)
    s = _sizes(r, hidden)
    module, params, what = _build_layer(cls, s, norm_first, r)
    x = inputs.normal(r, s["batch"], s["seq"], s["d_model"])
    mask = _padding_mask(r, s["batch"], s["seq"])
    scenarios = [dict(label="no mask", x=x, mask=None),
                 dict(label=f"key_padding_mask (True = padding) with lengths {(~mask).sum(axis=1).tolist()}",
                      x=x, mask=mask)]
    for sc in scenarios:
        # A failure is kept and reported by the judge in scenario order, so the student hears
        # about the first scenario that goes wrong (and the maskless one can name the mistake).
        sc["got"] = sc["error"] = None
        try:
            sc["got"] = _run(module, sc["x"], sc["mask"], what)
        except CheckFailed as failure:
            sc["error"] = str(failure).strip()
    return dict(hidden=hidden, sizes=s, norm_first=norm_first, what=what, params=params, scenarios=scenarios)


def _reference(params, s, norm_first) -> torch.nn.TransformerEncoderLayer:
    return reference.encoder_layer_from(params, s["num_heads"], norm_first)


# How one sub-layer f is wrapped with its norm: the two right ways, and classic wrong ones.
_WRAP = {"post": lambda x, f, norm: norm(x + f(x)), "pre": lambda x, f, norm: x + f(norm(x))}
_WRONG_WRAPS = {
    "post": {
        "no residual, norm(sublayer(x)) instead of norm(x + sublayer(x))": lambda x, f, norm: norm(f(x)),
        "the residual sum was not normalized, x + sublayer(x) instead of norm(x + sublayer(x))":
            lambda x, f, norm: x + f(x),
    },
    "pre": {
        "no residual, sublayer(norm(x)) instead of x + sublayer(norm(x))": lambda x, f, norm: f(norm(x)),
        "the residual adds the normalized x, norm(x) + sublayer(norm(x)); pre-LN adds the sub-layer's "
        "output to the original x": lambda x, f, norm: norm(x) + f(norm(x)),
        "the norm was applied both before and after, norm(x + sublayer(norm(x))); pre-LN normalizes only "
        "the sub-layer's input": lambda x, f, norm: norm(x + f(norm(x))),
    },
}


def _composed(layer, x: np.ndarray, mask, attention_wrap, feed_forward_wrap) -> np.ndarray:
    """The reference layer's own sub-layers (`_sa_block`, `_ff_block`, norm1, norm2), wrapped
    the given ways: used to name a student's mistake, never as the expected answer."""
    m = None if mask is None else _t(mask)
    with torch.no_grad(), reference.no_fastpath():
        h = attention_wrap(_t(x), lambda z: layer._sa_block(z, None, m), layer.norm1)
        return feed_forward_wrap(h, layer._ff_block, layer.norm2).numpy()


def _encoder_mistakes(ev: Evidence, sc: dict) -> dict[str, np.ndarray]:
    params, s, nf, x, mask = ev["params"], ev["sizes"], ev["norm_first"], sc["x"], sc["mask"]
    run = reference.run_encoder_layer
    swapped = "pre-LN" if not nf else "post-LN"
    mistakes = {f"this is the {swapped} layer: post-LN (norm_first=False) normalizes after each residual "
                f"sum, x = norm(x + sublayer(x)); pre-LN (norm_first=True) normalizes each sub-layer's "
                f"input, x = x + sublayer(norm(x))": run(_reference(params, s, not nf), x, mask)}
    layer, form = _reference(params, s, nf), ("pre" if nf else "post")
    right = _WRAP[form]
    for hint, wrong in _WRONG_WRAPS[form].items():
        mistakes[f"in the feed-forward sub-layer: {hint}"] = _composed(layer, x, mask, right, wrong)
        mistakes[f"in the attention sub-layer: {hint}"] = _composed(layer, x, mask, wrong, right)
        mistakes[f"in both sub-layers: {hint}"] = _composed(layer, x, mask, wrong, wrong)
    if mask is not None:
        mistakes["the key_padding_mask was ignored: pass it to self.self_attn(..., key_padding_mask=...)"] = \
            run(_reference(params, s, nf), x, None)
    else:
        ref = _reference(params, s, nf)
        mistakes["self_attn treats axis 0 as the sequence: create nn.MultiheadAttention with "
                 "batch_first=True"] = np.swapaxes(run(ref, np.swapaxes(x, 0, 1)), 0, 1)
    return mistakes


def judge_encoder_layer(ev: Evidence) -> None:
    ref = _reference(ev["params"], ev["sizes"], ev["norm_first"])
    for sc in ev["scenarios"]:
        if sc["error"]:
            fail(sc["error"])
        expected = reference.run_encoder_layer(ref, sc["x"], sc["mask"])
        got = sc["got"]
        with context(before=f"Test case: {ev['what']}, x of shape {sc['x'].shape}, {sc['label']}"
                            f"{', sizes drawn at grading time' if ev['hidden'] else ''}."):
            expect_shape(got, expected.shape, "Your layer's output", "An encoder layer keeps the shape "
                                                                     "(batch, seq, d_model).")
            # Padded positions are set to 0 on both sides: only real positions are compared.
            keep = np.ones(got.shape[:2], dtype=bool) if sc["mask"] is None else ~sc["mask"]

            def real(a):
                return np.where(keep[..., None], a, 0.0)

            where = "" if sc["mask"] is None else " (at the real, non-padded positions)"
            hint = diagnose(real(got), {k: real(v) for k, v in _encoder_mistakes(ev, sc).items()}, atol=ATOL)
            expect_close(real(got), real(expected), f"Your layer's output{where}", atol=ATOL, rtol=RTOL,
                         hint=hint or LAYER_NORM_FIRST)
    passed(f"{ev['what']} matches nn.TransformerEncoderLayer with your parameters, with and without a "
           f"padding mask{', sizes drawn at grading time' if ev['hidden'] else ''}.")


def check_encoder_layer_post_ln(cls, hidden: bool = False) -> None:
    """EncoderLayer(..., norm_first=False) against nn.TransformerEncoderLayer (post-LN)."""
    judge_encoder_layer(collect_encoder_layer(cls, False, hidden))


def check_encoder_layer_pre_ln(cls, hidden: bool = False) -> None:
    """EncoderLayer(..., norm_first=True) against nn.TransformerEncoderLayer(norm_first=True)."""
    judge_encoder_layer(collect_encoder_layer(cls, True, hidden))


# ============================================================ the residual sub-layer
def collect_feed_forward_sublayer(cls, hidden: bool = False) -> Evidence:
    """feed_forward_sublayer(x) of a post-LN and of a pre-LN layer, on the same sizes."""
    r = inputs.rng(hidden)
    s = _sizes(r, hidden)
    runs = []
    for norm_first in (False, True):
        module, params, what = _build_layer(cls, s, norm_first, r)
        x = inputs.normal(r, s["batch"], s["seq"], s["d_model"])
        method = student_method(module, "feed_forward_sublayer", what)
        runs.append(dict(norm_first=norm_first, what=f"{what}.feed_forward_sublayer", params=params, x=x,
                         got=_run(method, x, None, f"{what}.feed_forward_sublayer")))
    return dict(hidden=hidden, sizes=s, runs=runs)


def _sublayer_mistakes(layer, x: np.ndarray, norm_first: bool) -> dict[str, np.ndarray]:
    x = reference._t(x)
    ff, norm = layer._ff_block, layer.norm2
    with torch.no_grad():
        if norm_first:
            h = norm(x)
            mistakes = {
                "no residual: x + ... is missing, the sub-layer's output replaces x": ff(h),
                "the residual adds the normalized x, norm2(x) + ff(norm2(x)); pre-LN adds the sub-layer's "
                "output to the original x": h + ff(h),
                "this is the post-LN form, norm2(x + ff(x)); with norm_first=True normalize the input: "
                "x + ff(norm2(x))": norm(x + ff(x)),
                "norm2 was applied both before and after (norm2(x + ff(norm2(x)))); pre-LN normalizes "
                "only the sub-layer's input": norm(x + ff(h)),
            }
        else:
            mistakes = {
                "no residual: norm2(ff(x)) instead of norm2(x + ff(x))": norm(ff(x)),
                "the residual sum was not normalized: post-LN is norm2(x + ff(x))": x + ff(x),
                "this is the pre-LN form, x + ff(norm2(x)); with norm_first=False normalize after the "
                "residual sum: norm2(x + ff(x))": x + ff(norm(x)),
            }
    return {hint: value.numpy() for hint, value in mistakes.items()}


def judge_feed_forward_sublayer(ev: Evidence) -> None:
    s = ev["sizes"]
    for run in ev["runs"]:
        layer = _reference(run["params"], s, run["norm_first"])
        expected = reference.feed_forward_sublayer(layer, run["x"], run["norm_first"])
        form = "pre-LN: x + ff(norm2(x))" if run["norm_first"] else "post-LN: norm2(x + ff(x))"
        with context(before=f"Test case: {run['what']}(x), x of shape {run['x'].shape}"
                            f"{', sizes drawn at grading time' if ev['hidden'] else ''}. Expected {form}, "
                            f"ff(x) = linear2(relu(linear1(x)))."):
            expect_close(run["got"], expected, "Your sub-layer's output", atol=ATOL, rtol=RTOL,
                         hint=diagnose(run["got"], _sublayer_mistakes(layer, run["x"], run["norm_first"]),
                                       atol=ATOL) or LAYER_NORM_FIRST)
    passed(f"feed_forward_sublayer matches nn.TransformerEncoderLayer's residual feed-forward sub-layer, "
           f"post-LN and pre-LN{', sizes drawn at grading time' if ev['hidden'] else ''}.")


def check_feed_forward_sublayer(cls, hidden: bool = False) -> None:
    """EncoderLayer.feed_forward_sublayer(x): residual connection + LayerNorm around the
    feed-forward block, post-LN and pre-LN."""
    judge_feed_forward_sublayer(collect_feed_forward_sublayer(cls, hidden))
