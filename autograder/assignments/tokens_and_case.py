"""Checks for the exercise `tokens-and-case` (solutions/tokens-and-case/, chapter 4).

The student writes a word-level tokenizer with a `lowercase` option and turns token ids
into query vectors:

    tokenize(sentence, lowercase=False)       -> list[str]   (str.split(), lowered if asked)
    build_vocab(sentences, lowercase=False)   -> dict[str, int]
    encode(sentence, vocab, lowercase=False)  -> list[int]   (unknown words -> "<unk>")
    ids_in_both_modes(sentence)               -> (cased_ids, lower_ids)
    QueryVectors(vocab_size, d_model, d_k)    nn.Module with `embedding` (nn.Embedding) and
        `w_q` (nn.Linear); forward(ids, pos_encoding) -> (batch, seq, d_k)
        = w_q(embedding(ids) + pos_encoding[:seq])

The vocabulary rule the notebook states: "<unk>" has id 0; then every distinct token
gets the next free id in order of first appearance (sentences in the given order,
words left to right). A vocabulary is a rule, not a PyTorch module, so those checks
test the rule's properties one by one (each failure names the one that breaks). The
query vectors are compared with nn.Embedding + nn.Linear holding copies of the student's
parameters (`autograder.reference.embed_and_project`). The student's module is reached
through method calls only (`state_dict`, `load_state_dict`, `forward`), so the checks
work alike in the student's kernel and from the sandboxed grader.

Every check is `collect_*` (runs the student's code, returns plain Python/NumPy
evidence) followed by `judge_*`; test cells call `check_*` only.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from autograder import inputs, reference
from autograder.checks import (as_array, call_student, context, diagnose, expect_close, expect_shape, fail,
                               load_student_state, passed, student_state)

__all__ = ["check_tokenize", "check_build_vocab", "check_encode", "check_the_and_the",
           "check_query_vectors", "check_case_and_position"]

UNK = "<unk>"
SENTENCE = " ".join(inputs.SENTENCE)  # "The cat sat on the mat"
ATOL, RTOL = 1e-9, 1e-7  # float64 on both sides: real differences are ~1e-15

Evidence = dict  # plain Python: strings, ints, lists, NumPy arrays

RULE = (f'The rule of this exercise: "{UNK}" gets id 0, then each new token gets the next id '
        f"(1, 2, 3, ...) in order of first appearance: sentences in the order given, words left "
        f"to right.")


# ------------------------------------------------------------------------- inputs
_CONSONANTS = list("bdfgklmnprstvz")
_VOWELS = list("aeiou")


def _random_words(r: np.random.Generator, n: int) -> list[str]:
    """n distinct lowercase made-up words ("kalo", "mi", "tesuva", ...)."""
    words: list[str] = []
    while len(words) < n:
        word = "".join(str(r.choice(_CONSONANTS)) + str(r.choice(_VOWELS)) for _ in range(int(r.integers(1, 4))))
        if word not in words:
            words.append(word)
    return words


def _random_sentence(r, words: list[str], length: int, p_capital: float = 0.35) -> list[str]:
    """`length` words drawn with repetition; each capitalized with probability p_capital."""
    picks = [words[int(i)] for i in r.integers(0, len(words), size=length)]
    return [w.capitalize() if r.random() < p_capital else w for w in picks]


def _random_corpus(r, n_words: int, n_sentences: int) -> tuple[list[str], list[str]]:
    """(sentences, unused words): sentences of made-up words, one word forced to appear
    both capitalized and lowercase; the unused words are unknown to a vocabulary of them."""
    words = _random_words(r, n_words)
    known, unused = words[: n_words - 3], words[n_words - 3:]
    sentences = [_random_sentence(r, known, int(r.integers(3, 9))) for _ in range(n_sentences)]
    twin = known[int(r.integers(len(known)))]
    sentences[0][0], sentences[-1][-1] = twin.capitalize(), twin
    return [" ".join(s) for s in sentences], unused


# The rule, as plain data (it is what the notebook states, not a PyTorch module).
def _tokens(sentence: str, lowercase: bool) -> list[str]:
    return (sentence.lower() if lowercase else sentence).split()


def _first_appearance(sentences: list[str], lowercase: bool) -> list[str]:
    return list(dict.fromkeys(t for s in sentences for t in _tokens(s, lowercase)))


def _vocab(sentences: list[str], lowercase: bool) -> dict[str, int]:
    return {t: i for i, t in enumerate([UNK] + _first_appearance(sentences, lowercase))}


def _ids(sentence: str, vocab: dict[str, int], lowercase: bool) -> list[int]:
    return [vocab.get(t, vocab[UNK]) for t in _tokens(sentence, lowercase)]


def _mode(lowercase: bool) -> str:
    return "lowercase=True" if lowercase else "lowercase=False"


# ------------------------------------------------------------ student's return values
def _as_token_list(x, what: str) -> list[str]:
    if isinstance(x, str):
        fail(f"{what} returned one string ({x!r}); it should return a list of tokens (strings).")
    if x is None:
        fail(f"{what} returned None: did you forget a `return`?")
    try:
        tokens = list(x)
    except TypeError:
        fail(f"{what} returned a {type(x).__name__}; it should return a list of strings.")
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        fail(f"{what} should return a list of strings; it contains {bad[0]!r} ({type(bad[0]).__name__}).")
    return tokens


def _as_id_list(x, what: str) -> list[int]:
    if x is None:
        fail(f"{what} returned None: did you forget a `return`?")
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    try:
        values = list(x)
    except TypeError:
        fail(f"{what} returned a {type(x).__name__}; it should return a list of ints.")
    ids = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            fail(f"{what} should return a list of ints (token ids); it contains {v!r} "
                 f"({type(v).__name__}).")
        ids.append(int(v))
    return ids


# ================================================================ part 1: tokenize
def _tokenize_cases(hidden: bool) -> list[tuple[str, str, bool]]:
    """(label, sentence, lowercase)."""
    if not hidden:
        messy = "  The dog  chased the Cat "
        return [("the chapter's sentence", SENTENCE, False), ("the chapter's sentence", SENTENCE, True),
                ("extra spaces", messy, False), ("extra spaces", messy, True)]
    r = inputs.rng(True)
    words = _random_words(r, 12)
    cases = []
    for _ in range(3):
        tokens = _random_sentence(r, words, int(r.integers(3, 10)), p_capital=0.5)
        gaps = [" " * int(r.integers(1, 3)) for _ in tokens]  # one or two spaces
        sentence = "".join(g + t for g, t in zip(gaps, tokens)) + " " * int(r.integers(0, 2))
        for lowercase in (False, True):
            cases.append(("hidden test, random words", sentence, lowercase))
    return cases


def collect_tokenize(tokenize, hidden: bool = False) -> Evidence:
    cases = []
    for label, sentence, lowercase in _tokenize_cases(hidden):
        what = f"tokenize({sentence!r}, lowercase={lowercase})"
        got = _as_token_list(call_student(tokenize, sentence, lowercase=lowercase, what=what), what)
        cases.append(dict(label=label, sentence=sentence, lowercase=lowercase, what=what, got=got))
    return dict(hidden=hidden, cases=cases)


def judge_tokenize(ev: Evidence) -> None:
    for c in ev["cases"]:
        sentence, lowercase, got = c["sentence"], c["lowercase"], c["got"]
        expected = _tokens(sentence, lowercase)
        if got == expected:
            continue
        hint = ""
        if "" in got:
            hint = ("Your list contains empty strings: sentence.split(' ') makes one for every extra "
                    "space. sentence.split() with no argument splits on any run of whitespace.")
        elif lowercase and got == _tokens(sentence, False):
            hint = "With lowercase=True every token must be lowercased (str.lower())."
        elif not lowercase and got == _tokens(sentence, True):
            hint = ("With lowercase=False keep each word as written: 'The' and 'the' stay two "
                    "different tokens. Lowercase only when asked.")
        fail(f"{c['what']} returned {got}, expected {expected}. {hint}".strip())
    passed(f"tokenize is right on {len(ev['cases'])} {'hidden' if ev['hidden'] else 'public'} cases "
           f"(both modes).")


def check_tokenize(tokenize, hidden: bool = False) -> None:
    """tokenize(sentence, lowercase=False) -> list of whitespace-separated tokens."""
    judge_tokenize(collect_tokenize(tokenize, hidden))


# ============================================================= part 2: build_vocab
def _vocab_cases(hidden: bool) -> list[tuple[str, list[str]]]:
    if not hidden:
        return [("two sentences", [SENTENCE, "The dog sat on the log"])]
    r = inputs.rng(True)
    return [("hidden test, random sentences", _random_corpus(r, int(r.integers(8, 16)), int(r.integers(3, 6)))[0])
            for _ in range(2)]


def collect_build_vocab(build_vocab, hidden: bool = False) -> Evidence:
    cases = []
    for label, sentences in _vocab_cases(hidden):
        for lowercase in (False, True):
            what = f"build_vocab({sentences}, lowercase={lowercase})"
            got = call_student(build_vocab, list(sentences), lowercase=lowercase, what=what)
            if not isinstance(got, dict):
                fail(f"{what} returned a {type(got).__name__}; it should return a dict mapping each "
                     f"token (str) to its id (int).")
            vocab = {}
            for k, v in got.items():
                if not isinstance(k, str) or isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                    fail(f"{what} should map strings to ints; it maps {k!r} to {v!r}.")
                vocab[k] = int(v)
            cases.append(dict(label=label, sentences=list(sentences), lowercase=lowercase, what=what, got=vocab))
    return dict(hidden=hidden, cases=cases)


def _judge_one_vocab(c: dict) -> None:
    vocab, sentences, lowercase, what = c["got"], c["sentences"], c["lowercase"], c["what"]
    expected = _vocab(sentences, lowercase)
    if vocab.get(UNK) != 0:
        fail(f'{what}: "{UNK}" should have id 0, got {vocab.get(UNK, "no entry")}. Add it first, '
             f"before any word: encode maps every unknown word to it.")
    missing = [t for t in expected if t not in vocab]
    extra = [t for t in vocab if t not in expected]
    if missing or extra:
        hint = ""
        if lowercase and any(t != t.lower() for t in extra):
            hint = "With lowercase=True lowercase every token before adding it: 'The' becomes 'the'."
        elif not lowercase and any(t != t.lower() for t in missing):
            hint = "With lowercase=False 'The' and 'the' are two tokens, each with its own id."
        parts = []
        if missing:
            parts.append(f"missing tokens: {missing[:6]}")
        if extra:
            parts.append(f"unexpected entries: {extra[:6]}")
        fail(f"{what}: {'; '.join(parts)}. {hint}".strip())
    ids = sorted(vocab.values())
    if ids != list(range(len(vocab))):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        fail(f"{what}: the ids should be 0, 1, ..., {len(vocab) - 1}, each used once; got {ids}"
             + (f" (id {dupes[0]} is used twice)" if dupes else "") + f". {RULE}")
    order = sorted(vocab, key=vocab.get)
    expected_order = list(expected)
    if order != expected_order:
        k = next(i for i, (a, b) in enumerate(zip(order, expected_order)) if a != b)
        hint = ""
        if order[1:] == sorted(expected_order[1:]):
            hint = "You sorted the tokens alphabetically; this exercise numbers them by first appearance."
        fail(f"{what}: id {k} belongs to {expected_order[k]!r}, yours gives it to {order[k]!r}. "
             f"{hint} {RULE}")


def judge_build_vocab(ev: Evidence) -> None:
    for c in ev["cases"]:
        _judge_one_vocab(c)
    sizes = ", ".join(f"{len(c['got'])} ({_mode(c['lowercase'])})" for c in ev["cases"])
    passed(f"build_vocab follows the rule on {'hidden random' if ev['hidden'] else 'the public'} "
           f"sentences; vocabulary sizes {sizes}.")


def check_build_vocab(build_vocab, hidden: bool = False) -> None:
    """build_vocab(sentences, lowercase=False) -> {"<unk>": 0, first token: 1, ...}."""
    judge_build_vocab(collect_build_vocab(build_vocab, hidden))


# ================================================================== part 3: encode
def _encode_cases(hidden: bool) -> list[tuple[str, list[str], list[str]]]:
    """(label, sentences the vocabulary is built from, sentences to encode)."""
    if not hidden:
        return [("a vocabulary built from 'The cat sat on the mat'", [SENTENCE],
                 ["The cat sat on the mat", "The dog sat on The mat", "the cat ate"])]
    r = inputs.rng(True)
    sentences, unused = _random_corpus(r, int(r.integers(8, 14)), 3)
    known = sorted({t for s in sentences for t in s.lower().split()})
    new = []
    for _ in range(3):
        pool = known + unused  # words of the corpus and unknown ones, any case
        new.append(" ".join(_random_sentence(r, pool, int(r.integers(4, 10)), p_capital=0.5)))
    new.append(sentences[0])
    return [("hidden test, random sentences", sentences, new)]


def collect_encode(encode, hidden: bool = False) -> Evidence:
    cases = []
    for label, corpus, sentences in _encode_cases(hidden):
        for lowercase in (False, True):
            vocab = _vocab(corpus, lowercase)
            for sentence in sentences:
                what = f"encode({sentence!r}, vocab, lowercase={lowercase})"
                got = call_student(encode, sentence, dict(vocab), lowercase=lowercase, what=what,
                                   error_hint=f"A word that is not in the vocabulary must get the id of "
                                              f"{UNK!r} (0): vocab.get(token, vocab[{UNK!r}]).")
                cases.append(dict(label=label, vocab=vocab, sentence=sentence, lowercase=lowercase,
                                  what=what, got=_as_id_list(got, what)))
    return dict(hidden=hidden, cases=cases)


def judge_encode(ev: Evidence) -> None:
    for c in ev["cases"]:
        vocab, sentence, lowercase, got = c["vocab"], c["sentence"], c["lowercase"], c["got"]
        expected = _ids(sentence, vocab, lowercase)
        if got == expected:
            continue
        tokens = _tokens(sentence, lowercase)
        known = [t for t in tokens if t in vocab]
        hint = ""
        if got == [vocab[t] for t in known] and len(known) < len(tokens):
            hint = (f"You dropped the unknown words. Map them to {UNK!r} (id 0) instead, so the "
                    f"sequence keeps one id per word.")
        elif lowercase and got == _ids(sentence, vocab, False):
            hint = ("The sentence was not lowercased: with lowercase=True the vocabulary holds only "
                    "lowercase tokens, so 'The' must be looked up as 'the'.")
        elif len(got) == len(expected) and all(g == e for g, e, t in zip(got, expected, tokens) if t in vocab):
            hint = f"Unknown words must get the id of {UNK!r}, which is 0."
        fail(f"{c['what']} with vocab = {vocab} returned {got}, expected {expected}. {hint}".strip())
    passed(f"encode is right on {len(ev['cases'])} {'hidden' if ev['hidden'] else 'public'} cases, "
           f"unknown words included.")


def check_encode(encode, hidden: bool = False) -> None:
    """encode(sentence, vocab, lowercase=False) -> [vocab[token] or 0 for each token]."""
    judge_encode(collect_encode(encode, hidden))


# ======================================================== part 4: "The" and "the"
def _twin_sentence(r) -> tuple[str, int]:
    """A sentence of made-up words whose first word comes back later in lowercase."""
    words = _random_words(r, 8)
    twin, others = words[0], words[1:]
    tokens = _random_sentence(r, others, int(r.integers(3, 8)), p_capital=0.3)
    later = int(r.integers(2, len(tokens) + 1))
    tokens = [twin.capitalize()] + tokens[: later - 1] + [twin] + tokens[later - 1:]
    return " ".join(tokens), later


def collect_the_and_the(ids_in_both_modes, hidden: bool = False) -> Evidence:
    if hidden:
        sentence, later = _twin_sentence(inputs.rng(True))
    else:
        sentence, later = SENTENCE, 4
    what = f"ids_in_both_modes({sentence!r})"
    result = call_student(ids_in_both_modes, sentence, what=what)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"{what} should return a pair (cased_ids, lower_ids), got {result!r}.")
    return dict(hidden=hidden, sentence=sentence, positions=(0, later),
                cased=_as_id_list(result[0], f"{what}[0] (cased_ids)"),
                lower=_as_id_list(result[1], f"{what}[1] (lower_ids)"))


def judge_the_and_the(ev: Evidence) -> None:
    sentence, (i, j) = ev["sentence"], ev["positions"]
    first, second = _tokens(sentence, False)[i], _tokens(sentence, False)[j]
    where = f"ids_in_both_modes({sentence!r})"
    for key, lowercase in (("cased", False), ("lower", True)):
        n = len(_tokens(sentence, lowercase))
        if len(ev[key]) != n:
            fail(f"{where}: the {key} ids should be {n} ids (one per word), got {len(ev[key])}: {ev[key]}.")
    cased, lower = ev["cased"], ev["lower"]
    if cased[i] == cased[j]:
        fail(f"{where}: without lowercasing, {first!r} (position {i}) and {second!r} (position {j}) got the "
             f"same id {cased[i]}. They are different strings, so different tokens with different ids, "
             f"and the model sees two unrelated vectors. Got cased ids {cased}.")
    if lower[i] != lower[j]:
        fail(f"{where}: with lowercase=True, {first!r} and {second!r} should become the same token and get "
             f"the same id; got {lower[i]} and {lower[j]} in {lower}.")
    for key, lowercase in (("cased", False), ("lower", True)):
        expected = _ids(sentence, _vocab([sentence], lowercase), lowercase)
        if ev[key] != expected:
            tokens = _tokens(sentence, lowercase)
            alphabetical = {t: n + 1 for n, t in enumerate(sorted(set(tokens)))}
            hint = ("You sorted the tokens alphabetically; this exercise numbers them by first appearance."
                    if ev[key] == [alphabetical[t] for t in tokens] else "")
            fail(f"{where}: the {key} ids are {ev[key]}, expected {expected} (a vocabulary built from this "
                 f"sentence alone, with {_mode(lowercase)}, used to encode it with the same option). "
                 f"{hint} {RULE}")
    if ev["hidden"]:
        passed(f"On a fresh sentence, {first!r} and {second!r} get different ids when cased and the same id "
               f"when lowercased.")
    else:
        passed(f"'The' -> {cased[i]} and 'the' -> {cased[j]} when cased; both -> {lower[i]} when lowercased. "
               f"Cased ids {cased}, lowercased ids {lower}.")


def check_the_and_the(ids_in_both_modes, hidden: bool = False) -> None:
    """ids_in_both_modes(sentence) -> (cased_ids, lower_ids), each from a vocabulary of the
    sentence alone. Public: "The cat sat on the mat"; hidden: a fresh sentence."""
    judge_the_and_the(collect_the_and_the(ids_in_both_modes, hidden))


# =========================================================== part 5: query vectors
REQUIRED = ("embedding.weight", "w_q.weight", "w_q.bias")


def _describe(c: dict) -> str:
    return (f"QueryVectors(vocab_size={c['vocab_size']}, d_model={c['d_model']}, d_k={c['d_k']}), "
            f"ids {tuple(c['ids'].shape)}, pos_encoding {tuple(c['table'].shape)}")


def _query_case(r, label: str, ids: np.ndarray, vocab_size: int, d_model: int, d_k: int, max_len: int,
                learned_positions: bool = False) -> dict:
    """ids and a positional table: sinusoidal, or random like a learned one."""
    table = (inputs.normal(r, max_len, d_model) if learned_positions
             else reference.sinusoidal_encoding(max_len, d_model))
    return dict(label=label, ids=np.asarray(ids, dtype=np.int64), vocab_size=vocab_size, d_model=d_model,
                d_k=d_k, table=table)


def _query_cases(hidden: bool) -> list[dict]:
    r = inputs.rng(hidden)
    cased = _ids(SENTENCE, _vocab([SENTENCE], False), False)
    lower = _ids(SENTENCE, _vocab([SENTENCE], True), True)
    if not hidden:
        return [_query_case(r, f"{SENTENCE!r}, its cased ids {cased} and lowercased ids {lower} as a batch "
                               f"of two", np.array([cased, lower]), 7, 8, 4, 10)]
    cases = []
    for learned in (False, True):
        s = inputs.draw_sizes(r, vocab=(5, 40), half_d=(2, 16), batch=(1, 4), seq=(2, 12), extra=(0, 8))
        d_model = 2 * s["half_d"]
        d_k = int(r.integers(2, d_model + 1))
        ids = r.integers(0, s["vocab"], size=(s["batch"], s["seq"]))
        kind = "a random (learned-like) positional table" if learned else "the sinusoidal table"
        cases.append(_query_case(r, f"hidden test, random ids, {kind}", ids, s["vocab"], d_model, d_k,
                                 s["seq"] + s["extra"], learned_positions=learned))
    return cases


def _build_query_module(cls, c: dict, r) -> tuple[object, dict[str, np.ndarray]]:
    """Instantiate the student's QueryVectors, check its parameters' names and shapes, load
    fresh float64 values drawn from `r`; return (module, its parameters as read back)."""
    V, d, k = c["vocab_size"], c["d_model"], c["d_k"]
    what = f"QueryVectors({V}, {d}, {k})"
    module = call_student(cls, V, d, k, what=what)
    state = student_state(module, what)
    shapes = {"embedding.weight": ((V, d), f"self.embedding = nn.Embedding(vocab_size, d_model), here ({V}, {d})"),
              "w_q.weight": ((k, d), f"self.w_q = nn.Linear(d_model, d_k): its weight is (d_k, d_model) = ({k}, {d})"),
              "w_q.bias": ((k,), "keep the bias of nn.Linear (bias=True, the default)")}
    for name, (shape, how) in shapes.items():
        if name not in state:
            fail(f"{what} has no parameter `{name}` (it has {sorted(state) or 'none'}): {how}.")
        if state[name].shape != shape:
            fail(f"{what}: `{name}` has shape {state[name].shape}, expected {shape}: {how}.")
    fresh = {}
    for name, value in state.items():
        scale = {"embedding.weight": 1.0, "w_q.weight": 1 / math.sqrt(d), "w_q.bias": 0.5}.get(name, 0.5)
        fresh[name] = inputs.normal(r, *value.shape, scale=scale)
    load_student_state(module, fresh, what)
    return module, student_state(module, what)


def _run_query_module(module, c: dict) -> np.ndarray:
    what = f"forward(ids, pos_encoding) of {_describe(c)}"
    got = call_student(module, torch.from_numpy(c["ids"].copy()), torch.from_numpy(c["table"].copy()), what=what,
                       error_hint="ids is (batch, seq); pos_encoding has max_len >= seq rows: add its first "
                                  "seq rows, pos_encoding[:seq] of shape (seq, d_model).")
    return as_array(got, what)


def collect_query_vectors(cls, hidden: bool = False) -> Evidence:
    r = inputs.rng(hidden)
    cases = _query_cases(hidden)
    for c in cases:
        module, c["params"] = _build_query_module(cls, c, r)
        c["got"] = _run_query_module(module, c)
    return dict(hidden=hidden, cases=cases)


def _expected_queries(c: dict, table=None, embedding=None, bias="same") -> np.ndarray:
    p = c["params"]
    return reference.embed_and_project(c["ids"], p["embedding.weight"] if embedding is None else embedding,
                                       c["table"] if table is None else table, p["w_q.weight"],
                                       p["w_q.bias"] if bias == "same" else bias)


def _query_mistakes(c: dict) -> dict[str, np.ndarray]:
    E, table, seq = c["params"]["embedding.weight"], c["table"], c["ids"].shape[1]
    no_positions = _expected_queries(c, table=np.zeros_like(table))
    mistakes = {
        "no positional encoding: add pos_encoding[:seq] to the embeddings before projecting, or "
        "identical tokens get identical queries wherever they stand": no_positions,
        "w_q without its bias: call the nn.Linear module, self.w_q(x), rather than x @ weight.T":
            _expected_queries(c, bias=None),
        "the embeddings were multiplied by sqrt(d_model); this exercise adds the table to the plain "
        "embeddings": _expected_queries(c, embedding=E * math.sqrt(c["d_model"])),
    }
    if c["d_k"] == c["d_model"]:
        mistakes["the positions were added after the projection; add them to the embeddings, then "
                 "project"] = no_positions + table[:seq]
    if table.shape[0] >= c["vocab_size"]:
        mistakes["the positional table was indexed by token id (pos_encoding[ids]); index it by "
                 "position, 0 .. seq-1"] = _expected_queries(c, table=np.zeros_like(table),
                                                               embedding=E + table[: c["vocab_size"]])
    return mistakes


def judge_query_vectors(ev: Evidence) -> None:
    for c in ev["cases"]:
        expected, got = _expected_queries(c), c["got"]
        with context(before=f"Test case: {c['label']}; {_describe(c)}."):
            expect_shape(got, expected.shape, "Your output (the query vectors)",
                         "(batch, seq) ids give (batch, seq, d_k) queries: one d_k-vector per token.")
            expect_close(got, expected, "Your output (the query vectors)", atol=ATOL, rtol=RTOL,
                         hint=diagnose(got, _query_mistakes(c), atol=ATOL)
                         or "Expected self.w_q(self.embedding(ids) + pos_encoding[:seq]).")
    passed(f"QueryVectors matches nn.Embedding + positions + nn.Linear with your parameters on "
           f"{len(ev['cases'])} {'hidden' if ev['hidden'] else 'public'} case(s).")


def check_query_vectors(cls, hidden: bool = False) -> None:
    """QueryVectors(vocab_size, d_model, d_k)(ids, pos_encoding) ->
    w_q(embedding(ids) + pos_encoding[:seq]), (batch, seq, d_k)."""
    judge_query_vectors(collect_query_vectors(cls, hidden))


# ================================================ part 6: case and position, in vectors
def collect_case_and_position(cls, hidden: bool = False) -> Evidence:
    """Two sentences where one word appears capitalized and lowercase, each at position 0
    of one of them; the student's module runs on their ids in both modes."""
    r = inputs.rng(hidden)
    if hidden:
        words = _random_words(r, 8)
        twin, middle = words[0], _random_sentence(r, words[1:], int(r.integers(2, 7)), p_capital=0.0)
        later = len(middle) + 1
        rows = [" ".join([twin.capitalize()] + middle + [twin]), " ".join([twin] + middle + [twin.capitalize()])]
    else:
        rows, later = ["The cat sat on the mat", "the cat sat on The mat"], 4
    ev = dict(hidden=hidden, rows=rows, later=later)
    for mode, lowercase in (("cased", False), ("lower", True)):
        vocab = _vocab(rows, lowercase)
        ids = np.array([_ids(s, vocab, lowercase) for s in rows])
        c = _query_case(r, f"{_mode(lowercase)} ids {ids.tolist()}", ids, len(vocab), 8, 4, ids.shape[1] + 2)
        module, c["params"] = _build_query_module(cls, c, r)
        c["got"] = _run_query_module(module, c)
        expect_shape(c["got"], (*ids.shape, 4), f"The query vectors for {c['label']}")
        ev[mode] = c
    return ev


def judge_case_and_position(ev: Evidence) -> None:
    rows, j = ev["rows"], ev["later"]
    word = _tokens(rows[0], True)[0]
    lower, cased = ev["lower"]["got"], ev["cased"]["got"]

    def same(a, b):
        return np.allclose(a, b, atol=ATOL, rtol=RTOL)

    where = f"sentences {rows}, vocabulary built from both"
    if same(lower[0, 0], lower[0, j]):
        fail(f"Lowercased, {where}: {word!r} at position 0 and at position {j} (the same token id) got "
             f"the same query vector. A token's query must depend on where it stands: add the "
             f"positional encoding to the embeddings before projecting.")
    if not same(lower[0, 0], lower[1, 0]):
        fail(f"Lowercased, {where}: both sentences have {word!r} at position 0 (same id, same position), "
             f"but their query vectors differ. The query may depend only on the token and its position.")
    if same(cased[0, 0], cased[1, 0]):
        fail(f"Cased, {where}: {word.capitalize()!r} and {word!r} at the same position 0 got the same "
             f"query vector, although they are different tokens with different embeddings.")
    passed(f"Lowercased, {word!r} at positions 0 and {j} gets two different queries (position matters); "
           f"cased, {word.capitalize()!r} and {word!r} at position 0 get different queries (case matters).")


def check_case_and_position(cls, hidden: bool = False) -> None:
    """Same token at two positions -> different queries; "The" vs "the" at one position ->
    different queries when cased, the same when lowercased."""
    judge_case_and_position(collect_case_and_position(cls, hidden))
