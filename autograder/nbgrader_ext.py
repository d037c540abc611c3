"""nbgrader extension points used by the committed `nbgrader_config.py`.

Registered through nbgrader's own configuration (the `Autograde.autograde_preprocessors`
list), so the stock `nbgrader autograde` command uses them.
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade


class StderrToStdout(NbGraderPreprocessor):
    """Turn stderr streams of graded cells into stdout before grades are computed.

    nbgrader scores any graded code cell with stderr output as zero. Torch and NumPy
    print warnings on stderr (deprecations, non-writable arrays, ...), which would turn
    a correct answer into zero. A real failure is an `error` output and still scores
    zero; the warning text stays visible in the feedback, marked as such.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and is_grade(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    output["name"] = "stdout"
                    output["text"] = "[warning output] " + output.get("text", "")
        return cell, resources


class RepairSubmission(NbGraderPreprocessor):
    """Runs first when a submission is sanitized: undo metadata tampering that would
    otherwise make nbgrader abort the whole batch or skip a test.

    nbgrader raises SchemaTooOldError for the whole class when one notebook has cells
    with broken nbgrader metadata (for example a duplicated test cell, whose copy
    DeduplicateIds empties). Here, the nbgrader metadata of a cell is removed when it is
    not a dict of the current schema, names a grade id the gradebook does not know, or
    repeats a grade id seen earlier in the notebook. The cell becomes an ordinary cell;
    nbgrader's own OverwriteCells (with `add_missing_cells`) then puts back every test
    cell the submission lacks, from the gradebook.
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            source = gb.find_notebook(info["notebook"], info["assignment"])
            known = {cell.name for cell in source.source_cells}
        seen: set[str] = set()
        for index, cell in enumerate(nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta is None:
                continue
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            problem = None
            if not isinstance(meta, dict) or meta.get("schema_version") != 3:
                problem = "nbgrader metadata of an unknown version"
            elif grade_id not in known:
                problem = f"unknown grade id {grade_id!r}"
            elif grade_id in seen:
                problem = f"a second copy of {grade_id!r}"
            if problem:
                self.log.warning("Submission cell %d has %s: treated as an ordinary cell", index, problem)
                del cell.metadata["nbgrader"]
            else:
                seen.add(grade_id)
        return nb, resources
