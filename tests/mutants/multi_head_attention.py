"""Classic wrong implementations of `MultiHeadAttention` (exercise multi-head-attention).

The whole class lives in one solution cell, so each mutant is the instructor's class
with one classic mistake edited in (`_edit` fails loudly if the solution changes and an
edit no longer applies), except the two that call PyTorch's built-ins.
"""
from __future__ import annotations

from mutants import Mutant, edit_solution

NB = "multi_head_attention"
CELL = "multi_head_attention_class"
SPLIT, MERGE, FORWARD = "test_split_heads", "test_merge_heads", "test_forward_output"
PADDING, ATTN_MASK, WEIGHTS = "test_key_padding_mask", "test_attn_mask", "test_attention_weights"
ALL = (SPLIT, MERGE, FORWARD, PADDING, ATTN_MASK, WEIGHTS)



def _edit(*pairs: tuple[str, str]) -> dict[str, str]:
    return edit_solution("multi-head-attention", NB, CELL, *pairs)


_SCORES = "scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)"
_SOFTMAX = "weights = torch.softmax(scores, dim=-1)"
_MASKING = """        if attn_mask is not None:
            scores = scores + as_bias(attn_mask, scores.dtype)  # (seq_q, seq_k) broadcasts
        if key_padding_mask is not None:
            scores = scores + as_bias(key_padding_mask, scores.dtype)[:, None, None, :]  # (batch, 1, 1, seq_k)
        weights = torch.softmax(scores, dim=-1)  # (batch, heads, seq_q, seq_k)
"""

# A module that hands the work to nn.MultiheadAttention (and keeps W_q.. around unused).
_WRAPPER = '''
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        self.mha = nn.MultiheadAttention(d_model, num_heads, batch_first=True)

    def split_heads(self, x):
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.d_k).transpose(1, 2)

    def merge_heads(self, x):
        batch, _, seq, _ = x.shape
        return x.transpose(1, 2).reshape(batch, seq, self.d_model)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        return self.mha(query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask)
'''

MUTANTS = [
    Mutant("scaled-by-sqrt-d-model", NB,
           _edit((_SCORES, _SCORES.replace("self.d_k", "self.d_model"))),
           must_fail=(FORWARD, PADDING, ATTN_MASK, WEIGHTS), says="sqrt(d_model)",
           must_pass=(SPLIT, MERGE)),
    Mutant("heads-wrong-order", NB,
           _edit(("x.reshape(batch, seq, self.num_heads, self.d_k)  # (batch, seq, heads, d_k)",
                  "x.reshape(batch, seq, self.d_k, self.num_heads)"),
                 ("return blocks.permute(0, 2, 1, 3)  # (batch, heads, seq, d_k)",
                  "return blocks.permute(0, 3, 1, 2)"),
                 ("blocks = x.permute(0, 2, 1, 3)  # (batch, seq, heads, d_k)",
                  "blocks = x.permute(0, 2, 3, 1)  # (batch, seq, d_k, heads)")),
           must_fail=(SPLIT, MERGE, FORWARD), says="wrong order"),
    Mutant("no-output-projection", NB,
           _edit(("output = self.W_o(self.merge_heads(context))", "output = self.merge_heads(context)")),
           must_fail=(FORWARD,), says="no output projection", must_pass=(SPLIT, MERGE, WEIGHTS)),
    Mutant("softmax-over-queries", NB,
           _edit((_SOFTMAX, _SOFTMAX.replace("dim=-1", "dim=-2"))),
           must_fail=(FORWARD, WEIGHTS), says="wrong axis", must_pass=(SPLIT, MERGE)),
    Mutant("mask-after-softmax", NB,
           _edit((_MASKING, """        weights = torch.softmax(scores, dim=-1)  # (batch, heads, seq_q, seq_k)
        if attn_mask is not None:
            weights = weights.masked_fill(as_bias(attn_mask, scores.dtype) == float("-inf"), 0.0)
        if key_padding_mask is not None:
            blocked = as_bias(key_padding_mask, scores.dtype) == float("-inf")
            weights = weights.masked_fill(blocked[:, None, None, :], 0.0)
""")),
           must_fail=(PADDING, ATTN_MASK), says="after the softmax",
           must_pass=(SPLIT, MERGE, FORWARD, WEIGHTS)),
    Mutant("key-padding-inverted", NB,
           # the convention of F.scaled_dot_product_attention: True = may attend
           _edit(("as_bias(key_padding_mask, scores.dtype)[:, None, None, :]",
                  "as_bias(~key_padding_mask, scores.dtype)[:, None, None, :]")),
           must_fail=(PADDING,), says="inverted the meaning of `key_padding_mask`",
           must_pass=(SPLIT, MERGE, FORWARD, WEIGHTS)),
    Mutant("weights-per-head", NB,
           _edit(("return output, weights.mean(dim=1)", "return output, weights")),
           must_fail=(WEIGHTS,), says="average them over the heads",
           must_pass=(SPLIT, MERGE, FORWARD, PADDING, ATTN_MASK)),
    Mutant("uses-sdpa", NB,
           # the weights by hand (they must be returned), the output from the built-in
           _edit(("context = torch.matmul(weights, v)",
                  "bias = scores - torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)  # the masks\n"
                  "        context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)")),
           must_fail=(FORWARD, PADDING, ATTN_MASK, WEIGHTS), says="from scratch",
           must_pass=(SPLIT, MERGE)),
    Mutant("wraps-nn-multiheadattention", NB, {CELL: _WRAPPER.strip("\n")},
           must_fail=ALL, says="from scratch"),
]
