"""Reference computations, built on PyTorch's own modules.

Expected values in every test come from here, computed at grading time on the drawn
inputs, never from stored arrays. Everything runs in float64 so that tolerances can
be tight.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _t(x) -> torch.Tensor:
    return x.detach().to(torch.float64) if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float64)


def additive_mask(mask, dtype=torch.float64) -> torch.Tensor | None:
    """Course convention: a boolean mask is True where attention is ALLOWED (as in
    `F.scaled_dot_product_attention`); an additive float mask is added to the scores."""
    if mask is None:
        return None
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    if m.dtype == torch.bool:
        return torch.zeros(m.shape, dtype=dtype).masked_fill(~m, float("-inf"))
    return m.to(dtype)


def attention(q, k, v, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Scaled dot-product attention: (output, weights) as float64 NumPy arrays.

    q: (..., seq_q, d_k); k: (..., seq_k, d_k); v: (..., seq_k, d_v)
    mask: boolean (True = may attend) or additive, broadcastable to (..., seq_q, seq_k).
    The output is PyTorch's `scaled_dot_product_attention`. A query whose every key is
    masked gets all-zero weights and an all-zero output (PyTorch's convention too).
    """
    q, k, v = _t(q), _t(k), _t(v)
    add = additive_mask(mask)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=add)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if add is not None:
        scores = scores + add
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows -> 0
    return output.numpy(), weights.numpy()


def causal_mask(seq_len: int) -> torch.Tensor:
    """Boolean (seq, seq) mask, True on and below the diagonal: position i sees j <= i."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()


def dot_product_scores(q, k) -> np.ndarray:
    """Raw scores, every query with every key: (..., seq_q, seq_k) float64 NumPy array."""
    return torch.einsum("...qd,...kd->...qk", _t(q), _t(k)).numpy()


def softmax(x, axis: int = -1) -> np.ndarray:
    """`torch.softmax` along `axis`, as a float64 NumPy array."""
    return torch.softmax(_t(x), dim=axis).numpy()


def attention_grads(q, k, v, grad_output, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of sum(output * grad_output) w.r.t. q, k, v (float64 NumPy arrays), by
    autograd through `F.scaled_dot_product_attention`. Fully masked rows give zero grads."""
    q, k, v = (_t(x).clone().requires_grad_() for x in (q, k, v))
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(mask))
    output.backward(_t(grad_output))
    return q.grad.numpy(), k.grad.numpy(), v.grad.numpy()


# ------------------------------------------------------------- multi-head attention
def linear_params(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of an nn.Linear as float64 copies."""
    bias = None if layer.bias is None else layer.bias.detach().to(torch.float64).clone()
    return layer.weight.detach().to(torch.float64).clone(), bias


def multihead_from_projections(d_model: int, num_heads: int, w_q: nn.Linear, w_k: nn.Linear,
                               w_v: nn.Linear, w_o: nn.Linear) -> nn.MultiheadAttention:
    """An `nn.MultiheadAttention(batch_first=True)` holding copies of four projections.

    PyTorch stacks the three input projections into `in_proj_weight` (3*d_model,
    d_model) in the order query, key, value; `out_proj` is the output projection.
    """
    ref = nn.MultiheadAttention(d_model, num_heads, bias=True, batch_first=True, dropout=0.0,
                                dtype=torch.float64)
    with torch.no_grad():
        weights, biases = zip(*(linear_params(layer) for layer in (w_q, w_k, w_v)))
        ref.in_proj_weight.copy_(torch.cat(weights))
        ref.in_proj_bias.copy_(torch.cat([b if b is not None else torch.zeros(d_model, dtype=torch.float64)
                                          for b in biases]))
        w, b = linear_params(w_o)
        ref.out_proj.weight.copy_(w)
        ref.out_proj.bias.copy_(b if b is not None else torch.zeros(d_model, dtype=torch.float64))
    return ref.eval()


def multihead_attention(ref: nn.MultiheadAttention, query, key, value, key_padding_mask=None,
                        attn_mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Run a reference `nn.MultiheadAttention` on float64 inputs.

    Masks follow `nn.MultiheadAttention`'s own convention, which the multi-head
    exercise copies: a boolean `key_padding_mask` (batch, seq_k) or `attn_mask`
    (seq_q, seq_k) is True where attention is NOT allowed (the opposite of
    `F.scaled_dot_product_attention`); a float mask is added to the scores.
    Returns (output, weights averaged over heads) as float64 NumPy arrays.
    """
    def as_mask(m):
        if m is None:
            return None
        m = m if isinstance(m, torch.Tensor) else torch.as_tensor(np.asarray(m))
        return m if m.dtype == torch.bool else m.to(torch.float64)

    with torch.no_grad():
        out, weights = ref(_t(query), _t(key), _t(value), key_padding_mask=as_mask(key_padding_mask),
                           attn_mask=as_mask(attn_mask), need_weights=True, average_attn_weights=True)
    return out.numpy(), weights.numpy()


# ==================================================================================
# Decoder layer, encoder-decoder Transformer, Seq2Seq wrapper
# (decoder-and-transformer exercise). PyTorch's nn.TransformerDecoderLayer and
# nn.Transformer; the checks load the same parameters into the student's modules.
# ==================================================================================
import contextlib as _contextlib


@_contextlib.contextmanager
def no_fastpath():
    """Run nn.Transformer* and nn.MultiheadAttention on their plain Python path.

    In eval mode PyTorch may take "fast paths" (fused kernels; nested tensors that
    return zeros at padded positions). Grading compares exact values, so it turns them
    off while the reference and the student's module run.
    """
    saved = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(saved)


def randomize_(module: nn.Module, generator: torch.Generator, scale: float = 0.3) -> nn.Module:
    """Fill every parameter with random float64 values (LayerNorm gains near 1, biases
    non-zero), so a parameter used in the wrong place changes the output."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            parts = name.split(".")
            gain = len(parts) > 1 and "norm" in parts[-2] and parts[-1] == "weight"
            p.copy_(1.0 + 0.2 * noise if gain else scale * noise)
    return module


def state_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """A module's state dict as float64 NumPy copies (what gets loaded into a student's module)."""
    return {k: v.detach().to(torch.float64).numpy().copy() for k, v in module.state_dict().items()}


def square_subsequent_mask(seq_len: int) -> torch.Tensor:
    """PyTorch's causal mask for nn.Transformer*: float (seq, seq), 0 on and below the
    diagonal, -inf above it (position i may not look at j > i)."""
    return nn.Transformer.generate_square_subsequent_mask(seq_len, dtype=torch.float64)


def decoder_layer(d_model: int, num_heads: int, d_ff: int, norm_first: bool = False) -> nn.TransformerDecoderLayer:
    """The reference decoder layer: ReLU, no dropout, batch first, float64, eval mode."""
    return nn.TransformerDecoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True,
                                      norm_first=norm_first, dtype=torch.float64).eval()


def transformer(d_model: int, num_heads: int, num_encoder_layers: int, num_decoder_layers: int,
                d_ff: int) -> nn.Transformer:
    """The reference encoder-decoder stack (post-LN, with final encoder and decoder norms)."""
    return nn.Transformer(d_model, num_heads, num_encoder_layers, num_decoder_layers, d_ff, dropout=0.0,
                          batch_first=True, dtype=torch.float64).eval()


def run_decoder_layer(ref: nn.TransformerDecoderLayer, tgt, memory, tgt_mask=None,
                      memory_key_padding_mask=None) -> np.ndarray:
    """(batch, tgt_len, d_model) output of a reference decoder layer, as float64 NumPy."""
    with torch.no_grad(), no_fastpath():
        out = ref(_t(tgt), _t(memory), tgt_mask=None if tgt_mask is None else _t(tgt_mask),
                  memory_key_padding_mask=memory_key_padding_mask)
    return out.numpy()


def run_transformer(ref: nn.Transformer, src, tgt, tgt_mask=None, src_key_padding_mask=None) -> np.ndarray:
    """(batch, tgt_len, d_model) output of nn.Transformer; the source padding mask hides
    padded source positions both in the encoder and in the decoder's cross-attention."""
    with torch.no_grad(), no_fastpath():
        out = ref(_t(src), _t(tgt), tgt_mask=None if tgt_mask is None else _t(tgt_mask),
                  src_key_padding_mask=src_key_padding_mask, memory_key_padding_mask=src_key_padding_mask)
    return out.numpy()


class Seq2Seq(nn.Module):
    """Token ids in, next-token logits out: embeddings + a Transformer + a generator.

    The same class as in the decoder-and-transformer notebook (where the grader builds
    one in the student's kernel and loads this one's parameters into it). `transformer`
    is anything with `.encoder(x)` and `.decoder(y, memory, tgt_mask=...)` as
    nn.Transformer has; by default an nn.Transformer.
    """

    def __init__(self, vocab_size, d_model, num_heads=2, num_layers=1, d_ff=32, transformer=None, max_len=64):
        super().__init__()
        if transformer is None:
            transformer = nn.Transformer(d_model, num_heads, num_layers, num_layers, d_ff, dropout=0.0,
                                         batch_first=True)
        self.transformer = transformer
        self.src_embed = nn.Embedding(vocab_size, d_model)
        self.tgt_embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)  # learned positions
        self.generator = nn.Linear(d_model, vocab_size)

    def embed(self, table, ids):
        positions = torch.arange(ids.shape[1])
        return table(ids) + self.pos_embed(positions)  # (batch, seq, d_model)

    def encode(self, src):
        """src: (batch, src_len) token ids -> memory (batch, src_len, d_model)."""
        return self.transformer.encoder(self.embed(self.src_embed, src))

    def decode(self, tgt, memory):
        """tgt: (batch, tgt_len) token ids -> logits (batch, tgt_len, vocab_size)."""
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=memory.dtype)
        out = self.transformer.decoder(self.embed(self.tgt_embed, tgt), memory, tgt_mask=mask)
        return self.generator(out)  # (batch, tgt_len, vocab_size)

    def forward(self, src, tgt):
        return self.decode(tgt, self.encode(src))


def seq2seq_reference(vocab_size: int, d_model: int, num_heads: int, num_layers: int, d_ff: int,
                      generator: torch.Generator) -> Seq2Seq:
    """A randomly initialised Seq2Seq around nn.Transformer (float64, eval mode).

    Embeddings and generator are drawn larger than the inner weights, so the next-token
    choice depends on the position and on the tokens fed back (fewer outputs that just
    repeat one token).
    """
    model = Seq2Seq(vocab_size, d_model, num_heads, num_layers, d_ff)
    randomize_(model.to(torch.float64), generator, scale=0.3)
    with torch.no_grad():
        model.pos_embed.weight.mul_(1.5 / 0.3)
        for table in (model.src_embed, model.tgt_embed, model.generator):
            table.weight.mul_(1.0 / 0.3)
    return model.eval()


def greedy_reference(model: Seq2Seq, src: torch.Tensor, start_id: int, max_len: int) -> torch.Tensor:
    """The reference greedy loop on a reference model: (batch, max_len) ids, start_id then
    max_len - 1 tokens, each the argmax of the logits at the last position, fed back in."""
    with torch.no_grad(), no_fastpath():
        memory = model.encode(src)  # (batch, src_len, d_model)
        ys = torch.full((src.shape[0], 1), start_id, dtype=torch.long)  # (batch, 1)
        for _ in range(max_len - 1):
            next_token = model.decode(ys, memory)[:, -1].argmax(-1)  # (batch,)
            ys = torch.cat([ys, next_token[:, None]], dim=1)
    return ys


# ==================================================================================
# Tokens and positions, feed-forward, layer norm, encoder layer
# (tokens-and-case, positional-encoding-and-ffn and encoder-layer exercises).
# nn.Embedding, nn.Linear, nn.LayerNorm and nn.TransformerEncoderLayer with a
# student's parameters copied in. The sinusoidal table is the paper's formula
# itself: PyTorch has no module for it.
# ==================================================================================
def sinusoidal_encoding(seq_len: int, d_model: int) -> np.ndarray:
    """(seq_len, d_model) sinusoidal positional encoding of "Attention Is All You Need".

    PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model)).
    Written entry by entry, straight from the definition (slow and plain on purpose).
    For an odd d_model the last column, index d_model - 1 = 2i, is a sine.
    """
    table = np.empty((seq_len, d_model))
    for pos in range(seq_len):
        for j in range(d_model):
            two_i = j - j % 2  # columns 2i and 2i+1 share one frequency
            angle = pos / 10000.0 ** (two_i / d_model)
            table[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return table


def _linear(weight, bias) -> nn.Linear:
    """A float64 nn.Linear holding copies of `weight` (out, in) and `bias` (out,) or None."""
    weight = _t(weight)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(_t(bias))
    return layer


def embed_and_project(ids, embedding_weight, pos_table, weight, bias) -> np.ndarray:
    """nn.Linear(nn.Embedding(ids) + pos_table[:seq]) as float64 NumPy.

    ids: (batch, seq) token ids; embedding_weight: (vocab, d_model); pos_table:
    (max_len, d_model); weight (d_out, d_model), bias (d_out,): a projection such as W_q.
    Returns (batch, seq, d_out).
    """
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    embedding = nn.Embedding.from_pretrained(_t(embedding_weight), freeze=True)
    with torch.no_grad():
        x = embedding(ids) + _t(pos_table)[: ids.shape[1]]  # (batch, seq, d_model)
        return _linear(weight, bias)(x).numpy()  # (batch, seq, d_out)


def feed_forward(x, w1, b1, w2, b2, activation="relu") -> np.ndarray:
    """The feed-forward path of nn.TransformerEncoderLayer with the given weights.

    w1: (d_ff, d_model), w2: (d_model, d_ff). Computes, with PyTorch's own layer,
    linear2(dropout(activation(linear1(x)))) with dropout 0; `activation` is "relu" or
    "gelu" (exact, erf-based, as nn.TransformerEncoderLayer uses), or a callable (which
    nn.TransformerEncoderLayer accepts too; the checks use it to build classic mistakes).
    """
    d_ff, d_model = np.shape(w1)
    layer = nn.TransformerEncoderLayer(d_model, 1, d_ff, dropout=0.0, activation=activation,
                                       batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        for linear, w, b in ((layer.linear1, w1, b1), (layer.linear2, w2, b2)):
            linear.weight.copy_(_t(w))
            linear.bias.copy_(_t(b))
        return layer.linear2(layer.dropout(layer.activation(layer.linear1(_t(x))))).numpy()


def layer_norm(x, weight, bias, eps: float) -> np.ndarray:
    """nn.LayerNorm over the last axis with the given gain, bias and eps, as float64 NumPy."""
    weight = _t(weight)
    norm = nn.LayerNorm(weight.shape[0], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(_t(bias))
        return norm(_t(x)).numpy()


def encoder_layer_from(params: dict, num_heads: int, norm_first: bool, eps: float = 1e-5
                       ) -> nn.TransformerEncoderLayer:
    """nn.TransformerEncoderLayer (ReLU, dropout 0, batch first, float64, eval mode) with
    `params` loaded by name: its state-dict keys (self_attn.in_proj_weight, ...,
    linear1.weight, ..., norm2.bias) mapped to arrays."""
    d_ff, d_model = np.shape(params["linear1.weight"])
    layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=0.0, activation="relu",
                                       layer_norm_eps=eps, batch_first=True, norm_first=norm_first,
                                       dtype=torch.float64)
    layer.load_state_dict({name: _t(value) for name, value in params.items()}, strict=True)
    return layer.eval()


def run_encoder_layer(layer: nn.TransformerEncoderLayer, x, key_padding_mask=None) -> np.ndarray:
    """(batch, seq, d_model) output of a reference encoder layer, on PyTorch's plain path.

    key_padding_mask: (batch, seq) boolean, True = padding (nn.TransformerEncoderLayer's
    convention). With the fast path off, padded positions get ordinary outputs too.
    """
    mask = None if key_padding_mask is None else torch.as_tensor(np.asarray(key_padding_mask), dtype=torch.bool)
    with torch.no_grad(), no_fastpath():
        return layer(_t(x), src_key_padding_mask=mask).numpy()


def feed_forward_sublayer(layer: nn.TransformerEncoderLayer, x, norm_first: bool) -> np.ndarray:
    """The second sub-layer of nn.TransformerEncoderLayer, as its forward composes it:
    post-LN norm2(x + ff(x)), pre-LN x + ff(norm2(x)); ff is the layer's `_ff_block`."""
    x = _t(x)
    with torch.no_grad():
        if norm_first:
            return (x + layer._ff_block(layer.norm2(x))).numpy()
        return layer.norm2(x + layer._ff_block(x)).numpy()
