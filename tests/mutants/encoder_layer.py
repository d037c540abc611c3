"""Classic wrong answers to the exercise encoder-layer (chapter 6).

Each mutant is the instructor's solution cell with one classic mistake edited in (`_edit`
fails loudly if the solution changes and an edit no longer applies).
"""
from __future__ import annotations

from mutants import Mutant, edit_solution

NB = "encoder_layer"
LN, FF, POST, PRE = ("test_layer_norm", "test_feed_forward_sublayer", "test_encoder_layer_post_ln",
                     "test_encoder_layer_pre_ln")


def _edit(cell: str, *pairs: tuple[str, str]) -> dict[str, str]:
    return edit_solution("encoder-layer", NB, cell, *pairs)


_SQRT = "x_hat = (x - mean) / torch.sqrt(var + self.eps)"
_VAR = "var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)"
_MEAN = "mean = x.mean(dim=-1, keepdim=True)"
_ATTN_MASK = "out, _ = self.self_attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False)"

MUTANTS = [
    Mutant("ln-eps-outside-sqrt", NB, _edit("layer_norm", (_SQRT, "x_hat = (x - mean) / (torch.sqrt(var) + self.eps)")),
           must_fail=(LN,), says="inside the square root"),
    Mutant("ln-unbiased-variance", NB, _edit("layer_norm", (_VAR, "var = x.var(dim=-1, keepdim=True)")),
           must_fail=(LN,), says="unbiased variance"),
    Mutant("ln-wrong-axis", NB, _edit("layer_norm", (_MEAN, "mean = x.mean(dim=-2, keepdim=True)"),
                                      (_VAR, "var = ((x - mean) ** 2).mean(dim=-2, keepdim=True)")),
           must_fail=(LN,), says="wrong axis"),
    Mutant("ln-calls-builtin", NB, _edit("layer_norm", (
        "        mean = x.mean(dim=-1, keepdim=True)",
        "        return nn.functional.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)\n"
        "        mean = x.mean(dim=-1, keepdim=True)")),
           must_fail=(LN,), says="from scratch"),
    Mutant("residual-missing", NB, _edit("encoder_layer", ("return self.norm2(x + feed_forward(x))",
                                                           "return self.norm2(feed_forward(x))")),
           must_fail=(FF, POST), says="no residual", must_pass=(LN, PRE)),
    Mutant("pre-and-post-ln-swapped", NB, _edit("encoder_layer", ("self.norm_first = norm_first",
                                                                  "self.norm_first = not norm_first")),
           must_fail=(FF, POST, PRE), says="LN", must_pass=(LN,)),
    Mutant("norm-applied-twice-pre-ln", NB, _edit("encoder_layer", (
        "return x + feed_forward(self.norm2(x))  # pre-LN",
        "return self.norm2(x + feed_forward(self.norm2(x)))")),
           must_fail=(FF, PRE), says="both before and after", must_pass=(LN, POST)),
    Mutant("padding-mask-ignored", NB, _edit("encoder_layer", (_ATTN_MASK,
                                                               "out, _ = self.self_attn(h, h, h, need_weights=False)")),
           must_fail=(POST, PRE), says="key_padding_mask was ignored", must_pass=(LN, FF)),
    # When grading, answer cells are also scanned for the built-in's name, so this costs the
    # LayerNorm test too; locally the tripwire and the submodule check catch it.
    Mutant("norm-is-nn-layernorm", NB, _edit("encoder_layer", ("self.norm1 = LayerNorm(d_model)",
                                                               "self.norm1 = nn.LayerNorm(d_model)")),
           must_fail=(FF, POST, PRE), says="from scratch"),
    Mutant("attention-not-batch-first", NB, _edit("encoder_layer", (
        "nn.MultiheadAttention(d_model, num_heads, batch_first=True)", "nn.MultiheadAttention(d_model, num_heads)")),
           must_fail=(POST, PRE), says="batch_first=True", must_pass=(LN, FF)),
]
