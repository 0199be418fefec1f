"""The counter-based generator (ember/ir/rng.py) as LLVM IR: a Random node's value from its operands.

In: an llvmlite builder and module, the distribution, the result dtype (float32 / float64), and the
i64 `seed` and `counter` values.  Out: the value (`emit_random`).  Every operation of ember/ir/rng.py
is emitted in the same order with the same constants; float operations carry no fast-math flags (no
`contract`: an FMA would round differently from numpy), so the result equals eager's bit for bit.
All of it is straight-line integer and float arithmetic plus selects: loops over it vectorise.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ember.codegen.llvm.math import intrinsic
from ember.ir import dtypes as dt
from ember.ir import rng

__all__ = ["emit_random"]

I64, F32, F64 = ir.IntType(64), ir.FloatType(), ir.DoubleType()


def _i(v: int):
    """An i64 constant from a Python int in [0, 2**64) (two's complement)."""
    return ir.Constant(I64, v - (1 << 64) if v >= 1 << 63 else v)


def _f(v: float):
    return ir.Constant(F64, float(v))


def _splitmix64(b: ir.IRBuilder, x):
    x = b.xor(x, b.lshr(x, _i(rng.SHIFTS[0])))
    x = b.mul(x, _i(rng.M1))
    x = b.xor(x, b.lshr(x, _i(rng.SHIFTS[1])))
    x = b.mul(x, _i(rng.M2))
    return b.xor(x, b.lshr(x, _i(rng.SHIFTS[2])))


def _word(b, seed, counter):
    return _splitmix64(b, b.add(b.mul(counter, _i(rng.GOLDEN)), _splitmix64(b, seed)))


def _horner(b, w, coef):
    acc = _f(coef[-1])
    for c in reversed(coef[:-1]):
        acc = b.fadd(_f(c), b.fmul(w, acc))
    return acc


def _log_unit(b, x):
    """rng.log_unit: fdlibm's log of a double in [2**-32, 1]."""
    bits = b.bitcast(x, I64)
    k = b.sub(b.lshr(bits, _i(52)), _i(1023))
    m = b.bitcast(b.or_(b.and_(bits, _i((1 << 52) - 1)), _i(1023 << 52)), F64)
    big = b.fcmp_ordered(">", m, _f(rng.SQRT2))
    m = b.select(big, b.fmul(m, _f(0.5)), m)
    k = b.add(k, b.zext(big, I64))
    f = b.fsub(m, _f(1.0))
    dk = b.sitofp(k, F64)
    s = b.fdiv(f, b.fadd(_f(2.0), f))
    z = b.fmul(s, s)
    w = b.fmul(z, z)
    LG = rng.LG
    t1 = b.fmul(w, b.fadd(_f(LG[1]), b.fmul(w, b.fadd(_f(LG[3]), b.fmul(w, _f(LG[5]))))))
    t2 = b.fmul(z, b.fadd(_f(LG[0]), b.fmul(w, b.fadd(_f(LG[2]), b.fmul(w, b.fadd(_f(LG[4]),
                                                                                      b.fmul(w, _f(LG[6]))))))))
    r = b.fadd(t2, t1)
    hfsq = b.fmul(b.fmul(_f(0.5), f), f)
    inner = b.fsub(b.fsub(hfsq, b.fadd(b.fmul(s, b.fadd(hfsq, r)), b.fmul(dk, _f(rng.LN2_LO)))), f)
    return b.fsub(b.fmul(dk, _f(rng.LN2_HI)), inner)


def _cos_turns(b, lo):
    """rng.cos_turns: cos(2 pi lo / 2**32) for an i64 lo in [0, 2**32)."""
    k = b.ashr(b.add(lo, _i(1 << 29)), _i(30))
    r = b.fmul(b.sitofp(b.sub(lo, b.shl(k, _i(30))), F64), _f(2.0 ** -30))
    w = b.fmul(r, r)
    c = _horner(b, w, rng.COS_C)
    s = b.fmul(r, _horner(b, w, rng.SIN_C))
    q = b.and_(k, _i(3))
    neg = lambda v: b.fneg(v)  # noqa: E731
    pick = b.select(b.icmp_signed("==", q, _i(2)), neg(c), s)
    pick = b.select(b.icmp_signed("==", q, _i(1)), neg(s), pick)
    return b.select(b.icmp_signed("==", q, _i(0)), c, pick)


def emit_random(b: ir.IRBuilder, m: ir.Module, dist: str, dtype: dt.DType, seed, counter):
    """The value of Random(dist, seed, counter, dtype) (ember/ir/kernel.py) at the builder's position."""
    w = _word(b, seed, counter)
    if dist == "uniform":
        bits = rng.UNIFORM_BITS[dtype.np]
        if dtype is dt.float64:
            return b.fmul(b.uitofp(b.lshr(w, _i(64 - bits)), F64), _f(2.0 ** -bits))
        u = b.fmul(b.uitofp(b.lshr(w, _i(64 - bits)), F32), ir.Constant(F32, 2.0 ** -bits))
        # float16: the float32 value is exact in half, so the conversion does not round
        return u if dtype is dt.float32 else b.fptrunc(u, ir.HalfType())
    hi = b.uitofp(b.lshr(w, _i(32)), F64)
    lo = b.and_(w, _i(0xFFFFFFFF))
    u1 = b.fmul(b.fadd(hi, _f(1.0)), _f(2.0 ** -32))
    sqrt = intrinsic(m, "sqrt", F64, 1)
    radius = b.call(sqrt, [b.fmul(_f(-2.0), _log_unit(b, u1))])
    return b.fmul(radius, _cos_turns(b, lo))
