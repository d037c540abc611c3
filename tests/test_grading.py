"""Tests of the tests: every assignment graded by real nbgrader.

For each assignment, one temporary course grades a small class in one
`nbgrader autograde` run: the instructor's solution (full marks), the unmodified
student version (zero on every graded cell), and every classic mistake from
`tests/mutants/` (each must lose points, with a message that teaches).
"""
from __future__ import annotations

import pytest

from mutants import mutants_for
from nbgrader_harness import Course, assignments, graded_cells, notebooks

# Under pytest-xdist (`--dist loadgroup`), all tests of one assignment share a worker,
# so each assignment is graded once.
ASSIGNMENTS = [pytest.param(a, id=a, marks=pytest.mark.xdist_group(f"grading-{a}")) for a in assignments()]
pytestmark = pytest.mark.parametrize("assignment", ASSIGNMENTS)
_graded: dict = {}


@pytest.fixture
def graded(assignment, tmp_path_factory):
    if assignment not in _graded:
        _graded[assignment] = _grade_class(assignment, tmp_path_factory)
    return _graded[assignment]


def _grade_class(a, tmp_path_factory):
    course = Course.create(tmp_path_factory.mktemp(a), [a])
    for nb in notebooks(a):
        course.submit_solution("solution", a, nb)
        course.submit("blank", a, nb)
    for m in mutants_for(a):
        for nb in notebooks(a):
            if nb == m.notebook:
                course.submit_solution(m.name, a, nb, m.replace)
            else:
                course.submit_solution(m.name, a, nb)
    course.autograde(a)
    return a, course, course.scores(a)


def test_solution_scores_full_marks(graded):
    a, course, scores = graded
    for nb in notebooks(a):
        expected = graded_cells(a, nb)
        assert expected, f"{a}/{nb} has no graded test cells"
        got = scores["solution"][nb]
        lost = {gid: s for gid, s in got.items() if s[0] < s[1]}
        assert not lost, (f"{a}/{nb}: the solution loses points in {lost}:\n"
                          + "\n".join(course.autograded_outputs("solution", a, nb)[g] for g in lost))
        assert set(got) == set(expected)


def test_blank_release_scores_zero_on_every_graded_cell(graded):
    a, course, scores = graded
    for nb in notebooks(a):
        earned = {gid: s for gid, s in scores["blank"][nb].items() if s[0] > 0}
        assert not earned, f"{a}/{nb}: an untouched student notebook earns points in {earned}"


def test_classic_mistakes_lose_points(graded):
    a, course, scores = graded
    mutants = mutants_for(a)
    assert len(mutants) >= 3, f"{a} needs at least three classic wrong implementations"
    problems = []
    for m in mutants:
        got = scores[m.name][m.notebook]
        outputs = course.autograded_outputs(m.name, a, m.notebook)
        for gid in m.must_fail:
            score, maximum = got[gid]
            if score >= maximum:
                problems.append(f"{m.name}: test cell {gid} still gives {score}/{maximum}")
            elif m.says and m.says not in outputs[gid]:
                problems.append(f"{m.name}: {gid} fails without saying {m.says!r}; it said:\n{outputs[gid]}")
        for gid in m.must_pass:
            score, maximum = got[gid]
            if score < maximum:
                problems.append(f"{m.name}: {gid} should not be affected, got {score}/{maximum}:\n{outputs[gid]}")
    assert not problems, "\n".join(problems)
