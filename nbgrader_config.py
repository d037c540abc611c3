"""nbgrader configuration for the course. The repository root is the course directory.

    solutions/<assignment>/<notebook>.ipynb        instructor source (solutions, hidden tests)
    book/exercises/<assignment>/<notebook>.ipynb   student version (release), committed
    submitted/<student>/<assignment>/              collected work (ignored by git)
    autograded/, feedback/, gradebook.db           grading results (ignored by git)
"""
c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "transformers-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "book/exercises"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# Per-cell limit while autograding. nbgrader 0.9 reads `Execute.timeout`; the
# documented `ExecutePreprocessor.timeout` is ignored.
c.Execute.timeout = 120

# Student notebooks show this where the solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# nbgrader's stock autograde pipeline with two replacements:
# - SandboxedExecute instead of Execute: the student's kernel runs in a bubblewrap sandbox
#   with resource limits, and graded test cells are judged by the grader, outside the
#   kernel (autograder/sandbox.py);
# - StderrToStdout: stderr (torch warnings) in a graded cell must not zero a correct
#   answer (autograder/nbgrader_ext.py).
c.Autograde.autograde_preprocessors = [
    "autograder.sandbox.SandboxedExecute",
    "autograder.nbgrader_ext.StderrToStdout",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Before nbgrader's own checks: undo metadata tampering (duplicated or renamed test
# cells, altered schema), then let OverwriteCells put back any test cell that is missing.
c.Autograde.sanitize_preprocessors = [
    "autograder.nbgrader_ext.RepairSubmission",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.OverwriteCells.add_missing_cells = True

# Limits of one student's kernel while autograding (see README, "Threat model").
c.SandboxedExecute.memory_limit_mb = 4096      # address space
c.SandboxedExecute.max_processes = 64          # per kernel user; stops fork bombs
c.SandboxedExecute.notebook_timeout = 600      # seconds for a whole notebook
c.SandboxedExecute.output_limit_kb = 1024      # output kept per notebook
# Without bubblewrap, grading refuses to start. To grade trusted notebooks without any
# protection (never student work), uncomment:
# c.SandboxedExecute.require_sandbox = False

# Feedback shows each test's verdict and the public test code; the hidden-test code
# (between the HIDDEN TESTS markers) is left out, as in the released notebook.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
