"""Classic wrong answers to the exercise tokens-and-case (chapter 4, "The" and "the")."""
from __future__ import annotations

from mutants import Mutant

NB = "tokens_and_case"
ALL = ("test_tokenize", "test_build_vocab", "test_encode", "test_the_and_the", "test_query_vectors",
       "test_case_and_position")

_SPLIT_ON_SPACE = '''
def tokenize(sentence, lowercase=False):
    if lowercase:
        sentence = sentence.lower()
    return sentence.split(" ")
'''

_CASE_IGNORED = '''
def tokenize(sentence, lowercase=False):
    return sentence.split()
'''

_ALPHABETICAL = '''
def build_vocab(sentences, lowercase=False):
    tokens = sorted({t for s in sentences for t in tokenize(s, lowercase)})
    return {UNK: 0, **{t: i + 1 for i, t in enumerate(tokens)}}
'''

_DROP_UNKNOWN = '''
def encode(sentence, vocab, lowercase=False):
    return [vocab[t] for t in tokenize(sentence, lowercase) if t in vocab]
'''

_KEYERROR = '''
def encode(sentence, vocab, lowercase=False):
    return [vocab[t] for t in tokenize(sentence, lowercase)]
'''

def _queries(forward_body: str) -> str:
    return f'''
class QueryVectors(nn.Module):
    def __init__(self, vocab_size, d_model, d_k):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.w_q = nn.Linear(d_model, d_k)

    def forward(self, ids, pos_encoding):
        {forward_body}
'''


_NO_POSITIONS = _queries("return self.w_q(self.embedding(ids))")
_POSITIONS_AFTER = _queries("return self.w_q(self.embedding(ids)) + pos_encoding[:ids.shape[1]]")
# Ignores the table it is given and builds its own sinusoidal one: right on the public
# test (which passes a sinusoidal table), wrong on the hidden learned-like table.
_OWN_TABLE = _queries("return self.w_q(self.embedding(ids) + sinusoidal_table(ids.shape[1], "
                      "self.embedding.embedding_dim))")
_NO_BIAS = '''
class QueryVectors(nn.Module):
    def __init__(self, vocab_size, d_model, d_k):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.w_q = nn.Linear(d_model, d_k, bias=False)

    def forward(self, ids, pos_encoding):
        return self.w_q(self.embedding(ids) + pos_encoding[:ids.shape[1]])
'''

_WRONG_VOCAB_FOR_LOWER = '''
def ids_in_both_modes(sentence):
    cased_vocab = build_vocab([sentence], lowercase=False)
    # the cased vocabulary used for the lowercased text: "the" gets the id of "the", not of "The"
    return encode(sentence, cased_vocab, lowercase=False), encode(sentence, cased_vocab, lowercase=True)
'''

MUTANTS = [
    Mutant("split-on-single-space", NB, {"tokenize": _SPLIT_ON_SPACE}, must_fail=("test_tokenize",),
           says="split() with no argument",
           must_pass=("test_build_vocab", "test_encode", "test_query_vectors")),
    Mutant("lowercase-option-ignored", NB, {"tokenize": _CASE_IGNORED},
           must_fail=("test_tokenize", "test_build_vocab", "test_encode", "test_the_and_the"),
           says="lowercase", must_pass=("test_query_vectors", "test_case_and_position")),
    Mutant("alphabetical-vocabulary", NB, {"build_vocab": _ALPHABETICAL},
           must_fail=("test_build_vocab", "test_the_and_the"), says="sorted the tokens alphabetically",
           must_pass=("test_tokenize", "test_encode")),
    Mutant("unknown-words-dropped", NB, {"encode": _DROP_UNKNOWN}, must_fail=("test_encode",),
           says="dropped the unknown words", must_pass=("test_build_vocab", "test_the_and_the")),
    Mutant("unknown-word-keyerror", NB, {"encode": _KEYERROR}, must_fail=("test_encode",),
           says="vocab.get(token"),
    Mutant("lowercased-with-cased-vocabulary", NB, {"ids_in_both_modes": _WRONG_VOCAB_FOR_LOWER},
           must_fail=("test_the_and_the",), says="expected [1, 2, 3, 4, 1, 5]"),
    Mutant("no-positional-encoding", NB, {"query_vectors": _NO_POSITIONS},
           must_fail=("test_query_vectors", "test_case_and_position"), says="positional encoding",
           must_pass=("test_encode",)),
    Mutant("positions-added-after-projection", NB, {"query_vectors": _POSITIONS_AFTER},
           must_fail=("test_query_vectors", "test_case_and_position"), says="pos_encoding[:seq]"),
    Mutant("projection-without-bias", NB, {"query_vectors": _NO_BIAS},
           must_fail=("test_query_vectors", "test_case_and_position"), says="keep the bias"),
    Mutant("own-table-instead-of-argument", NB, {"query_vectors": _OWN_TABLE},
           must_fail=("test_query_vectors",), says="learned-like",
           must_pass=("test_case_and_position",)),
]
