"""The only course code that runs inside a student's kernel while grading.

The grader (autograder.sandbox) never trusts the kernel with a verdict. It asks the
kernel to do one thing at a time: call a student's function on inputs the grader drew,
read an attribute, or compute gradients; the kernel answers with plain data (JSON plus
NumPy arrays in .npz form, loaded by the grader with `allow_pickle=False`). Whatever a
submission does to this module, the worst it can do is answer wrongly, which the
grader judges like any other wrong answer.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import warnings

import numpy as np

MIME = "application/x-course-rpc+json"
_objects: dict[int, object] = {}


# ----------------------------------------------------------------- wire format
def encode(value, arrays: list, register=None):
    """JSON-able tree; arrays go to `arrays`; other objects become handles via `register`."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, torch.Tensor):
        arrays.append(value.detach().cpu().numpy())
        return {"__array__": len(arrays) - 1, "tensor": True, "dtype": str(value.dtype)}
    if isinstance(value, np.ndarray) and value.dtype != object:
        arrays.append(value)
        return {"__array__": len(arrays) - 1, "tensor": False}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, arrays, register) for v in value]}
    if isinstance(value, list):
        return [encode(v, arrays, register) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: encode(v, arrays, register) for k, v in value.items()}}
    if register is None:
        raise TypeError(f"cannot send a {type(value).__name__}")
    return register(value)


def decode(tree, arrays, resolve=None):
    import torch

    if isinstance(tree, list):
        return [decode(v, arrays, resolve) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__array__" in tree:
        a = arrays[f"a{tree['__array__']}"]
        if tree.get("tensor"):
            dtype = getattr(torch, tree.get("dtype", "torch.float64").replace("torch.", ""), None)
            t = torch.from_numpy(np.array(a))
            return t.to(dtype) if isinstance(dtype, torch.dtype) else t
        return np.array(a)
    if "__tuple__" in tree:
        return tuple(decode(v, arrays, resolve) for v in tree["__tuple__"])
    if "__dict__" in tree:
        return {k: decode(v, arrays, resolve) for k, v in tree["__dict__"].items()}
    if "__handle__" in tree:
        if resolve is None:
            raise ValueError("unexpected handle")
        return resolve(tree)
    raise ValueError(f"malformed message: {sorted(tree)[:3]}")


def pack(tree, arrays) -> str:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{i}": a for i, a in enumerate(arrays)})
    return json.dumps({"tree": tree, "npz": base64.b64encode(buffer.getvalue()).decode()})


def unpack(text: str):
    message = json.loads(text)
    arrays = np.load(io.BytesIO(base64.b64decode(message["npz"])), allow_pickle=False)
    return message["tree"], arrays


# -------------------------------------------------------------- kernel service
def _register(obj) -> dict:
    _objects[id(obj)] = obj
    return {"__handle__": id(obj), "mro": [f"{k.__module__}.{k.__qualname__}" for k in type(obj).__mro__]}


def _resolve(tree):
    return _objects[tree["__handle__"]]


def _target(spec, namespace):
    root = spec["root"]
    if isinstance(root, str) and root not in namespace:
        raise NameError(f"`{root}` is not defined in your notebook: did the cell that defines it "
                        f"run to the end without an error?")
    obj = namespace[root] if isinstance(root, str) else _objects[root]
    for name in spec["path"]:
        obj = getattr(obj, name)
    return obj


def _run(request, namespace):
    from autograder.checks import forbid_builtins  # tripwires only, no verdicts
    from autograder.reference import no_fastpath  # same numerics as the reference modules

    tree, arrays = unpack(request)
    op = tree["op"]
    target = _target(tree["target"], namespace)
    if op == "get":
        return target
    if op == "types":
        return {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in target.named_modules()}
    args = list(decode(tree["args"], arrays, _resolve))
    kwargs = decode(tree["kwargs"], arrays, _resolve)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), \
            forbid_builtins(*tree.get("forbid", [])), no_fastpath():
        warnings.simplefilter("ignore")
        if op == "call":
            return target(*args, **kwargs)
        if op == "grad":
            import torch

            for i in tree["wrt"]:
                args[i] = args[i].detach().clone().requires_grad_(True)
            out = target(*args, **kwargs)
            if isinstance(out, (tuple, list)):
                out = out[tree["output_index"]]
            cotangent = decode(tree["cotangent"], arrays)
            loss = (out * cotangent.to(out.dtype)).sum()
            grads = torch.autograd.grad(loss, [args[i] for i in tree["wrt"]], allow_unused=True)
            return tuple(grads)
    raise ValueError(f"unknown operation {op!r}")


def serve(request: str, namespace: dict) -> None:
    """Answer one grader request; the answer is displayed under MIME (never stderr)."""
    from autograder.checks import UsedBuiltin

    arrays: list = []
    try:
        answer = {"ok": encode(_run(request, namespace), arrays, _register)}
    except NotImplementedError:
        answer = {"error": "NotImplementedError", "message": ""}
    except UsedBuiltin as used:
        answer = {"error": "UsedBuiltin", "message": str(used.args[0])}
    except BaseException as error:  # noqa: BLE001 - report everything, the grader decides
        answer = {"error": type(error).__name__, "message": str(error)[:2000]}
    from IPython.display import display

    display({MIME: pack(answer, arrays)}, raw=True)
