"""The one dispatch point: every tensor operation in ember reaches the world through `apply`.

`apply(op, *inputs, **attrs)` runs a primitive:
  - while a tracer is active, it records a graph node instead (the tracer sees every primitive);
  - otherwise it runs the primitive's eager kernel on the inputs' arrays (numpy or cupy) and, when
    grad mode is on and an input requires grad, attaches an autograd Node with the primitive's VJP.
An op's eager kernel is its reference semantics (`ref` in ember/ir/ops.py) unless
ember/frontend/prims.py registers one of its own; VJPs are registered there by op name.
"""
from __future__ import annotations

import sys
import threading
import types

from ..ir import ops as irops
from ..ir.ops import ShapeError
from . import autograd as ag

# op -> kernel(xp, *arrays_or_scalars, **attrs) -> array
KERNELS: dict = {name: d.ref for name, d in irops.OPS.items() if d.ref is not None}
VJPS: dict = {}        # op -> (vjp(g, out, *inputs, **attrs) -> tuple of grads, saves)

# What a VJP reads, version-checked at backward time (PyTorch's "modified by an inplace operation").
# The values are the spellings docs/ops.md shows.
NOTHING = ""
INPUTS = "x"            # every tensor input
OUT = "o"               # the result
INPUTS_AND_OUT = "xo"


def input_at(i: int) -> str:
    """One input only (the index of gather/scatter, the condition of where)."""
    return str(i)


# `dispatch.tracer` is the tracer (ember/compiler/capture.py) active on the calling thread, or None:
# one thread tracing must not capture another thread's eager ops. Reading it goes through a module
# property (below); apply's hot path first reads the plain counter `_tracing` (threads tracing now).
_tls = threading.local()
_tracing = 0
_tracing_lock = threading.Lock()


def current_tracer():
    """The tracer active on this thread, or None."""
    return getattr(_tls, "tracer", None) if _tracing else None


def set_tracer(tr) -> None:
    """Install `tr` (or None) as this thread's tracer."""
    global _tracing
    with _tracing_lock:
        prev = getattr(_tls, "tracer", None)
        _tracing += (tr is not None) - (prev is not None)
        _tls.tracer = tr


class _DispatchModule(types.ModuleType):
    tracer = property(lambda self: current_tracer(), lambda self, tr: set_tracer(tr))

_mode = ag._mode


def register(op, kernel=None, vjp=None, saves=NOTHING):
    """Attach an eager kernel (None: keep the op's reference semantics) and a VJP to a schema.
    `saves` names what the VJP reads: one of the constants above, or a function
    (inputs, out) -> tensors."""
    if op not in irops.OPS:
        raise KeyError(f"no schema for primitive {op!r} in ember/ir/ops.py")
    if kernel is not None:
        KERNELS[op] = kernel
    if vjp is not None:
        VJPS[op] = (vjp, saves)


def defvjp(op, vjp, saves=NOTHING):
    """Attach a VJP to a primitive whose eager kernel is its reference semantics."""
    register(op, None, vjp, saves)


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


def _mixed_devices(op, inputs, a, b):
    """PyTorch's rule: 0-dim CPU tensors may join an op on another device (they act as scalars);
    anything else on two devices is an error. Returns the device the op runs on."""
    others = {t.device for t in inputs if isinstance(t, Tensor) and not (t.device.type == "cpu" and t._data.ndim == 0)}
    if len(others) == 1:
        return others.pop()
    raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                       f"devices, {a} and {b}! (when checking arguments for {op})")


def _to(x, dev):
    if isinstance(x, Tensor) and x.device != dev:
        from .creation import to_device
        return to_device(x, dev)
    return x


_autocast = None      # float16 while an ember.autocast("cuda") context is active, else None


def set_autocast(dtype):
    global _autocast
    _autocast = dtype


def _autocast_inputs(inputs):
    """Matrix products under autocast: floating inputs on a GPU are cast to the autocast dtype."""
    from .tensor import Tensor
    if not all(isinstance(t, Tensor) and t.device.type == "cuda" and t.dtype.is_floating_point for t in inputs):
        return inputs
    return tuple(t if t.dtype is _autocast else apply("cast", t, dtype=_autocast) for t in inputs)


def apply(op: str, *inputs, **attrs):
    """Run primitive `op`. Inputs are Tensors; binary ops also take Python scalars.
    This is the eager hot path (a 1-element add spends most of its time here): keep it lean."""
    if _autocast is not None and op == "matmul":
        inputs = _autocast_inputs(inputs)
    if _tracing:
        tr = getattr(_tls, "tracer", None)
        if tr is not None:
            return tr.record(op, inputs, attrs)
    dev = None
    arrays = []
    for t in inputs:
        if isinstance(t, Tensor):
            d = t.device
            if dev is None:
                dev = d
            elif d is not dev and d != dev:
                dev = _mixed_devices(op, inputs, dev, d)
                return apply(op, *[_to(x, dev) for x in inputs], **attrs)
            arrays.append(t._data)
        else:
            arrays.append(t)
    if not inputs:
        dev = attrs.pop("device", None)
    try:
        data = KERNELS[op](_np if dev is None or dev is _CPU else dev.xp, *arrays, **attrs)
    except ShapeError:
        raise
    except (ValueError, IndexError, TypeError, OverflowError) as e:
        _fail(op, inputs, attrs, e)
    out = _wrap(data, dev)
    if _mode.enabled and out.dtype.is_floating_point:   # integer and bool results carry no gradient
        for t in inputs:
            if isinstance(t, Tensor) and t.requires_grad:
                v = VJPS.get(op)
                if v is not None:
                    attach_node(out, op, v[0], attrs, inputs, v[1])
                break
    return out


def attach_node(out, op, vjp, attrs, inputs, saves):
    nexts = []
    for t in inputs:
        if isinstance(t, Tensor) and t.requires_grad:
            if t._base is not None and t.__dict__.get("_vseen", t._vc[0]) != t._vc[0]:
                from .shape_ops import refresh_view   # a view whose base was written in place
                refresh_view(t)
            fn = t.grad_fn
            nexts.append(fn if fn is not None else t._accumulator())
        else:
            nexts.append(None)
    saved = ()
    if saves:
        if callable(saves):   # the op decides from its inputs (mul needs x only for y's gradient ...)
            saved = tuple((t, t._vc[0]) for t in saves(inputs, out) if isinstance(t, Tensor))
        else:
            if INPUTS in saves:
                saved = [(t, t._vc[0]) for t in inputs if isinstance(t, Tensor)]
            else:   # digits name single inputs (input_at)
                saved = [(inputs[int(c)], inputs[int(c)]._vc[0]) for c in saves
                         if c.isdigit() and isinstance(inputs[int(c)], Tensor)]
            if OUT in saves:
                saved.append((out, out._vc[0]))
            saved = tuple(saved)
    out.grad_fn = _Node(op, vjp, attrs, inputs, out, tuple(nexts), saved)
    out.requires_grad = True
    return out


import numpy as _np  # noqa: E402
from .tensor import Tensor, _wrap  # noqa: E402  (tensor.py imports this module lazily)
from .device import CPU as _CPU  # noqa: E402

_Node = ag.Node
sys.modules[__name__].__class__ = _DispatchModule
