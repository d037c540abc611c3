"""Classic wrong implementations for the scaled-dot-product-attention exercise (PyTorch)."""
from mutants import Mutant

NB = "scaled_dot_product_attention"
SDPA = "scaled_dot_product_attention"
ALL_SDPA_TESTS = ("test_sdpa_public", "test_sdpa_hidden", "test_masking_public", "test_masking_hidden",
                  "test_fully_masked_public", "test_fully_masked_hidden", "test_gradients_public",
                  "test_gradients_hidden")


def sdpa(scores="torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.shape[-1])",
         bool_mask="scores = scores.masked_fill(~attn_mask, -math.inf)",
         float_mask="scores = scores + attn_mask",
         weights="torch.softmax(scores.masked_fill(nowhere, 0.0), dim=-1).masked_fill(nowhere, 0.0)",
         output="torch.matmul(weights, value)", extra=""):
    """A working implementation with one line swapped for a classic mistake."""
    return (
        "def scaled_dot_product_attention(query, key, value, attn_mask=None):\n"
        f"    scores = {scores}\n"
        "    if attn_mask is not None and attn_mask.dtype == torch.bool:\n"
        f"        {bool_mask}\n"
        "    elif attn_mask is not None:\n"
        f"        {float_mask}\n"
        "    nowhere = torch.isneginf(scores).all(dim=-1, keepdim=True)\n"
        f"    weights = {weights}\n"
        f"{extra}"
        f"    return {output}, weights\n"
    )


MUTANTS = [
    Mutant(
        name="calls-builtin",
        notebook=NB,
        replace={SDPA: sdpa(output="torch.nn.functional.scaled_dot_product_attention(query, key, value, "
                                   "attn_mask=attn_mask)")},
        must_fail=ALL_SDPA_TESTS,
        says="implement it from scratch",
        must_pass=("test_causal_mask",),
    ),
    Mutant(
        name="no-scaling",
        notebook=NB,
        replace={SDPA: sdpa(scores="query @ key.transpose(-2, -1)")},
        must_fail=("test_sdpa_public", "test_sdpa_hidden", "test_masking_public"),
        says="not scaled",
    ),
    Mutant(
        # nn.MultiheadAttention's convention (True = blocked) used where True = may attend.
        name="bool-mask-inverted",
        notebook=NB,
        replace={SDPA: sdpa(bool_mask="scores = scores.masked_fill(attn_mask, -math.inf)")},
        must_fail=("test_masking_public", "test_masking_hidden"),
        says="True means 'may attend'",
        must_pass=("test_sdpa_public", "test_sdpa_hidden"),
    ),
    Mutant(
        name="mask-after-softmax",
        notebook=NB,
        replace={SDPA: sdpa(bool_mask="pass",
                            extra="    if attn_mask is not None and attn_mask.dtype == torch.bool:\n"
                                  "        weights = weights.masked_fill(~attn_mask, 0.0)\n")},
        must_fail=("test_masking_public", "test_masking_hidden"),
        says="applied after the softmax",
        must_pass=("test_sdpa_public",),
    ),
    Mutant(
        name="float-mask-ignored",
        notebook=NB,
        replace={SDPA: sdpa(float_mask="pass")},
        must_fail=("test_masking_hidden",),
        says="the mask was ignored",
        must_pass=("test_masking_public", "test_sdpa_hidden"),
    ),
    Mutant(
        # Plain softmax: a row of only -inf becomes 0/0 = NaN.
        name="fully-masked-row-nan",
        notebook=NB,
        replace={SDPA: sdpa(weights="torch.softmax(scores, dim=-1)")},
        must_fail=("test_fully_masked_public", "test_fully_masked_hidden"),
        says="0/0 = NaN",
        must_pass=("test_masking_public", "test_masking_hidden", "test_gradients_hidden"),
    ),
    Mutant(
        # -1e9 instead of -inf: no NaN, but a fully masked row gets uniform weights.
        name="large-negative-fill",
        notebook=NB,
        replace={SDPA: sdpa(bool_mask="scores = scores.masked_fill(~attn_mask, -1e9)",
                            weights="torch.softmax(scores, dim=-1)")},
        must_fail=("test_fully_masked_public",),
        says="spread evenly",
        must_pass=("test_masking_public", "test_gradients_public"),
    ),
    Mutant(
        # Right forward pass, but the NaN of the softmax is still in the backward graph.
        name="nan-to-num-after-softmax",
        notebook=NB,
        replace={SDPA: sdpa(weights="torch.softmax(scores, dim=-1).nan_to_num(0.0)")},
        must_fail=("test_fully_masked_hidden",),
        says="NaN reaches the gradient",
        must_pass=("test_fully_masked_public", "test_masking_hidden", "test_gradients_hidden"),
    ),
    Mutant(
        name="detached-weights",
        notebook=NB,
        replace={SDPA: sdpa(extra="    weights = weights.detach()\n")},
        must_fail=("test_gradients_public", "test_gradients_hidden"),
        says="No gradient reached `query`",
        must_pass=("test_sdpa_public", "test_masking_hidden"),
    ),
    Mutant(
        name="numpy-round-trip",
        notebook=NB,
        replace={SDPA: sdpa(output="torch.from_numpy(weights.detach().numpy() @ value.detach().numpy())")},
        must_fail=("test_gradients_public", "test_gradients_hidden"),
        says="no .numpy() / NumPy round trip",
        must_pass=("test_sdpa_public",),
    ),
    Mutant(
        name="causal-mask-upper-triangle",
        notebook=NB,
        replace={"causal_mask": ("def causal_mask(seq_len):\n"
                                 "    return torch.ones(seq_len, seq_len, dtype=torch.bool).triu()\n")},
        must_fail=("test_causal_mask",),
        says="would see the future",
    ),
    Mutant(
        # nn.Transformer.generate_square_subsequent_mask: additive float, not boolean.
        name="causal-mask-float",
        notebook=NB,
        replace={"causal_mask": ("def causal_mask(seq_len):\n"
                                 "    return torch.full((seq_len, seq_len), float('-inf')).triu(1)\n")},
        must_fail=("test_causal_mask",),
        says="expected torch.bool",
    ),
]
