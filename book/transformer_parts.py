"""The pieces of a Transformer, collected from the chapters that build them.

Each chapter builds one piece step by step in its cells, then shows the finished
function or class from this file (with a `literalinclude`) and imports it from here,
so later chapters can reuse it without copying:

- `attention`, `MultiHeadAttention`: chapters 2 and 3 (02_self_attention, 03_attention_scores).
- positional encoding, feed-forward, layer norm, encoder layer: chapters 4-6 (below).

Conventions: tensors are batch-first; a boolean mask is True where attention is
ALLOWED (as in `torch.nn.functional.scaled_dot_product_attention`).
"""
from __future__ import annotations

import math

import torch
from torch import nn


# ----------------------------------------------------------------------- attention
def attention(query, key, value, mask=None):
    """Scaled dot-product attention: softmax(Q K^T / sqrt(d_k)) V.

    query: (..., seq_q, d_k); key: (..., seq_k, d_k); value: (..., seq_k, d_v).
    mask: boolean, True = may attend, broadcastable to (..., seq_q, seq_k)
          (a float mask is added to the scores instead).
    Returns (output (..., seq_q, d_v), weights (..., seq_q, seq_k)).
    A query whose every key is masked gets zero weights and a zero output.
    """
    d_k = query.shape[-1]
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)  # (..., seq_q, seq_k)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))  # (..., seq_q, seq_k)
        else:
            scores = scores + mask  # (..., seq_q, seq_k)
    weights = torch.softmax(scores, dim=-1)  # (..., seq_q, seq_k), rows sum to 1
    # A fully masked row is softmax(-inf, ..., -inf) = 0/0 = NaN: define it as 0.
    weights = weights.nan_to_num(0.0)  # (..., seq_q, seq_k)
    output = weights @ value  # (..., seq_q, d_v)
    return output, weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention: num_heads scaled dot-product attentions side by side.

    Each head works in its own d_k = d_model // num_heads dimensional slice of the
    projected queries, keys and values; the heads' outputs are concatenated back to
    d_model and mixed by W_o. Parameters match `nn.MultiheadAttention` (with bias).
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        assert d_model % num_heads == 0, "d_model must be divisible by num_heads"
        self.d_model, self.num_heads = d_model, num_heads
        self.d_k = d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)

    def split_heads(self, x):
        """(batch, seq, d_model) -> (batch, heads, seq, d_k)."""
        batch, seq, _ = x.shape
        x = x.view(batch, seq, self.num_heads, self.d_k)  # (batch, seq, heads, d_k)
        return x.transpose(1, 2)  # (batch, heads, seq, d_k)

    def merge_heads(self, x):
        """(batch, heads, seq, d_k) -> (batch, seq, d_model): the inverse of split_heads."""
        batch, _, seq, _ = x.shape
        x = x.transpose(1, 2)  # (batch, seq, heads, d_k)
        return x.reshape(batch, seq, self.d_model)  # (batch, seq, d_model)

    def forward(self, query, key, value, mask=None):
        """query: (batch, seq_q, d_model); key, value: (batch, seq_k, d_model).

        mask: boolean, True = may attend, broadcastable to (batch, heads, seq_q, seq_k),
        e.g. (seq_q, seq_k) for a causal mask or (batch, 1, 1, seq_k) for padding.
        Returns (output (batch, seq_q, d_model), weights (batch, heads, seq_q, seq_k)).
        """
        q = self.split_heads(self.W_q(query))  # (batch, heads, seq_q, d_k)
        k = self.split_heads(self.W_k(key))  # (batch, heads, seq_k, d_k)
        v = self.split_heads(self.W_v(value))  # (batch, heads, seq_k, d_k)
        heads, weights = attention(q, k, v, mask)  # (batch, heads, seq_q, d_k), (batch, heads, seq_q, seq_k)
        output = self.W_o(self.merge_heads(heads))  # (batch, seq_q, d_model)
        return output, weights


# ------------------------------------------------------------- positional encoding
def positional_encoding(seq_len: int, d_model: int, dtype=None) -> torch.Tensor:
    """Sinusoidal positional encoding (Vaswani et al., 2017), shape (seq_len, d_model).

    PE[pos, 2i] = sin(pos / 10000^(2i / d_model)),  PE[pos, 2i+1] = cos(same angle).
    An odd d_model is fine: its last column is a sine without a cosine partner.
    """
    dtype = torch.get_default_dtype() if dtype is None else dtype
    pos = torch.arange(seq_len, dtype=torch.float64)[:, None]  # (seq_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d_model / 2),)
    angle = pos / 10000 ** (two_i / d_model)  # (seq_len, ceil(d_model / 2))
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)  # (seq_len, d_model)
    pe[:, 0::2] = torch.sin(angle)  # even dimensions
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])  # odd dimensions
    return pe.to(dtype)


def causal_mask(seq_len: int) -> torch.Tensor:
    """Boolean (seq_len, seq_len) mask, True on and below the diagonal: i sees j <= i."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()


# ------------------------------------------------------------------- feed-forward
class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear(d_model, d_ff), activation, Linear(d_ff, d_model).

    Applied to every position separately with the same weights: it never mixes positions.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: nn.Module | None = None):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.activation = nn.ReLU() if activation is None else activation
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        """x: (batch, seq, d_model) -> (batch, seq, d_model)."""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (batch, seq, d_model)


# ------------------------------------------------------------------ encoder layer
class EncoderLayer(nn.Module):
    """Self-attention and feed-forward sub-layers, each with a residual connection and LayerNorm.

    norm_first=False is post-LN, the original paper's:  x = LN(x + Sublayer(x)).
    norm_first=True  is pre-LN, used by most modern models: x = x + Sublayer(LN(x)).
    Parameters correspond one to one to `nn.TransformerEncoderLayer(batch_first=True)`.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=eps)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm_first = norm_first

    def _attention_block(self, x, mask):
        out, self.attn_weights = self.self_attn(x, x, x, mask)  # (batch, seq, d_model); weights kept to inspect
        return self.dropout1(out)

    def _feed_forward_block(self, x):
        return self.dropout2(self.feed_forward(x))

    def forward(self, x, mask=None):
        """x: (batch, seq, d_model); mask: boolean, True = may attend (see MultiHeadAttention)."""
        if self.norm_first:  # pre-LN
            x = x + self._attention_block(self.norm1(x), mask)
            x = x + self._feed_forward_block(self.norm2(x))
        else:  # post-LN
            x = self.norm1(x + self._attention_block(x, mask))
            x = self.norm2(x + self._feed_forward_block(x))
        return x  # (batch, seq, d_model)


# ------------------------------------------------------------------ decoder layer
class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder's output, feed-forward.

    Each sub-layer has a residual connection and LayerNorm (post-LN or pre-LN as in
    EncoderLayer). Parameters correspond to `nn.TransformerDecoderLayer(batch_first=True)`.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.cross_attn = MultiHeadAttention(d_model, num_heads)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=eps)
        self.norm2 = nn.LayerNorm(d_model, eps=eps)
        self.norm3 = nn.LayerNorm(d_model, eps=eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.norm_first = norm_first

    def _self_block(self, x, mask):
        out, self.self_weights = self.self_attn(x, x, x, mask)  # (batch, seq_tgt, d_model)
        return self.dropout1(out)

    def _cross_block(self, x, memory, mask):
        # queries from the decoder, keys and values from the encoder's output
        out, self.cross_weights = self.cross_attn(x, memory, memory, mask)  # (batch, seq_tgt, d_model)
        return self.dropout2(out)

    def _feed_forward_block(self, x):
        return self.dropout3(self.feed_forward(x))

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        """x: (batch, seq_tgt, d_model); memory: (batch, seq_src, d_model).

        tgt_mask: usually causal_mask(seq_tgt); memory_mask: e.g. (batch, 1, 1, seq_src) padding.
        """
        if self.norm_first:  # pre-LN
            x = x + self._self_block(self.norm1(x), tgt_mask)
            x = x + self._cross_block(self.norm2(x), memory, memory_mask)
            x = x + self._feed_forward_block(self.norm3(x))
        else:  # post-LN
            x = self.norm1(x + self._self_block(x, tgt_mask))
            x = self.norm2(x + self._cross_block(x, memory, memory_mask))
            x = self.norm3(x + self._feed_forward_block(x))
        return x  # (batch, seq_tgt, d_model)
