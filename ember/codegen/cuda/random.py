"""The counter-based generator (ember/ir/rng.py) as CUDA C: helper functions and a Random node's call.

In: the constants and the operation order of ember/ir/rng.py.  Out: `RNG_HELPERS`, C source that a
translation unit using Random nodes includes after the prelude, and `random_c(dist, dtype, seed,
counter)`, the expression of one value.  Float operations are the correctly rounded intrinsics
(__dmul_rn, __dadd_rn, __dsub_rn, __ddiv_rn, __dsqrt_rn, __fmul_rn): NVRTC contracts a*b + c into an
FMA by default (-fmad=true), which rounds once instead of twice and would change the last bit; the
intrinsics are never contracted, so the values equal eager's bit for bit.
"""
from __future__ import annotations

from ember.ir import dtypes as dt
from ember.ir import rng

__all__ = ["RNG_HELPERS", "random_c"]


def _d(v: float) -> str:
    """A double literal that reads back as exactly v (repr is the shortest round-trip form)."""
    text = repr(float(v))
    return text if ("." in text or "e" in text) else text + ".0"


def _horner(var: str, coef) -> list[str]:
    lines = [f"  double {var} = {_d(coef[-1])};"]
    for c in reversed(coef[:-1]):
        lines.append(f"  {var} = __dadd_rn({_d(c)}, __dmul_rn(w, {var}));")
    return lines


def _helpers() -> str:
    LG = [_d(v) for v in rng.LG]
    B16, B32, B64 = (rng.UNIFORM_BITS[d.np] for d in (dt.float16, dt.float32, dt.float64))
    lines = [
        "// ---- counter-based random numbers: ember/ir/rng.py, operation for operation ----",
        "__device__ __forceinline__ unsigned long long ember_splitmix64(unsigned long long x) {",
        f"  x ^= x >> {rng.SHIFTS[0]}; x *= {rng.M1:#x}ULL;",
        f"  x ^= x >> {rng.SHIFTS[1]}; x *= {rng.M2:#x}ULL;",
        f"  return x ^ (x >> {rng.SHIFTS[2]});",
        "}",
        "__device__ __forceinline__ unsigned long long ember_rng_word(long long seed, long long counter) {",
        f"  return ember_splitmix64((unsigned long long)counter * {rng.GOLDEN:#x}ULL"
        " + ember_splitmix64((unsigned long long)seed));",
        "}",
        "// fdlibm's log of x in [2^-32, 1]",
        "__device__ __forceinline__ double ember_rng_log_unit(double x) {",
        "  const long long bits = __double_as_longlong(x);",
        "  long long k = (long long)((unsigned long long)bits >> 52) - 1023;",
        f"  double m = __longlong_as_double((bits & {(1 << 52) - 1:#x}LL) | {1023 << 52:#x}LL);",
        f"  const bool big = m > {_d(rng.SQRT2)};",
        "  m = big ? __dmul_rn(m, 0.5) : m;",
        "  k += big ? 1 : 0;",
        "  const double f = __dsub_rn(m, 1.0);",
        "  const double dk = (double)k;",
        "  const double s = __ddiv_rn(f, __dadd_rn(2.0, f));",
        "  const double z = __dmul_rn(s, s);",
        "  const double w = __dmul_rn(z, z);",
        f"  const double t1 = __dmul_rn(w, __dadd_rn({LG[1]}, __dmul_rn(w, __dadd_rn({LG[3]}, "
        f"__dmul_rn(w, {LG[5]})))));",
        f"  const double t2 = __dmul_rn(z, __dadd_rn({LG[0]}, __dmul_rn(w, __dadd_rn({LG[2]}, "
        f"__dmul_rn(w, __dadd_rn({LG[4]}, __dmul_rn(w, {LG[6]})))))));",
        "  const double r = __dadd_rn(t2, t1);",
        "  const double hfsq = __dmul_rn(__dmul_rn(0.5, f), f);",
        f"  const double inner = __dsub_rn(__dsub_rn(hfsq, __dadd_rn(__dmul_rn(s, __dadd_rn(hfsq, r)), "
        f"__dmul_rn(dk, {_d(rng.LN2_LO)}))), f);",
        f"  return __dsub_rn(__dmul_rn(dk, {_d(rng.LN2_HI)}), inner);",
        "}",
        "// cos(2 pi lo / 2^32): quarter turns taken out exactly, Taylor series on [-pi/4, pi/4]",
        "__device__ __forceinline__ double ember_rng_cos_turns(long long lo) {",
        "  const long long k = (lo + (1LL << 29)) >> 30;",
        f"  const double r = __dmul_rn((double)(lo - (k << 30)), {_d(2.0 ** -30)});",
        "  const double w = __dmul_rn(r, r);",
        *_horner("c", rng.COS_C),
        *_horner("s", rng.SIN_C),
        "  s = __dmul_rn(r, s);",
        "  const long long q = k & 3;",
        "  return q == 0 ? c : (q == 1 ? -s : (q == 2 ? -c : s));",
        "}",
        "// float16 values live in float registers: k * 2^-11 is exact in half, no rounding needed",
        "__device__ __forceinline__ float ember_rand_f16(long long seed, long long counter) {",
        f"  return __fmul_rn((float)(ember_rng_word(seed, counter) >> {64 - B16}), {_d(2.0 ** -B16)}f);",
        "}",
        "__device__ __forceinline__ float ember_rand_f32(long long seed, long long counter) {",
        f"  return __fmul_rn((float)(ember_rng_word(seed, counter) >> {64 - B32}), {_d(2.0 ** -B32)}f);",
        "}",
        "__device__ __forceinline__ double ember_rand_f64(long long seed, long long counter) {",
        f"  return __dmul_rn((double)(ember_rng_word(seed, counter) >> {64 - B64}), {_d(2.0 ** -B64)});",
        "}",
        "__device__ __forceinline__ double ember_randn_f64(long long seed, long long counter) {",
        "  const unsigned long long w = ember_rng_word(seed, counter);",
        f"  const double u1 = __dmul_rn(__dadd_rn((double)(w >> 32), 1.0), {_d(2.0 ** -32)});",
        "  const double radius = __dsqrt_rn(__dmul_rn(-2.0, ember_rng_log_unit(u1)));",
        "  return __dmul_rn(radius, ember_rng_cos_turns((long long)(w & 0xffffffffULL)));",
        "}",
        "// ---- end of random numbers ----",
    ]
    return "\n".join(lines)


RNG_HELPERS = _helpers()


def random_c(dist: str, dtype: dt.DType, seed: str, counter: str) -> str:
    """The C expression of Random(dist, seed, counter, dtype)."""
    if dist == "normal":
        return f"ember_randn_f64({seed}, {counter})"
    return f"ember_rand_{dtype.short}({seed}, {counter})"
