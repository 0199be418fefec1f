"""The one dispatch point: every tensor operation in ember reaches the world through `apply`.

`apply(op, *inputs, **attrs)` runs a primitive:
  - while a tracer is active, it records a graph node instead (the tracer sees every primitive);
  - otherwise it runs the primitive's eager kernel on the inputs' arrays (numpy or cupy) and, when
    grad mode is on and an input requires grad, attaches an autograd Node with the primitive's VJP.
Kernels and VJPs are registered by op name (ember/frontend/prims.py); schemas live in ember/ir/ops.py.
"""
from __future__ import annotations

from ..ir import ops as irops
from ..ir.ops import ShapeError
from . import autograd as ag

KERNELS: dict = {}     # op -> kernel(xp, *arrays_or_scalars, **attrs) -> array
VJPS: dict = {}        # op -> (vjp(g, out, *inputs, **attrs) -> tuple of grads, saves: str)

tracer = None          # the active tracer (ember/frontend/tracer.py) or None

_mode = ag._mode


def register(op, kernel, vjp=None, saves=""):
    """Attach an eager kernel and a VJP to a schema. `saves` names what the VJP reads: 'x' the
    inputs, 'o' the output; those are version-checked at backward time."""
    if op not in irops.OPS:
        raise KeyError(f"no schema for primitive {op!r} in ember/ir/ops.py")
    KERNELS[op] = kernel
    if vjp is not None:
        VJPS[op] = (vjp, saves)


def _fail(op, inputs, attrs, exc):
    """Turn a kernel failure into an error naming the op, shapes and dtypes."""
    from .tensor import Tensor
    types = [irops.TType(tuple(t.shape), t.dtype) for t in inputs if isinstance(t, Tensor)]
    if len(types) == len([t for t in inputs]):
        irops.infer(op, types, attrs)   # raises the schema's error when the inputs are wrong
    shapes = ", ".join(f"{t.dtype.name}{list(t.shape)}" if isinstance(t, Tensor) else repr(t) for t in inputs)
    if isinstance(exc, IndexError):
        raise IndexError(f"{op}: {exc} (inputs: {shapes})") from None
    raise RuntimeError(f"{op}: {exc} (inputs: {shapes})") from exc


def apply(op: str, *inputs, **attrs):
    """Run primitive `op`. Inputs are Tensors; binary ops also take Python scalars."""
    if tracer is not None:
        return tracer.record(op, inputs, attrs)
    from .tensor import Tensor, _wrap
    dev = attrs.pop("device", None) if not inputs else None
    arrays = []
    for t in inputs:
        if type(t) is Tensor or isinstance(t, Tensor):
            if dev is None:
                dev = t.device
            elif t.device != dev:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, {dev} and {t.device}! (when checking arguments for {op})")
            arrays.append(t._data)
        else:
            arrays.append(t)
    try:
        data = KERNELS[op](dev.xp if dev is not None else _np, *arrays, **attrs)
    except ShapeError:
        raise
    except (ValueError, IndexError, TypeError, OverflowError) as e:
        _fail(op, inputs, attrs, e)
    out = _wrap(data, dev)
    if _mode.enabled:
        for t in inputs:
            if isinstance(t, Tensor) and t.requires_grad:
                if op in VJPS:
                    vjp, saves = VJPS[op]
                    attach_node(out, op, vjp, attrs, inputs, saves)
                break
    return out


def attach_node(out, op, vjp, attrs, inputs, saves):
    from .tensor import Tensor
    nexts = tuple((t.grad_fn if t.grad_fn is not None else t._accumulator())
                  if isinstance(t, Tensor) and t.requires_grad else None for t in inputs)
    saved = ()
    if saves:
        saved = [(t, t._vc[0]) for t in inputs if isinstance(t, Tensor)] if "x" in saves else []
        if "o" in saves:
            saved.append((out, out._vc[0]))
        saved = tuple(saved)
    out.grad_fn = ag.Node(op, vjp, attrs, inputs, out, nexts, saved)
    out.requires_grad = True
    return out


import numpy as _np  # noqa: E402
