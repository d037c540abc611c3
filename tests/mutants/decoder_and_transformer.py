"""Classic wrong answers to the exercise decoder-and-transformer (chapter 6).

Each mutant is the instructor's solution with one classic mistake edited in (`_edit`
fails loudly if the solution changes and an edit no longer applies).
"""
from __future__ import annotations

from mutants import Mutant, edit_solution

NB = "decoder_and_transformer"
POST, PRE, STACK, GREEDY = ("test_decoder_layer", "test_decoder_layer_norm_first", "test_transformer",
                            "test_greedy_decode")


def _edit(cell: str, *pairs: tuple[str, str]) -> dict[str, str]:
    return edit_solution("decoder-and-transformer", NB, cell, *pairs)


_CROSS = "return self.multihead_attn(x, memory, memory, key_padding_mask=memory_key_padding_mask,"
_DECODE = "logits = model.decode(ys, memory)  # (batch, len, vocab_size)"

MUTANTS = [
    Mutant("causal-mask-left-out", NB, _edit("decoder_layer", ("attn_mask=tgt_mask", "attn_mask=None")),
           must_fail=(POST, PRE, STACK), says="tgt_mask", must_pass=(GREEDY,)),
    Mutant("cross-attention-from-decoder", NB, _edit("decoder_layer", (_CROSS, "return self.multihead_attn(x, x, x,")),
           must_fail=(POST, PRE), says="keys and values from the decoder's own sequence",
           must_pass=(GREEDY,)),
    Mutant("memory-padding-ignored", NB, _edit("decoder_layer", (_CROSS, "return self.multihead_attn(x, memory, memory,")),
           must_fail=(POST, PRE, STACK), says="memory_key_padding_mask"),
    Mutant("residuals-missing", NB, _edit("decoder_layer",
                                          ("x = x + self.self_attention(", "x = self.self_attention("),
                                          ("x = x + self.cross_attention(", "x = self.cross_attention("),
                                          ("x = x + self.feed_forward(", "x = self.feed_forward("),
                                          ("self.norm1(x + self.", "self.norm1(self."),
                                          ("self.norm2(x + self.", "self.norm2(self."),
                                          ("self.norm3(x + self.", "self.norm3(self.")),
           must_fail=(POST, PRE), says="residual connections are missing"),
    Mutant("pre-and-post-ln-swapped", NB, _edit("decoder_layer", ("if self.norm_first:", "if not self.norm_first:")),
           must_fail=(POST,), says="this is the pre-LN layer"),
    Mutant("wraps-nn-decoder-layer", NB, {"decoder_layer": (
        "class DecoderLayer(nn.TransformerDecoderLayer):\n"
        "    def __init__(self, d_model, num_heads, d_ff, norm_first=False):\n"
        "        super().__init__(d_model, num_heads, d_ff, dropout=0.0, batch_first=True, norm_first=norm_first)\n")},
           must_fail=(POST, PRE, STACK), says="no points", must_pass=(GREEDY,)),
    Mutant("decoder-final-norm-missing", NB, _edit("decoder", ("return self.norm(x)", "return x")),
           must_fail=(STACK,), says="final LayerNorm (decoder.norm)", must_pass=(POST, PRE, GREEDY)),
    Mutant("greedy-no-feedback", NB, _edit("greedy_decode", (_DECODE, "logits = model.decode(ys[:, :1], memory)")),
           must_fail=(GREEDY,), says="instead of feeding back", must_pass=(POST, PRE, STACK)),
    Mutant("greedy-first-position-logits", NB, _edit("greedy_decode", ("logits[:, -1]", "logits[:, 0]")),
           must_fail=(GREEDY,), says="the first position, not the last"),
    Mutant("greedy-teacher-forcing-source", NB, _edit("greedy_decode", (
        _DECODE, "logits = model.decode(torch.cat([ys[:, :1], src[:, :ys.shape[1] - 1]], 1), memory)")),
           must_fail=(GREEDY,), says="teacher forcing with the wrong input"),
    Mutant("greedy-drops-start-token", NB, _edit("greedy_decode", ("return ys  # (batch, max_len)",
                                                                   "return ys[:, 1:]")),
           must_fail=(GREEDY,), says="has shape"),
]
