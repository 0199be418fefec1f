"""The one dispatch point: every tensor operation in ember reaches the world through `apply`.

`apply(op, *inputs, **attrs)` runs a primitive:
  - while a tracer is active, it records a graph node instead (the tracer sees every primitive);
  - otherwise it runs the primitive's eager kernel on the inputs' arrays (numpy or cupy) and, when
    grad mode is on and an input requires grad, attaches an autograd Node with the primitive's VJP.
An op's eager kernel is its reference semantics (`ref` in ember/ir/ops.py) unless
ember/frontend/prims.py registers one of its own; VJPs are registered there by op name.

16-bit floats (float16, bfloat16) on the CPU: numpy has no fast arithmetic for them, and PyTorch's
CPU kernels compute them in float32 and round each result once. So an op with a 16-bit float input
runs its float32 kernel on upcast copies and rounds the result back (`_reduced_kernel`), unless it
only moves data (NATIVE_16BIT) or registered a kernel of its own (`register_reduced`: matmul
accumulates in float32 through a bf16 GEMM); exact elementwise ops (add, mul, where, compares...) do
the same in one generated pass (ember/kernels/elementwise16.py) instead of three numpy passes.
"""
from __future__ import annotations

import sys
import threading
import types

from ..ir import ops as irops
from ..ir.ops import ShapeError
from . import autograd as ag

# op -> kernel(xp, *arrays_or_scalars, **attrs) -> array: apply's fast path (it checks dtypes itself)
_BASE: dict = {name: d.ref for name, d in irops.OPS.items() if d.ref is not None}
# op -> the same kernel for any dtype (16-bit numpy inputs take the REDUCED form): what the interpreter
# and the executor's eager steps call
KERNELS: dict = {}
REDUCED: dict = {}     # op -> numpy kernel for float16/bfloat16 inputs (built on first use)
VJPS: dict = {}        # op -> (vjp(g, out, *inputs, **attrs) -> tuple of grads, saves)
# Generated kernels for eager work that is no single primitive -- "adam": the optimizers' fused
# update, ember/runtime/eager_kernels.adam_update -- installed by ember/__init__.py (the frontend and
# the optimizers may not import the runtime); absent: their numpy code runs.
FUSED: dict = {}

# ops whose numpy kernels only move or select data: exact on 16-bit floats as they are
NATIVE_16BIT = frozenset(("reshape", "permute", "expand", "slice", "flip", "pad", "cat", "windows", "take",
                          "gather", "stop_gradient", "full", "arange"))

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
        _BASE[op] = kernel
        KERNELS[op] = _any_dtype(op, kernel)
        REDUCED.pop(op, None)
    if vjp is not None:
        VJPS[op] = (vjp, saves)


def register_reduced(op, kernel):
    """A numpy kernel of its own for float16/bfloat16 inputs (instead of float32 compute + rounding)."""
    if op not in _BASE:
        raise KeyError(f"register {op!r} before its 16-bit kernel")
    REDUCED[op] = kernel


def _any_dtype(op, base):
    """KERNELS[op]: the kernel, or its 16-bit form when a numpy input is float16/bfloat16."""
    def k(xp, *args, **attrs):
        if xp is _np:
            for a in args:
                d = getattr(a, "dtype", None)
                if d is not None and d in _NP16:
                    return _reduced_kernel(op)(xp, *args, **attrs)
        return base(xp, *args, **attrs)
    k.__name__ = getattr(base, "__name__", op)
    k.__wrapped__ = base
    return k


def _reduced_kernel(op):
    """op's kernel for inputs with 16-bit floats: computes on float32 copies, rounds float32 results
    back to the inputs' 16-bit type (the schemas give every float result its inputs' dtype)."""
    k = REDUCED.get(op)
    if k is not None:
        return k
    base = _BASE[op]
    if op in NATIVE_16BIT:
        k = base
    else:
        one_pass = op in _elementwise16.OPS

        def k(xp, *args, **attrs):
            if one_pass and not attrs:       # one generated pass: load 16-bit, float32 op, round on store
                r = _elementwise16.run(op, args)
                if r is not None:
                    return r
            low = None
            up = []
            for a in args:
                d = getattr(a, "dtype", None)
                if d is not None and d.itemsize == 2 and d in _NP16:
                    low = d
                    a = _casts.astype(a, _np.float32)
                up.append(a)
            # inf/nan arise and overflow rounds to inf silently, as in PyTorch (this path already pays
            # for two casts; the float32 kernels keep numpy's warnings off the hot add/mul instead)
            with _np.errstate(all="ignore"):
                r = base(xp, *up, **attrs)
                if low is not None and r.dtype == _np.float32:
                    r = _casts.astype(r, low)
            return r
        k.__name__ = f"{op}_in_float32"
    REDUCED[op] = k
    return k


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


def apply(op: str, *inputs, **attrs):
    """Run primitive `op`. Inputs are Tensors; binary ops also take Python scalars.
    This is the eager hot path (a 1-element add spends most of its time here): keep it lean."""
    if _tracing:
        tr = getattr(_tls, "tracer", None)
        if tr is not None:
            return tr.record(op, inputs, attrs)
    dev = None
    arrays = []
    reduced = False
    for t in inputs:
        if isinstance(t, Tensor):
            d = t.device
            if dev is None:
                dev = d
            elif d is not dev and d != dev:
                dev = _mixed_devices(op, inputs, dev, d)
                return apply(op, *[_to(x, dev) for x in inputs], **attrs)
            arrays.append(t._data)
            if t.dtype.is_reduced_float:
                reduced = True
        else:
            arrays.append(t)
    if not inputs:
        dev = attrs.pop("device", None)
    cpu = dev is None or dev is _CPU
    kernel = _reduced_kernel(op) if reduced and (cpu or dev.type == "cpu") else _BASE[op]
    try:
        data = kernel(_np if cpu else dev.xp, *arrays, **attrs)
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
from ..kernels import casts as _casts  # noqa: E402
from ..kernels import elementwise16 as _elementwise16  # noqa: E402
from ..ir import dtypes as _dt  # noqa: E402
from .tensor import Tensor, _wrap  # noqa: E402  (tensor.py imports this module lazily)
from .device import CPU as _CPU  # noqa: E402

_NP16 = frozenset(d.np for d in _dt.ALL if d.is_reduced_float)
KERNELS.update({op: _any_dtype(op, k) for op, k in _BASE.items() if op not in KERNELS})

_Node = ag.Node
sys.modules[__name__].__class__ = _DispatchModule
