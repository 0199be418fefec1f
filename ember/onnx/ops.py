"""Graph-IR primitive -> ONNX: one emitter per op of ember/ir/ops.py.

An emitter takes the Builder and an `Ctx` (the node, its inputs' ONNX names, its attributes and
shapes, where integers that follow a dynamic axis are `Sym`s) and returns the ONNX name of the
node's value. Semantics follow ember's eager kernels (which follow PyTorch): integer floor division
and remainder round toward -inf, argsort/topk are stable, windows/fold are exact index gathers and
scatters. An op without a row, or a case a row cannot express, raises UnsupportedOperatorError
naming the op.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import dtypes as dt
from .builder import Builder, onnx_type
from .dynamic import Sym
from .errors import UnsupportedOperatorError

INT64_MIN = -(1 << 63)


@dataclass
class Ctx:
    node: object              # the IR node
    xs: list                  # ONNX names of its inputs
    attrs: dict               # attributes (Sym where they follow dynamic axes)
    shape: list               # output shape (ints and Syms)
    in_shapes: list           # input shapes (ints and Syms)

    @property
    def op(self):
        return self.node.op

    @property
    def dtype(self):
        return self.node.dtype

    def in_dtype(self, i=0):
        return self.node.inputs[i].dtype


def unsupported(c: Ctx, why: str) -> UnsupportedOperatorError:
    src = c.node.meta.get("source")
    return UnsupportedOperatorError(f"ember.onnx.export: op '{c.op}'{f' at {src}' if src else ''} cannot be "
                                    f"exported to ONNX: {why}")


def _is_float(d) -> bool:
    return d.is_floating_point


# ----------------------------------------------------------------------------------- unary
def _simple(onnx_op):
    return lambda b, c: b.op(onnx_op, c.xs)


def _rsqrt(b, c):
    return b.op("Reciprocal", [b.op("Sqrt", c.xs)])


def _log1p(b, c):
    return b.op("Log", [b.op("Add", [c.xs[0], b.scalar(1, c.dtype)])])


def _expm1(b, c):
    return b.op("Sub", [b.op("Exp", c.xs), b.scalar(1, c.dtype)])


def _rounding(onnx_op):
    def emit(b, c):
        return b.op(onnx_op, c.xs) if _is_float(c.dtype) else b.op("Identity", c.xs)
    return emit


def _trunc(b, c):
    if not _is_float(c.dtype):
        return b.op("Identity", c.xs)
    x = c.xs[0]
    neg = b.op("Less", [x, b.scalar(0, c.dtype)])
    return b.op("Where", [neg, b.op("Ceil", [x]), b.op("Floor", [x])])


def _neg(b, c):
    if c.dtype is dt.uint8:          # two's complement wrap, as numpy and PyTorch
        return b.op("Sub", [b.scalar(0, c.dtype), c.xs[0]])
    return b.op("Neg", c.xs)


def _logical_not(b, c):
    x = c.xs[0]
    if c.in_dtype() is not dt.bool_:
        x = b.op("Cast", [x], to=onnx_type(dt.bool_))
    return b.op("Not", [x])


def _float_test(onnx_op):
    def emit(b, c):
        if _is_float(c.in_dtype()):
            return b.op(onnx_op, c.xs)
        # integers are never nan or inf: an all-false tensor of x's shape
        return b.op("Not", [b.op("Equal", [c.xs[0], c.xs[0]])])
    return emit


# ---------------------------------------------------------------------------------- binary
def _arith(onnx_op, bool_op=None):
    def emit(b, c):
        if c.in_dtype() is dt.bool_:
            if bool_op is None:
                raise unsupported(c, "the operation is not defined on bool tensors")
            return b.op(bool_op, c.xs)
        return b.op(onnx_op, c.xs)
    return emit


def _remainder(b, c):
    x, y = c.xs
    if not _is_float(c.dtype):
        return b.op("Mod", [x, y], fmod=0)          # the sign of the divisor, as Python and PyTorch
    q = b.op("Floor", [b.op("Div", [x, y])])
    return b.op("Sub", [x, b.op("Mul", [q, y])])


def _floor_divide(b, c):
    x, y = c.xs
    if _is_float(c.dtype):
        return b.op("Floor", [b.op("Div", [x, y])])
    q = b.op("Div", [x, y])                          # ONNX integer Div truncates toward zero
    zero = b.scalar(0, c.dtype)
    inexact = b.op("Not", [b.op("Equal", [b.op("Mul", [q, y]), x])])
    signs = b.op("Xor", [b.op("Less", [x, zero]), b.op("Less", [y, zero])])
    fix = b.op("Cast", [b.op("And", [inexact, signs])], to=onnx_type(c.dtype))
    return b.op("Sub", [q, fix])


def _compare(onnx_op, negate=False):
    def emit(b, c):
        xs = c.xs
        if c.in_dtype() is dt.bool_ and onnx_op != "Equal":
            xs = [b.op("Cast", [x], to=onnx_type(dt.int32)) for x in xs]
        out = b.op(onnx_op, xs)
        return b.op("Not", [out]) if negate else out
    return emit


def _logical(onnx_op):
    def emit(b, c):
        xs = [x if c.in_dtype(i) is dt.bool_ else b.op("Cast", [x], to=onnx_type(dt.bool_))
              for i, x in enumerate(c.xs)]
        return b.op(onnx_op, xs)
    return emit


def _cast(b, c):
    return b.op("Cast", c.xs, to=onnx_type(c.attrs["dtype"]))


# ------------------------------------------------------------------------------ reductions
def _dims(c) -> list:
    """The reduced dims, normalised (None means all, as in the op's shape rule)."""
    n = len(c.in_shapes[0])
    dims = c.attrs["dims"]
    if dims is None:
        return list(range(n))
    return sorted({d % max(n, 1) for d in ([dims] if isinstance(dims, int) else dims)})


def _reduce(onnx_op):
    def emit(b, c):
        dims = _dims(c)
        if not dims:
            return b.op("Identity", c.xs)
        x = c.xs[0]
        if c.in_dtype() is dt.bool_:      # ONNX reductions take numbers
            x = b.op("Cast", [x], to=onnx_type(dt.int32))
            return b.op("Cast", [b.reduce(onnx_op, x, dims, c.attrs.get("keepdim", False))], to=onnx_type(c.dtype))
        return b.reduce(onnx_op, x, dims, c.attrs.get("keepdim", False))
    return emit


def _arg_reduce(onnx_op):
    def emit(b, c):
        dims, keep = _dims(c), bool(c.attrs.get("keepdim", False))
        ndim = len(c.in_shapes[0])
        x = c.xs[0]
        if c.in_dtype() is dt.bool_:
            x = b.op("Cast", [x], to=onnx_type(dt.int32))
        if ndim == 0:
            return b.const(np.int64(0))
        if len(dims) == 1:
            return b.op(onnx_op, [x], axis=dims[0], keepdims=int(keep), select_last_index=0)
        if sorted(dims) != list(range(ndim)):
            raise unsupported(c, f"an arg-reduction over dims {dims} of a {ndim}-d tensor (one dim or all)")
        flat = b.op(onnx_op, [b.op("Reshape", [x, b.i64([-1])])], axis=0, keepdims=0, select_last_index=0)
        return b.op("Reshape", [flat, b.i64([1] * ndim)]) if keep else flat
    return emit


def _cumsum(b, c):
    d = c.attrs["dim"] % max(len(c.shape), 1)
    if not c.shape:
        return b.op("Identity", c.xs)
    return b.op("CumSum", [c.xs[0], b.const(np.int64(d))])


# -------------------------------------------------------------------------------- movement
def _reshape(b, c):
    shape = list(c.attrs["shape"])
    kw = {"allowzero": 1} if any(type(s) is int and s == 0 for s in shape) else {}
    return b.op("Reshape", [c.xs[0], b.ints(shape)], **kw)


def _permute(b, c):
    dims = list(c.attrs["dims"])
    if dims == sorted(dims):
        return b.op("Identity", c.xs)
    return b.op("Transpose", c.xs, perm=dims)


def _expand(b, c):
    return b.op("Expand", [c.xs[0], b.ints(c.attrs["shape"])])


def _slice(b, c):
    axes, starts, ends, steps = [], [], [], []
    for d, (n, s0, s1, st) in enumerate(zip(c.in_shapes[0], c.attrs["starts"], c.attrs["stops"], c.attrs["steps"])):
        if s0 == 0 and st == 1 and s1 == n:
            continue                                 # the whole dimension
        axes.append(d)
        starts.append(s0)
        ends.append(s1)
        steps.append(st)
    if not axes:
        return b.op("Identity", c.xs)
    return b.op("Slice", [c.xs[0], b.ints(starts), b.ints(ends), b.i64(axes), b.ints(steps)])


def _flip(b, c):
    dims = sorted(d % len(c.shape) for d in c.attrs["dims"]) if c.shape else []
    if not dims:
        return b.op("Identity", c.xs)
    k = len(dims)
    return b.op("Slice", [c.xs[0], b.i64([-1] * k), b.i64([INT64_MIN] * k), b.i64(dims), b.i64([-1] * k)])


def _pad(b, c):
    pads = [tuple(p) for p in c.attrs["pads"]]
    x = c.xs[0]
    # negative amounts crop: a Slice first, then a Pad with what is left
    crop = [(d, -lo if _neg_int(lo) else 0, hi if _neg_int(hi) else None) for d, (lo, hi) in enumerate(pads)
            if _neg_int(lo) or _neg_int(hi)]
    if crop:
        x = b.op("Slice", [x, b.ints([s for _, s, _ in crop]),
                           b.ints([INT64_MAX if e is None else e for _, _, e in crop]), b.i64([d for d, _, _ in crop])])
    lo = [0 if _neg_int(p[0]) else p[0] for p in pads]
    hi = [0 if _neg_int(p[1]) else p[1] for p in pads]
    if all(type(v) is int and v == 0 for v in lo + hi):
        return x if crop else b.op("Identity", [x])
    value = b.float_value(c.attrs["value"], c.dtype) if _is_float(c.dtype) else b.scalar(c.attrs["value"], c.dtype)
    return b.op("Pad", [x, b.ints(lo + hi), value], mode="constant")


INT64_MAX = (1 << 63) - 1


def _neg_int(v) -> bool:
    if isinstance(v, Sym):
        return False
    return v < 0


def _cat(b, c):
    if len(c.xs) == 1:
        return b.op("Identity", c.xs)
    return b.op("Concat", c.xs, axis=c.attrs["dim"] % len(c.shape))


def _window_index(c, spatial, kernel, stride, dilation, outs):
    """Flat positions in the spatial block read by each (output position, kernel offset)."""
    if any(isinstance(v, Sym) or not isinstance(v, int) for v in list(spatial) + list(outs)):
        raise unsupported(c, "sliding windows over a dynamic spatial size (only batch-like dims may be dynamic)")
    nk = len(kernel)
    cstride = [int(np.prod(spatial[i + 1:], dtype=np.int64)) for i in range(nk)]
    idx = np.zeros(tuple(outs) + tuple(kernel), dtype=np.int64)
    for i in range(nk):
        o = np.arange(outs[i]).reshape([-1 if j == i else 1 for j in range(nk)] + [1] * nk)
        k = np.arange(kernel[i]).reshape([1] * nk + [-1 if j == i else 1 for j in range(nk)])
        idx = idx + (o * stride[i] + k * dilation[i]) * cstride[i]
    return idx


def _windows(b, c):
    a = c.attrs
    kernel, stride, dilation = list(a["kernel"]), list(a["stride"]), list(a["dilation"])
    nk = len(kernel)
    xshape = c.in_shapes[0]
    spatial = xshape[-nk:]
    outs = c.shape[len(xshape) - nk:len(xshape)]
    idx = _window_index(c, spatial, kernel, stride, dilation, outs)
    nb = len(xshape) - nk
    flat = b.op("Reshape", [c.xs[0], b.i64([0] * nb + [int(np.prod(spatial))])])   # 0: keep that dim
    return b.op("Gather", [flat, b.const(idx)], axis=nb)


def _fold(b, c):
    if b.opset < 16:
        raise unsupported(c, "it needs ScatterElements with reduction='add' (opset_version >= 16)")
    a = c.attrs
    kernel, stride, dilation, size = list(a["kernel"]), list(a["stride"]), list(a["dilation"]), list(a["size"])
    nk = len(kernel)
    xshape = c.in_shapes[0]
    nb = len(xshape) - 2 * nk
    outs = xshape[nb:nb + nk]
    idx = _window_index(c, size, kernel, stride, dilation, outs).reshape(-1)
    batch = list(xshape[:nb])
    upd = b.op("Reshape", [c.xs[0], b.i64([0] * nb + [-1])])
    zeros = b.op("ConstantOfShape", [b.ints(batch + [int(np.prod(size))])],
                 value=tensor_attr(np.zeros(1, dtype=c.dtype.np)))
    ind = b.op("Expand", [b.const(idx), b.op("Shape", [upd])])
    out = b.op("ScatterElements", [zeros, ind, upd], axis=nb, reduction="add")
    return b.op("Reshape", [out, b.ints(batch + size)])


def tensor_attr(a: np.ndarray):
    from onnx import numpy_helper
    return numpy_helper.from_array(a)


# -------------------------------------------------------------------------------- indexing
def _index(b, c, i):
    """Index input i as int64 (ONNX takes int32/int64 indices)."""
    x = c.xs[i]
    return x if c.in_dtype(i) in (dt.int64, dt.int32) else b.op("Cast", [x], to=onnx_type(dt.int64))


def _take(b, c):
    return b.op("Gather", [c.xs[0], _index(b, c, 1)], axis=c.attrs["dim"] % len(c.in_shapes[0]))


def _gather(b, c):
    return b.op("GatherElements", [c.xs[0], _index(b, c, 1)], axis=c.attrs["dim"] % len(c.in_shapes[0]))


def _scatter(reduction):
    def emit(b, c):
        if reduction != "none" and b.opset < 16:
            raise unsupported(c, "it needs ScatterElements with a reduction (opset_version >= 16)")
        x, idx, src = c.xs[0], _index(b, c, 1), c.xs[2]
        ishape, sshape = c.in_shapes[1], c.in_shapes[2]
        if list(ishape) != list(sshape):             # ONNX wants updates of the indices' shape
            src = b.op("Slice", [src, b.i64([0] * len(ishape)), b.ints(ishape), b.i64(range(len(ishape)))])
        kw = {"reduction": reduction} if reduction != "none" else {}
        return b.op("ScatterElements", [x, idx, src], axis=c.attrs["dim"] % len(c.in_shapes[0]), **kw)
    return emit


def _index_add(b, c):
    if b.opset < 16:
        raise unsupported(c, "it needs ScatterElements with reduction='add' (opset_version >= 16)")
    xshape = list(c.in_shapes[0])
    d = c.attrs["dim"] % len(xshape)
    idx = b.op("Reshape", [_index(b, c, 1), b.i64([-1])])
    src = c.xs[2]
    if len(c.in_shapes[1]) != 1:                 # the index's dims become one, as in the kernel
        src = b.op("Reshape", [src, b.ints(xshape[:d] + [-1] + xshape[d + 1:])])
    ind = b.op("Reshape", [idx, b.i64([1] * d + [-1] + [1] * (len(xshape) - d - 1))])
    ind = b.op("Expand", [ind, b.op("Shape", [src])])
    return b.op("ScatterElements", [c.xs[0], ind, src], axis=d, reduction="add")


_SCATTER_REDUCTION = {"sum": "add", "mean": "add", "prod": "mul", "amax": "max", "amin": "min"}


def _scatter_reduce(b, c):
    red, include_self = c.attrs["reduce"], c.attrs["include_self"]
    need = 18 if red in ("amax", "amin") else 16
    if b.opset < need:
        raise unsupported(c, f"reduce='{red}' needs ScatterElements with reduction='{_SCATTER_REDUCTION[red]}' "
                             f"(opset_version >= {need})")
    d, xd = c.attrs["dim"] % len(c.in_shapes[0]), c.dtype
    x, idx, src = c.xs[0], _index(b, c, 1), c.xs[2]
    ishape = c.in_shapes[1]
    if list(ishape) != list(c.in_shapes[2]):     # ONNX wants updates of the indices' shape
        src = b.op("Slice", [src, b.i64([0] * len(ishape)), b.ints(ishape), b.i64(range(len(ishape)))])

    def filled(value, like):
        return b.op("Expand", [b.scalar(value, xd), b.op("Shape", [like])])
    if not include_self:    # the receiving positions start from the reduction's identity
        big = np.inf if xd.is_floating_point else np.iinfo(xd.np).max
        ident = {"sum": 0, "mean": 0, "prod": 1, "amax": -big if xd.is_floating_point else np.iinfo(xd.np).min,
                 "amin": big}[red]
        x = b.op("ScatterElements", [x, idx, filled(ident, idx)], axis=d)
    out = b.op("ScatterElements", [x, idx, src], axis=d, reduction=_SCATTER_REDUCTION[red])
    if red != "mean":
        return out
    n = b.op("ScatterElements", [filled(1 if include_self else 0, c.xs[0]), idx, filled(1, idx)], axis=d,
             reduction="add")
    n = b.op("Max", [n, b.scalar(1, xd)])
    if xd.is_floating_point:
        return b.op("Div", [out, n])
    return b.op("Div", [b.op("Sub", [out, b.op("Mod", [out, n])]), n])    # floor division, as the kernel

def _sorted_indices(b, c, k, largest):
    shape = c.in_shapes[0]
    if not shape:
        return b.const(np.int64(0))
    d = c.attrs["dim"] % len(shape)
    x = c.xs[0]
    if c.in_dtype() is dt.bool_:
        x = b.op("Cast", [x], to=onnx_type(dt.int32))
    # ONNX TopK breaks ties by the lower index, like ember's stable sorts
    _, ind = b.op("TopK", [x, b.ints([k])], n_out=2, axis=d, largest=int(largest), sorted=1)
    return ind


def _argsort(b, c):
    return _sorted_indices(b, c, c.in_shapes[0][c.attrs["dim"] % len(c.in_shapes[0])] if c.in_shapes[0] else 1,
                           c.attrs["descending"])


def _topk(b, c):
    return _sorted_indices(b, c, c.attrs["k"], c.attrs["largest"])


# ------------------------------------------------------------------------- matmul, consts
def _matmul(b, c):
    return b.op("MatMul", c.xs)


def _addmm(b, c):
    """x @ y + bias rounded once: in float32 between casts (a 16-bit MatMul and Add would round twice)."""
    f32 = onnx_type(dt.float32)
    x, y, bias = (b.op("Cast", [v], to=f32) for v in c.xs)
    return b.op("Cast", [b.op("Add", [b.op("MatMul", [x, y]), bias])], to=onnx_type(c.in_dtype(0)))


def _attention(b, c):
    """softmax(where(masked, fill, (q @ k^T) * scale)) @ v, as ONNX operators (opset 17 has no fused form)."""
    if c.attrs["p"] > 0:
        raise unsupported(c, "attention dropout draws random numbers (training mode); export in eval mode")
    q, k, v, masked = c.xs[:4]
    n = len(c.in_shapes[0])
    kt = b.op("Transpose", [k], perm=list(range(n - 2)) + [n - 1, n - 2])
    d = c.in_dtype(0)
    scores = b.op("Mul", [b.op("MatMul", [q, kt]), b.scalar(float(c.attrs["scale"]), d)])
    scores = b.op("Where", [masked, b.scalar(float(c.attrs["fill"]), d), scores])
    return b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])


def _attention_grad(b, c):
    raise unsupported(c, "a gradient op: ONNX export captures the forward (inference) graph only")


def _random(b, c):
    raise unsupported(c, "random numbers (dropout or a random op running in training mode) have no "
                         "deterministic ONNX form; export in eval mode (the default, "
                         "training=ember.onnx.TrainingMode.EVAL) or remove the random op")


def _full(b, c):
    a = c.attrs
    shape = list(a["shape"])
    d = a["dtype"]
    if isinstance(a["value"], Sym):
        v = b.float_value(a["value"], d)
        return v if not shape else b.op("Expand", [v, b.ints(shape)])
    if all(type(s) is int for s in shape) and int(np.prod(shape, dtype=np.int64)) <= 4096:
        return b.const(np.full(shape, a["value"], dtype=d.np))
    return b.op("ConstantOfShape", [b.ints(shape)], value=tensor_attr(np.full(1, a["value"], dtype=d.np)))


def _arange(b, c):
    a = c.attrs
    d = a["dtype"]
    n = a["n"]
    if type(n) is int:
        from .capture import evaluate
        return b.const(evaluate(c.node, []))
    # a dynamic length: Range in double (exactly ember's start + step * i), then the dtype
    nd = b.op("Cast", [b.int_value(n)], to=onnx_type(dt.float64))
    start, step = b.scalar(float(a["start"]), dt.float64), b.scalar(float(a["step"]), dt.float64)
    limit = b.op("Add", [start, b.op("Mul", [nd, step])])
    r = b.op("Range", [start, limit, step])
    return b.op("Cast", [r], to=onnx_type(d))


EMITTERS = {
    "exp": _simple("Exp"), "log": _simple("Log"), "sqrt": _simple("Sqrt"), "rsqrt": _rsqrt,
    "sin": _simple("Sin"), "cos": _simple("Cos"), "tanh": _simple("Tanh"), "sigmoid": _simple("Sigmoid"),
    "erf": _simple("Erf"), "log1p": _log1p, "expm1": _expm1, "reciprocal": _simple("Reciprocal"),
    "neg": _neg, "abs": _simple("Abs"), "sign": _simple("Sign"), "floor": _rounding("Floor"),
    "ceil": _rounding("Ceil"), "round": _rounding("Round"), "trunc": _trunc,
    "logical_not": _logical_not, "isnan": _float_test("IsNaN"), "isinf": _float_test("IsInf"),
    "add": _arith("Add", "Or"), "sub": _arith("Sub"), "mul": _arith("Mul", "And"), "div": _arith("Div"),
    "pow": _arith("Pow"), "maximum": _arith("Max", "Or"), "minimum": _arith("Min", "And"),
    "remainder": _remainder, "floor_divide": _floor_divide,
    "eq": _compare("Equal"), "ne": _compare("Equal", negate=True), "lt": _compare("Less"),
    "le": _compare("LessOrEqual"), "gt": _compare("Greater"), "ge": _compare("GreaterOrEqual"),
    "logical_and": _logical("And"), "logical_or": _logical("Or"),
    "where": lambda b, c: b.op("Where", c.xs), "stop_gradient": _simple("Identity"), "cast": _cast,
    "sum": _reduce("ReduceSum"), "max": _reduce("ReduceMax"), "min": _reduce("ReduceMin"),
    "prod": _reduce("ReduceProd"), "argmax": _arg_reduce("ArgMax"), "argmin": _arg_reduce("ArgMin"),
    "cumsum": _cumsum,
    "reshape": _reshape, "permute": _permute, "expand": _expand, "slice": _slice, "flip": _flip, "pad": _pad,
    "cat": _cat, "windows": _windows, "fold": _fold,
    "take": _take, "gather": _gather, "index_add": _index_add, "scatter_add": _scatter("add"),
    "scatter": _scatter("none"), "scatter_reduce": _scatter_reduce, "argsort": _argsort, "topk": _topk,
    "matmul": _matmul, "addmm": _addmm, "attention": _attention,
    "attention_grad": _attention_grad, "random": _random, "full": _full, "arange": _arange,
}


def emit(b: Builder, c: Ctx) -> str:
    f = EMITTERS.get(c.op)
    if f is None:
        raise unsupported(c, "no ONNX mapping for this graph-IR op")
    return f(b, c)

