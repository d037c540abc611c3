"""Checks for the decoder-and-transformer exercise (chapter 6, the architecture).

The student writes a `DecoderLayer`, a `Decoder` stack, an encoder-decoder
`Transformer` and `greedy_decode`. Their layers are compared with PyTorch's
`nn.TransformerDecoderLayer` and `nn.Transformer` holding the same parameters (loaded
into the student's module by name, so the attribute names must be PyTorch's). Greedy
decoding is checked on a Seq2Seq model built around `nn.Transformer`: every token the
student's loop emits must be the model's argmax given the tokens before it.

Mask conventions are nn.Transformer's, since the student passes the masks on to
`nn.MultiheadAttention`: `tgt_mask` is a float (tgt_len, tgt_len) mask added to the
scores (`nn.Transformer.generate_square_subsequent_mask`: -inf above the diagonal);
`memory_key_padding_mask` / `src_key_padding_mask` is boolean (batch, src_len),
True at PADDED positions (the ones to ignore).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from autograder import inputs, reference
from autograder.checks import (as_array, call_student, diagnose, expect_close, expect_finite,
                               expect_shape, fail, passed)

FORBID = ("transformer_decoder",)
BUILTINS = (nn.TransformerDecoderLayer, nn.TransformerDecoder, nn.Transformer)
ATOL, RTOL = 1e-8, 1e-6


# ------------------------------------------------------------------------- helpers
def _build(cls, args: tuple, kwargs: dict, what: str) -> nn.Module:
    """Instantiate the student's class, reject built-in decoders, move to float64."""
    module = call_student(cls, *args, what=what, forbid=FORBID, **kwargs)
    if not isinstance(module, nn.Module):
        fail(f"{what} should create a torch.nn.Module, got {type(module).__name__}. "
             f"Does your class inherit from nn.Module and call super().__init__()?")
    for name, sub in module.named_modules():
        if isinstance(sub, BUILTINS):
            fail(f"{what} contains a {type(sub).__name__} (at `{name or 'self'}`). This exercise asks "
                 f"you to wire the decoder yourself, so it gives no points for wrapping PyTorch's "
                 f"decoder. (nn.MultiheadAttention, nn.LayerNorm, nn.Linear and, for the encoder, "
                 f"nn.TransformerEncoderLayer / nn.TransformerEncoder are allowed.)")
    return module.to(torch.float64).eval()


def _load(ref: nn.Module, student: nn.Module, what: str, naming: str) -> None:
    try:
        reference.copy_parameters(ref, student)
    except ValueError as problems:
        fail(f"The parameters of {what} do not match PyTorch's by name and shape, so they cannot be "
             f"copied from the reference:\n{problems}\n{naming}")


def _padding_mask(r: np.random.Generator, batch: int, src_len: int) -> torch.Tensor:
    """Boolean (batch, src_len), True at padded positions: random lengths >= 2, and the
    first row unpadded."""
    lengths = r.integers(2, src_len + 1, size=batch)
    lengths[0] = src_len
    lengths[-1] = min(lengths[-1], src_len - 1)  # at least one row really padded
    return torch.arange(src_len)[None, :] >= torch.as_tensor(lengths)[:, None]


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

LAYER_NAMING = ("Name the parts as nn.TransformerDecoderLayer does: self_attn and multihead_attn "
                "(nn.MultiheadAttention(d_model, num_heads, batch_first=True)), linear1 (d_model -> "
                "d_ff), linear2 (d_ff -> d_model), norm1, norm2, norm3 (nn.LayerNorm(d_model)), all with "
                "biases, and no other parameters.")
STACK_NAMING = ("Name the parts as nn.Transformer does: encoder.layers.<i> "
                "(nn.TransformerEncoderLayer), encoder.norm, decoder.layers.<i> (your DecoderLayer), "
                "decoder.norm.")


# ------------------------------------------------------------------- decoder layer
def _layer_mistakes(ref: nn.TransformerDecoderLayer, tgt, memory, mask, pad) -> dict[str, np.ndarray]:
    """What classic wiring mistakes would output, computed with PyTorch's own layer."""
    run = reference.run_decoder_layer
    out: dict[str, np.ndarray] = {}
    if mask is not None:
        out["the self-attention ignores tgt_mask, so each target position also sees the positions "
            "after it (pass tgt_mask to self_attn as attn_mask)"] = run(ref, tgt, memory, None, pad)
    if pad is not None:
        out["the cross-attention ignores memory_key_padding_mask, so the decoder attends to padded "
            "source positions (pass it to multihead_attn as key_padding_mask)"] = run(ref, tgt, memory, mask, None)
    try:  # uses PyTorch's private sub-blocks; skip the diagnosis if they change
        sa, mha, ff = ref._sa_block, ref._mha_block, ref._ff_block
        with _patched(ref, _mha_block=lambda x, mem, am, kpm, ic=False: mha(x, x, None, None, False)):
            out["the cross-attention takes its keys and values from the decoder's own sequence; they "
                "must come from the encoder output: multihead_attn(x, memory, memory)"] = run(ref, tgt, memory, mask, pad)
        with _patched(ref, _sa_block=lambda x, *a: sa(x, *a) - x, _mha_block=lambda x, *a: mha(x, *a) - x,
                      _ff_block=lambda x: ff(x) - x):
            out["the residual connections are missing: each sub-layer's input must be added back to "
                "its output (x + sublayer(x))"] = run(ref, tgt, memory, mask, pad)
    except AttributeError:
        pass
    with _patched(ref, norm_first=not ref.norm_first):
        order = ("pre-LN (normalising before each sub-layer)" if not ref.norm_first
                 else "post-LN (normalising after each residual sum)")
        out[f"your layer computes {order}, the other order: norm_first={ref.norm_first} means "
            + ("norm(x + sublayer(x))" if not ref.norm_first else "x + sublayer(norm(x))")] = run(ref, tgt, memory, mask, pad)
    return out


def check_decoder_layer(DecoderLayer, hidden: bool = False, norm_first: bool = False) -> None:
    """DecoderLayer(d_model, num_heads, d_ff, norm_first) against nn.TransformerDecoderLayer."""
    r = inputs.rng(hidden)
    g = inputs.torch_generator(r)
    if hidden:
        s = inputs.draw_sizes(r, num_heads=(1, 3), d_k=(3, 5), d_ff=(6, 24), batch=(2, 4), tgt_len=(3, 7))
        s["src_len"] = s["tgt_len"] + int(r.integers(1, 4))
    else:
        s = dict(num_heads=2, d_k=4, d_ff=16, batch=2, tgt_len=5, src_len=7)
    d_model = s["num_heads"] * s["d_k"]
    b, t, m = s["batch"], s["tgt_len"], s["src_len"]
    sizes = (f"d_model={d_model}, num_heads={s['num_heads']}, d_ff={s['d_ff']}, norm_first={norm_first}; "
             f"tgt ({b}, {t}, {d_model}), memory ({b}, {m}, {d_model})")
    what = f"DecoderLayer({d_model}, {s['num_heads']}, {s['d_ff']}, norm_first={norm_first})"

    student = _build(DecoderLayer, (d_model, s["num_heads"], s["d_ff"]), {"norm_first": norm_first}, what)
    ref = reference.randomize_(reference.decoder_layer(d_model, s["num_heads"], s["d_ff"], norm_first), g)
    _load(ref, student, what, LAYER_NAMING)

    tgt = torch.randn(b, t, d_model, generator=g, dtype=torch.float64)
    memory = torch.randn(b, m, d_model, generator=g, dtype=torch.float64)
    mask = reference.square_subsequent_mask(t)
    pad = _padding_mask(r, b, m)
    cases = [("with the causal tgt_mask and a memory padding mask", mask, pad)]
    if hidden:
        cases.append(("with tgt_mask=None (no mask: every target position sees all the others)", None, None))
    for label, tgt_mask, padding in cases:
        with torch.no_grad(), reference.no_fastpath():
            got = call_student(student, tgt.clone(), memory.clone(), tgt_mask=tgt_mask,
                               memory_key_padding_mask=padding, what=f"{what}.forward", forbid=FORBID)
        got = as_array(got, f"{what}.forward")
        expect_shape(got, (b, t, d_model), f"The output of {what}",
                     "The decoder layer returns one d_model vector per target position: (batch, tgt_len, "
                     "d_model). Return only the output tensor (not the attention weights).")
        expected = reference.run_decoder_layer(ref, tgt, memory, tgt_mask, padding)
        hint = diagnose(got, _layer_mistakes(ref, tgt, memory, tgt_mask, padding), atol=ATOL)
        expect_close(got, expected, f"The output of {what} {label} ({sizes})", atol=ATOL, rtol=RTOL,
                     hint=hint or "Check the order: masked self-attention, then cross-attention over "
                                  "the encoder memory, then the feed-forward network (linear1, ReLU, "
                                  "linear2), each with its residual and LayerNorm; and batch_first=True "
                                  "in nn.MultiheadAttention.")
    passed(f"{what} matches nn.TransformerDecoderLayer ({sizes}).")


# -------------------------------------------------------------------- transformer
def _stack_mistakes(ref: nn.Transformer, src, tgt, mask, pad) -> dict[str, np.ndarray]:
    out = {}
    with torch.no_grad(), reference.no_fastpath():
        def run(tgt_mask=mask, enc_pad=pad, mem_pad=pad):
            return ref(src, tgt, tgt_mask=tgt_mask, src_key_padding_mask=enc_pad,
                       memory_key_padding_mask=mem_pad).numpy()
        with _patched(ref.decoder, norm=None):
            out["the decoder stack does not apply its final LayerNorm (decoder.norm) after the last "
                "layer"] = run()
        with _patched(ref.encoder, norm=None):
            out["the encoder stack does not apply its final LayerNorm (encoder.norm) after the last "
                "layer"] = run()
        out["the decoder's cross-attention is not given src_key_padding_mask (as "
            "memory_key_padding_mask), so it attends to padded source positions"] = run(mem_pad=None)
        out["the encoder is not given src_key_padding_mask"] = run(enc_pad=None)
        out["tgt_mask does not reach the decoder layers"] = run(tgt_mask=None)
    return out


def check_transformer(Transformer, hidden: bool = False) -> None:
    """Transformer(d_model, num_heads, num_encoder_layers, num_decoder_layers, d_ff)
    against nn.Transformer(..., dropout=0.0, batch_first=True)."""
    r = inputs.rng(hidden)
    g = inputs.torch_generator(r)
    if hidden:
        s = inputs.draw_sizes(r, num_heads=(1, 3), d_k=(3, 5), d_ff=(6, 24), enc=(1, 3), dec=(1, 3),
                              batch=(2, 4), src_len=(4, 8), tgt_len=(3, 7))
    else:
        s = dict(num_heads=2, d_k=4, d_ff=16, enc=2, dec=2, batch=2, src_len=6, tgt_len=5)
    d_model = s["num_heads"] * s["d_k"]
    b, m, t = s["batch"], s["src_len"], s["tgt_len"]
    what = f"Transformer({d_model}, {s['num_heads']}, {s['enc']}, {s['dec']}, {s['d_ff']})"
    sizes = f"src ({b}, {m}, {d_model}), tgt ({b}, {t}, {d_model}), causal tgt_mask, source padding mask"

    student = _build(Transformer, (d_model, s["num_heads"], s["enc"], s["dec"], s["d_ff"]), {}, what)
    ref = reference.randomize_(reference.transformer(d_model, s["num_heads"], s["enc"], s["dec"], s["d_ff"]), g)
    _load(ref, student, what, STACK_NAMING)

    src = torch.randn(b, m, d_model, generator=g, dtype=torch.float64)
    tgt = torch.randn(b, t, d_model, generator=g, dtype=torch.float64)
    mask = reference.square_subsequent_mask(t)
    pad = _padding_mask(r, b, m)
    with torch.no_grad(), reference.no_fastpath():
        got = call_student(student, src.clone(), tgt.clone(), tgt_mask=mask, src_key_padding_mask=pad,
                           what=f"{what}.forward", forbid=FORBID)
    got = as_array(got, f"{what}.forward")
    expect_shape(got, (b, t, d_model), f"The output of {what}",
                 "The Transformer returns the decoder's output, one vector per target position: "
                 "(batch, tgt_len, d_model).")
    expected = reference.run_transformer(ref, src, tgt, mask, pad)
    hint = diagnose(got, _stack_mistakes(ref, src, tgt, mask, pad), atol=ATOL)
    expect_close(got, expected, f"The output of {what} ({sizes})", atol=ATOL, rtol=RTOL,
                 hint=hint or "Check the data flow: memory = encoder(src, src_key_padding_mask=...), "
                              "then decoder(tgt, memory, tgt_mask=..., memory_key_padding_mask=the source "
                              "padding mask); each stack runs its layers in order, then its final norm.")
    passed(f"{what} matches nn.Transformer ({sizes}).")


# ------------------------------------------------------------------ greedy decode
def check_greedy_decode(greedy_decode: Callable, hidden: bool = False) -> None:
    """greedy_decode(model, src, start_id, max_len) -> (batch, max_len) token ids.

    Run on a Seq2Seq around nn.Transformer with random weights. Greedy decoding is
    defined by a property that needs no second implementation: the output starts with
    start_id, and every later token is the argmax of the model's logits at the last
    position given exactly the tokens before it. With a causal decoder one forward pass
    over the student's own tokens gives all those logits at once.
    """
    r = inputs.rng(hidden)
    g = inputs.torch_generator(r)
    if hidden:
        s = inputs.draw_sizes(r, vocab=(8, 16), num_heads=(1, 2), d_k=(4, 8), layers=(1, 2), batch=(2, 5),
                              max_len=(4, 8))
        s["src_len"] = s["max_len"] + int(r.integers(0, 3))
        start_id = int(r.integers(0, s["vocab"]))
    else:
        s = dict(vocab=10, num_heads=2, d_k=4, layers=1, batch=3, max_len=6, src_len=7)
        start_id = 1
    d_model = s["num_heads"] * s["d_k"]
    b, n = s["batch"], s["max_len"]
    for _ in range(100):  # a random model whose greedy output is not one token repeated
        model = reference.seq2seq_reference(s["vocab"], d_model, s["num_heads"], s["layers"], 2 * d_model, g)
        src = torch.randint(0, s["vocab"], (b, s["src_len"]), generator=g)
        greedy = reference.greedy_reference(model, src, start_id, n)
        if (greedy[:, 2:] != greedy[:, 1:2]).any(dim=1).all():
            break
    call = f"greedy_decode(model, src, start_id={start_id}, max_len={n})"
    sizes = f"src ({b}, {s['src_len']}), vocabulary of {s['vocab']} tokens"

    with torch.no_grad(), reference.no_fastpath():
        got = call_student(greedy_decode, model, src.clone(), start_id, n, what=call)
    if isinstance(got, torch.Tensor) and got.is_floating_point():
        fail(f"{call} returned floating-point values ({got.dtype}); return token ids "
             f"(a torch.long tensor), e.g. from logits.argmax(-1).")
    ys = as_array(got, call)
    expect_shape(ys, (b, n), f"The output of {call}",
                 f"It holds max_len={n} token ids per source sequence: the start token at position 0, "
                 f"then {n - 1} predicted tokens.")
    expect_finite(ys, f"The output of {call}")
    if not np.array_equal(ys, np.round(ys)):
        fail(f"{call} returned values that are not whole numbers: return token ids.")
    if not (ys[:, 0] == start_id).all():
        fail(f"Position 0 of your output should be the start token {start_id} in every row; got "
             f"{ys[:, 0].astype(int).tolist()}. The decoder begins from the start token alone.")
    if ys.min() < 0 or ys.max() >= s["vocab"]:
        fail(f"{call} returned ids outside the vocabulary 0..{s['vocab'] - 1}.")

    ids = torch.as_tensor(ys.astype(np.int64))
    with torch.no_grad(), reference.no_fastpath():
        memory = model.encode(src)
        best = model.decode(ids[:, :-1], memory).argmax(-1).numpy()  # (batch, max_len - 1)
        first = model.decode(ids[:, :1], memory)[:, -1].argmax(-1).numpy()  # (batch,)
        forced = model.decode(torch.cat([ids[:, :1], src[:, :n - 2]], 1), memory).argmax(-1).numpy() \
            if s["src_len"] >= n - 2 else None
    wrong = ys[:, 1:] != best
    if wrong.any():
        row, pos = (int(i) for i in np.argwhere(wrong)[0])
        mistakes = {"each step decodes from the start token alone instead of feeding back the tokens "
                    "predicted so far (or reads the logits of the first position, not the last)":
                    np.repeat(first[:, None], n - 1, axis=1).astype(np.float64)}
        if forced is not None:
            mistakes["the decoder is fed the source tokens (teacher forcing with the wrong input) instead "
                     "of its own predictions"] = forced.astype(np.float64)
        hint = diagnose(ys[:, 1:], mistakes)
        fail(f"Row {row}, position {pos + 1} of your output is token {int(ys[row, pos + 1])}, but given "
             f"the tokens before it, {ys[row, :pos + 1].astype(int).tolist()}, the model's most likely "
             f"next token is {int(best[row, pos])} ({sizes}). Greedy decoding appends the argmax of the "
             f"logits at the LAST position and feeds the longer sequence back to the decoder. {hint}")
    passed(f"{call} decodes greedily ({sizes}).")
