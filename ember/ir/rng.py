"""The counter-based random-number generator, defined once: counters -> 64-bit words -> values.

In: a seed, counters (uint64 arrays) and an array module xp (numpy or cupy).  Out: the random words
and the uniform / normal values eager mode returns.  The code generators (ember/codegen/llvm/random.py,
ember/codegen/cuda/random.py) emit the same integer and IEEE float operations in the same order with
the constants below, so eager, the numpy kernel-IR evaluator, LLVM and CUDA agree bit for bit.

    word(c)    = splitmix64(c * GOLDEN + splitmix64(seed))            counter c = offset + flat index
    uniform    = (word >> (64 - b)) * 2**-b  with b the dtype's significand bits: float16 11, float32 24,
                 float64 53 (exact in the dtype, always < 1; PyTorch's uniform_real takes as many bits)
    normal     = sqrt(-2 log(u1)) * cos(2 pi u2)   (Box-Muller, one counter per value, in float64)
                 u1 = (hi + 1) * 2**-32 in (0, 1], u2 = lo * 2**-32 in [0, 1); hi, lo the word's halves

Bit-for-bit agreement rules out library transcendentals (numpy, glibc, LLVM and CUDA's log/cos differ
in the last bit), so `log` and `cos` here are short polynomial programs of correctly rounded IEEE
operations (+ - * / sqrt, exact integer bit manipulation), which every backend reproduces as long as
it never contracts a*b+c into an FMA (LLVM: no `contract`/`fast` flags; CUDA: __dmul_rn/__dadd_rn).
  log(x), x in [2**-32, 1]: fdlibm's e_log.c: x = 2**k * m, m in (sqrt(2)/2, sqrt(2)], f = m - 1,
      s = f/(2+f), log(m) = f - (hfsq - s*(hfsq + R(s*s))), R fdlibm's degree-14 minimax (Lg1..Lg7);
      < 1 ulp.
  cos(2 pi u2): quarter turns k = round(4 u2) are taken out with integers (exact: u2 has 32 bits),
      r = 4 u2 - k in [-1/2, 1/2], cos(pi/2 r) and sin(pi/2 r) by Taylor series in r (degree 16 / 17,
      truncation < 1e-18), and the quadrant k mod 4 picks +-cos / +-sin.
"""
from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np

__all__ = ["GOLDEN", "M1", "M2", "SHIFTS", "LG", "LN2_HI", "LN2_LO", "SQRT2", "COS_C", "SIN_C", "DISTS",
           "splitmix64", "mix_seed", "words", "uniform_from_words", "normal_from_words", "log_unit",
           "cos_turns", "uniform", "normal", "value_dtype", "UNIFORM_BITS"]

DISTS = ("uniform", "normal")

# splitmix64 (Steele, Lea, Flood 2014): the golden-ratio increment and the finaliser's constants
GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
SHIFTS = (30, 27, 31)
_MASK64 = (1 << 64) - 1

# log: fdlibm e_log.c
LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01,
      1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01)
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
SQRT2 = 1.4142135623730951


def _taylor(odd: bool) -> tuple:
    """Taylor coefficients of cos(pi/2 r) (even powers) or sin(pi/2 r)/r, in powers of r*r, rounded
    once from 40 digits (the rounding is part of the definition: every backend uses these floats)."""
    out = []
    with localcontext() as ctx:
        ctx.prec = 40
        half_pi = Decimal("1.570796326794896619231321691639751442098585")
        for j in range(9):
            n = 2 * j + (1 if odd else 0)
            out.append(float((-1) ** j * half_pi ** n / math.factorial(n)))
    return tuple(out)


COS_C = _taylor(odd=False)       # COS_C[0] == 1.0
SIN_C = _taylor(odd=True)        # SIN_C[0] == pi/2


UNIFORM_BITS = {np.dtype(np.float16): 11, np.dtype(np.float32): 24, np.dtype(np.float64): 53}


def value_dtype(dist: str, dtype) -> np.dtype:
    """The dtype a distribution is computed in for a result dtype: a uniform in the dtype itself (with
    UNIFORM_BITS random bits), a normal always in float64 (then rounded)."""
    return np.dtype(np.float64) if dist == "normal" else np.dtype(dtype)


# ================================================================================ the words
def splitmix64(x):
    """The splitmix64 finaliser of uint64 values (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=False) if hasattr(x, "astype") else np.uint64(x)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(SHIFTS[0]))
        x = x * np.uint64(M1)
        x = x ^ (x >> np.uint64(SHIFTS[1]))
        x = x * np.uint64(M2)
        x = x ^ (x >> np.uint64(SHIFTS[2]))
    return x


def mix_seed(seed: int) -> int:
    """The per-seed constant added to every scrambled counter: splitmix64 of the seed's 64 bits."""
    return int(splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))[0])


def words(xp, seed, counters):
    """The 64-bit random words of uint64 `counters` under `seed` (an int, or a uint64 array of
    per-counter seeds broadcast against them)."""
    mixed = xp.uint64(mix_seed(seed)) if isinstance(seed, (int, np.integer)) else splitmix64(seed)
    with np.errstate(over="ignore"):
        c = counters.astype(np.uint64, copy=False) * xp.uint64(GOLDEN) + mixed
    return splitmix64(c)


# =========================================================================== the transforms
def uniform_from_words(xp, w, dtype):
    """[0, 1) values of a float dtype from the high UNIFORM_BITS[dtype] bits of each word (exact)."""
    dtype = np.dtype(dtype)
    b = UNIFORM_BITS.get(dtype, 8)      # bfloat16 (ml_dtypes) keeps 8 significand bits
    wide = dtype if dtype in UNIFORM_BITS else np.dtype(np.float32)     # exact in float32, then cast
    return ((w >> np.uint64(64 - b)).astype(wide) * wide.type(2.0 ** -b)).astype(dtype, copy=False)


def log_unit(xp, x):
    """log(x) for float64 x in [2**-32, 1] (positive normal numbers): fdlibm's algorithm."""
    b = x.view(np.uint64)
    k = (b >> np.uint64(52)).astype(np.int64) - 1023
    m = ((b & np.uint64((1 << 52) - 1)) | np.uint64(1023 << 52)).view(np.float64)     # [1, 2)
    big = m > SQRT2
    m = xp.where(big, m * 0.5, m)
    k = k + big.astype(np.int64)
    f = m - 1.0
    dk = k.astype(np.float64)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LG[1] + w * (LG[3] + w * LG[5]))
    t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)


def _horner(w, coef):
    acc = coef[-1]
    for c in reversed(coef[:-1]):
        acc = c + w * acc
    return acc


def cos_turns(xp, lo):
    """cos(2 pi lo / 2**32) for int64 lo in [0, 2**32) as float64."""
    k = (lo + (1 << 29)) >> 30                         # nearest quarter turn, 0..4
    r = (lo - (k << 30)).astype(np.float64) * 2.0 ** -30   # [-1/2, 1/2], exact
    w = r * r
    c = _horner(w, COS_C)
    s = r * _horner(w, SIN_C)
    q = k & 3
    return xp.where(q == 0, c, xp.where(q == 1, -s, xp.where(q == 2, -c, s)))


def normal_from_words(xp, w):
    """Standard normal float64 values: Box-Muller on the two 32-bit halves of each word."""
    hi = (w >> np.uint64(32)).astype(np.float64)
    lo = (w & np.uint64(0xFFFFFFFF)).astype(np.int64)
    u1 = (hi + 1.0) * 2.0 ** -32                        # (0, 1]: the log is finite
    return xp.sqrt(-2.0 * log_unit(xp, u1)) * cos_turns(xp, lo)


# ===================================================================================== draws
_CHUNK = 1 << 14    # values per numpy pass: keeps the ~40 temporaries of a normal draw in cache


def _draw(xp, seed: int, offset: int, shape, np_dtype, transform):
    n = math.prod(shape)
    out = xp.empty(n, dtype=np_dtype)
    chunk = _CHUNK if xp is np else max(n, 1)     # a GPU array module: one launch per operation
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        c = xp.arange(start, stop, dtype=np.uint64) + xp.uint64(int(offset) & _MASK64)
        out[start:stop] = transform(words(xp, seed, c))
    return out.reshape(shape)


def uniform(xp, seed: int, offset: int, shape, np_dtype):
    """Uniform [0, 1) values for counters offset .. offset + numel - 1."""
    return _draw(xp, seed, offset, tuple(shape), np_dtype, lambda w: uniform_from_words(xp, w, np_dtype))


def normal(xp, seed: int, offset: int, shape, np_dtype):
    """Standard normal values (computed in float64, then rounded to np_dtype)."""
    return _draw(xp, seed, offset, tuple(shape), np_dtype, lambda w: normal_from_words(xp, w))
