"""Classic wrong implementations, one module per assignment (`tests/mutants/<id>.py`
with the dashes of the assignment id turned into underscores).

Each module defines `MUTANTS: list[Mutant]`. A mutant is the instructor's solution with
some solution cells replaced by a classic mistake; grading it must cost points in the
test cells named in `must_fail`, and the failure message must contain `says`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mutant:
    name: str                      # becomes the student id, e.g. "no-scaling"
    notebook: str                  # notebook name without .ipynb
    replace: dict[str, str]        # grade_id of a solution cell -> wrong code
    must_fail: tuple[str, ...]     # grade_ids of test cells that must lose points
    says: str = ""                 # a fragment the failure message must contain
    must_pass: tuple[str, ...] = field(default=())  # test cells that must stay full


def mutants_for(assignment: str) -> list[Mutant]:
    try:
        module = importlib.import_module(f"mutants.{assignment.replace('-', '_')}")
    except ModuleNotFoundError:
        return []
    return list(module.MUTANTS)


def edit_solution(assignment: str, notebook: str, cell: str, *pairs: tuple[str, str]) -> dict[str, str]:
    """{cell: the instructor's solution code of `cell` with each (old, new) edit applied}.

    An edit whose `old` text is not found exactly once fails loudly, so a mutant never
    silently turns back into the solution when the solution changes.
    """
    from nbgrader_harness import solution_code

    code = solution_code(assignment, notebook)[cell]
    for old, new in pairs:
        if code.count(old) != 1:
            raise AssertionError(f"mutant edit does not apply to {assignment}/{cell}: {old!r}")
        code = code.replace(old, new)
    return {cell: code}
