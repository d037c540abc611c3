"""Classic wrong implementations for the attention-scores exercise (NumPy)."""
from mutants import Mutant

NB = "attention_scores"

MUTANTS = [
    Mutant(
        name="k-not-transposed",
        notebook=NB,
        replace={"dot_product_scores": "def dot_product_scores(Q, K):\n    return Q @ K\n"},
        must_fail=("test_dot_product_scores_public", "test_dot_product_scores_hidden"),
        says="transpose K",
    ),
    Mutant(
        # .T reverses every axis: right for 2-D inputs, wrong as soon as there is a batch axis.
        name="transpose-all-axes",
        notebook=NB,
        replace={"dot_product_scores": "def dot_product_scores(Q, K):\n    return Q @ K.T\n"},
        must_fail=("test_dot_product_scores_hidden",),
        says="np.swapaxes(K, -1, -2)",
        must_pass=("test_dot_product_scores_public",),
    ),
    Mutant(
        name="no-scaling",
        notebook=NB,
        replace={"scale_scores": "def scale_scores(scores, d_k):\n    return scores\n"},
        must_fail=("test_scale_scores_public", "test_scale_scores_hidden",
                   "test_attention_public", "test_attention_hidden"),
        says="divide them by sqrt(d_k)",
    ),
    Mutant(
        name="scale-by-d_k",
        notebook=NB,
        replace={"scale_scores": "def scale_scores(scores, d_k):\n    return scores / d_k\n"},
        must_fail=("test_scale_scores_public", "test_scale_scores_hidden", "test_attention_public"),
        says="by d_k instead of sqrt(d_k)",
    ),
    Mutant(
        name="softmax-over-first-axis",
        notebook=NB,
        replace={"softmax": ("def softmax(x, axis=-1):\n"
                             "    e = np.exp(x - x.max(axis=0, keepdims=True))\n"
                             "    return e / e.sum(axis=0, keepdims=True)\n")},
        must_fail=("test_softmax_public", "test_softmax_hidden"),
        says="you normalized along axis 0 instead of axis",
    ),
    Mutant(
        name="attention-softmax-over-queries",
        notebook=NB,
        replace={"attention": ("def attention(Q, K, V):\n"
                               "    w = softmax(scale_scores(dot_product_scores(Q, K), Q.shape[-1]), axis=-2)\n"
                               "    return w @ V, w\n")},
        must_fail=("test_attention_public", "test_attention_hidden"),
        says="over the queries (axis -2)",
    ),
    Mutant(
        # exp(1000) = inf: right on small inputs, NaN on large logits.
        name="naive-softmax",
        notebook=NB,
        replace={"softmax": ("def softmax(x, axis=-1):\n"
                             "    return np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)\n")},
        must_fail=("test_softmax_hidden", "test_attention_hidden"),
        says="Subtract the row max before exp",
        must_pass=("test_softmax_public", "test_attention_public"),
    ),
    Mutant(
        # The max of the whole array: rows far below it underflow to 0 / 0.
        name="softmax-global-max",
        notebook=NB,
        replace={"softmax": ("def softmax(x, axis=-1):\n"
                             "    e = np.exp(x - x.max())\n"
                             "    return e / e.sum(axis=axis, keepdims=True)\n")},
        must_fail=("test_softmax_hidden",),
        says="not the max of the whole array",
        must_pass=("test_softmax_public",),
    ),
    Mutant(
        # The source's "softmax-normalized scores": the scaled scores, no softmax at all.
        name="source-no-softmax",
        notebook=NB,
        replace={"attention": ("def attention(Q, K, V):\n"
                               "    w = scale_scores(dot_product_scores(Q, K), Q.shape[-1])\n"
                               "    return w @ V, w\n")},
        must_fail=("test_attention_public", "test_attention_hidden"),
        says="softmax missing",
        must_pass=("test_softmax_public",),
    ),
    Mutant(
        name="softmax-divides-by-sqrt",
        notebook=NB,
        replace={"softmax": "def softmax(x, axis=-1):\n    return x / np.sqrt(x.shape[axis])\n"},
        must_fail=("test_softmax_public", "test_softmax_hidden"),
        says="that is scaling, not a softmax",
    ),
]
