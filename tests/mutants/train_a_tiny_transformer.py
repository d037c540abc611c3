"""Classic wrong answers to the capstone train-a-tiny-transformer.

Each mutant is the instructor's solution with one classic mistake edited in (`_edit`
fails loudly if the solution changes and an edit no longer applies). Most of them
still train (about 5-20 s each when grading).
"""
from __future__ import annotations

from mutants import Mutant
from nbgrader_harness import solution_code

NB = "train_a_tiny_transformer"
TOKEN, SEQ80, SEQ95 = "test_token_accuracy", "test_sequence_accuracy_80", "test_sequence_accuracy_95"
_CODE = solution_code("train-a-tiny-transformer", NB)


def _edit(cell: str, *pairs: tuple[str, str]) -> dict[str, str]:
    code = _CODE[cell]
    for old, new in pairs:
        if code.count(old) != 1:
            raise AssertionError(f"mutant edit does not apply to the solution: {old!r}")
        code = code.replace(old, new)
    return {cell: code}


_PREDICT = "return greedy_decode(model, src, max_len=src.shape[1] + 1)"

MUTANTS = [
    # The loop never runs: an untrained model guesses.
    Mutant("untrained", NB, _edit("training", ("max_steps, batch_size, budget_s = 1500,",
                                               "max_steps, batch_size, budget_s = 0,")),
           must_fail=(TOKEN, SEQ80, SEQ95), says="close to guessing"),
    # predict hands back the source: the identity, not the reversal.
    Mutant("identity", NB, _edit("predict", (_PREDICT, "return src")),
           must_fail=(TOKEN, SEQ80, SEQ95), says="repeat the input in its original order"),
    # Trained to copy: the labels are the digits in their original order.
    Mutant("trained-without-reversal", NB, _edit("training", (
        "src, tgt = make_batch(rng, batch_size)",
        "src, tgt = make_batch(rng, batch_size)\n"
        "    tgt[:, 1:-1] = torch.where(tgt[:, 1:-1] >= DIGIT0, src, tgt[:, 1:-1])  # digits, not reversed")),
           must_fail=(TOKEN, SEQ80, SEQ95), says="copies instead of reversing"),
    # The decoder's output with its start token: everything is one position late.
    Mutant("bos-included", NB, _edit("predict", (_PREDICT, "out = greedy_decode(model, src, max_len=src.shape[1] + 1)\n"
                                                           "    return torch.cat([torch.full((len(src), 1), BOS), out], 1)")),
           must_fail=(TOKEN, SEQ80, SEQ95), says="starts with BOS"),
    # The end token is dropped: the digits are right (token accuracy passes), no sequence is.
    Mutant("eos-dropped", NB, _edit("predict", (_PREDICT, "out = greedy_decode(model, src, max_len=src.shape[1] + 1)\n"
                                                          "    return out.masked_fill(out == EOS, PAD)")),
           must_fail=(SEQ80, SEQ95), says="end with EOS", must_pass=(TOKEN,)),
]
