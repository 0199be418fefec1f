"""How CUDA C spells each kernel-IR op: one row per op, keyed by the op's name (ember/ir/ops.py).

    CUDA_UNARY[op](x, d) -> str        x: C expression of the operand, d: its dtype
    CUDA_BINARY[op](a, b, d) -> str    a, b: C expressions of the operands (same dtype d)
    convert_c(x, src, dst)             numpy astype (ember/codegen/loops.py cast_rule)
    c_type, literals, accumulator types, reduction updates and the cross-thread combine

Numerics follow eager numpy/PyTorch: maximum/minimum and reduce.max/min propagate NaN (fmaxf does
not, so ember_fmax checks first), remainder/floor_divide use the floor rule, integer division by zero
gives 0, integer overflow wraps (arithmetic through the unsigned type: no C++ UB), float->int casts
truncate and saturate (PTX cvt.rzi), transcendentals are CUDA's precise math library (expf, tanhf,
erff; never --use_fast_math).  float16 is computed in float and rounded back to half after every
operation (numpy's float16 semantics); bfloat16 too (stored as 16-bit patterns like float16).  The
ember_* helpers live in prelude.cuh.
tests/codegen/test_op_tables.py checks that the tables cover exactly the kernel-IR ops.
"""
from __future__ import annotations

import math

import numpy as np

from ember.codegen.loops import cast_rule, reduce_identity
from ember.ir import dtypes as dt

__all__ = ["CUDA_UNARY", "CUDA_BINARY", "c_type", "const_c", "convert_c", "acc_type", "acc_dtype", "acc_init",
           "to_acc", "from_acc", "combine_c", "group_reduce_c"]

_I64_MIN = -(1 << 63)

# ===================================================================================== types
_MEM = {dt.bool_: "unsigned char", dt.uint8: "unsigned char", dt.int8: "signed char",
        dt.int16: "short", dt.int32: "int", dt.int64: "long long", dt.float16: "unsigned short",
        dt.bfloat16: "unsigned short", dt.float32: "float", dt.float64: "double"}
_REG = dict(_MEM)
_REG.update({dt.bool_: "bool", dt.float16: "float", dt.bfloat16: "float"})


def c_type(d: dt.DType, memory: bool = False) -> str:
    """C type of a dtype in registers (bool, float for f16) or in memory (unsigned char, 16-bit bits)."""
    return (_MEM if memory else _REG)[d]


def _fsuf(d: dt.DType) -> str:
    """Math-library suffix: f16 and f32 compute in float."""
    return "" if d is dt.float64 else "f"


def _float_lit(v: float, d: dt.DType) -> str:
    if d is dt.float64:
        if math.isnan(v):
            return "EMBER_NAN"
        if math.isinf(v):
            return "EMBER_INF" if v > 0 else "(-EMBER_INF)"
        return repr(float(v))
    if math.isnan(v):
        return "EMBER_NANF"
    if math.isinf(v):
        return "EMBER_INFF" if v > 0 else "(-EMBER_INFF)"
    text = repr(float(v))
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _int_lit(v: int, d: dt.DType) -> str:
    v = int(v)
    if d is dt.int64:
        return "(-9223372036854775807LL - 1)" if v == _I64_MIN else f"{v}LL"
    if d is dt.int32:
        return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)
    return f"(({_REG[d]}){v})"


def const_c(value, d: dt.DType) -> str:
    if d is dt.bool_:
        return "true" if value else "false"
    if d is dt.bfloat16:   # the bfloat16 value, as eager's `full` makes it
        value = float(np.array(float(value), np.float32).astype(d.np).astype(np.float32))
    if d.is_floating_point:
        return _float_lit(float(value), d)
    return _int_lit(value, d)


def _round(expr: str, d: dt.DType) -> str:
    return f"ember_rh({expr})" if d is dt.float16 else f"ember_rbf({expr})" if d is dt.bfloat16 else expr


def _truth(x: str, d: dt.DType) -> str:
    return x if d is dt.bool_ else f"({x} != 0)"


def _one(d: dt.DType) -> str:
    return "1.0" if d is dt.float64 else "1.0f"


# ==================================================================================== unary
def _libm(name):
    """expf for f32/f16 (rounded back to half), exp for f64; integers unchanged (floor/ceil/trunc)."""
    return lambda x, d: _round(f"{name}{_fsuf(d)}({x})", d) if d.is_floating_point else x


def _abs(x, d):
    if d.is_floating_point:
        return f"fabs{_fsuf(d)}({x})"
    if d is dt.bool_ or d is dt.uint8:
        return x
    return f"({x} < 0 ? ember_neg<{c_type(d)}>({x}) : {x})"


def _sign(x, d):
    t = c_type(d)
    if d.is_floating_point:   # NaN and -0.0 give +0.0, as PyTorch
        return f"(({t})({x} > 0) - ({t})({x} < 0))"
    if d is dt.uint8 or d is dt.bool_:
        return f"({t})({x} > 0)"
    return f"({t})(({x} > 0) - ({x} < 0))"


CUDA_UNARY = {
    **{op: _libm(op) for op in ("exp", "log", "sqrt", "sin", "cos", "tanh", "erf", "log1p", "expm1", "floor",
                                "ceil", "trunc")},
    "rsqrt": lambda x, d: _round(f"{_one(d)} / sqrt{_fsuf(d)}({x})", d),
    "reciprocal": lambda x, d: _round(f"{_one(d)} / {x}", d),
    "sigmoid": lambda x, d: _round(f"{_one(d)} / ({_one(d)} + exp{_fsuf(d)}(-{x}))", d),
    "round": lambda x, d: f"rint{_fsuf(d)}({x})" if d.is_floating_point else x,
    "neg": lambda x, d: f"-{x}" if d.is_floating_point else f"ember_neg<{c_type(d)}>({x})",
    "abs": _abs,
    "sign": _sign,
    "logical_not": lambda x, d: f"!{_truth(x, d)}",
    "isnan": lambda x, d: f"({x} != {x})" if d.is_floating_point else "false",
    "isinf": lambda x, d: (f"(fabs{_fsuf(d)}({x}) == {'EMBER_INF' if d is dt.float64 else 'EMBER_INFF'})"
                           if d.is_floating_point else "false"),
}


# =================================================================================== binary
def _cmp(sym):
    return lambda a, b, d: f"({a} {sym} {b})"


def _minmax(op):
    def f(a, b, d):
        if d is dt.bool_:
            return f"({a} || {b})" if op == "max" else f"({a} && {b})"
        if d.is_floating_point:
            return f"ember_f{op}({a}, {b})"
        return f"ember_{op}<{c_type(d)}>({a}, {b})"
    return f


def _arith(sym, int_fn):
    """Floats: the C operator or call (rounded for float16); integers: a wrapping ember_* helper."""
    def f(a, b, d):
        if d.is_floating_point:
            return _round(sym.format(a=a, b=b, f=_fsuf(d)), d)
        if int_fn is None:
            raise NotImplementedError(f"{sym} for {d.name}")
        return f"{int_fn}<{c_type(d)}>({a}, {b})"
    return f


CUDA_BINARY = {
    "add": _arith("{a} + {b}", "ember_add"),
    "sub": _arith("{a} - {b}", "ember_sub"),
    "mul": _arith("{a} * {b}", "ember_mul"),
    "div": _arith("{a} / {b}", None),
    "pow": _arith("pow{f}({a}, {b})", "ember_ipow"),
    "remainder": _arith("ember_remainder({a}, {b})", "ember_ifloormod"),
    "floor_divide": _arith("ember_floor_divide({a}, {b})", "ember_ifloordiv"),
    "maximum": _minmax("max"),
    "minimum": _minmax("min"),
    "eq": _cmp("=="), "ne": _cmp("!="), "lt": _cmp("<"), "le": _cmp("<="), "gt": _cmp(">"), "ge": _cmp(">="),
    "logical_and": lambda a, b, d: f"({_truth(a, d)} && {_truth(b, d)})",
    "logical_or": lambda a, b, d: f"({_truth(a, d)} || {_truth(b, d)})",
}


# ==================================================================================== casts
def _float_resize(x, src, dst):
    if dst is dt.float16:
        return f"ember_h2f(ember_d2h({x}))" if src is dt.float64 else f"ember_rh({x})"
    if dst is dt.bfloat16:   # (from double through float, as PyTorch)
        return f"ember_rbf((float)({x}))"
    return f"({c_type(dst)})({x})"


def _int_to_float(x, src, dst):
    if src is dt.bool_:
        return f"({x} ? {'1.0' if dst is dt.float64 else '1.0f'} : {'0.0' if dst is dt.float64 else '0.0f'})"
    if dst is dt.float16:
        return f"ember_rh((float)({x}))"
    if dst is dt.bfloat16:
        return f"ember_rbf((float)({x}))"
    return f"({c_type(dst)})({x})"


_CASTS = {   # (x, src, dst) -> C text, per ember/codegen/loops.py cast_rule
    "same": lambda x, src, dst: x,
    "truth": lambda x, src, dst: f"({x} != 0)",
    "float": _float_resize,
    # truncate toward zero, saturating, NaN -> 0 (cvt.rzi.s64), then wrap to the width like numpy
    "float_int": lambda x, src, dst: f"(long long)({x})" if dst is dt.int64 else f"({c_type(dst)})(long long)({x})",
    "int_float": _int_to_float,
    "int": lambda x, src, dst: f"({c_type(dst)})({x} ? 1 : 0)" if src is dt.bool_ else f"({c_type(dst)})({x})",
}


def convert_c(x: str, src: dt.DType, dst: dt.DType) -> str:
    """numpy astype semantics between register values."""
    return _CASTS[cast_rule(src, dst)](x, src, dst)


# =============================================================================== reductions
def acc_type(d: dt.DType) -> str:
    """Accumulator type of a reduction: shuffle-able (32/64-bit)."""
    if d is dt.float64:
        return "double"
    if d.is_floating_point:
        return "float"
    if d is dt.int64:
        return "long long"
    return "int"


def acc_dtype(d: dt.DType) -> dt.DType:
    return {"double": dt.float64, "float": dt.float32, "long long": dt.int64, "int": dt.int32}[acc_type(d)]


def acc_init(op: str, d: dt.DType) -> str:
    """The reduction's identity as a literal of the accumulator type."""
    v = reduce_identity(op, d)
    return _float_lit(v, d) if d.is_floating_point else _int_lit(int(v), acc_dtype(d))


def to_acc(v: str, d: dt.DType) -> str:
    """Register value -> accumulator type (bool/8/16-bit ints widen to int)."""
    if d is dt.bool_ or (not d.is_floating_point and d.itemsize < 4):
        return f"(int)({v})"
    return v


def from_acc(a: str, d: dt.DType) -> str:
    if d is dt.float16:
        return f"ember_rh({a})"
    if d is dt.bfloat16:
        return f"ember_rbf({a})"
    if d is dt.bool_:
        return f"({a} != 0)"
    if not d.is_floating_point and d.itemsize < 4:
        return f"({c_type(d)})({a})"
    return a


def combine_c(op: str, acc: str, v: str, ty: str) -> str:
    if op == "sum":
        return f"{acc} + {v}" if ty in ("float", "double") else f"ember_add<{ty}>({acc}, {v})"
    if op == "prod":
        return f"{acc} * {v}" if ty in ("float", "double") else f"ember_mul<{ty}>({acc}, {v})"
    if op == "max":
        return f"ember_max({acc}, ({ty}){v})"
    if op == "min":
        return f"ember_min({acc}, ({ty}){v})"
    raise ValueError(op)


def _fold_other(op: str, acc: str, idx: str | None, ty: str) -> str:
    """Fold (ov, oi), another thread's accumulator, into (acc, idx)."""
    if idx is not None:
        return f"  if (ember_{op}_better(ov, oi, {acc}, {idx})) {{ {acc} = ov; {idx} = oi; }}"
    return f"  {acc} = {combine_c(op, acc, 'ov', ty)};"


def group_reduce_c(strategy: str, block: int, op: str, acc: str, ty: str, idx: str | None) -> list[str]:
    """Lines that combine the per-thread accumulators of a warp / block (idx: argmax/argmin's index
    accumulator); every thread ends with the result.  A warp folds by butterfly shuffles; a block then
    folds one slot per warp in shared memory (ember_sh), every thread in the same order."""
    lines = []
    if strategy in ("warp", "block", "split"):
        lines += ["#pragma unroll", "for (int s = 16; s > 0; s >>= 1) {",
                  f"  const {ty} ov = __shfl_xor_sync(EMBER_FULL_MASK, {acc}, s);"]
        if idx is not None:
            lines.append(f"  const long long oi = __shfl_xor_sync(EMBER_FULL_MASK, {idx}, s);")
        lines += [_fold_other(op, acc, idx, ty), "}"]
    if strategy in ("block", "split"):
        lines += ["__syncthreads();  // the shared slots may still be read by the previous reduction",
                  f"if ((threadIdx.x & 31) == 0) reinterpret_cast<{ty}*>(ember_sh)[threadIdx.x >> 5] = {acc};"]
        if idx is not None:
            lines.append(f"if ((threadIdx.x & 31) == 0) ember_sh_idx[threadIdx.x >> 5] = {idx};")
        lines += ["__syncthreads();", f"{acc} = reinterpret_cast<{ty}*>(ember_sh)[0];"]
        if idx is not None:
            lines.append(f"{idx} = ember_sh_idx[0];")
        lines += [f"for (int w = 1; w < {block // 32}; ++w) {{",
                  f"  const {ty} ov = reinterpret_cast<{ty}*>(ember_sh)[w];"]
        if idx is not None:
            lines.append("  const long long oi = ember_sh_idx[w];")
        lines += [_fold_other(op, acc, idx, ty), "}"]
    return lines
