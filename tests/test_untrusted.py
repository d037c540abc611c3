"""Untrusted submissions under the stock `nbgrader autograde` with the committed config.

One class of hostile and malformed submissions (tests/hostile.py) is graded in one
batch, beside a correct control. Each must get exactly its expected score, with a
reason for every lost point; the batch must finish; nothing may outlive grading; the
original submissions stay untouched; and grading some of them alone gives the same
scores as grading them together.

The whole module runs twice: with a fresh sandboxed kernel per notebook (nbgrader's
way, the default) and with kernels forked from the fork server
(`--SandboxedExecute.fork_kernels=True`, what `autograder.grade_class` uses).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hostile import ALL_TESTS, ASSIGNMENT, HOSTILE, NOTEBOOK
from nbgrader_harness import Course, graded_cells, read_notebook, solution_code

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap is not installed (apt-get install bubblewrap)"),
              pytest.mark.xdist_group("untrusted")]  # one batch, graded once

# Small limits so the loop and the flood cost seconds, not minutes.
LIMITS = ("--Execute.timeout=20", "--SandboxedExecute.notebook_timeout=120")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


KERNELS = {"fresh": (), "forked": ("--SandboxedExecute.fork_kernels=True",)}


@pytest.fixture(scope="module", params=sorted(KERNELS))
def kernels(request):
    return KERNELS[request.param]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, kernels):
    course = Course.create(tmp_path_factory.mktemp("untrusted") / "course", [ASSIGNMENT])
    release = json.loads(course.release_path(ASSIGNMENT, NOTEBOOK).read_text())
    fills = solution_code(ASSIGNMENT, NOTEBOOK)
    digests = {}
    for h in HOSTILE:
        path = course.submission_path(h.name, ASSIGNMENT, NOTEBOOK)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = h.make(fills, release)
        if text is not None:
            path.write_text(text)
        digests[h.name] = _digest(path)
    # nbgrader exits non-zero when a notebook could not be graded at all (invalid JSON):
    # it must still grade everyone else and name that student in its log.
    proc = course.nbgrader("autograde", ASSIGNMENT, "--create", "--force", *LIMITS, *kernels, check=False)
    return course, course.scores(ASSIGNMENT), digests, proc.stdout + proc.stderr


def _outputs(course, student):
    try:
        return course.autograded_outputs(student, ASSIGNMENT, NOTEBOOK)
    except FileNotFoundError:
        return {}


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_hostile_submission_gets_its_expected_score(batch, hostile):
    course, scores, _, log = batch
    points = graded_cells(ASSIGNMENT, NOTEBOOK)
    got = scores.get(hostile.name, {}).get(NOTEBOOK, {})
    outputs = _outputs(course, hostile.name)
    for gid in ALL_TESTS:
        score, maximum = got.get(gid, (0.0, points[gid]))
        assert maximum == points[gid], f"{hostile.name}: {gid} max score changed to {maximum}"
        want = points[gid] if gid in hostile.passes else 0.0
        assert score == want, (f"{hostile.name} ({hostile.threat}): {gid} scored {score}, expected {want}.\n"
                               f"Its output:\n{outputs.get(gid, '(no autograded notebook)')}")
        if gid not in hostile.passes and outputs:
            assert outputs.get(gid, "").strip(), f"{hostile.name}: {gid} lost points without a reason"
    for gid, fragment in hostile.says.items():
        text = log if gid == "log" else outputs.get(gid, "")
        assert fragment in text, f"{hostile.name}: {gid} should say {fragment!r}, said:\n{text[-2000:]}"


def test_sandbox_blocks_files_network_and_memory(batch):
    course = batch[0]
    snoop = "".join(_outputs(course, "snoop").values()) + _cell_stdout(course, "snoop")
    assert "visible" not in snoop.replace("invisible", ""), snoop
    assert "WROTE" not in snoop and "write refused" in snoop, snoop
    network = _cell_stdout(course, "network")
    assert "CONNECTED" not in network and network.count("no network") == 3, network
    memory = _cell_stdout(course, "memory-bomb")
    assert "memory capped" in memory and "ALLOCATED" not in memory, memory
    forks = _cell_stdout(course, "fork-bomb")
    assert "process limit reached" in forks, forks
    flood = _cell_stdout(course, "output-flood")
    assert "output truncated" in flood and len(flood) < 3 * 2**20


def _cell_stdout(course, student) -> str:
    path = course.root / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    nb = read_notebook(path)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _orphans() -> list[str]:
    """Sandbox processes -- fresh kernels (their command line names their connection
    file in a course-grading- folder), forked ones and fork servers (they keep the
    fork server's command line) -- whose working folder is gone. Other runs' live
    kernels are not orphans."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        ours = "course-grading-" in command or "autograder.kernel_forkserver" in command
        if ours and (cwd.endswith(" (deleted)") or not os.path.isdir(cwd)):
            found.append(f"{pid} in {cwd}: {command[:160]}")
    return found


def test_nothing_outlives_grading_and_submissions_are_untouched(batch):
    course, _, digests, _ = batch
    assert not _orphans(), "processes of the sandbox outlived grading:\n" + "\n".join(_orphans())
    for h in HOSTILE:
        assert _digest(course.submission_path(h.name, ASSIGNMENT, NOTEBOOK)) == digests[h.name], h.name


def test_a_call_that_never_returns_times_out_alone(tmp_path, kernels):
    """A function that loops only when the grader calls it: each test calling it fails
    at the per-cell limit with a message saying so, the kernel is interrupted, and the
    tests of the other functions keep their points."""
    from hostile import ATTENTION, DOT, SCALE, SOFTMAX, TESTS, code, tests_of

    course = Course.create(tmp_path / "course", [ASSIGNMENT])
    release = json.loads(course.release_path(ASSIGNMENT, NOTEBOOK).read_text())
    path = course.submission_path("stuck", ASSIGNMENT, NOTEBOOK)
    path.parent.mkdir(parents=True)
    loop = "def softmax(x, axis=-1):\n    while True:\n        pass"
    path.write_text(code(replace={SOFTMAX: loop})(solution_code(ASSIGNMENT, NOTEBOOK), release))
    course.autograde(ASSIGNMENT, "stuck", "--Execute.timeout=3", "--SandboxedExecute.notebook_timeout=120",
                     *kernels)
    got = course.scores(ASSIGNMENT)["stuck"][NOTEBOOK]
    points = graded_cells(ASSIGNMENT, NOTEBOOK)
    assert {gid: got[gid][0] for gid in ALL_TESTS} == {
        gid: points[gid] if gid in tests_of(DOT, SCALE) else 0.0 for gid in ALL_TESTS}
    outputs = _outputs(course, "stuck")
    for gid in tests_of(SOFTMAX, ATTENTION):
        assert "did not return within the 3 s time limit" in outputs[gid], outputs[gid]
    assert not _orphans(), "\n".join(_orphans())


def test_alone_equals_together(batch, kernels):
    course, together, _, _ = batch
    for student in ("ctrl", "os-exit", "fork-bomb", "forge-numpy"):
        course.autograde(ASSIGNMENT, student, *LIMITS, *kernels)
        alone = course.scores(ASSIGNMENT)[student]
        assert alone == together[student], student
