"""The task and the checks of the capstone `train-a-tiny-transformer`.

The task, defined here so that the notebook and the grader share one definition:
reverse a sequence of 4 to 8 random digits. Tokens: PAD = 0, BOS = 1, EOS = 2, and
digit d is token d + 3 (VOCAB_SIZE = 13).

    src  (batch, 8)   the digits, then PAD             3 1 4 1 5      -> [6 4 7 4 8 0 0 0]
    tgt  (batch, 10)  BOS, the digits reversed, EOS,   BOS 5 1 4 1 3 EOS
                      then PAD                         -> [1 8 4 7 4 6 2 0 0 0]

The student trains a model of their own, then writes `predict(src) -> tokens`: for a
(batch, 8) source it returns a (batch, T) tensor of token ids, the output that follows
BOS: the reversed digits, EOS, then anything (everything after the first EOS is
ignored). The grader draws held-out sequences (a fixed seed for the public tests,
fresh entropy for the hidden ones), calls `predict` and scores:

- token accuracy: over every position of every target (its digits and its EOS), the
  fraction where the prediction has the right token;
- sequence accuracy: the fraction of sequences whose digits and EOS are all right.

Thresholds (stated in the notebook): token accuracy >= 50 %; sequence accuracy >= 80 %;
sequence accuracy >= 95 %.
"""
from __future__ import annotations

import numpy as np
import torch

from autograder import inputs
from autograder.checks import as_array, call_student, context, fail, passed

__all__ = ["PAD", "BOS", "EOS", "DIGIT0", "VOCAB_SIZE", "MIN_LEN", "MAX_LEN", "make_batch", "to_digits", "evaluate",
           "check_token_accuracy", "check_sequence_accuracy"]

PAD, BOS, EOS = 0, 1, 2
DIGIT0 = 3  # digit d is token d + 3
VOCAB_SIZE = 13
MIN_LEN, MAX_LEN = 4, 8
N_PUBLIC, N_HIDDEN = 500, 1000  # held-out sequences per test


# ------------------------------------------------------------------------ the task
def make_batch(rng: np.random.Generator, batch_size: int, min_len: int = MIN_LEN, max_len: int = MAX_LEN
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the reversal task, drawn with `rng` (a NumPy Generator).

    Returns src (batch, max_len): each sequence's digit tokens, then PAD; and
    tgt (batch, max_len + 2): BOS, the same digits reversed, EOS, then PAD.
    Both are torch.long tensors. Lengths are uniform in [min_len, max_len].
    """
    lengths = rng.integers(min_len, max_len + 1, size=batch_size)
    digits = rng.integers(0, 10, size=(batch_size, max_len)) + DIGIT0
    src = np.full((batch_size, max_len), PAD, dtype=np.int64)
    tgt = np.full((batch_size, max_len + 2), PAD, dtype=np.int64)
    for i, n in enumerate(lengths):
        src[i, :n] = digits[i, :n]
        tgt[i, 0] = BOS
        tgt[i, 1:n + 1] = digits[i, :n][::-1]
        tgt[i, n + 1] = EOS
    return torch.from_numpy(src), torch.from_numpy(tgt)


def to_digits(tokens) -> str:
    """Token ids as text, for printing: '3 1 4 1 5 <eos>' (stops after EOS, skips PAD)."""
    words = []
    for t in np.asarray(tokens).tolist():
        if t == EOS:
            words.append("<eos>")
            break
        if t == BOS:
            words.append("<bos>")
        elif t >= DIGIT0:
            words.append(str(t - DIGIT0))
        elif t != PAD:
            words.append(f"<{t}?>")
    return " ".join(words)


def held_out(hidden: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation set: fixed for public tests, drawn at grading time for hidden ones."""
    r = inputs.rng(hidden)
    if not hidden:
        r = np.random.default_rng([inputs.PUBLIC_SEED, 1])  # not a seed a notebook would train with
    return make_batch(r, N_HIDDEN if hidden else N_PUBLIC)


# ----------------------------------------------------------------------- scoring
def _targets(tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected output after BOS, mask of the positions that count: digits and EOS)."""
    expected = tgt[:, 1:]
    counted = np.zeros_like(expected, dtype=bool)
    for i, row in enumerate(expected):
        counted[i, : int(np.argmax(row == EOS)) + 1] = True
    return expected, counted


def _aligned(pred: np.ndarray, width: int) -> np.ndarray:
    """The prediction cut or padded (with -1, never right) to the target's width."""
    out = np.full((pred.shape[0], width), -1, dtype=np.int64)
    w = min(width, pred.shape[1])
    out[:, :w] = pred[:, :w]
    return out


def score(pred: np.ndarray, tgt: np.ndarray) -> dict:
    """Token and sequence accuracy of predictions `pred` (batch, T) for targets `tgt`."""
    expected, counted = _targets(tgt)
    got = _aligned(pred, expected.shape[1])
    right = (got == expected) & counted
    return dict(token_accuracy=float(right.sum() / counted.sum()),
                sequence_accuracy=float((right | ~counted).all(axis=1).mean()),
                right=right, counted=counted, got=got, expected=expected)


def collect_predictions(predict, hidden: bool) -> dict:
    src, tgt = held_out(hidden)
    call = f"predict(src) with src of shape {tuple(src.shape)}"
    with torch.no_grad():
        got = call_student(predict, src.clone(), what=call)
    floating = isinstance(got, torch.Tensor) and got.is_floating_point()
    return dict(hidden=hidden, src=src.numpy(), tgt=tgt.numpy(), got=as_array(got, call), floating=floating)


def _validate(ev: dict) -> np.ndarray:
    got, src = ev["got"], ev["src"]
    if ev["floating"]:
        fail("predict returned floating-point values. Return token ids (a torch.long tensor), e.g. the "
             "argmax over the vocabulary of each position's logits.")
    if got.ndim != 2 or got.shape[0] != src.shape[0]:
        fail(f"predict returned shape {tuple(got.shape)}; expected (batch, T) = ({src.shape[0]}, T): one row of "
             f"token ids per source sequence (T = {src.shape[1] + 1}, the longest output with its EOS, is enough).")
    if not np.isfinite(got).all() or not np.array_equal(got, np.round(got)):
        fail("predict returned values that are not whole token ids.")
    return got.astype(np.int64)


def _diagnose(ev: dict, pred: np.ndarray) -> str:
    src, tgt = ev["src"], ev["tgt"]
    n_rows = src.shape[0]
    if pred.shape[1] and (pred[:, 0] == BOS).mean() > 0.9:
        return ("Nearly every row of your prediction starts with BOS. predict should return the output that "
                "FOLLOWS the start token: drop the first column of your decoder's output.")
    copied = [np.array_equal(pred[i, :int((src[i] != PAD).sum())], src[i, :int((src[i] != PAD).sum())])
              for i in range(n_rows)]
    if np.mean(copied) > 0.5:
        return (f"{int(np.sum(copied))} of {n_rows} predictions repeat the input in its original order: "
                f"the model copies instead of reversing. Is the target of your training the reversed sequence "
                f"(tgt from make_batch), and does predict return the model's output, not the source?")
    s = score(pred, tgt)
    digits_only = s["counted"].copy()
    for i in range(n_rows):
        digits_only[i, int(s["counted"][i].sum()) - 1] = False  # leave out the EOS position
    digit_right = (s["right"] & digits_only).sum() / digits_only.sum()
    eos_right = ((s["got"] == EOS) & s["counted"] & ~digits_only).sum() / n_rows
    if digit_right > 0.9 and eos_right < 0.5:
        return (f"{digit_right:.0%} of the digits are right, but only {eos_right:.0%} of the sequences end with "
                f"EOS right after their last digit. The output must end with EOS (token {EOS}): train the model "
                f"to produce it (tgt from make_batch has it) and keep it in predict's output.")
    if s["token_accuracy"] < 0.2:
        return ("That is close to guessing (one digit in ten). Did the training run (a loss that goes down), "
                "and does predict use the trained model in eval mode?")
    return ""


def _examples(ev: dict, pred: np.ndarray, k: int = 3) -> str:
    s = score(pred, ev["tgt"])
    wrong = np.flatnonzero(~(s["right"] | ~s["counted"]).all(axis=1))[:k]
    lines = [f"  source {to_digits(ev['src'][i]):<16} expected {to_digits(ev['tgt'][i][1:]):<22} "
             f"yours {to_digits(pred[i])}" for i in wrong]
    return ("Some of the sequences you got wrong:\n" + "\n".join(lines)) if lines else ""


def evaluate(predict, hidden: bool = False) -> dict:
    """Token and sequence accuracy of `predict` on the held-out set (for the notebook:
    the same numbers the tests use). Prints a short report and returns the two numbers."""
    ev = collect_predictions(predict, hidden)
    pred = _validate(ev)
    s = score(pred, ev["tgt"])
    print(f"{len(pred)} held-out sequences: token accuracy {s['token_accuracy']:.1%}, "
          f"sequence accuracy {s['sequence_accuracy']:.1%}")
    examples = _examples(ev, pred)
    if examples:
        print(examples)
    return dict(token_accuracy=s["token_accuracy"], sequence_accuracy=s["sequence_accuracy"])


# ------------------------------------------------------------------------ checks
def _judge(ev: dict, what: str, key: str, at_least: float) -> None:
    where = "fresh held-out sequences drawn at grading time" if ev["hidden"] else "public held-out sequences"
    with context(before=f"Test case: {what} on {len(ev['src'])} {where} (lengths {MIN_LEN} to {MAX_LEN})."):
        pred = _validate(ev)
        s = score(pred, ev["tgt"])
        value = s[key]
        if value < at_least:
            fail(f"Your {what} is {value:.1%}; this test needs at least {at_least:.0%}. "
                 f"(Token accuracy {s['token_accuracy']:.1%}, sequence accuracy {s['sequence_accuracy']:.1%}.) "
                 f"{_diagnose(ev, pred)}\n{_examples(ev, pred)}")
    passed(f"{what} {value:.1%} >= {at_least:.0%} on {len(ev['src'])} "
           f"{'hidden' if ev['hidden'] else 'public'} held-out sequences.")


def check_token_accuracy(predict, at_least: float = 0.5, hidden: bool = False) -> None:
    """Token accuracy of predict on held-out sequences >= at_least."""
    _judge(collect_predictions(predict, hidden), "token accuracy", "token_accuracy", at_least)


def check_sequence_accuracy(predict, at_least: float = 0.95, hidden: bool = False) -> None:
    """Sequence accuracy (digits and EOS all right) of predict on held-out sequences >= at_least."""
    _judge(collect_predictions(predict, hidden), "sequence accuracy", "sequence_accuracy", at_least)
