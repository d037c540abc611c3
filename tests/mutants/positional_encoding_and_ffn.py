"""Classic wrong answers to the exercise positional-encoding-and-ffn (chapter 6)."""
from __future__ import annotations

from mutants import Mutant

NB = "positional_encoding_and_ffn"
PE, PE_ODD = "test_positional_encoding", "test_positional_encoding_odd"
RELU, GELU = "test_feed_forward_relu", "test_feed_forward_gelu"


def _pe(body: str) -> dict[str, str]:
    return {"positional_encoding": "def positional_encoding(seq_len, d_model):\n" + body}


_ANGLE = """    position = torch.arange(seq_len, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = position / 10000.0 ** (two_i / d_model)
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
"""

_SWAPPED = _pe(_ANGLE + """    pe[:, 0::2] = torch.cos(angle)
    pe[:, 1::2] = torch.sin(angle[:, : d_model // 2])
    return pe
""")

# Sines in the first half, cosines in the second (a common "simplification").
_HALVES = _pe(_ANGLE + """    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)[:, :d_model]
""")

# The exponent uses the pair index i instead of 2i.
_EXPONENT_I = _pe("""    position = torch.arange(seq_len, dtype=torch.float64)[:, None]
    i = torch.arange((d_model + 1) // 2, dtype=torch.float64)
    angle = position / 10000.0 ** (i / d_model)
    pe = torch.zeros(seq_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe
""")

# The textbook even-only version: fine for even d_model, a shape error for odd.
_EVEN_ONLY = _pe(_ANGLE + """    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe
""")

_FLOAT32 = _pe("""    position = torch.arange(seq_len)[:, None].float()
    two_i = torch.arange(0, d_model, 2).float()
    angle = position / 10000.0 ** (two_i / d_model)
    pe = torch.zeros(seq_len, d_model)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe
""")


def _ffn(activation_code: str, forward: str = "self.linear2(self.activation(self.linear1(x)))") -> dict[str, str]:
    return {"feed_forward": f'''
class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.activation = {activation_code}

    def forward(self, x):
        return {forward}
'''}


_CHOSEN = 'nn.ReLU() if activation == "relu" else nn.GELU()'

MUTANTS = [
    Mutant("pe-sin-cos-swapped", NB, _SWAPPED, must_fail=(PE, PE_ODD), says="cos on the even columns"),
    Mutant("pe-concatenated-halves", NB, _HALVES, must_fail=(PE, PE_ODD), says="concatenated halves"),
    Mutant("pe-exponent-i-not-2i", NB, _EXPONENT_I, must_fail=(PE, PE_ODD), says="i/d_model instead of 2i/d_model"),
    Mutant("pe-odd-d-model-crash", NB, _EVEN_ONLY, must_fail=(PE_ODD,), says="one more sine column",
           must_pass=(PE,)),
    Mutant("pe-float32", NB, _FLOAT32, must_fail=(PE, PE_ODD), says="float64"),
    Mutant("ffn-no-activation", NB, _ffn(_CHOSEN, "self.linear2(self.linear1(x))"), must_fail=(RELU, GELU),
           says="no activation", must_pass=(PE, PE_ODD)),
    Mutant("ffn-gelu-tanh-approximation", NB, _ffn('nn.ReLU() if activation == "relu" else nn.GELU(approximate="tanh")'),
           must_fail=(GELU,), says="tanh approximation", must_pass=(RELU,)),
    Mutant("ffn-activation-argument-ignored", NB, _ffn("nn.ReLU()"), must_fail=(GELU,), says="was asked",
           must_pass=(RELU,)),
]
