"""Comparison primitives whose failures teach.

Every primitive raises `CheckFailed` (an AssertionError, so nbgrader counts the cell as
failed) with a message in the course's words: what was expected, what came back, and
the most likely reason. Test cells never call these directly; they call the per-
assignment API in `autograder.assignments`.
"""
from __future__ import annotations

import contextlib
import functools
import io
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch


class CheckFailed(AssertionError):
    """A failed check. Its message is written for the student."""

    def __init__(self, message: str):
        super().__init__("\n" + message.strip())


def fail(message: str) -> None:
    raise CheckFailed(message)


@contextlib.contextmanager
def context(before: str = "", after: str = "") -> Iterator[None]:
    """Add words to any `CheckFailed` raised inside: `before` names the test case (its
    shapes, so a hidden-test failure can be reproduced), `after` adds a hint."""
    try:
        yield
    except CheckFailed as failure:
        raise CheckFailed("\n".join(p for p in (before, str(failure).strip(), after) if p)) from None


def passed(message: str) -> None:
    """Report a passed check on stdout (stderr would zero the cell in nbgrader)."""
    print(f"✓ {message}")


# --------------------------------------------------------------------------- calling
class UsedBuiltin(Exception):
    """Raised by a tripwire when student code calls a forbidden built-in."""


# Built-ins that an exercise asking for a from-scratch implementation must not call.
# Each entry: (owner object, attribute name, what to call it in the message).
def _builtin_targets(names: set[str]):
    import torch.nn.functional as F
    from torch import nn

    table = {
        "scaled_dot_product_attention": [
            (F, "scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention"),
            (torch._C._nn, "scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention"),
        ],
        "multi_head_attention": [
            (F, "multi_head_attention_forward", "torch.nn.functional.multi_head_attention_forward"),
            (nn.MultiheadAttention, "forward", "torch.nn.MultiheadAttention"),
        ],
        "softmax": [
            (torch, "softmax", "torch.softmax"),
            (torch.Tensor, "softmax", "Tensor.softmax"),
            (F, "softmax", "torch.nn.functional.softmax"),
        ],
        "transformer_layers": [
            (nn.TransformerEncoderLayer, "forward", "torch.nn.TransformerEncoderLayer"),
            (nn.TransformerDecoderLayer, "forward", "torch.nn.TransformerDecoderLayer"),
            (nn.Transformer, "forward", "torch.nn.Transformer"),
            (nn.LayerNorm, "forward", "torch.nn.LayerNorm"),
            (F, "layer_norm", "torch.nn.functional.layer_norm"),
            (torch, "layer_norm", "torch.layer_norm"),
        ],
        # decoder-and-transformer: the decoder is the subject; the encoder, attention
        # and LayerNorm may be PyTorch's.
        "transformer_decoder": [
            (nn.TransformerDecoderLayer, "forward", "torch.nn.TransformerDecoderLayer"),
            (nn.TransformerDecoder, "forward", "torch.nn.TransformerDecoder"),
            (nn.Transformer, "forward", "torch.nn.Transformer"),
        ],
    }
    for name in names:
        yield from table[name]


# Names whose use in a student's answer cells means the built-in is being called: the
# grader scans answer cells for them as attributes (`F.scaled_dot_product_attention`),
# imports (`from torch.nn.functional import ...`) and strings (`getattr(F, "...")`).
# A plain name is not flagged, so a student's own `scaled_dot_product_attention` is fine.
FORBIDDEN_NAMES = {
    "scaled_dot_product_attention": {"scaled_dot_product_attention", "_scaled_dot_product_attention_math",
                                     "_scaled_dot_product_flash_attention",
                                     "_scaled_dot_product_efficient_attention"},
    "multi_head_attention": {"MultiheadAttention", "multi_head_attention_forward"},
    "softmax": {"softmax", "Softmax", "log_softmax"},
    "transformer_layers": {"TransformerEncoderLayer", "TransformerDecoderLayer", "Transformer",
                           "TransformerEncoder", "TransformerDecoder", "LayerNorm", "layer_norm"},
    # Not "Transformer": `nn.Transformer.generate_square_subsequent_mask` is allowed.
    "transformer_decoder": {"TransformerDecoderLayer", "TransformerDecoder"},
}

_remote_sources: list[str] | None = None


def set_remote_sources(sources):
    """Grader side: the answer cells of the notebook being graded (for the static scan).
    Returns the previous value, to restore afterwards."""
    global _remote_sources
    previous, _remote_sources = _remote_sources, sources
    return previous


def scan_for_builtins(sources: list[str], names) -> str | None:
    """The first forbidden built-in that the given code uses, as 'name (in: line)'."""
    # A hidden test calls student code a few hundred times with the same answer cells:
    # parse and walk them once.
    return _scan(tuple(sources), tuple(sorted(names)))


@functools.lru_cache(maxsize=64)
def _scan(sources: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    import ast

    wanted = set().union(*(FORBIDDEN_NAMES[n] for n in names)) if names else set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.Attribute) and node.attr in wanted:
                hit = node.attr
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
                hit = next((a.name for a in node.names if a.name in wanted), None)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in wanted:
                hit = node.value
            if hit:
                line = source.splitlines()[node.lineno - 1].strip() if hasattr(node, "lineno") else ""
                return f"{hit} (in: {line[:80]})"
    return None


@contextlib.contextmanager
def forbid_builtins(*names: str) -> Iterator[None]:
    """While active, calling one of the named built-ins raises `UsedBuiltin`."""
    saved = []

    def tripwire(label):
        def _raise(*args, **kwargs):
            raise UsedBuiltin(label)
        return _raise

    try:
        for owner, attr, label in _builtin_targets(set(names)):
            saved.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, tripwire(label))
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def call_student(fn: Callable, *args, what: str, forbid: tuple[str, ...] = (), error_hint: str = "",
                 **kwargs) -> Any:
    """Call student code with warnings silenced and clear messages for the usual failures.

    - NotImplementedError (the released stub): "not implemented yet".
    - A forbidden built-in: says which one and why it is not allowed.
    - Any other exception: its type and message, plus what was being called and
      `error_hint` (the likely cause of an exception in this test, if any).
    Warnings and stderr output are captured, so a torch warning never zeroes a
    correct answer.
    """
    if fn is None:
        fail(f"{what} is None: did you run the cell that defines it?")
    if _is_remote(fn):
        return _call_remote("call", fn, args, kwargs, what=what, forbid=forbid, error_hint=error_hint)
    stderr = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(stderr), forbid_builtins(*forbid):
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    except NotImplementedError:
        _fail_not_implemented(what)
    except UsedBuiltin as used:
        _fail_used_builtin(what, used.args[0])
    except CheckFailed:
        raise
    except Exception as error:  # the student's own bug: show it in course terms
        fail(f"{what} raised {type(error).__name__}: {error}\n{error_hint}")


def _fail_not_implemented(what: str) -> None:
    fail(f"{what} is not implemented yet: replace `raise NotImplementedError()` with your code.")


def _fail_used_builtin(what: str, builtin: str) -> None:
    fail(f"{what} calls {builtin}. This exercise asks you to implement it from scratch, so this "
         f"test gives no points for calling the built-in. (The reference uses it to check your answer.)")


def student_gradients(fn: Callable, *args, wrt: tuple[int, ...], cotangent: torch.Tensor, what: str,
                      forbid: tuple[str, ...] = (), output_index: int = 0, error_hint: str = "", **kwargs):
    """Gradients of sum(output * cotangent) with respect to the positional arguments `wrt`
    (tensors), where output is fn(*args)[output_index] (or fn(*args) if not a tuple).
    Returns a tuple of tensors (None where no gradient flows)."""
    if _is_remote(fn):
        return _call_remote("grad", fn, args, kwargs, what=what, forbid=forbid, wrt=list(wrt),
                            output_index=output_index, cotangent=cotangent, error_hint=error_hint)
    args = list(args)
    for i in wrt:
        args[i] = args[i].detach().clone().requires_grad_(True)

    def run():
        out = fn(*args, **kwargs)
        out = out[output_index] if isinstance(out, (tuple, list)) else out
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise RuntimeError("the output is not connected to the inputs' autograd graph "
                               "(detached, or converted to NumPy?)")
        return torch.autograd.grad((out * cotangent.to(out.dtype)).sum(), [args[i] for i in wrt],
                                   allow_unused=True)
    return call_student(run, what=what, forbid=forbid, error_hint=error_hint)


# Student objects (modules, functions) may live in the grader's process (a student
# running public tests) or in a sandboxed kernel (autograding, where the checks get a
# `RemoteHandle`). Checks touch them only through `call_student`, `student_gradients`,
# the two functions below and `student_state` / `load_student_state` (further down),
# which work the same in both cases. Methods are called through attributes:
# `call_student(module.split_heads, x, what=...)`.
def student_isinstance(obj, kind: type) -> bool:
    """isinstance() for a student object, local or in the kernel."""
    if _is_remote(obj):
        if not obj._mro:
            obj = obj._channel.request("get", obj)  # a name: ask the kernel what it is
            if not _is_remote(obj):
                return isinstance(obj, kind)
        return f"{kind.__module__}.{kind.__qualname__}" in obj._mro
    return isinstance(obj, kind)


def submodule_types(module) -> dict[str, str]:
    """{submodule name: qualified class name} of a student's nn.Module ('' is itself)."""
    if _is_remote(module):
        return module._channel.request("types", module)
    return {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in module.named_modules()}


def _is_remote(obj) -> bool:
    return type(obj).__name__ == "RemoteHandle" and type(obj).__module__ == "autograder.sandbox"


def _call_remote(op, fn, args, kwargs, *, what, forbid, error_hint="", **extra):
    """Grader side of `call_student`: the call happens in the student's sandboxed kernel."""
    from .sandbox import StudentError

    used = scan_for_builtins(_remote_sources or [], forbid)
    if used:
        _fail_used_builtin(what, f"the built-in {used}")
    try:
        return fn._channel.request(op, fn, args=args, kwargs=kwargs, forbid=forbid, **extra)
    except StudentError as error:
        if error.kind == "NotImplementedError":
            _fail_not_implemented(what)
        if error.kind == "UsedBuiltin":
            _fail_used_builtin(what, error.message)
        fail(f"{what} raised {error.kind}: {error.message}\n{error_hint}")


# ------------------------------------------------------------------------ comparing
def as_array(x: Any, what: str) -> np.ndarray:
    """Convert a student's result to a float64 NumPy array, or fail saying why not."""
    if x is None:
        fail(f"{what} returned None: did you forget a `return`?")
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        fail(f"{what} returned a {type(x).__name__}, which is not an array of numbers ({error}).")
    return a


def expect_type(x: Any, kind: type, what: str) -> None:
    if not isinstance(x, kind):
        fail(f"{what} should be a {kind.__module__}.{kind.__name__}, got {type(x).__module__}."
             f"{type(x).__name__}.")


def expect_shape(got: np.ndarray, expected: tuple, what: str, hint: str = "") -> None:
    if tuple(got.shape) != tuple(expected):
        fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected)}. {hint}".strip())


def expect_finite(got: np.ndarray, what: str, hint: str = "") -> None:
    bad = ~np.isfinite(got)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        fail(f"{what} contains {int(bad.sum())} non-finite values (NaN or inf), the first at "
             f"index {idx}: {got[idx]}. {hint}".strip())


def expect_rows_sum_to_one(weights: np.ndarray, what: str = "attention weights",
                           allow_zero_rows: bool = False) -> None:
    """Each row (last axis) of a softmax output must sum to 1."""
    sums = weights.sum(axis=-1)
    ok = np.isclose(sums, 1.0, atol=1e-5)
    if allow_zero_rows:
        ok |= np.isclose(sums, 0.0, atol=1e-7)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        fail(f"Rows of your {what} sum to {sums[idx]:.3f}, not 1 (first bad row at index {idx}): "
             f"softmax missing, or taken over the wrong axis? Each query's weights over the keys "
             f"(the last axis) must form a probability distribution.")


def expect_close(got: np.ndarray, expected: np.ndarray, what: str, *, atol: float = 1e-6,
                 rtol: float = 1e-5, hint: str = "") -> None:
    """Shapes must match and values agree within tolerance; show the worst entry."""
    expect_shape(got, expected.shape, what, hint)
    if np.isnan(got).any() and not np.isnan(expected).any():
        expect_finite(got, what, hint)
    diff = np.abs(got - expected)
    tol = atol + rtol * np.abs(expected)
    bad = ~(diff <= tol)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.where(bad, diff, -1)), got.shape))
        fail(f"{what} differs from the reference at {int(bad.sum())} of {got.size} entries. "
             f"Largest difference at index {idx}: yours {got[idx]:.6g}, reference {expected[idx]:.6g} "
             f"(shape {tuple(got.shape)}). {hint}".strip())


def diagnose(got: np.ndarray, candidates: dict[str, np.ndarray], atol: float = 1e-6) -> str:
    """Name the classic mistake whose output equals the student's, if any.

    `candidates` maps a hint ("you scaled by sqrt(d_model) instead of sqrt(d_k)") to
    what that mistake would produce on the same input.
    """
    for hint, wrong in candidates.items():
        if wrong.shape == got.shape and np.allclose(got, wrong, atol=atol, rtol=1e-5):
            return f"Your result matches a classic mistake: {hint}."
    return ""


# ------------------------------------------------------------------ student modules
# A student's nn.Module reached only through method calls (`call_student`), so the same
# check works on the module itself (public tests, in the student's kernel) and on a
# sandbox handle to it (grading, autograder.sandbox).
MODULE_HINT = "Does your class inherit from nn.Module and call super().__init__() first?"


def student_method(obj: Any, name: str, what: str) -> Any:
    """`obj.name`, or a failure saying that the student's object has no such method."""
    method = getattr(obj, name, None)
    if method is None:
        fail(f"{what} has no method `{name}`. {MODULE_HINT}")
    return method


def student_state(module: Any, what: str) -> dict[str, np.ndarray]:
    """The module's state_dict (parameters and buffers, by name) as float64 NumPy copies."""
    state = call_student(student_method(module, "state_dict", what), what=f"{what}.state_dict()",
                         error_hint=MODULE_HINT)
    if not isinstance(state, dict):
        fail(f"{what}.state_dict() returned a {type(state).__name__}, not a dict. {MODULE_HINT}")
    return {name: as_array(value, f"{what}.state_dict()[{name!r}]").copy() for name, value in state.items()}


def load_student_state(module: Any, state: dict[str, np.ndarray], what: str) -> None:
    """Switch the module to float64 and eval mode, then load `state` (same names) into it."""
    for method in ("double", "eval"):
        call_student(student_method(module, method, what), what=f"{what}.{method}()", error_hint=MODULE_HINT)
    tensors = {name: torch.from_numpy(np.array(value, dtype=np.float64)) for name, value in state.items()}
    call_student(student_method(module, "load_state_dict", what), tensors, what=f"{what}.load_state_dict(...)",
                 error_hint=MODULE_HINT)
