"""Guards: the key a compiled variant is cached under, how to describe it, and which part changed.

A key is (grad mode, training flags, argument structure, per-leaf keys, autocast regions). A tensor
leaf's key is its shape, dtype, device and requires_grad; a Python scalar's is its value (the trace
specialised on it). The autocast regions matter because a trace under autocast records casts.
"""
from __future__ import annotations

from ..frontend import autocast
from ..frontend import autograd as ag
from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from .pytree import spec_key

GUARD_NAMES = ("grad mode", "training flags", "argument structure", "arguments", "autocast")
_TENSOR_FIELDS = {1: "shape", 2: "dtype", 3: "device", 4: "requires_grad"}


def leaf_key(x):
    if isinstance(x, Tensor):
        return ("T", x._data.shape, x.dtype.name, str(x.device), x.requires_grad)
    if x is None or isinstance(x, (bool, int, float, str)):
        return (type(x).__name__, x)
    if isinstance(x, dt.DType):
        return ("dtype", x.name)
    return ("obj", type(x).__name__, id(x))


def guard_key(leaves, spec, modules) -> tuple:
    training = tuple(m.training for m in modules)
    return (ag._mode.enabled, training, spec_key(spec, len(leaves)), tuple(leaf_key(x) for x in leaves),
            autocast.state_key())


def changed_guard(old, new) -> tuple:
    """(guard name, old value, new value) of the first guard that differs between two keys."""
    for name, a, b in zip(GUARD_NAMES, old, new):
        if a == b:
            continue
        if name == "arguments":
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    if x[0] == "T" and y[0] == "T":
                        for j, what in _TENSOR_FIELDS.items():
                            if x[j] != y[j]:
                                return f"argument {i} {what}", x[j], y[j]
                    return f"argument {i} (specialised value)", x[-1], y[-1]
        return name, a, b
    return "none", None, None


def describe_guards(key) -> list[str]:
    grad, training, structure, args, amp = key
    out = [f"grad mode == {grad}"]
    if amp:
        out.append(f"autocast == {amp}")
    if training:
        out.append(f"training flags == {training}")
    for i, a in enumerate(args):
        if a[0] == "T":
            out.append(f"arg{i}: shape {tuple(a[1])}, dtype {a[2]}, device {a[3]}, requires_grad {a[4]}")
        else:
            out.append(f"arg{i}: {a[0]} == {a[-1]!r}")
    return out
