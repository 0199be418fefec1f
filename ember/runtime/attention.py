"""Fused scaled-dot-product attention on float32 numpy arrays (the kernels: ember/codegen/attention.py).

In: q [..., L, D], k [..., S, D], v [..., S, Dv] with equal batch dims, `masked` (bool, broadcastable to
[..., L, S], True where a score becomes `fill`, -inf by default) or None, the scale, and for dropout on the
probabilities the key (seed, offset), p and keep (1/(1-p) as float32).  Out:

    o = attention.forward(q, k, v, masked, scale)              # [..., L, Dv]
    joined = attention.backward(q, k, v, masked, go, scale)    # dq, dk, dv flattened, one after another
    o = attention.forward(q, k, v, masked, scale, key=key, p=0.1, keep=np.float32(1 / 0.9))   # with dropout

or None from either when the kernels do not take these arrays (another dtype, an empty or huge shape):
the caller then runs the reference (ember/ir/ops.py `attention`).  Rows may have any strides (each row
is copied contiguous only when its own elements are not); the mask's batch dims may be broadcast
(stride 0).  The (batch, head) units are shared by the worker threads, claimed in native code.
"""
from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np

from ember.codegen import attention as gen
from ember.ir.rng import mix_seed as _mix_seed
from ember.kernels import workers
from ember.runtime import cpu, eager_kernels
from ember.runtime.gemm_operands import ptr

__all__ = ["forward", "backward", "MAX_KEYS"]

MAX_KEYS = 4096           # longer key sequences keep the unfused path: a block's scores, [64, S], outgrow L2
PARALLEL_FLOPS = 2e6      # below this a unit loop stays on the calling thread (a wake costs ~25-50 us)
_P, _I64, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_F32 = np.dtype(np.float32)
POOL_KEEP = 4             # results of one shape kept for reuse
_pool = threading.local()  # per thread (a check-then-reuse of a shared one could hand one array to two threads):
                           # shape -> result arrays (`_fresh`)


class _Kernels:
    def __init__(self, vector_bits: int | None = None):
        """vector_bits: the width whose tiles and masked moves to emit (default the host's; another: tests)."""
        target = cpu.host_target()
        text = gen.emit_module(target.triple, target.data_layout, vector_bits or target.vector_bits)
        self._lib = cpu.NativeLibrary(text, "attention", gen.__file__)
        fwd = (_P,) * 6 + (_I64,) * 5 + (_F, _F, _I64, _I64, _F, _F, _I64, _I64, _P)
        bwd = (_P,) * 9 + (_I64,) * 5 + (_F, _F, _I64, _I64, _F, _F, _I64, _I64, _P)
        self.fwd, self.fwd_c = (self._lib.function(n, *fwd, *x) for n, x in (("attn_fwd", ()),
                                                                              ("attn_fwd_c", (_I64, _P))))
        self.bwd, self.bwd_c = (self._lib.function(n, *bwd, *x) for n, x in (("attn_bwd", ()),
                                                                              ("attn_bwd_c", (_I64, _P))))
        self._local = threading.local()

    def scratch(self, floats: int) -> int:
        """The calling thread's scratch (64-byte aligned, at least `floats` floats), kept between calls."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf[0].size < floats + 16:
            raw = np.empty(floats + 16, _F32)
            addr = ptr(raw)
            buf = self._local.buf = (raw, addr + (-addr) % 64)
        return buf[1]

    def run(self, fn, fn_c, args, units: int, floats: int, flops: float) -> None:
        """fn(*args, u0, u1, scratch) over units [0, units), shared by the worker threads."""
        threads = min(workers.num_threads(), units)
        if threads < 2 or flops < PARALLEL_FLOPS or workers.backing_off():
            fn(*args, 0, units, self.scratch(floats))
            return
        chunk = max(1, units // (4 * threads))
        share = np.zeros(1, np.int64)
        sp = ptr(share)
        workers.parallel_for(lambda i: fn_c(*args, 0, units, self.scratch(floats), chunk, sp), threads, threads)


def _kernels():
    """The compiled kernels, or False where no code generator works here (the reference runs then)."""
    def build():
        try:
            return _Kernels()
        except Exception:  # noqa: BLE001
            return False
    return eager_kernels.once("attention", build)


def _units(x: np.ndarray, batch: tuple):
    """x as [N1, N2, rows, cols] with batch dims folded into two (a view when the strides allow, else a
    copy) and contiguous rows; with its element strides (batch 1, batch 2, row)."""
    x = np.broadcast_to(x, batch + x.shape[-2:])
    if x.strides[-1] != x.itemsize and x.shape[-1] > 1:
        x = np.ascontiguousarray(x)
    if len(batch) != 2:
        lead = batch[:-1] if batch else ()
        n1 = int(np.prod(lead)) if lead else 1
        n2 = batch[-1] if batch else 1
        try:
            x = x.reshape(n1, n2, *x.shape[-2:], copy=False)
        except (ValueError, TypeError):
            x = np.ascontiguousarray(x).reshape(n1, n2, *x.shape[-2:])
    sz = x.itemsize
    return x, [s // sz for s in x.strides[:3]]


def _plan(q, k, v, masked):
    """(arrays kept alive, strides, L, S, D, Dv, H, units) or None when the kernels do not take these."""
    kern = _kernels()
    if not kern or any(type(a) is not np.ndarray or a.dtype != _F32 for a in (q, k, v)):
        return None
    if q.ndim < 2 or not (q.ndim == k.ndim == v.ndim) or q.shape[:-2] != k.shape[:-2] or q.shape[:-2] != v.shape[:-2]:
        return None
    L, D = q.shape[-2:]
    S, Dv = v.shape[-2:]
    if k.shape[-2:] != (S, D) or 0 in (L, S, D, Dv) or S > MAX_KEYS or D > 1024 or Dv > 1024:
        return None
    if any(s % 4 for a in (q, k, v) for s in a.strides):
        return None
    batch = tuple(q.shape[:-2])
    (qu, sq), (ku, sk), (vu, sv) = (_units(a, batch) for a in (q, k, v))
    if masked is None:
        mu, sm = None, [0, 0, 0]
    else:
        if type(masked) is not np.ndarray or masked.dtype != np.bool_:
            return None
        try:
            np.broadcast_shapes(masked.shape, batch + (L, S))
        except ValueError:
            return None
        mu, sm = _units(np.broadcast_to(masked, batch + (L, S)), batch)
        mu = mu.view(np.int8)
    return kern, (qu, ku, vu, mu), sq + sk + sv + sm, L, S, D, Dv, qu.shape[1], qu.shape[0] * qu.shape[1], batch


def _fresh(shape: tuple) -> np.ndarray:
    """A float32 array for a result, recycled once nobody else holds it (as the executor's OutputPool does):
    a new one each call page-faults its MBs in, which cost more than the kernel inside a training step."""
    pool = _pool.__dict__.setdefault("arrays", {})
    arrays = pool.setdefault(shape, [])
    for a in arrays:
        if sys.getrefcount(a) <= 3:        # the list, the loop variable, getrefcount's argument
            return a
    a = np.empty(shape, _F32)
    if len(arrays) < POOL_KEEP:
        arrays.append(a)
    return a


def _dropout_args(key, p: float, keep: float) -> tuple:
    """(mixed seed, offset, p, keep) of the kernels' dropout (p = 0: none)."""
    if not p:
        return 0, 0, 0.0, 1.0
    seed, offset = (int(x) for x in np.asarray(key).tolist())
    mixed = _mix_seed(seed)
    mixed -= (1 << 64) if mixed >= 1 << 63 else 0          # the uint64 as the i64 ctypes passes
    return mixed, offset, float(p), float(keep)


def forward(q, k, v, masked, scale: float, fill: float = -np.inf, key=None, p: float = 0.0, keep: float = 1.0):
    plan = _plan(q, k, v, masked)
    if plan is None:
        return None
    kern, (qu, ku, vu, mu), st, L, S, D, Dv, H, units, batch = plan
    o = _fresh(batch + (L, Dv))
    ou = o.reshape(qu.shape[0], H, L, Dv)
    strides = np.array(st + [ou.strides[i] // 4 for i in range(3)] + [0] * 3, np.int64)
    args = (ptr(qu), ptr(ku), ptr(vu), 0 if mu is None else ptr(mu), ptr(ou), ptr(strides), L, S, D, Dv, H,
            float(scale), float(fill), *_dropout_args(key, p, keep))
    kern.run(kern.fwd, kern.fwd_c, args, units, gen.scratch_floats(S, D, Dv), 2.0 * units * L * S * (D + Dv))
    return o


def backward(q, k, v, masked, go, scale: float, fill: float = -np.inf, key=None, p: float = 0.0,
             keep: float = 1.0):
    """The gradients (dq, dk, dv) joined into one flat array, as the op `attention_grad` returns them."""
    plan = _plan(q, k, v, masked)
    if plan is None or type(go) is not np.ndarray or go.dtype != _F32:
        return None
    kern, (qu, ku, vu, mu), st, L, S, D, Dv, H, units, batch = plan
    if go.shape != batch + (L, Dv):
        return None
    gu, sg = _units(go, batch)
    n = units * L * D, units * S * D, units * S * Dv
    joined = _fresh((sum(n),))
    strides = np.array(st + sg + [0] * 3, np.int64)
    at = ptr(joined)
    args = (ptr(qu), ptr(ku), ptr(vu), 0 if mu is None else ptr(mu), ptr(gu), at, at + 4 * n[0],
            at + 4 * (n[0] + n[1]), ptr(strides), L, S, D, Dv, H, float(scale), float(fill),
            *_dropout_args(key, p, keep))
    kern.run(kern.bwd, kern.bwd_c, args, units, gen.scratch_floats(S, D, Dv),
             2.0 * units * L * S * (2 * D + 3 * Dv))
    return joined
