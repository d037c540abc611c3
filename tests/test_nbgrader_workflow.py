"""The instructor's workflow, end to end, with the stock nbgrader commands.

- The committed student versions in book/exercises are exactly what
  `nbgrader generate_assignment` makes from solutions/ today.
- A small class (correct, partly correct, blank) goes through generate_assignment,
  autograde, generate_feedback and export; the exported CSV has the expected scores and
  the feedback tells each student what went wrong.
"""
from __future__ import annotations

import ast
import json
import re

import pytest

from nbgrader_harness import (RELEASE, SOLUTIONS, Course, assignments, graded_cells, nbgrader_cells,
                              notebooks, read_notebook, solution_code)


# Module-scoped work (executions, builds) happens once: keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("workflow")


def _comparable(nb) -> list:
    return [(c.cell_type, c.source, json.dumps(c.metadata.get("nbgrader", {}), sort_keys=True))
            for c in nb.cells]


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    return Course.create(tmp_path_factory.mktemp("release"), assignments())


@pytest.mark.parametrize("assignment", assignments())
def test_committed_release_is_up_to_date(fresh_release, assignment):
    for nb in notebooks(assignment):
        committed = RELEASE / assignment / f"{nb}.ipynb"
        assert committed.exists(), (f"{committed} is missing: run `nbgrader generate_assignment "
                                    f"{assignment} --force` and commit book/exercises/")
        fresh = read_notebook(fresh_release.release_path(assignment, nb))
        assert _comparable(read_notebook(committed)) == _comparable(fresh), (
            f"{committed} is out of date with solutions/{assignment}/{nb}.ipynb: run "
            f"`nbgrader generate_assignment {assignment} --force` and commit book/exercises/")


@pytest.mark.parametrize("assignment", assignments())
def test_released_notebooks_hide_solutions(assignment):
    for nb in notebooks(assignment):
        text = (RELEASE / assignment / f"{nb}.ipynb").read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{assignment}/{nb} leaks `{marker}`"


def _partial_fills(assignment: str, notebook: str) -> tuple[dict[str, str], float]:
    """The solution with its last solution cell left blank, and the points it should get:
    every test cell before that cell passes, every one after fails (tests only use what
    the notebook defined above them)."""
    nb = read_notebook(RELEASE / assignment / f"{notebook}.ipynb")
    order = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    code = solution_code(assignment, notebook)
    last = [gid for gid in order if gid in code][-1]
    points = graded_cells(assignment, notebook)
    cut = order.index(last)
    expected = sum(p for gid, p in points.items() if order.index(gid) < cut)
    return {gid: src for gid, src in code.items() if gid != last}, expected


def test_class_end_to_end(tmp_path):
    assignment = assignments()[0]
    course = Course.create(tmp_path / "course", [assignment])
    expected = {"ada": 0.0, "bob": 0.0, "cyd": 0.0}
    for nb in notebooks(assignment):
        total = sum(graded_cells(assignment, nb).values())
        fills, partial = _partial_fills(assignment, nb)
        course.submit_solution("ada", assignment, nb)          # correct
        course.submit("bob", assignment, nb, fills)             # partly correct
        course.submit("cyd", assignment, nb)                    # blank
        expected["ada"] += total
        expected["bob"] += partial
    assert 0 < expected["bob"] < expected["ada"], "the partial submission must be partial"

    course.autograde(assignment)
    course.nbgrader("generate_feedback", assignment, "--force")
    rows = {r["student_id"]: r for r in course.export_csv() if r["assignment"] == assignment}

    assert set(rows) == set(expected)
    for student, score in expected.items():
        assert float(rows[student]["raw_score"]) == pytest.approx(score), (student, rows[student])
        assert float(rows[student]["max_score"]) == pytest.approx(expected["ada"])

    for student in expected:
        pages = list((course.root / "feedback" / student / assignment).glob("*.html"))
        assert pages, f"no feedback for {student}"
    blank_feedback = "".join(p.read_text() for p in (course.root / "feedback" / "cyd" / assignment).glob("*.html"))
    assert "not implemented yet" in blank_feedback
    assert not re.search(r"BEGIN (SOLUTION|HIDDEN TESTS)", blank_feedback)


@pytest.mark.parametrize("assignment", assignments())
def test_test_cells_only_call_the_check_api(assignment):
    """The grader judges test cells outside the student's kernel by reading them: they
    may only import checks from autograder.assignments and call them."""
    from autograder.sandbox import parse_test_cell

    for nb in notebooks(assignment):
        source = read_notebook(SOLUTIONS / assignment / f"{nb}.ipynb")
        for gid in graded_cells(assignment, nb):
            assert parse_test_cell(nbgrader_cells(source)[gid].source), f"{assignment}/{nb}: {gid} calls no check"


def _without_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def test_decoder_notebook_seq2seq_is_the_reference_one():
    """The decoder exercise shows students a read-only `Seq2Seq`; the grader builds the
    same class from autograder.reference. The two copies must not drift apart."""
    import inspect

    from autograder import reference

    source = read_notebook(SOLUTIONS / "decoder-and-transformer" / "decoder_and_transformer.ipynb")
    shown = [node for cell in source.cells if cell.cell_type == "code" and "class Seq2Seq" in cell.source
             for node in ast.parse(cell.source).body if isinstance(node, ast.ClassDef) and node.name == "Seq2Seq"]
    assert len(shown) == 1, "the decoder notebook should define Seq2Seq exactly once"
    graded = ast.parse(inspect.getsource(reference.Seq2Seq)).body[0]
    assert _without_docstrings(shown[0]) == _without_docstrings(graded)
