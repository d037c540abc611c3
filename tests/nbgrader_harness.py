"""Drive real nbgrader in a temporary course directory.

A `Course` is a throwaway copy of the course (its `nbgrader_config.py` and the chosen
`solutions/<assignment>/` folders) in which the stock commands run exactly as an
instructor types them: `nbgrader db assignment add`, `generate_assignment`,
`autograde`, `generate_feedback`, `export`. Submissions are built from the released
student notebook, with chosen solution cells filled in, so what gets graded is what a
student would hand in.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"
RELEASE = REPO / "book" / "exercises"

_SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def assignments() -> list[str]:
    """Assignment ids, in course order (the order of `_toc.yml`).

    Set COURSE_ASSIGNMENTS=a,b to restrict a test run to some of them while working.
    """
    toc = (REPO / "_toc.yml").read_text()
    found = re.findall(r"book/exercises/([^/\s]+)/", toc)
    only = os.environ.get("COURSE_ASSIGNMENTS")
    return [a for a in found if a in only.split(",")] if only else found


def notebooks(assignment: str) -> list[str]:
    return sorted(p.stem for p in (SOLUTIONS / assignment).glob("*.ipynb"))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def nbgrader_cells(nb) -> dict[str, nbformat.NotebookNode]:
    """{grade_id: cell} for every cell that carries nbgrader metadata."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if "nbgrader" in c.metadata and "grade_id" in c.metadata["nbgrader"]}


def solution_code(assignment: str, notebook: str) -> dict[str, str]:
    """{grade_id: the instructor's solution code with the markers removed}."""
    nb = read_notebook(SOLUTIONS / assignment / f"{notebook}.ipynb")
    return {gid: _SOLUTION_MARKERS.sub("", c.source) for gid, c in nbgrader_cells(nb).items()
            if c.metadata["nbgrader"].get("solution") and c.cell_type == "code"}


def graded_cells(assignment: str, notebook: str) -> dict[str, float]:
    """{grade_id: points} of the autograded test cells of a source notebook (graded code
    cells that are not answers; manually graded answers are left out)."""
    nb = read_notebook(SOLUTIONS / assignment / f"{notebook}.ipynb")
    return {gid: float(c.metadata["nbgrader"]["points"]) for gid, c in nbgrader_cells(nb).items()
            if c.metadata["nbgrader"].get("grade") and not c.metadata["nbgrader"].get("solution")
            and c.cell_type == "code"}


def submitted_notebooks(db_url: str, assignment: str):
    """(student id, SubmittedNotebook) for every graded submission of `assignment` in a
    gradebook (any nbgrader db_url); used while the gradebook is open."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        for student in gb.students:
            try:
                submission = gb.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            for nb in submission.notebooks:
                yield student.id, nb


@dataclass
class Course:
    root: Path
    assignment_ids: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, assignment_ids: list[str]) -> "Course":
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
        for a in assignment_ids:
            shutil.copytree(SOLUTIONS / a, root / "solutions" / a,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        course = cls(root, list(assignment_ids))
        for a in assignment_ids:
            course.nbgrader("db", "assignment", "add", a)
            course.nbgrader("generate_assignment", a, "--force")
        return course

    # ----------------------------------------------------------------- commands
    def nbgrader(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        """Run a stock nbgrader command in the course root, as an instructor would."""
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        # nbgrader runs the `alembic` executable by name: find it next to this Python
        # even when the venv is not activated.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
        return proc

    def release_path(self, assignment: str, notebook: str) -> Path:
        return self.root / "book" / "exercises" / assignment / f"{notebook}.ipynb"

    def submission_path(self, student: str, assignment: str, notebook: str) -> Path:
        return self.root / "submitted" / student / assignment / f"{notebook}.ipynb"

    # -------------------------------------------------------------- submissions
    def submit(self, student: str, assignment: str, notebook: str,
               fills: dict[str, str] | None = None) -> Path:
        """Hand in the released notebook with the given solution cells replaced.

        `fills` maps grade_id -> code; cells not named keep the released stub
        (`raise NotImplementedError()`), so `fills=None` is a blank submission.
        """
        nb = read_notebook(self.release_path(assignment, notebook))
        cells = nbgrader_cells(nb)
        for gid, code in (fills or {}).items():
            if gid not in cells:
                raise KeyError(f"{assignment}/{notebook} has no cell with grade_id {gid!r}")
            cells[gid].source = code
        path = self.submission_path(student, assignment, notebook)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return path

    def submit_solution(self, student: str, assignment: str, notebook: str,
                        overrides: dict[str, str] | None = None) -> Path:
        """A submission with the instructor's solution code, some cells overridden."""
        fills = solution_code(assignment, notebook)
        fills.update(overrides or {})
        return self.submit(student, assignment, notebook, fills)

    def autograde(self, assignment: str, student: str | None = None, *options: str) -> subprocess.CompletedProcess:
        """`nbgrader autograde`; `options` are extra command-line settings
        (e.g. `--Execute.timeout=10`)."""
        args = ["autograde", assignment, "--create", "--force", *options]
        if student:
            args += ["--student", student]
        return self.nbgrader(*args)

    # ------------------------------------------------------------------ results
    def scores(self, assignment: str) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
        """{student: {notebook: {grade_id: (score, max_score)}}} read from the gradebook."""
        result: dict = {}
        for student, nb in submitted_notebooks(f"sqlite:///{self.root / 'gradebook.db'}", assignment):
            for grade in nb.grades:
                if grade.cell_type != "code":  # manually graded answers
                    continue
                result.setdefault(student, {}).setdefault(nb.name, {})[grade.name] = (
                    float(grade.score), float(grade.max_score))
        return result

    def autograded_outputs(self, student: str, assignment: str, notebook: str) -> dict[str, str]:
        """{grade_id: all text the cell printed or raised} from the autograded notebook."""
        nb = read_notebook(self.root / "autograded" / student / assignment / f"{notebook}.ipynb")
        texts = {}
        for gid, cell in nbgrader_cells(nb).items():
            parts = []
            for out in cell.get("outputs", []):
                if out.output_type == "stream":
                    parts.append(out.text)
                elif out.output_type == "error":
                    parts.append(f"{out.ename}: {out.evalue}")
            texts[gid] = "".join(parts)
        return texts

    def export_csv(self) -> list[dict[str, str]]:
        self.nbgrader("export", "--to", "grades.csv")
        with open(self.root / "grades.csv", newline="") as f:
            return list(csv.DictReader(f))


def dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
