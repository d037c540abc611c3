"""Checks for the exercise `decoder-and-transformer` (chapter 6, the architecture).

The student writes

    DecoderLayer(d_model, num_heads, d_ff, norm_first=False) with `self_attn` and
        `multihead_attn` (nn.MultiheadAttention(d_model, num_heads, batch_first=True):
        allowed, attention itself was the multi-head exercise), `linear1`, `linear2`,
        `norm1`, `norm2`, `norm3` (nn.LayerNorm allowed: LayerNorm was the encoder
        exercise), and forward(tgt, memory, tgt_mask=None, memory_key_padding_mask=None):
        masked self-attention, cross-attention (queries from the decoder, keys and values
        from `memory`), feed-forward, each with residual + LayerNorm (post-LN or pre-LN);
    Decoder(d_model, num_heads, d_ff, num_layers): `layers` (nn.ModuleList) + final `norm`;
    Transformer(d_model, num_heads, num_encoder_layers, num_decoder_layers, d_ff):
        `encoder` (nn.TransformerEncoder of nn.TransformerEncoderLayer, with its final
        norm: allowed) and `decoder` (their Decoder); forward(src, tgt, tgt_mask=None,
        src_key_padding_mask=None);
    greedy_decode(model, src, start_id, max_len) -> (batch, max_len) ids, where `model`
        is the notebook's Seq2Seq (model.encode(src), model.decode(tgt, memory) -> logits).

Mask conventions are nn.Transformer's (the student passes the masks on to
nn.MultiheadAttention): `tgt_mask` is a float (tgt_len, tgt_len) mask added to the
scores (nn.Transformer.generate_square_subsequent_mask: -inf above the diagonal);
`memory_key_padding_mask` / `src_key_padding_mask` is boolean (batch, src_len), True
at PADDED positions.

References: nn.TransformerDecoderLayer and nn.Transformer (dropout 0, batch first,
float64, plain path) with random parameters, which are loaded into the student's
modules by name. Greedy decoding: the notebook's Seq2Seq is built in the student's
kernel with the parameters of a reference Seq2Seq around nn.Transformer; the student's
tokens are judged with the reference model: each must be the argmax of the logits at
the last position given the tokens before it.

Every check is `collect_*` (runs the student's code, returns plain evidence) then
`judge_*`; the student's objects are reached through `autograder.checks` only, so the
checks run the same on local objects and on sandbox handles.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from autograder import inputs, reference
from autograder.checks import (CheckFailed, as_array, call_student, context, diagnose, expect_close,
                               expect_finite, expect_shape, fail, load_student_state, passed,
                               student_isinstance, student_state, submodule_types)

__all__ = ["check_decoder_layer", "check_transformer", "check_greedy_decode"]

ATOL, RTOL = 1e-8, 1e-6  # float64 on both sides
FORBID = ("transformer_decoder",)
BUILT_IN = {"torch.nn.modules.transformer.TransformerDecoderLayer": "torch.nn.TransformerDecoderLayer",
            "torch.nn.modules.transformer.TransformerDecoder": "torch.nn.TransformerDecoder",
            "torch.nn.modules.transformer.Transformer": "torch.nn.Transformer"}
LAYER_NAMING = ("Name the parts as nn.TransformerDecoderLayer does: self_attn and multihead_attn "
                "(nn.MultiheadAttention(d_model, num_heads, batch_first=True)), linear1 (d_model -> d_ff), "
                "linear2 (d_ff -> d_model), norm1, norm2, norm3 (nn.LayerNorm(d_model)), all with biases, "
                "and no other parameters.")
STACK_NAMING = ("Name the parts as nn.Transformer does: encoder.layers.<i> (nn.TransformerEncoderLayer), "
                "encoder.norm, decoder.layers.<i> (your DecoderLayer), decoder.norm.")
SEQ2SEQ_NAMING = "Run the notebook's Seq2Seq cell unchanged: the grader loads its parameters by name."

Evidence = dict


# ------------------------------------------------------------------------- helpers
def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x))  # a copy: floats stay float64, booleans stay bool


def _build(cls, args: tuple, kwargs: dict, what: str, ref: nn.Module, naming: str, check_builtins: bool = True):
    """Instantiate the student's class, reject PyTorch's decoder, load `ref`'s parameters
    into it by name (float64, eval mode). Returns the student's module (or its handle)."""
    module = call_student(cls, *args, what=what, forbid=FORBID if check_builtins else (), **kwargs)
    if not student_isinstance(module, nn.Module):
        fail(f"{what} should create a torch.nn.Module. Does your class inherit from nn.Module and call "
             f"super().__init__() first?")
    if check_builtins:
        for name, kind in submodule_types(module).items():
            if kind in BUILT_IN or (not name and any(student_isinstance(module, getattr(nn, b.split(".")[-1]))
                                                     for b in BUILT_IN.values())):
                where = f"self.{name}" if name else "your class itself"
                fail(f"{what}: {where} is (or derives from) {BUILT_IN.get(kind, 'a PyTorch Transformer class')}. "
                     f"This exercise asks you to wire the decoder yourself, so it gives no points for using "
                     f"PyTorch's decoder, which the tests use as the reference. (Allowed: nn.MultiheadAttention, "
                     f"nn.LayerNorm, nn.Linear and, for the encoder, nn.TransformerEncoderLayer and "
                     f"nn.TransformerEncoder.)")
    state = student_state(module, what)
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: shape {state[k].shape}, expected {expected[k]}" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        lines = []
        if missing:
            lines.append("missing (PyTorch has them, yours does not): " + ", ".join(missing[:8])
                         + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            lines.append("unexpected (yours has them, PyTorch does not): " + ", ".join(unexpected[:8])
                         + (" ..." if len(unexpected) > 8 else ""))
        lines += wrong[:8]
        fail(f"The parameters of {what} do not match PyTorch's by name and shape, so the tests cannot copy "
             f"them:\n" + "\n".join(lines) + f"\n{naming}")
    load_student_state(module, reference.state_arrays(ref), what)
    return module


def _padding_mask(r: np.random.Generator, batch: int, src_len: int) -> np.ndarray:
    """Boolean (batch, src_len), True at padded positions; every row keeps >= 2 positions,
    the first row none padded, the last row at least one."""
    lengths = r.integers(2, src_len + 1, size=batch)
    lengths[0] = src_len
    lengths[-1] = min(lengths[-1], src_len - 1)
    return np.arange(src_len)[None, :] >= lengths[:, None]


@contextlib.contextmanager
def _patched(obj: nn.Module, **attrs):
    """Temporarily set attributes of a reference module (to compute classic mistakes)."""
    own = {k: k in vars(obj) or k in obj._modules for k in attrs}
    saved = {k: getattr(obj, k) for k in attrs}
    try:
        for k, v in attrs.items():
            setattr(obj, k, v)
        yield obj
    finally:
        for k in attrs:
            if own[k]:
                setattr(obj, k, saved[k])
            else:  # a method of the class, shadowed on the instance
                vars(obj).pop(k, None)


def _run_student(module, args: tuple, kwargs: dict, call: str) -> tuple[np.ndarray | None, str | None]:
    """(output as float64 NumPy, None) or (None, failure message)."""
    try:
        with torch.no_grad(), reference.no_fastpath():  # in the student's kernel (public tests)
            got = call_student(module, *args, what=call, forbid=FORBID, **kwargs)
        return as_array(got, call), None
    except CheckFailed as failure:
        return None, str(failure).strip()


# =================================================================== decoder layer
def _layer_sizes(r, hidden: bool) -> dict[str, int]:
    if not hidden:
        return dict(num_heads=2, d_k=4, d_ff=16, batch=2, tgt_len=5, src_len=7)
    # d_model >= 3: a LayerNorm over 2 numbers keeps little more than their order
    s = inputs.draw_sizes(r, num_heads=(1, 3), d_k=(3, 5), d_ff=(6, 24), batch=(2, 4), tgt_len=(3, 7))
    s["src_len"] = s["tgt_len"] + int(r.integers(1, 4))  # memory longer than the target
    return s


def collect_decoder_layer(cls, norm_first: bool, hidden: bool = False) -> Evidence:
    r = inputs.rng(hidden)
    g = inputs.torch_generator(r)
    s = _layer_sizes(r, hidden)
    d_model = s["num_heads"] * s["d_k"]
    b, t, m = s["batch"], s["tgt_len"], s["src_len"]
    what = f"DecoderLayer({d_model}, {s['num_heads']}, {s['d_ff']}, norm_first={norm_first})"
    ref = reference.randomize_(reference.decoder_layer(d_model, s["num_heads"], s["d_ff"], norm_first), g)
    module = _build(cls, (d_model, s["num_heads"], s["d_ff"]), {"norm_first": norm_first}, what, ref, LAYER_NAMING)
    tgt = inputs.normal(r, b, t, d_model)
    memory = inputs.normal(r, b, m, d_model)
    mask = reference.square_subsequent_mask(t).numpy()
    pad = _padding_mask(r, b, m)
    scenarios = [dict(label=f"the causal tgt_mask and a memory padding mask (source lengths "
                            f"{(~pad).sum(axis=1).tolist()})", mask=mask, pad=pad)]
    if hidden:
        scenarios.append(dict(label="tgt_mask=None and no padding mask (every target position may see every "
                                    "other one)", mask=None, pad=None))
    for sc in scenarios:
        kwargs = dict(tgt_mask=None if sc["mask"] is None else _t(sc["mask"]),
                      memory_key_padding_mask=None if sc["pad"] is None else _t(sc["pad"]))
        sc["got"], sc["error"] = _run_student(module, (_t(tgt), _t(memory)), kwargs, f"{what}(tgt, memory, ...)")
    return dict(hidden=hidden, sizes=s, d_model=d_model, norm_first=norm_first, what=what,
                params=reference.state_arrays(ref), tgt=tgt, memory=memory, scenarios=scenarios)


def _layer_reference(ev: Evidence) -> nn.TransformerDecoderLayer:
    s = ev["sizes"]
    ref = reference.decoder_layer(ev["d_model"], s["num_heads"], s["d_ff"], ev["norm_first"])
    ref.load_state_dict({k: _t(v) for k, v in ev["params"].items()})
    return ref


def _layer_mistakes(ref: nn.TransformerDecoderLayer, tgt, memory, mask, pad) -> dict[str, np.ndarray]:
    """What classic wiring mistakes output, computed with PyTorch's own layer (its
    sub-blocks rewired): used to name a mistake, never as the expected answer."""
    run = reference.run_decoder_layer
    pad_t = None if pad is None else _t(pad)
    out: dict[str, np.ndarray] = {}
    if mask is not None:
        out["the self-attention ignores tgt_mask, so each target position also sees the positions after "
            "it (pass tgt_mask to self_attn as attn_mask)"] = run(ref, tgt, memory, None, pad_t)
    if pad is not None:
        out["the cross-attention ignores memory_key_padding_mask, so the decoder attends to padded source "
            "positions (pass it to multihead_attn as key_padding_mask)"] = run(ref, tgt, memory, mask, None)
    try:  # PyTorch's private sub-blocks; without them, fewer diagnoses
        sa, mha, ff = ref._sa_block, ref._mha_block, ref._ff_block
        with _patched(ref, _mha_block=lambda x, mem, am, kpm, ic=False: mha(x, x, None, None, False)):
            out["the cross-attention takes its keys and values from the decoder's own sequence; they must "
                "come from the encoder's output: multihead_attn(x, memory, memory)"] = run(ref, tgt, memory, mask, pad_t)
        m = None if mask is None else _t(mask)
        with torch.no_grad(), reference.no_fastpath():
            x, mem = _t(tgt), _t(memory)
            if ref.norm_first:  # no residual: each sub-layer's output replaces x
                x = sa(ref.norm1(x), m, None)
                x = mha(ref.norm2(x), mem, None, pad_t)
                x = ff(ref.norm3(x))
            else:
                x = ref.norm1(sa(x, m, None))
                x = ref.norm2(mha(x, mem, None, pad_t))
                x = ref.norm3(ff(x))
        out["the residual connections are missing: each sub-layer's input must be added to its output "
            "(x + sublayer(...))"] = x.numpy()
    except AttributeError:
        pass
    if ref.norm_first:
        hint = ("this is the post-LN layer, norm(x + sublayer(x)); with norm_first=True each sub-layer's "
                "input is normalized: x + sublayer(norm(x))")
    else:
        hint = ("this is the pre-LN layer, x + sublayer(norm(x)); with norm_first=False (the paper's "
                "post-LN) the residual sum is normalized: norm(x + sublayer(x))")
    with _patched(ref, norm_first=not ref.norm_first):
        out[hint] = run(ref, tgt, memory, mask, pad_t)
    return out


def judge_decoder_layer(ev: Evidence) -> None:
    ref = _layer_reference(ev)
    b, t, d = ev["tgt"].shape
    m = ev["memory"].shape[1]
    for sc in ev["scenarios"]:
        if sc["error"]:
            fail(sc["error"])
        with context(before=f"Test case: {ev['what']}, tgt of shape {(b, t, d)}, memory of shape {(b, m, d)}, "
                            f"{sc['label']}{', sizes drawn at grading time' if ev['hidden'] else ''}."):
            expect_shape(sc["got"], (b, t, d), "Your layer's output",
                         "A decoder layer returns one d_model vector per target position, (batch, tgt_len, "
                         "d_model): return the output tensor only, not the attention weights.")
            expected = reference.run_decoder_layer(ref, ev["tgt"], ev["memory"], sc["mask"],
                                                   None if sc["pad"] is None else _t(sc["pad"]))
            hint = diagnose(sc["got"], _layer_mistakes(ref, ev["tgt"], ev["memory"], sc["mask"], sc["pad"]),
                            atol=ATOL)
            if not hint and sc["mask"] is None:
                hint = ("With tgt_mask=None the layer must not mask anything: take the mask from the argument, "
                        "do not build your own.")
            expect_close(sc["got"], expected, "Your layer's output", atol=ATOL, rtol=RTOL,
                         hint=hint or "Check the order: masked self-attention, then cross-attention over the "
                                      "encoder's memory, then the feed-forward network linear2(relu(linear1(x))), "
                                      "each with its residual and LayerNorm; and batch_first=True in "
                                      "nn.MultiheadAttention.")
    passed(f"{ev['what']} matches nn.TransformerDecoderLayer with your parameters"
           f"{' (sizes drawn at grading time)' if ev['hidden'] else ''}.")


def check_decoder_layer(cls, hidden: bool = False, norm_first: bool = False) -> None:
    """DecoderLayer(d_model, num_heads, d_ff, norm_first) against nn.TransformerDecoderLayer."""
    judge_decoder_layer(collect_decoder_layer(cls, norm_first, hidden))


# ===================================================================== transformer
def _stack_sizes(r, hidden: bool) -> dict[str, int]:
    if not hidden:
        return dict(num_heads=2, d_k=4, d_ff=16, enc=2, dec=2, batch=2, src_len=6, tgt_len=5)
    return inputs.draw_sizes(r, num_heads=(1, 3), d_k=(3, 5), d_ff=(6, 24), enc=(1, 3), dec=(1, 3),
                             batch=(2, 4), src_len=(4, 8), tgt_len=(3, 7))


def collect_transformer(cls, hidden: bool = False) -> Evidence:
    r = inputs.rng(hidden)
    g = inputs.torch_generator(r)
    s = _stack_sizes(r, hidden)
    d_model = s["num_heads"] * s["d_k"]
    b, m, t = s["batch"], s["src_len"], s["tgt_len"]
    what = f"Transformer({d_model}, {s['num_heads']}, {s['enc']}, {s['dec']}, {s['d_ff']})"
    ref = reference.randomize_(reference.transformer(d_model, s["num_heads"], s["enc"], s["dec"], s["d_ff"]), g)
    module = _build(cls, (d_model, s["num_heads"], s["enc"], s["dec"], s["d_ff"]), {}, what, ref, STACK_NAMING)
    src = inputs.normal(r, b, m, d_model)
    tgt = inputs.normal(r, b, t, d_model)
    mask = reference.square_subsequent_mask(t).numpy()
    pad = _padding_mask(r, b, m)
    got, error = _run_student(module, (_t(src), _t(tgt)), dict(tgt_mask=_t(mask), src_key_padding_mask=_t(pad)),
                              f"{what}(src, tgt, tgt_mask=..., src_key_padding_mask=...)")
    return dict(hidden=hidden, sizes=s, d_model=d_model, what=what, params=reference.state_arrays(ref),
                src=src, tgt=tgt, mask=mask, pad=pad, got=got, error=error)


def _stack_mistakes(ref: nn.Transformer, src, tgt, mask, pad) -> dict[str, np.ndarray]:
    out = {}
    pad = _t(pad)

    def run(tgt_mask=mask, enc_pad=pad, mem_pad=pad):
        with torch.no_grad(), reference.no_fastpath():
            return ref(_t(src), _t(tgt), tgt_mask=None if tgt_mask is None else _t(tgt_mask),
                       src_key_padding_mask=enc_pad, memory_key_padding_mask=mem_pad).numpy()

    with _patched(ref.decoder, norm=None):
        out["the decoder stack does not apply its final LayerNorm (decoder.norm) after the last layer"] = run()
    with _patched(ref.encoder, norm=None):
        out["the encoder stack does not apply its final LayerNorm (encoder.norm) after the last layer"] = run()
    out["the decoder's cross-attention is not given src_key_padding_mask (as memory_key_padding_mask), so it "
        "attends to padded source positions"] = run(mem_pad=None)
    out["the encoder is not given src_key_padding_mask"] = run(enc_pad=None)
    out["tgt_mask does not reach the decoder layers"] = run(tgt_mask=None)
    return out


def judge_transformer(ev: Evidence) -> None:
    if ev["error"]:
        fail(ev["error"])
    s = ev["sizes"]
    ref = reference.transformer(ev["d_model"], s["num_heads"], s["enc"], s["dec"], s["d_ff"])
    ref.load_state_dict({k: _t(v) for k, v in ev["params"].items()})
    b, t, d = ev["tgt"].shape
    with context(before=f"Test case: {ev['what']}, src of shape {ev['src'].shape}, tgt of shape {(b, t, d)}, "
                        f"causal tgt_mask, source lengths {(~ev['pad']).sum(axis=1).tolist()}"
                        f"{', sizes drawn at grading time' if ev['hidden'] else ''}."):
        expect_shape(ev["got"], (b, t, d), "Your Transformer's output",
                     "The Transformer returns the decoder's output, one vector per target position: "
                     "(batch, tgt_len, d_model).")
        expected = reference.run_transformer(ref, ev["src"], ev["tgt"], ev["mask"], _t(ev["pad"]))
        hint = diagnose(ev["got"], _stack_mistakes(ref, ev["src"], ev["tgt"], ev["mask"], ev["pad"]), atol=ATOL)
        expect_close(ev["got"], expected, "Your Transformer's output", atol=ATOL, rtol=RTOL,
                     hint=hint or "Check the data flow: memory = encoder(src, src_key_padding_mask=...), then "
                                  "decoder(tgt, memory, tgt_mask=..., memory_key_padding_mask=the source padding "
                                  "mask); each stack runs its layers in order, then its final norm. (If the "
                                  "DecoderLayer tests fail, fix DecoderLayer first.)")
    passed(f"{ev['what']} matches nn.Transformer with your parameters"
           f"{' (sizes drawn at grading time)' if ev['hidden'] else ''}.")


def check_transformer(cls, hidden: bool = False) -> None:
    """Transformer(d_model, num_heads, num_encoder_layers, num_decoder_layers, d_ff)
    against nn.Transformer(..., dropout=0.0, batch_first=True)."""
    judge_transformer(collect_transformer(cls, hidden))


# =================================================================== greedy decode
def _greedy_setup(r, hidden: bool):
    """Sizes, a reference Seq2Seq around nn.Transformer and a source batch on which
    greedy decoding is informative: in every row the greedy output is not one token
    repeated, and feeding other tokens back (the source's) changes some prediction."""
    g = inputs.torch_generator(r)
    if hidden:
        s = inputs.draw_sizes(r, vocab=(8, 16), num_heads=(1, 2), d_k=(4, 8), layers=(1, 2), batch=(2, 5),
                              max_len=(4, 8))
        s["src_len"] = s["max_len"] + int(r.integers(0, 3))
        s["start_id"] = int(r.integers(0, s["vocab"]))
    else:
        s = dict(vocab=10, num_heads=2, d_k=4, layers=1, batch=3, max_len=6, src_len=7, start_id=1)
    s["d_model"], s["d_ff"] = s["num_heads"] * s["d_k"], 4 * s["num_heads"] * s["d_k"]
    n = s["max_len"]
    for _ in range(100):
        model = reference.seq2seq_reference(s["vocab"], s["d_model"], s["num_heads"], s["layers"], s["d_ff"], g)
        src = torch.randint(0, s["vocab"], (s["batch"], s["src_len"]), generator=g)
        greedy = reference.greedy_reference(model, src, s["start_id"], n)
        with torch.no_grad(), reference.no_fastpath():
            other = model.decode(torch.cat([greedy[:, :1], src[:, :n - 2]], 1), model.encode(src)).argmax(-1)
        if (greedy[:, 2:] != greedy[:, 1:2]).any(dim=1).all() and (other != greedy[:, 1:]).any(dim=1).all():
            break
    return s, model, src


def collect_greedy_decode(greedy_decode, seq2seq_cls, hidden: bool = False) -> Evidence:
    r = inputs.rng(hidden)
    s, ref, src = _greedy_setup(r, hidden)
    what = (f"Seq2Seq({s['vocab']}, {s['d_model']}, num_heads={s['num_heads']}, num_layers={s['layers']}, "
            f"d_ff={s['d_ff']})")
    model = _build(seq2seq_cls, (s["vocab"], s["d_model"], s["num_heads"], s["layers"], s["d_ff"]), {}, what, ref,
                   SEQ2SEQ_NAMING, check_builtins=False)
    call = f"greedy_decode(model, src, start_id={s['start_id']}, max_len={s['max_len']})"
    got = call_student(greedy_decode, model, src.clone(), s["start_id"], s["max_len"], what=call)
    floating = isinstance(got, torch.Tensor) and got.is_floating_point()
    return dict(hidden=hidden, sizes=s, params=reference.state_arrays(ref), src=src.numpy(), call=call,
                got=as_array(got, call), floating=floating)


def judge_greedy_decode(ev: Evidence) -> None:
    s, call, ys = ev["sizes"], ev["call"], ev["got"]
    b, n, start_id = s["batch"], s["max_len"], s["start_id"]
    model = reference.Seq2Seq(s["vocab"], s["d_model"], s["num_heads"], s["layers"], s["d_ff"]).to(torch.float64)
    model.load_state_dict({k: _t(v) for k, v in ev["params"].items()})
    model.eval()
    src = torch.from_numpy(ev["src"])
    with context(before=f"Test case: {call} on a Seq2Seq with random weights, src of shape {tuple(src.shape)}, "
                        f"a vocabulary of {s['vocab']} tokens{', drawn at grading time' if ev['hidden'] else ''}."):
        if ev["floating"]:
            fail("Your greedy_decode returned floating-point values; return token ids (a torch.long tensor), "
                 "e.g. from logits.argmax(-1).")
        expect_shape(ys, (b, n), "Your output",
                     f"It holds max_len={n} token ids per source sequence: the start token at position 0, then "
                     f"{n - 1} predicted tokens.")
        expect_finite(ys, "Your output")
        if not np.array_equal(ys, np.round(ys)) or ys.min() < 0 or ys.max() >= s["vocab"]:
            fail(f"Your output holds values that are not token ids 0..{s['vocab'] - 1}.")
        if not (ys[:, 0] == start_id).all():
            fail(f"Position 0 of every row should be the start token {start_id}; got "
                 f"{ys[:, 0].astype(int).tolist()}. The decoder begins from the start token alone.")
        ids = torch.from_numpy(ys.astype(np.int64))
        with torch.no_grad(), reference.no_fastpath():
            memory = model.encode(src)
            # Causal decoder: one pass over the student's own tokens gives, at position p, the
            # logits for the token after ids[:, :p + 1]: greedy means ys[:, p + 1] is their argmax.
            best = model.decode(ids[:, :-1], memory).argmax(-1).numpy()  # (batch, max_len - 1)
            first = model.decode(ids[:, :1], memory)[:, -1].argmax(-1).numpy()  # (batch,)
            forced = model.decode(torch.cat([ids[:, :1], src[:, :n - 2]], 1), memory).argmax(-1).numpy()
        wrong = ys[:, 1:] != best
        if wrong.any():
            row, pos = (int(i) for i in np.argwhere(wrong)[0])
            hint = diagnose(ys[:, 1:], {
                "each step decodes from the start token alone instead of feeding back the tokens predicted so "
                "far (or reads the logits of the first position, not the last)":
                    np.repeat(first[:, None], n - 1, axis=1).astype(np.float64),
                "the decoder is fed the source tokens (teacher forcing with the wrong input) instead of its own "
                "predictions": forced.astype(np.float64)})
            fail(f"Row {row}, position {pos + 1} of your output is token {int(ys[row, pos + 1])}, but given the "
                 f"tokens before it, {ys[row, :pos + 1].astype(int).tolist()}, the model's most likely next token "
                 f"is {int(best[row, pos])}. Greedy decoding appends the argmax of the logits at the LAST "
                 f"position and feeds the longer sequence back to the decoder. {hint}")
    passed(f"{call} decodes greedily (src of shape {tuple(src.shape)}"
           f"{', drawn at grading time' if ev['hidden'] else ''}).")


def check_greedy_decode(greedy_decode, seq2seq_cls, hidden: bool = False) -> None:
    """greedy_decode(model, src, start_id, max_len) on the notebook's Seq2Seq, holding the
    parameters of a reference Seq2Seq around nn.Transformer."""
    judge_greedy_decode(collect_greedy_decode(greedy_decode, seq2seq_cls, hidden))
