"""CUDA code generator: kernel IR -> CUDA C source.  Pure: nothing is compiled or launched here.

In: `Kernel`s / `ExternKernel`s (ember/ir/kernel.py; an extern contributes its epilogue kernel).
Out: a `CudaProgram` -- the text of ONE translation unit (`.source`) holding an `extern "C"
__global__` function per kernel, and a `LaunchSpec` per kernel (`.launches[name]`) that tells
ember/runtime/cuda.py how to launch it.  The source needs no headers (so NVRTC compiles it without
include paths) and compiles with nvcc too (`nvcc -c -x cu`), GPU or not.

Generated function, per kernel (buffers in `kernel.args` order: inputs, then outputs):

    extern "C" __global__ void <kernel.name>(const T* __restrict__ g_<in>, ..., T* __restrict__ g_<out>,
                                             long long* __restrict__ err, long long n [, int vec_ok])

  * `n` is the number of outer points (the product of `outer`); all other sizes are compile-time
    constants (shapes are static in kernel IR), so index div/mod by constants are multiply-shifts;
  * `err` points to four int64 slots (flag, value, dimension, size).  A gather index out of range
    sets them once (atomicCAS on the flag), the read uses index 0 instead, and the runtime raises
    `IndexError("index 7 is out of bounds for dimension 0 with size 5")` like the CPU backend;
  * index arithmetic is 32-bit when an interval analysis of every index expression proves it fits,
    64-bit otherwise (`idx_t` in the source); gathered indices are always 64-bit until checked.

Launch strategies (`LaunchSpec.strategy`), chosen from the kernel's shape alone:

  pointwise  no inner axes: a grid-stride loop over the flattened outer domain.  When every buffer
             that is read or written at exactly its own element (`x[o0, o1]` with x.shape == outer)
             can be accessed 16 bytes at a time, the loop handles VEC elements per step with vector
             loads/stores (uint4 etc.) and a scalar tail; the runtime passes vec_ok=0 when a pointer
             is not aligned, and everything runs through the scalar loop.
  thread     one thread per outer point, serial loops over the inner domain (tiny windows such as
             pooling, and reductions over a strided axis where consecutive threads reading
             consecutive columns is what coalesces).
  warp       one warp per outer point; each reduction is a butterfly of __shfl_xor_sync, so every
             lane ends with the same value and no shared memory or __syncthreads is needed.
  block      one block per outer point (long rows, few points): warp shuffles, then one slot per
             warp in shared memory that every thread folds in the same order.
  split      full reductions (one outer point, a long single-pass inner domain): stage one
             (`<name>_partial`) has PARTS blocks each reduce a slice into a scratch buffer, stage
             two (`<name>`) is one block that folds the partials and runs the stores.  Fixed order:
             the result is deterministic run to run.

Multi-pass reductions (softmax: max; sum of exp(x - max); store) are several loops over the row
inside the same thread/warp/block, exactly as on the CPU; reduction results are broadcast to the
whole group before the next pass.  Expression nodes are emitted at the shallowest level where their
inputs exist (per outer point, or inside a pass's inner loop), like the LLVM generator.

Numerics follow eager numpy/PyTorch: maximum/minimum and reduce.max/min propagate NaN (fmaxf does
not, so ember_fmax checks first), remainder/floor_divide use the floor rule, integer division by zero
gives 0, integer overflow wraps (arithmetic through the unsigned type: no C++ UB), float->int casts
truncate and saturate (PTX cvt.rzi), transcendentals are CUDA's precise math library (expf, tanhf,
erff; never --use_fast_math).  float16 is stored as 16-bit bit patterns, computed in float and rounded
back to half after every operation (numpy's float16 semantics), converted with PTX cvt (no
cuda_fp16.h needed); bfloat16 the same way, converted with bit operations (no cuda_bf16.h).  Reductions accumulate in float for f16 and in int for 8/16-bit integers (the
same result modulo 2^k for sum/prod, the same for max/min).  CuPy compiles with -ftz=true: float32
denormals flush to zero.

The kernel IR has no random-number node, so no RNG is emitted here (eager random draws use
ember/frontend/rng.py on CuPy, which gives the same values as on the CPU).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.kernel import (Binary, Buf, Cast, Const, ExternKernel, IBin, IConst, IGather,
                             IndexValue, Kernel, Load, Reduce, Store, Unary, Var, Where,
                             _index_postorder)

__all__ = ["CudaProgram", "LaunchSpec", "emit_program", "emit_kernel", "PRELUDE", "c_type",
           "BLOCK", "SPLIT_MIN_INNER"]

BLOCK = 256                 # threads per block for every strategy except `block` with long rows
THREAD_MAX_INNER = 16       # inner domains up to this size run one thread per outer point
WARP_MAX_INNER = 2048       # ... up to this size one warp per point, longer rows a block per point
SPLIT_MIN_INNER = 1 << 16   # single-point reductions at least this long use the two-stage split
SPLIT_PARTS_MAX = 512       # stage-one blocks of a split reduction
_INT32_SAFE = (1 << 31) - (1 << 26)   # headroom for `i += stride` in grid-stride loops
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


def _acc_type(d: dt.DType) -> str:
    """Accumulator type of a reduction: shuffle-able (32/64-bit)."""
    if d is dt.float64:
        return "double"
    if d.is_floating_point:
        return "float"
    if d is dt.int64:
        return "long long"
    return "int"


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


def _const(value, d: dt.DType) -> str:
    if d is dt.bool_:
        return "true" if value else "false"
    if d is dt.bfloat16:   # the bfloat16 value, as eager's `full` makes it
        value = float(np.array(float(value), np.float32).astype(d.np).astype(np.float32))
    if d.is_floating_point:
        return _float_lit(float(value), d)
    return _int_lit(value, d)


def _type_min_max(d: dt.DType):
    if d is dt.bool_:
        return 0, 1
    i = np.iinfo(d.np)
    return int(i.min), int(i.max)


# ================================================================================== prelude
PRELUDE = r"""// ---- ember CUDA prelude: no headers needed (NVRTC or nvcc) ----
#define EMBER_INFF __int_as_float(0x7f800000)
#define EMBER_NANF __int_as_float(0x7fc00000)
#define EMBER_INF __longlong_as_double(0x7ff0000000000000LL)
#define EMBER_NAN __longlong_as_double(0x7ff8000000000000LL)
#define EMBER_FULL_MASK 0xffffffffu

// float16 as 16-bit patterns: PTX conversions, round-to-nearest-even
// [f16 conversions]
__device__ __forceinline__ float ember_h2f(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
__device__ __forceinline__ unsigned short ember_f2h(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ unsigned short ember_d2h(double d) {
  unsigned short h; asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(d)); return h;
}
// [end f16 conversions]
// round a float to the nearest float16 value (numpy computes float16 ops in float, rounds each result)
__device__ __forceinline__ float ember_rh(float f) { return ember_h2f(ember_f2h(f)); }
// bfloat16 as 16-bit patterns (the high half of a float32): round to nearest even, NaN -> 0x7fc0,
// computed in float and rounded after every operation like float16
__device__ __forceinline__ float ember_bf2f(unsigned short h) {
  union { unsigned int u; float f; } v; v.u = ((unsigned int)h) << 16; return v.f;
}
__device__ __forceinline__ unsigned short ember_f2bf(float f) {
  union { float f; unsigned int u; } v; v.f = f;
  if (f != f) return (unsigned short)0x7fc0;
  return (unsigned short)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float ember_rbf(float f) { return ember_bf2f(ember_f2bf(f)); }

// NaN-propagating maximum/minimum (fmaxf/fminf return the other operand for NaN)
__device__ __forceinline__ float ember_fmax(float a, float b) { return (a != a || b != b) ? a + b : fmaxf(a, b); }
__device__ __forceinline__ float ember_fmin(float a, float b) { return (a != a || b != b) ? a + b : fminf(a, b); }
__device__ __forceinline__ double ember_fmax(double a, double b) { return (a != a || b != b) ? a + b : fmax(a, b); }
__device__ __forceinline__ double ember_fmin(double a, double b) { return (a != a || b != b) ? a + b : fmin(a, b); }
template <typename T> __device__ __forceinline__ T ember_max(T a, T b) { return a > b ? a : b; }
template <typename T> __device__ __forceinline__ T ember_min(T a, T b) { return a < b ? a : b; }
__device__ __forceinline__ float ember_max(float a, float b) { return ember_fmax(a, b); }
__device__ __forceinline__ float ember_min(float a, float b) { return ember_fmin(a, b); }
__device__ __forceinline__ double ember_max(double a, double b) { return ember_fmax(a, b); }
__device__ __forceinline__ double ember_min(double a, double b) { return ember_fmin(a, b); }

// wrapping integer arithmetic through the unsigned type (signed overflow is UB in C++)
template <typename T> struct ember_u {};
template <> struct ember_u<unsigned char> { typedef unsigned char t; };
template <> struct ember_u<signed char> { typedef unsigned char t; };
template <> struct ember_u<short> { typedef unsigned short t; };
template <> struct ember_u<int> { typedef unsigned int t; };
template <> struct ember_u<long long> { typedef unsigned long long t; };
template <typename T> __device__ __forceinline__ T ember_add(T a, T b) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)a + (U)b);
}
template <typename T> __device__ __forceinline__ T ember_sub(T a, T b) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)a - (U)b);
}
template <typename T> __device__ __forceinline__ T ember_mul(T a, T b) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)a * (U)b);
}
template <typename T> __device__ __forceinline__ T ember_neg(T a) {
  typedef typename ember_u<T>::t U; return (T)(U)((U)0 - (U)a);
}
// numpy integer floor division / modulo: x // 0 == x % 0 == 0; INT_MIN // -1 wraps
template <typename T> __device__ __forceinline__ T ember_ifloordiv(T a, T b) {
  if (b == (T)0) return (T)0;
  if ((T)-1 < (T)0 && b == (T)-1) return ember_neg(a);
  T q = (T)(a / b), r = (T)(a % b);
  if (r != (T)0 && ((r < (T)0) != (b < (T)0))) q = (T)(q - 1);
  return q;
}
template <typename T> __device__ __forceinline__ T ember_ifloormod(T a, T b) {
  if (b == (T)0) return (T)0;
  if ((T)-1 < (T)0 && b == (T)-1) return (T)0;
  T r = (T)(a % b);
  if (r != (T)0 && ((r < (T)0) != (b < (T)0))) r = (T)(r + b);
  return r;
}
// integer power by squaring; a negative exponent gives 1 // a**|b| (0 unless |a| == 1)
template <typename T> __device__ __forceinline__ T ember_ipow(T a, T b) {
  if ((T)-1 < (T)0 && b < (T)0) return a == (T)1 ? (T)1 : (a == (T)-1 ? ((b & 1) ? (T)-1 : (T)1) : (T)0);
  T r = (T)1, base = a;
  while (b != (T)0) { if (b & 1) r = ember_mul(r, base); base = ember_mul(base, base); b = (T)(b >> 1); }
  return r;
}
// Python/numpy float remainder and floor division (npy_remainder / npy_floor_divide)
__device__ __forceinline__ float ember_remainder(float a, float b) {
  float m = fmodf(a, b);
  if (b == 0.0f) return m;
  if (m != 0.0f) { if ((b < 0.0f) != (m < 0.0f)) m += b; } else { m = copysignf(0.0f, b); }
  return m;
}
__device__ __forceinline__ double ember_remainder(double a, double b) {
  double m = fmod(a, b);
  if (b == 0.0) return m;
  if (m != 0.0) { if ((b < 0.0) != (m < 0.0)) m += b; } else { m = copysign(0.0, b); }
  return m;
}
__device__ __forceinline__ float ember_floor_divide(float a, float b) {
  if (b == 0.0f) return a / b;
  float m = fmodf(a, b), d = (a - m) / b;
  if (m != 0.0f && ((b < 0.0f) != (m < 0.0f))) d -= 1.0f;
  if (d == 0.0f) return copysignf(0.0f, a / b);
  float f = floorf(d);
  return (d - f > 0.5f) ? f + 1.0f : f;
}
__device__ __forceinline__ double ember_floor_divide(double a, double b) {
  if (b == 0.0) return a / b;
  double m = fmod(a, b), d = (a - m) / b;
  if (m != 0.0 && ((b < 0.0) != (m < 0.0))) d -= 1.0;
  if (d == 0.0) return copysign(0.0, a / b);
  double f = floor(d);
  return (d - f > 0.5) ? f + 1.0 : f;
}
// argmax/argmin: does (v, i) beat (bv, bi)?  NaN is the extreme value; ties go to the lower index.
template <typename T> __device__ __forceinline__ bool ember_argmax_better(T v, long long i, T bv, long long bi) {
  bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}
template <typename T> __device__ __forceinline__ bool ember_argmin_better(T v, long long i, T bv, long long bi) {
  bool vn = v != v, bn = bv != bv;
  if (vn || bn) return vn && (!bn || i < bi);
  return v < bv || (v == bv && i < bi);
}
// floor division / modulo of index arithmetic by a positive constant (operands may be negative)
template <typename T> __device__ __forceinline__ T ember_idx_div(T a, T c) { T q = a / c; return (a % c < 0) ? q - 1 : q; }
template <typename T> __device__ __forceinline__ T ember_idx_mod(T a, T c) { T r = a % c; return r < 0 ? r + c : r; }
// a gather index out of range: remember the first one (the runtime raises IndexError)
__device__ __forceinline__ void ember_index_error(long long* err, long long value, long long dim, long long size) {
  if (atomicCAS((unsigned long long*)err, 0ULL, 1ULL) == 0ULL) { err[1] = value; err[2] = dim; err[3] = size; }
}
// ---- end of prelude ----
"""


# ============================================================================ launch metadata
@dataclass(frozen=True)
class LaunchSpec:
    """How the runtime launches one generated kernel.

    strategy    'pointwise' | 'thread' | 'warp' | 'block' | 'split' (module docstring)
    block       threads per block
    points      outer points (the `n` argument)
    per_block   outer points one block covers per grid-stride step (pointwise/thread: block;
                warp: block/32; block: 1); the runtime sizes the grid from it
    vec         elements per vector step (pointwise only; 1: scalar)
    vec_args    positions in kernel.args of the buffers accessed with vector loads/stores (their
                addresses must be multiples of vec * itemsize for vec_ok=1)
    vec_bytes   required alignment per entry of vec_args
    gathers     the kernel checks gather indices (the runtime reads `err` after it)
    parts       split: stage-one blocks; scratch: (name, dtype name) of each partial buffer,
                each `parts` long, passed after the kernel's buffers to both stages
    partial     split: name of the stage-one kernel
    idx64       64-bit index arithmetic
    """
    name: str
    strategy: str
    block: int
    points: int
    per_block: int
    vec: int = 1
    vec_args: tuple = ()
    vec_bytes: tuple = ()
    gathers: bool = False
    parts: int = 0
    scratch: tuple = ()
    partial: str | None = None
    idx64: bool = False


@dataclass
class CudaProgram:
    """One translation unit: `source` (CUDA C) and `launches[name]` for every kernel."""
    source: str
    launches: dict = field(default_factory=dict)
    kernels: list = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.launches)


# ============================================================================= index analysis
def _has_gather(e) -> bool:
    return any(isinstance(n, IGather) for n in _index_postorder(e))


def _index_range(e, outer, inner) -> tuple[int, int]:
    """Conservative interval of an index expression (gathers: the whole int64 range)."""
    rng: dict[int, tuple[int, int]] = {}
    big = (_I64_MIN, (1 << 63) - 1)
    for n in _index_postorder(e):
        if isinstance(n, Var):
            size = (outer if n.kind == "o" else inner)[n.axis]
            v = (0, max(size - 1, 0))
        elif isinstance(n, IConst):
            v = (n.value, n.value)
        elif isinstance(n, IGather):
            v = big
        else:
            a, b = rng[id(n.a)], rng[id(n.b)]
            if n.op == "+":
                v = (a[0] + b[0], a[1] + b[1])
            elif n.op == "*":
                c = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
                v = (min(c), max(c))
            elif n.op == "//":
                v = (a[0] // b[0], a[1] // b[0])
            else:
                v = (0, b[0] - 1)
        rng[id(n)] = v
    return rng[id(e)]


def _nonneg(e, outer, inner) -> bool:
    return _index_range(e, outer, inner)[0] >= 0


def _linear_coeff(e, var: Var):
    """Coefficient of `var` in an index expression that is affine in it, else None (or 0 if absent)."""
    coeff: dict[int, object] = {}
    for n in _index_postorder(e):
        if isinstance(n, Var):
            c = 1 if (n.kind, n.axis) == (var.kind, var.axis) else 0
        elif isinstance(n, IConst):
            c = 0
        elif isinstance(n, IGather):
            c = 0 if not any(isinstance(m, Var) and (m.kind, m.axis) == (var.kind, var.axis)
                             for m in _index_postorder(n)) else None
        else:
            a, b = coeff[id(n.a)], coeff[id(n.b)]
            if a is None or b is None:
                c = None
            elif n.op == "+":
                c = a + b
            elif n.op == "*":
                if isinstance(n.b, IConst):
                    c = a * n.b.value
                elif isinstance(n.a, IConst):
                    c = b * n.a.value
                else:
                    c = None if (a or b) else 0
            else:
                c = None if a else 0
        coeff[id(n)] = c
    return coeff[id(e)]


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]


def _needs_idx64(k: Kernel) -> bool:
    n_outer = math.prod(k.outer)
    n_inner = math.prod(k.inner) if k.inner else 1
    if n_outer * n_inner >= _INT32_SAFE or any(b.numel >= _INT32_SAFE for b in k.args):
        return True
    exprs = []
    for node in k.nodes:
        if isinstance(node, Load):
            exprs.extend(node.index)
        elif isinstance(node, IndexValue):
            exprs.append(node.index)
    for s in k.stores:
        exprs.extend(s.index)
    for e in exprs:
        for sub in _index_postorder(e):
            if isinstance(sub, IGather) or _has_gather(sub):
                continue
            lo, hi = _index_range(sub, k.outer, k.inner)
            if lo <= -_INT32_SAFE or hi >= _INT32_SAFE:
                return True
    return False


def _is_identity(index, buf: Buf, outer) -> bool:
    """buf[o0, o1, ...] over a buffer shaped like the outer domain: element i of the flat loop."""
    if tuple(buf.shape) != tuple(outer) or len(index) != len(outer):
        return False
    return all(isinstance(e, Var) and e.kind == "o" and e.axis == a for a, e in enumerate(index))


# ============================================================================= strategy choice
def _choose_strategy(k: Kernel) -> tuple[str, int]:
    if not k.inner:
        return "pointwise", BLOCK
    n = math.prod(k.outer)
    m = math.prod(k.inner)
    inner_stores = any(k.store_is_inner(s) for s in k.stores)
    if n == 1 and m >= SPLIT_MIN_INNER and k.n_passes == 1 and not inner_stores:
        return "split", BLOCK
    if m <= THREAD_MAX_INNER:
        return "thread", BLOCK
    # reductions whose loads run contiguously along the last OUTER axis (a column sum) coalesce
    # when consecutive threads take consecutive outer points
    last_r = Var("r", len(k.inner) - 1)
    last_o = Var("o", len(k.outer) - 1)
    inner_contig = outer_contig = False
    for node in k.nodes:
        if isinstance(node, Load) and node.index:
            e = node.index[-1]
            cr = _linear_coeff(e, last_r)
            co = _linear_coeff(e, last_o)
            inner_contig |= cr == 1
            outer_contig |= co == 1 and cr == 0
    if outer_contig and not inner_contig and n >= 4 * BLOCK:
        return "thread", BLOCK
    if m <= WARP_MAX_INNER:
        return "warp", BLOCK
    return "block", (512 if m >= 16384 else BLOCK)


# =================================================================================== emitter
class _Scope:
    __slots__ = ("lines", "memo", "indent")

    def __init__(self, indent: str):
        self.lines: list[str] = []
        self.memo: dict[int, str] = {}
        self.indent = indent

    def add(self, line: str) -> None:
        self.lines.append(self.indent + line)


class _KernelEmitter:
    """Emits one kernel (or both stages of a split reduction).  See the module docstring."""

    def __init__(self, k: Kernel):
        self.k = k
        self.strategy, self.block = _choose_strategy(k)
        self.idx64 = _needs_idx64(k)
        self.idx = "long long" if self.idx64 else "int"
        self.gathers = any(_has_gather(e) for node in k.nodes
                           for e in (node.index if isinstance(node, Load) else
                                     (node.index,) if isinstance(node, IndexValue) else ())) or \
            any(_has_gather(e) for s in k.stores for e in s.index)
        ir = str(k).splitlines()
        self.ir_lines = {id(node): ir[1 + i].strip() for i, node in enumerate(k.nodes)}
        self.cname = {b.name: "g_" + re.sub(r"[^A-Za-z0-9_]", "_", b.name) for b in k.args}
        self.point: _Scope | None = None
        self.inner: _Scope | None = None
        self.vec_mode = False        # pointwise vector body: identity accesses read the vector
        self.vec = 1
        self.identity: set[int] = set()   # ids of Load/Store objects that are identity accesses
        self.red_values: dict[int, str] = {}
        self._pos = {id(node): i for i, node in enumerate(k.nodes)}   # %i in the IR text
        self._tmp = 0

    # ------------------------------------------------------------------------- helpers
    def tmp(self, stem: str) -> str:
        self._tmp += 1
        return f"{stem}{self._tmp}"

    def signature(self, name: str, extra: Sequence[str] = ()) -> str:
        k = self.k
        params = []
        n_in = len(k.inputs)
        for i, b in enumerate(k.args):
            const = "const " if i < n_in else ""
            params.append(f"{const}{c_type(b.dtype, True)}* __restrict__ {self.cname[b.name]}")
        params.append("long long* __restrict__ err")
        params.append("long long n")
        params.extend(extra)
        head = f'extern "C" __global__ void __launch_bounds__({self.block}) {name}('
        return head + (",\n" + " " * len(head)).join(params) + ")"

    def header_comment(self) -> list[str]:
        k = self.k
        lines = [f"// ---- {k.name}: strategy={self.strategy} block={self.block} "
                 f"index={'64' if self.idx64 else '32'}-bit ----"]
        src = getattr(k, "source_lines", None) or getattr(k, "sources", None)
        if src:
            for s in (src if isinstance(src, (list, tuple)) else [src]):
                lines.append(f"// from: {s}")
        for ln in str(k).splitlines():
            lines.append("// " + ln)
        return lines

    def used_vars(self) -> set:
        """(kind, axis) of the loop variables some non-identity access or index value reads."""
        exprs = []
        for node in self.k.nodes:
            if isinstance(node, Load) and id(node) not in self.identity:
                exprs.extend(node.index)
            elif isinstance(node, IndexValue):
                exprs.append(node.index)
        for s in self.k.stores:
            if id(s) not in self.identity:
                exprs.extend(s.index)
        return {(v.kind, v.axis) for e in exprs for v in _index_postorder(e) if isinstance(v, Var)}

    def decompose(self, scope: _Scope, lin: str, kind: str, shape, attr: str = "") -> None:
        """Declare the used o<k>/r<k> from a linear index over `shape` (row-major)."""
        strides = _strides(shape)
        used = self.used_vars()
        for a, (size, st) in enumerate(zip(shape, strides)):
            if (kind, a) not in used:
                continue
            if len(shape) == 1:
                expr = lin
            elif a == 0:
                expr = f"{lin} / {st}"
            elif st == 1:
                expr = f"{lin} % {size}"
            else:
                expr = f"({lin} / {st}) % {size}"
            scope.add(f"{attr}const {self.idx} {kind}{a} = {expr};")

    # ------------------------------------------------------------------------ indexing
    def index_c(self, e) -> tuple[str, bool]:
        """C text of an index expression and whether it is 64-bit (contains a gather)."""
        k = self.k
        out: dict[int, tuple[str, int, bool]] = {}   # id -> (text, precedence, wide)
        for n in _index_postorder(e):
            if isinstance(n, Var):
                out[id(n)] = (n.name, 9, False)
            elif isinstance(n, IConst):
                v = n.value
                text = f"{v}LL" if abs(v) >= (1 << 31) else str(v)
                out[id(n)] = (text if v >= 0 else f"({text})", 9, abs(v) >= (1 << 31))
            elif isinstance(n, IGather):
                idx = [out[id(i)][0] for i in n.index]
                off = self.offset_c(n.buf, idx)
                out[id(n)] = (f"(long long){self.cname[n.buf.name]}[{off}]", 9, True)
            else:
                ta, pa, wa = out[id(n.a)]
                tb, pb, wb = out[id(n.b)]
                wide = wa or wb
                if n.op in ("//", "%"):
                    if _nonneg(n.a, k.outer, k.inner):
                        ta = ta if pa >= 2 else f"({ta})"
                        text, p = f"{ta} {'/' if n.op == '//' else '%'} {tb}", 2
                    else:
                        fn = "ember_idx_div" if n.op == "//" else "ember_idx_mod"
                        ty = "long long" if wide else self.idx
                        text, p = f"{fn}<{ty}>({ta}, ({ty}){tb})", 9
                elif n.op == "*":
                    ta = ta if pa >= 2 else f"({ta})"
                    tb = tb if pb > 2 else f"({tb})"
                    text, p = f"{ta} * {tb}", 2
                else:
                    if isinstance(n.b, IConst) and n.b.value < 0:
                        text = f"{ta} - {-n.b.value}"
                    else:
                        text = f"{ta} + {tb}"
                    p = 1
                out[id(n)] = (text, p, wide)
        text, _, wide = out[id(e)]
        return text, wide

    def offset_c(self, buf: Buf, idx_texts: Sequence[str]) -> str:
        terms = []
        for t, st in zip(idx_texts, _strides(buf.shape)):
            if t == "0":
                continue
            if st == 1:
                terms.append(t)
            else:
                paren = t if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|\d+", t) else f"({t})"
                terms.append(f"{paren} * {st}")
        return " + ".join(terms) if terms else "0"

    def checked_dims(self, scope: _Scope, index, buf: Buf, stem: str) -> list[str]:
        """Index texts per dim; dims that use a gather are wrapped/bounds-checked into temps."""
        texts = []
        for d, e in enumerate(index):
            text, wide = self.index_c(e)
            if _has_gather(e):
                size = buf.shape[d]
                raw = f"{stem}_raw{d}"
                var = f"{stem}_i{d}"
                scope.add(f"const long long {raw} = {text};")
                if any(g.wrap for g in _index_postorder(e) if isinstance(g, IGather)):
                    scope.add(f"long long {var} = {raw} < 0 ? {raw} + {size}LL : {raw};")
                else:
                    scope.add(f"long long {var} = {raw};")
                scope.add(f"if ((unsigned long long){var} >= {size}ULL) "
                          f"{{ ember_index_error(err, {raw}, {d}, {size}); {var} = 0; }}")
                texts.append(f"({self.idx}){var}")
            else:
                texts.append(text)
        return texts

    # ------------------------------------------------------------------------ values
    def scope_for(self, node) -> _Scope:
        if self.k.uses_inner[id(node)]:
            if self.inner is None:
                raise AssertionError(f"{self.k.name}: inner value needed outside an inner loop")
            return self.inner
        return self.point

    def lookup(self, node):
        if id(node) in self.red_values:
            return self.red_values[id(node)]
        for sc in (self.inner, self.point):
            if sc is not None and id(node) in sc.memo:
                return sc.memo[id(node)]
        return None

    def value(self, root) -> str:
        """C expression (a variable or a literal) of a node, emitting it where it belongs."""
        got = self.lookup(root)
        if got is not None:
            return got
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            if self.lookup(node) is not None:
                continue
            if isinstance(node, Reduce):
                raise AssertionError(f"{self.k.name}: reduce used before its pass")
            if not ready:
                stack.append((node, True))
                for c in reversed(node.operands()):
                    if self.lookup(c) is None:
                        stack.append((c, False))
                continue
            scope = self.scope_for(node)
            if isinstance(node, Const):
                scope.memo[id(node)] = _const(node.value, node.dtype)
                continue
            var = f"v{self._pos[id(node)]}"
            expr = self.node_c(node, scope, var)
            scope.add(f"const {c_type(node.dtype)} {var} = {expr};  // {self.ir_lines[id(node)]}")
            scope.memo[id(node)] = var
        return self.lookup(root)

    def load_c(self, node: Load, scope: _Scope, var: str) -> str:
        buf = node.buf
        mem = lambda t: (f"({t} != 0)" if buf.dtype is dt.bool_ else
                         f"ember_h2f({t})" if buf.dtype is dt.float16 else
                         f"ember_bf2f({t})" if buf.dtype is dt.bfloat16 else t)
        if id(node) in self.identity:
            if self.vec_mode:
                return mem(f"{self.cname[buf.name]}_v[e]")
            return mem(f"{self.cname[buf.name]}[i]")
        dims = self.checked_dims(scope, node.index, buf, var)
        off = self.offset_c(buf, dims)
        if node.fill is None:
            return mem(f"{self.cname[buf.name]}[{off}]")
        conds = []
        for d in node.masked:
            t = dims[d]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|-?\d+", t):
                tv = f"{var}_d{d}"
                scope.add(f"const {self.idx} {tv} = {t};")
                dims[d] = t = tv
            lo, hi = _index_range(node.index[d], self.k.outer, self.k.inner)
            if lo < 0:
                conds.append(f"{t} >= 0")
            if hi >= buf.shape[d]:
                conds.append(f"{t} < {buf.shape[d]}")
        off = self.offset_c(buf, dims)
        fill = _const(node.fill, node.dtype)
        if not conds:
            return mem(f"{self.cname[buf.name]}[{off}]")
        return f"({' && '.join(conds)}) ? {mem(self.cname[buf.name] + '[' + off + ']')} : {fill}"

    def node_c(self, node, scope: _Scope, var: str) -> str:
        if isinstance(node, Load):
            return self.load_c(node, scope, var)
        if isinstance(node, IndexValue):
            text, _ = self.index_c(node.index)
            return _convert_c(f"(long long)({text})", dt.int64, node.dtype)
        if isinstance(node, Cast):
            return _convert_c(self.value(node.x), node.x.dtype, node.dtype)
        if isinstance(node, Where):
            return f"{self.value(node.cond)} ? {self.value(node.a)} : {self.value(node.b)}"
        if isinstance(node, Unary):
            return _unary_c(node.op, self.value(node.x), node.x.dtype)
        if isinstance(node, Binary):
            return _binary_c(node.op, self.value(node.a), self.value(node.b), node.a.dtype)
        raise TypeError(node)  # pragma: no cover

    # ------------------------------------------------------------------------ stores
    def store(self, s: Store, scope: _Scope, guard: str | None = None) -> None:
        v = self.value(s.value)
        buf = s.buf
        if buf.dtype is dt.bool_:
            v = f"(unsigned char)({v})"
        elif buf.dtype is dt.float16:
            v = f"ember_f2h({v})"
        elif buf.dtype is dt.bfloat16:
            v = f"ember_f2bf({v})"
        if id(s) in self.identity:
            if self.vec_mode:
                scope.add(f"{self.cname[buf.name]}_v[e] = {v};")
            else:
                scope.add(f"{self.cname[buf.name]}[i] = {v};")
            return
        stem = self.tmp("st")
        dims = self.checked_dims(scope, s.index, buf, stem)
        line = f"{self.cname[buf.name]}[{self.offset_c(buf, dims)}] = {v};"
        scope.add(f"if ({guard}) {line}" if guard else line)

    # ======================================================================= pointwise
    def emit_pointwise(self) -> tuple[str, LaunchSpec]:
        k = self.k
        n = math.prod(k.outer)
        # identity accesses and the vector width
        for node in k.nodes:
            if isinstance(node, Load) and node.fill is None and _is_identity(node.index, node.buf, k.outer):
                self.identity.add(id(node))
        for s in k.stores:
            if _is_identity(s.index, s.buf, k.outer):
                self.identity.add(id(s))
        vec_bufs = []
        for b in k.args:
            uses = [x for x in list(k.nodes) + list(k.stores)
                    if id(x) in self.identity and x.buf is b]
            if uses:
                vec_bufs.append(b)
        vec = 1
        if vec_bufs and n >= 1024:
            vec = 16 // max(b.dtype.itemsize for b in vec_bufs)
        vec_bytes = tuple(vec * b.dtype.itemsize for b in vec_bufs)
        if vec > 1 and min(vec_bytes) < 2:
            vec = 1
        self.vec = vec
        lines = self.header_comment()
        extra = ["int vec_ok"] if vec > 1 else []
        lines.append(self.signature(k.name, extra) + " {")
        I = self.idx
        lines.append(f"  const {I} stride = ({I})blockDim.x * gridDim.x;")
        lines.append(f"  const {I} total = ({I})n;")
        if vec > 1:
            lines.append(f"  // {vec} elements per step with {', '.join(str(x) for x in sorted(set(vec_bytes)))}-byte "
                         "vector accesses; scalar tail (and everything when a pointer is unaligned)")
            lines.append(f"  const {I} nvec = vec_ok ? total / {vec} : 0;")
            lines.append(f"  for ({I} c = ({I})blockIdx.x * blockDim.x + threadIdx.x; c < nvec; c += stride) {{")
            self.vec_mode = True
            body = _Scope("    ")
            for b in vec_bufs:
                mt = c_type(b.dtype, True)
                vt = _VEC_TYPE[vec * b.dtype.itemsize]
                cn = self.cname[b.name]
                is_in = b in k.inputs
                body.add(f"alignas(16) {mt} {cn}_v[{vec}];")
                if is_in:
                    body.add(f"*reinterpret_cast<{vt}*>({cn}_v) = reinterpret_cast<const {vt}*>({cn})[c];")
            body.add("#pragma unroll")
            body.add(f"for (int e = 0; e < {vec}; ++e) {{")
            self.point = _Scope("      ")
            if any(kind == "o" for kind, _ in self.used_vars()):
                self.point.add(f"const {I} i = c * {vec} + e;")
            self.decompose(self.point, "i", "o", k.outer)
            for s in k.stores:
                self.store(s, self.point)
            body.lines.extend(self.point.lines)
            body.add("}")
            for b in vec_bufs:
                if b in k.outputs:
                    vt = _VEC_TYPE[vec * b.dtype.itemsize]
                    cn = self.cname[b.name]
                    body.add(f"reinterpret_cast<{vt}*>({cn})[c] = *reinterpret_cast<const {vt}*>({cn}_v);")
            lines.extend(body.lines)
            lines.append("  }")
            self.vec_mode = False
            start = f"nvec * {vec} + ({I})blockIdx.x * blockDim.x + threadIdx.x"
        else:
            start = f"({I})blockIdx.x * blockDim.x + threadIdx.x"
        lines.append(f"  for ({I} i = {start}; i < total; i += stride) {{")
        self.point = _Scope("    ")
        self.decompose(self.point, "i", "o", k.outer)
        for s in k.stores:
            self.store(s, self.point)
        lines.extend(self.point.lines)
        lines.append("  }")
        lines.append("}")
        spec = LaunchSpec(k.name, "pointwise", self.block, n, self.block, vec=vec,
                          vec_args=tuple(k.args.index(b) for b in vec_bufs) if vec > 1 else (),
                          vec_bytes=vec_bytes if vec > 1 else (), gathers=self.gathers, idx64=self.idx64)
        return "\n".join(lines), spec

    # ======================================================================= reductions
    def group_reduce(self, scope: _Scope, op: str, acc: str, ty: str, idx: str | None) -> None:
        """Combine per-thread accumulators across the group; every thread ends with the result."""
        if self.strategy == "thread":
            return
        if self.strategy == "warp" or self.strategy in ("block", "split"):
            scope.add("#pragma unroll")
            scope.add("for (int s = 16; s > 0; s >>= 1) {")
            scope.add(f"  const {ty} ov = __shfl_xor_sync(EMBER_FULL_MASK, {acc}, s);")
            if idx is not None:
                scope.add(f"  const long long oi = __shfl_xor_sync(EMBER_FULL_MASK, {idx}, s);")
                scope.add(f"  if (ember_{op}_better(ov, oi, {acc}, {idx})) {{ {acc} = ov; {idx} = oi; }}")
            else:
                scope.add(f"  {acc} = {_combine_c(op, acc, 'ov', ty)};")
            scope.add("}")
        if self.strategy in ("block", "split"):
            nw = self.block // 32
            scope.add("__syncthreads();  // the shared slots may still be read by the previous reduction")
            scope.add(f"if ((threadIdx.x & 31) == 0) reinterpret_cast<{ty}*>(ember_sh)[threadIdx.x >> 5] = {acc};")
            if idx is not None:
                scope.add(f"if ((threadIdx.x & 31) == 0) ember_sh_idx[threadIdx.x >> 5] = {idx};")
            scope.add("__syncthreads();")
            scope.add(f"{acc} = reinterpret_cast<{ty}*>(ember_sh)[0];")
            if idx is not None:
                scope.add(f"{idx} = ember_sh_idx[0];")
            scope.add(f"for (int w = 1; w < {nw}; ++w) {{")
            scope.add(f"  const {ty} ov = reinterpret_cast<{ty}*>(ember_sh)[w];")
            if idx is not None:
                scope.add("  const long long oi = ember_sh_idx[w];")
                scope.add(f"  if (ember_{op}_better(ov, oi, {acc}, {idx})) {{ {acc} = ov; {idx} = oi; }}")
            else:
                scope.add(f"  {acc} = {_combine_c(op, acc, 'ov', ty)};")
            scope.add("}")

    def _group_vars(self):
        """(first inner index of this thread, inner stride, leader condition)."""
        if self.strategy == "thread":
            return "0", "1", None
        if self.strategy == "warp":
            return "lane", "32", "lane == 0"
        if self.strategy == "split":
            return None, None, "threadIdx.x == 0"
        return "threadIdx.x", str(self.block), "threadIdx.x == 0"

    def open_inner_loop(self, first: str, step: str) -> tuple[list[str], _Scope]:
        m = math.prod(self.k.inner)
        I = self.idx
        head = [f"for ({I} j = {first}; j < {m}; j += {step}) {{"]
        sc = _Scope("  ")
        self.decompose(sc, "j", "r", self.k.inner)
        return head, sc

    def emit_pass(self, p: int, reduces: list, first: str, step: str, partial_out: bool = False) -> None:
        """Accumulate this pass's reductions over the inner loop, then combine across the group."""
        pt = self.point
        accs = []
        for red in reduces:
            ty = _acc_type(red.x.dtype)
            a = f"acc{self._pos[id(red)]}"
            init = _reduce_init(red.op, red.x.dtype)
            pt.add(f"{ty} {a} = {init};  // {self.ir_lines[id(red)]}")
            ai = None
            if red.op in ("argmax", "argmin"):
                ai = a + "_i"
                pt.add(f"long long {ai} = 9223372036854775807LL;")
            accs.append((red, a, ai, ty))
        head, body = self.open_inner_loop(first, step)
        self.inner = body
        # the inner loop body is built before it is written out: values it needs at point level
        # are appended to the point scope first, so they land before the loop
        for red, a, ai, ty in accs:
            v = self.value(red.x)
            if ai is None:
                body.add(f"{a} = {_combine_c(red.op, a, _to_acc(v, red.x.dtype), ty)};")
            else:
                lin = "j"
                body.add(f"if (ember_{red.op}_better({_to_acc(v, red.x.dtype)}, (long long){lin}, {a}, {ai})) "
                         f"{{ {a} = {_to_acc(v, red.x.dtype)}; {ai} = (long long){lin}; }}")
        self.inner = None
        pt.lines.extend(pt.indent + ln for ln in head)
        pt.lines.extend(pt.indent + ln for ln in body.lines)
        pt.add("}")
        if partial_out:
            return
        for red, a, ai, ty in accs:
            self.group_reduce(pt, red.op, a, ty, ai)
            self.finish_reduce(red, a, ai)

    def finish_reduce(self, red, a: str, ai: str | None) -> None:
        var = f"v{self._pos[id(red)]}"
        if ai is not None:
            self.point.add(f"const long long {var} = {ai} == 9223372036854775807LL ? 0LL : {ai};")
        else:
            self.point.add(f"const {c_type(red.dtype)} {var} = {_from_acc(a, red.dtype)};")
        self.red_values[id(red)] = var

    def _reduces_by_pass(self):
        k = self.k
        by_pass: dict[int, list] = {}
        for node in k.nodes:
            if isinstance(node, Reduce):
                by_pass.setdefault(k.pass_of[id(node)], []).append(node)
        return by_pass

    def emit_reduction(self) -> tuple[str, LaunchSpec]:
        k = self.k
        if self.strategy == "split":
            return self.emit_split()
        I = self.idx
        n = math.prod(k.outer)
        lines = self.header_comment()
        lines.append(self.signature(k.name) + " {")
        if self.strategy == "block":
            lines.append("  __shared__ long long ember_sh[32];")
            if any(isinstance(x, Reduce) and x.op.startswith("arg") for x in k.nodes):
                lines.append("  __shared__ long long ember_sh_idx[32];")
            loop = "for (long long p = blockIdx.x; p < n; p += gridDim.x)"
            per_block = 1
        elif self.strategy == "warp":
            lines.append("  const int lane = threadIdx.x & 31;")
            loop = ("for (long long p = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; p < n; "
                    "p += ((long long)gridDim.x * blockDim.x) >> 5)")
            per_block = self.block // 32
        else:
            loop = ("for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; "
                    "p += (long long)gridDim.x * blockDim.x)")
            per_block = self.block
        lines.append(f"  {loop} {{  // one outer point per {self.strategy}")
        self.point = _Scope("    ")
        self.decompose(self.point, f"({I})p", "o", k.outer)
        first, step, leader = self._group_vars()
        by_pass = self._reduces_by_pass()
        for p in range(1, k.n_passes + 1):
            self.point.add(f"// pass {p}: {', '.join('reduce.' + r.op for r in by_pass.get(p, []))}")
            self.emit_pass(p, by_pass.get(p, []), first, step)
        inner_stores = [s for s in k.stores if k.store_is_inner(s)]
        outer_stores = [s for s in k.stores if not k.store_is_inner(s)]
        if inner_stores:
            self.point.add("// stores over the inner domain")
            head, body = self.open_inner_loop(first, step)
            self.inner = body
            for s in inner_stores:
                self.store(s, body)
            self.inner = None
            self.point.lines.extend(self.point.indent + ln for ln in head)
            self.point.lines.extend(self.point.indent + ln for ln in body.lines)
            self.point.add("}")
        for s in outer_stores:
            self.store(s, self.point, guard=leader)
        lines.extend(self.point.lines)
        lines.append("  }")
        lines.append("}")
        spec = LaunchSpec(k.name, self.strategy, self.block, n, per_block, gathers=self.gathers,
                          idx64=self.idx64)
        return "\n".join(lines), spec

    def emit_split(self) -> tuple[str, LaunchSpec]:
        """Two-stage full reduction: partial sums per block, then one block folds them."""
        k = self.k
        m = math.prod(k.inner)
        parts = max(1, min(SPLIT_PARTS_MAX, m // (self.block * 8)))
        reduces = self._reduces_by_pass().get(1, [])
        scratch = []
        for red in reduces:
            ty = _acc_dtype(red.x.dtype)
            scratch.append((f"part{self._pos[id(red)]}", ty.name))
            if red.op.startswith("arg"):
                scratch.append((f"part{self._pos[id(red)]}_i", "int64"))
        sparams = [f"{c_type(dt.by_name(t), True)}* __restrict__ {nm}" for nm, t in scratch]
        sparams_in = ["const " + p for p in sparams]
        out = self.header_comment()
        has_arg = any(r.op.startswith("arg") for r in reduces)
        shared = ["  __shared__ long long ember_sh[32];"] + (
            ["  __shared__ long long ember_sh_idx[32];"] if has_arg else [])

        # stage one: each block reduces a slice of the inner domain into its partial slots
        pname = f"{k.name}_partial"
        out.append(self.signature(pname, sparams) + " {")
        out.extend(shared)
        self.point = _Scope("  ")
        self.decompose(self.point, f"({self.idx})0", "o", k.outer, "[[maybe_unused]] ")
        self.emit_pass(1, reduces, f"({self.idx})blockIdx.x * {self.block} + threadIdx.x",
                       f"{parts * self.block}", partial_out=True)
        si = 0
        for red in reduces:
            a = f"acc{self._pos[id(red)]}"
            ai = a + "_i" if red.op.startswith("arg") else None
            self.group_reduce(self.point, red.op, a, _acc_type(red.x.dtype), ai)
            self.point.add(f"if (threadIdx.x == 0) {scratch[si][0]}[blockIdx.x] = {a};")
            si += 1
            if ai:
                self.point.add(f"if (threadIdx.x == 0) {scratch[si][0]}[blockIdx.x] = {ai};")
                si += 1
        out.extend(self.point.lines)
        out.append("}")
        out.append("")

        # stage two: one block folds the partials in a fixed order and runs the stores
        self.red_values = {}
        self._tmp = 0
        out.append(self.signature(k.name, sparams_in) + " {")
        out.extend(shared)
        self.point = _Scope("  ")
        self.decompose(self.point, f"({self.idx})0", "o", k.outer, "[[maybe_unused]] ")
        si = 0
        for red in reduces:
            ty = _acc_type(red.x.dtype)
            a = f"acc{self._pos[id(red)]}"
            ai = a + "_i" if red.op.startswith("arg") else None
            self.point.add(f"{ty} {a} = {_reduce_init(red.op, red.x.dtype)};  // {self.ir_lines[id(red)]}")
            if ai:
                self.point.add(f"long long {ai} = 9223372036854775807LL;")
            self.point.add(f"for (int b = threadIdx.x; b < {parts}; b += {self.block}) {{")
            if ai:
                self.point.add(f"  if (ember_{red.op}_better({scratch[si][0]}[b], {scratch[si + 1][0]}[b], {a}, {ai})) "
                               f"{{ {a} = {scratch[si][0]}[b]; {ai} = {scratch[si + 1][0]}[b]; }}")
            else:
                self.point.add(f"  {a} = {_combine_c(red.op, a, scratch[si][0] + '[b]', ty)};")
            self.point.add("}")
            si += 2 if ai else 1
            self.group_reduce(self.point, red.op, a, ty, ai)
            self.finish_reduce(red, a, ai)
        for s in k.stores:
            self.store(s, self.point, guard="threadIdx.x == 0")
        out.extend(self.point.lines)
        out.append("}")
        spec = LaunchSpec(k.name, "split", self.block, 1, 1, gathers=self.gathers, parts=parts,
                          scratch=tuple(scratch), partial=pname, idx64=self.idx64)
        return "\n".join(out), spec

    def emit(self) -> tuple[str, LaunchSpec]:
        if self.strategy == "pointwise":
            return self.emit_pointwise()
        return self.emit_reduction()


_VEC_TYPE = {16: "uint4", 8: "uint2", 4: "unsigned int", 2: "unsigned short"}


# ============================================================================ scalar op tables
def _acc_dtype(d: dt.DType) -> dt.DType:
    return {"double": dt.float64, "float": dt.float32, "long long": dt.int64, "int": dt.int32}[_acc_type(d)]


def _to_acc(v: str, d: dt.DType) -> str:
    """Register value -> accumulator type (bool/8/16-bit ints widen to int)."""
    if d is dt.bool_ or (not d.is_floating_point and d.itemsize < 4):
        return f"(int)({v})"
    return v


def _from_acc(a: str, d: dt.DType) -> str:
    if d is dt.float16:
        return f"ember_rh({a})"
    if d is dt.bfloat16:
        return f"ember_rbf({a})"
    if d is dt.bool_:
        return f"({a} != 0)"
    if not d.is_floating_point and d.itemsize < 4:
        return f"({c_type(d)})({a})"
    return a


def _reduce_init(op: str, d: dt.DType) -> str:
    if op == "sum":
        return "0" if not d.is_floating_point else ("0.0" if d is dt.float64 else "0.0f")
    if op == "prod":
        return "1" if not d.is_floating_point else ("1.0" if d is dt.float64 else "1.0f")
    low = op in ("max", "argmax")
    if d.is_floating_point:
        inf = "EMBER_INF" if d is dt.float64 else "EMBER_INFF"
        return f"(-{inf})" if low else inf
    lo, hi = _type_min_max(d)
    v = lo if low else hi
    return _int_lit(v, dt.int64 if d is dt.int64 else dt.int32)


def _combine_c(op: str, acc: str, v: str, ty: str) -> str:
    if op == "sum":
        return f"{acc} + {v}" if ty in ("float", "double") else f"ember_add<{ty}>({acc}, {v})"
    if op == "prod":
        return f"{acc} * {v}" if ty in ("float", "double") else f"ember_mul<{ty}>({acc}, {v})"
    if op == "max":
        return f"ember_max({acc}, ({ty}){v})"
    if op == "min":
        return f"ember_min({acc}, ({ty}){v})"
    raise ValueError(op)


def _round(expr: str, d: dt.DType) -> str:
    return f"ember_rh({expr})" if d is dt.float16 else f"ember_rbf({expr})" if d is dt.bfloat16 else expr


def _truth(x: str, d: dt.DType) -> str:
    return x if d is dt.bool_ else f"({x} != 0)"


def _unary_c(op: str, x: str, d: dt.DType) -> str:
    f = _fsuf(d)
    is_f = d.is_floating_point
    one = "1.0" if d is dt.float64 else "1.0f"
    if op in ("exp", "log", "sqrt", "sin", "cos", "tanh", "erf", "log1p", "expm1", "floor", "ceil",
              "trunc") and is_f:
        return _round(f"{op}{f}({x})", d)
    if op == "rsqrt":
        return _round(f"{one} / sqrt{f}({x})", d)
    if op == "reciprocal":
        return _round(f"{one} / {x}", d)
    if op == "sigmoid":
        return _round(f"{one} / ({one} + exp{f}(-{x}))", d)
    if op == "round":
        return f"rint{f}({x})" if is_f else x
    if op in ("floor", "ceil", "trunc"):
        return x
    if op == "neg":
        return f"-{x}" if is_f else f"ember_neg<{c_type(d)}>({x})"
    if op == "abs":
        if is_f:
            return f"fabs{f}({x})"
        if d is dt.bool_ or d is dt.uint8:
            return x
        return f"({x} < 0 ? ember_neg<{c_type(d)}>({x}) : {x})"
    if op == "sign":
        if is_f:
            z = "0.0" if d is dt.float64 else "0.0f"
            return f"({x} > {z} ? {one} : ({x} < {z} ? -{one} : {x}))"
        if d is dt.uint8 or d is dt.bool_:
            return f"({c_type(d)})({x} > 0)"
        return f"({c_type(d)})(({x} > 0) - ({x} < 0))"
    if op == "logical_not":
        return f"!{_truth(x, d)}"
    if op == "isnan":
        return f"({x} != {x})" if is_f else "false"
    if op == "isinf":
        return f"(fabs{f}({x}) == {'EMBER_INF' if d is dt.float64 else 'EMBER_INFF'})" if is_f else "false"
    raise NotImplementedError(f"unary {op} for {d.name}")


_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _binary_c(op: str, a: str, b: str, d: dt.DType) -> str:
    is_f = d.is_floating_point
    t = c_type(d)
    if op in _CMP:
        return f"({a} {_CMP[op]} {b})"
    if op == "logical_and":
        return f"({_truth(a, d)} && {_truth(b, d)})"
    if op == "logical_or":
        return f"({_truth(a, d)} || {_truth(b, d)})"
    if op in ("maximum", "minimum"):
        if d is dt.bool_:
            return f"({a} || {b})" if op == "maximum" else f"({a} && {b})"
        if is_f:
            return f"ember_f{op[:3]}({a}, {b})"
        return f"ember_{op[:3]}<{t}>({a}, {b})"
    if is_f:
        if op in ("add", "sub", "mul", "div"):
            sym = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
            return _round(f"{a} {sym} {b}", d)
        if op == "pow":
            return _round(f"pow{_fsuf(d)}({a}, {b})", d)
        if op == "remainder":
            return _round(f"ember_remainder({a}, {b})", d)
        if op == "floor_divide":
            return _round(f"ember_floor_divide({a}, {b})", d)
    else:
        if op in ("add", "sub", "mul"):
            return f"ember_{op}<{t}>({a}, {b})"
        if op == "pow":
            return f"ember_ipow<{t}>({a}, {b})"
        if op == "remainder":
            return f"ember_ifloormod<{t}>({a}, {b})"
        if op == "floor_divide":
            return f"ember_ifloordiv<{t}>({a}, {b})"
    raise NotImplementedError(f"binary {op} for {d.name}")


def _convert_c(x: str, src: dt.DType, dst: dt.DType) -> str:
    """numpy astype semantics between register values."""
    if src is dst:
        return x
    if dst is dt.bool_:
        return f"({x} != 0)"
    if src is dt.bool_:
        if dst.is_floating_point:
            return f"({x} ? {'1.0' if dst is dt.float64 else '1.0f'} : {'0.0' if dst is dt.float64 else '0.0f'})"
        return f"({c_type(dst)})({x} ? 1 : 0)"
    if src.is_floating_point and dst.is_floating_point:
        if dst is dt.float16:
            return f"ember_h2f(ember_d2h({x}))" if src is dt.float64 else f"ember_rh({x})"
        if dst is dt.bfloat16:   # (from double through float, as PyTorch)
            return f"ember_rbf((float)({x}))"
        return f"({c_type(dst)})({x})"
    if src.is_floating_point:
        # truncate toward zero, saturating, NaN -> 0 (cvt.rzi.s64), then wrap to the width like numpy
        if dst is dt.int64:
            return f"(long long)({x})"
        return f"({c_type(dst)})(long long)({x})"
    if dst.is_floating_point:
        if dst is dt.float16:
            return f"ember_rh((float)({x}))"
        if dst is dt.bfloat16:
            return f"ember_rbf((float)({x}))"
        return f"({c_type(dst)})({x})"
    return f"({c_type(dst)})({x})"


# ==================================================================================== program
def emit_kernel(kernel: Kernel) -> tuple[str, LaunchSpec]:
    """CUDA C of one kernel (without the prelude) and its launch spec."""
    return _KernelEmitter(kernel).emit()


def emit_program(kernels: Sequence, name: str = "ember") -> CudaProgram:
    """One translation unit with the prelude and a __global__ function per kernel (externs
    contribute their epilogue)."""
    parts = [f"// {name}: generated by ember.codegen.cuda -- do not edit", PRELUDE]
    prog = CudaProgram("")
    seen = set()
    for k in kernels:
        if isinstance(k, ExternKernel):
            k = k.epilogue
            if k is None:
                continue
        if k.name in seen:
            raise ValueError(f"two kernels named {k.name}")
        seen.add(k.name)
        text, spec = emit_kernel(k)
        parts.append(text)
        prog.launches[k.name] = spec
        prog.kernels.append(k)
    prog.source = "\n\n".join(parts) + "\n"
    return prog
