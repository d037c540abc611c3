"""Hostile and malformed submissions of the attention-scores assignment, each with the
score it must get from `nbgrader autograde` with the committed configuration.

A submission is built from the correct solution (`fills`, grade_id -> code) by
`make(fills) -> notebook text` (None: no notebook handed in). `passes` names the test
cells that must keep full marks; every other test cell must score zero. `says` maps a
test cell (or "log") to a fragment its output must contain, so every lost point comes
with a reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from nbgrader_harness import REPO

ASSIGNMENT, NOTEBOOK = "attention-scores", "attention_scores"
DOT, SCALE, SOFTMAX, ATTENTION = "dot_product_scores", "scale_scores", "softmax", "attention"
TESTS = {part: (f"test_{part}_public", f"test_{part}_hidden") for part in (DOT, SCALE, SOFTMAX, ATTENTION)}
ALL_TESTS = tuple(t for pair in TESTS.values() for t in pair)


def tests_of(*parts: str) -> tuple[str, ...]:
    return tuple(t for p in parts for t in TESTS[p])


# Wrong but plausible implementations that the forgeries try to pass off as right.
IDENTITY = {
    DOT: "def dot_product_scores(Q, K):\n    return Q @ Q.swapaxes(-1, -2)",
    SCALE: "def scale_scores(scores, d_k):\n    return scores",
    SOFTMAX: "def softmax(x, axis=-1):\n    return x",
    ATTENTION: "def attention(Q, K, V):\n    return Q, Q @ Q.swapaxes(-1, -2)",
}


@dataclass(frozen=True)
class Hostile:
    name: str
    threat: str
    make: Callable[[dict, dict], str | None]  # (solution fills, released notebook) -> text
    passes: tuple[str, ...] = ()
    says: dict = field(default_factory=dict)


def _notebook(fills: dict, release: dict) -> dict:
    nb = json.loads(json.dumps(release))
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in fills:
            cell["source"] = fills[gid]
    return nb


def code(prefix: dict | None = None, replace: dict | None = None, suffix: dict | None = None):
    """A submission: the solution, with code put before/after or instead of some cells."""
    def make(fills, release):
        f = dict(fills)
        for gid, text in (replace or {}).items():
            f[gid] = text
        for gid, text in (prefix or {}).items():
            f[gid] = text + "\n" + f[gid]
        for gid, text in (suffix or {}).items():
            f[gid] = f[gid] + "\n" + text
        return json.dumps(_notebook(f, release))
    return make


def raw(edit: Callable[[dict], object]):
    """A submission whose notebook JSON is edited by `edit(nb)` (which may return text)."""
    def make(fills, release):
        nb = _notebook(fills, release)
        result = edit(nb)
        return result if isinstance(result, str) else json.dumps(nb)
    return make


def _cell(nb, gid):
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid)


def _set_points(nb):
    _cell(nb, TESTS[SOFTMAX][1])["metadata"]["nbgrader"]["points"] = 100


def _rename_grade_id(nb):
    _cell(nb, TESTS[SOFTMAX][1])["metadata"]["nbgrader"]["grade_id"] = "my_own_test"


def _delete_hidden_tests(nb):
    nb["cells"] = [c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in
                   {TESTS[p][1] for p in TESTS}]


def _duplicate_test(nb):
    cell = _cell(nb, TESTS[DOT][0])
    nb["cells"].insert(nb["cells"].index(cell), json.loads(json.dumps(cell)))


def _to_markdown(nb):
    cell = _cell(nb, TESTS[ATTENTION][1])
    cell["cell_type"] = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)


def _wrong_kernel(nb):
    nb["metadata"]["kernelspec"] = {"name": "no-such-kernel", "display_name": "Nope", "language": "python"}


def _old_nbformat(nb):
    nb["nbformat"] = 3
    nb["nbformat_minor"] = 0


SNOOP = '''
import glob, os
for path in ["../../../gradebook.db", "REPO/solutions", "REPO/tests/hostile.py", "/work/main/solutions",
             "../../../solutions", "../../../submitted", "/opt", "/srv", "/var/lib",
             os.path.expanduser("~/.ssh")] + glob.glob("/tmp/*/course/gradebook.db"):
    print("visible" if os.path.exists(path) else "hidden", path)
for path in ["../../../gradebook.db", "../../../submitted/ctrl/attention-scores/attention_scores.ipynb",
             "/usr/escape.txt"]:
    try:
        open(path, "a").write("tampered")
        print("WROTE", path)
    except OSError as error:
        print("write refused", path, type(error).__name__)
'''.replace("REPO", str(REPO))  # this checkout, wherever it is

HOSTILE = [
    Hostile("ctrl", "control: the correct solution", code(), passes=ALL_TESTS),
    # ---- forged verdicts ------------------------------------------------------------
    Hostile("forge-numpy", "monkeypatch NumPy's comparisons", code(
        prefix={DOT: "import numpy as np\nnp.allclose = lambda *a, **k: True\nnp.isclose = lambda *a, **k: np.True_\n"
                     "np.testing.assert_allclose = lambda *a, **k: None\nnp.array_equal = lambda *a, **k: True"},
        replace=IDENTITY), says={TESTS[SOFTMAX][0]: "sum to"}),
    Hostile("forge-checks", "patch the course's own check helpers and torch", code(
        prefix={DOT: "import autograder.checks as c, torch, math, builtins\n"
                     "for n in dir(c):\n    if not n.startswith('_') and callable(getattr(c, n)):\n"
                     "        setattr(c, n, lambda *a, **k: None)\n"
                     "torch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"
                     "math.isclose = lambda *a, **k: True\nbuiltins.isinstance = lambda *a: True\n"
                     "torch.Tensor.__sub__ = lambda *a: torch.zeros(1)\ntorch.Tensor.abs = lambda self: torch.zeros(1)"},
        replace=IDENTITY)),
    Hostile("forge-print", "print text that looks like a pass", code(
        replace={k: v + "\nprint('✓ matches the reference on all cases. All tests passed!')" for k, v in IDENTITY.items()})),
    Hostile("forge-transformer", "IPython input transformer that blanks every later cell", code(
        suffix={DOT: "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'])"},
        replace={k: v for k, v in IDENTITY.items() if k != DOT}),
        says={TESTS[DOT][0]: "no answer"}),  # it blanks the grader's requests too: self-sabotage
    Hostile("forge-lying-objects", "results whose __eq__, __array__ and __float__ lie", code(replace={
        SOFTMAX: "class Liar:\n    def __eq__(self, other): return True\n    def __array__(self, *a, **k):\n"
                 "        import numpy as np; return np.ones(1)\n    def __float__(self): return 1.0\n"
                 "    shape = property(lambda self: (3, 5))\n"
                 "def softmax(x, axis=-1):\n    return Liar()"}),
        passes=tests_of(DOT, SCALE)),  # attention uses the lying softmax: it fails too
    Hostile("sys-exit", "sys.exit() after the definitions (the kernel survives it)", code(
        suffix={DOT: "import sys\nsys.exit(0)"}), passes=ALL_TESTS),
    Hostile("os-exit", "os._exit() kills the kernel in the middle", code(
        suffix={SOFTMAX: "import os\nos._exit(1)"}), passes=tests_of(DOT, SCALE),
        says={TESTS[SOFTMAX][0]: "kernel"}),
    # ---- resources --------------------------------------------------------------------
    Hostile("infinite-loop", "an infinite loop in one cell", code(prefix={SOFTMAX: "while True:\n    pass"}),
            passes=tests_of(DOT, SCALE), says={TESTS[SOFTMAX][0]: "softmax"}),
    Hostile("memory-bomb", "allocate far more than the memory limit", code(prefix={
        DOT: "try:\n    hog = bytearray(64 * 2**30)\n    print('ALLOCATED 64 GiB')\nexcept MemoryError:\n    print('memory capped')"}),
        passes=ALL_TESTS),
    Hostile("fork-bomb", "fork until the process limit", code(prefix={
        ATTENTION: "import os, time\nforked = 0\ntry:\n    while forked < 10000:\n        if os.fork() == 0:\n"
                   "            time.sleep(600)\n            os._exit(0)\n        forked += 1\nexcept OSError:\n"
                   "    print('process limit reached after', forked, 'forks')"}),
        passes=ALL_TESTS),
    Hostile("output-flood", "print hundreds of megabytes", code(prefix={
        DOT: "import sys\nfor _ in range(300_000):\n    sys.stdout.write('flood ' * 200 + '\\n')"}),
        passes=ALL_TESTS),
    Hostile("network", "reach the network", code(prefix={
        DOT: "import socket\nfor host in [('pypi.org', 443), ('1.1.1.1', 53), ('127.0.0.1', 22)]:\n    try:\n"
             "        socket.create_connection(host, timeout=3)\n        print('CONNECTED', host)\n"
             "    except OSError as e:\n        print('no network', host, type(e).__name__)"}),
        passes=ALL_TESTS),
    # ---- files ------------------------------------------------------------------------
    Hostile("snoop", "read or write the gradebook, solutions, other submissions", code(prefix={DOT: SNOOP}),
            passes=ALL_TESTS),
    # ---- tampering and malformed input ------------------------------------------------
    Hostile("edit-points", "test cell's points raised to 100", raw(_set_points), passes=ALL_TESTS),
    Hostile("rename-grade-id", "test cell's grade id changed", raw(_rename_grade_id), passes=ALL_TESTS),
    Hostile("delete-tests", "hidden test cells deleted", raw(_delete_hidden_tests), passes=ALL_TESTS),
    Hostile("duplicate-test", "a test cell duplicated", raw(_duplicate_test), passes=ALL_TESTS),
    Hostile("markdown-test", "a test cell turned into markdown", raw(_to_markdown), passes=ALL_TESTS),
    Hostile("wrong-kernel", "kernel name changed", raw(_wrong_kernel), passes=ALL_TESTS),
    Hostile("old-nbformat", "nbformat version changed to 3", raw(_old_nbformat)),
    Hostile("invalid-json", "the file is not JSON", raw(lambda nb: '{"cells": [ this is not json'),
            says={"log": "for student 'invalid-json'"}),
    Hostile("missing", "no notebook handed in", lambda fills, release: None),
]
