"""The course's grading library.

One concern per module:

- `reference`  the reference computations, built on PyTorch's own modules
               (`F.scaled_dot_product_attention`, `nn.MultiheadAttention`, ...), and
               the copying of a student's parameters into them;
- `inputs`     inputs for tests: fixed seeds for public tests, fresh entropy for
               hidden tests (drawn at grading time, so expected values cannot be
               copied from the public repository);
- `checks`     comparison primitives that fail with a message written for students;
- `assignments.<name>`  the small, stable API that notebook test cells call
               (`check_softmax(softmax)`, ...). Test cells never compare inline, so
               the checks can move (sandbox, out-of-process verdicts) without
               editing notebooks;
- `nbgrader_ext`  nbgrader extension points used by `nbgrader_config.py`.
"""
