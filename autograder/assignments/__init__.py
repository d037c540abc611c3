"""The API that notebook test cells call, one module per assignment.

Every public function here is a check: it takes the student's function or module,
draws inputs (fixed for public tests, fresh at grading time for hidden ones), runs
the student's code, computes the expected values with `autograder.reference`, and
either prints a short success line or raises `CheckFailed` with a teaching message.

Internally each check is two steps, kept apart on purpose:
  1. collect: call the student's code and turn what it returns into plain arrays;
  2. judge:   compare those arrays with the reference (PyTorch) on the same inputs.
Only step 1 needs the student's kernel, so the verdict can later move to a process
the student's code cannot reach without changing any notebook.
"""
