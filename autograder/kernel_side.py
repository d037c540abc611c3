"""The only course code that runs inside a student's kernel while grading.

The grader (autograder.sandbox) never trusts the kernel with a verdict. It asks the
kernel to do one thing at a time: call a student's function on inputs the grader drew,
read an attribute, or compute gradients; the kernel answers with plain data (JSON plus
NumPy arrays in .npz form, loaded by the grader with `allow_pickle=False`). Whatever a
submission does to this module, the worst it can do is answer wrongly, which the
grader judges like any other wrong answer.

Requests and answers travel as Jupyter comm messages on one comm per kernel, opened by
`listen` (the arrays as a binary buffer): a comm message is handled without IPython's
cell machinery (input transforms, compilation, execution count, display hooks), which
made each request several times dearer as an executed cell; a hidden test makes up to
a few hundred requests.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

TARGET = "course-grader"  # the comm's target name
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


def pack_arrays(arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{i}": a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def unpack_arrays(blob) -> dict:
    """The arrays of a message, never unpickled (a malicious answer is data, not code)."""
    if not blob:
        return {}
    with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as found:
        return {name: found[name] for name in found.files}


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


def _run(tree, arrays, namespace):
    from autograder.checks import forbid_builtins  # tripwires only, no verdicts
    from autograder.reference import no_fastpath  # same numerics as the reference modules

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


def answer(tree, blob, namespace: dict) -> tuple[dict, bytes]:
    """Answer one grader request: ({"ok": tree} or {"error": kind, "message": ...}, arrays)."""
    from autograder.checks import UsedBuiltin

    arrays: list = []
    try:
        reply = {"ok": encode(_run(tree, unpack_arrays(blob), namespace), arrays, _register)}
    except NotImplementedError:
        reply = {"error": "NotImplementedError", "message": ""}
    except UsedBuiltin as used:
        reply = {"error": "UsedBuiltin", "message": str(used.args[0])}
    except BaseException as error:  # noqa: BLE001 - report everything, the grader decides
        reply = {"error": type(error).__name__, "message": str(error)[:2000]}
    try:
        return reply, pack_arrays(arrays)
    except Exception as error:  # e.g. an array of a dtype .npz cannot hold
        return {"error": type(error).__name__, "message": str(error)[:2000]}, pack_arrays([])


def listen(comm_id: str, namespace: dict) -> None:
    """Open the grader's comm (run once per kernel, by the grader). Each message on it is
    one request {"id", "request"} plus the arrays as a buffer; the answer goes back on the
    same comm as {"id", "answer"} plus its arrays."""
    from comm import create_comm

    channel = create_comm(target_name=TARGET, comm_id=comm_id, data={})

    def on_request(msg):
        data = msg["content"]["data"]
        buffers = msg.get("buffers") or [b""]
        reply, blob = answer(data["request"], buffers[0], namespace)
        channel.send({"id": data["id"], "answer": reply}, buffers=[blob])

    channel.on_msg(on_request)
