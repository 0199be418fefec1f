"""Eager kernels from the code generator: pointwise ops numpy has no fast loop for, compiled once.

numpy has no erf: the reference kernel (ember/ir/ops.py `_erf`) evaluates a rational approximation
with ~25 whole-array float64 passes, ~50 ms per million float32 values here -- about half of an
eager GPT step with exact GELU.  The same op as a one-node kernel of the compiled path (LLVM,
vectorised, split over the worker threads) takes ~1 ms, and agrees with compiled graphs exactly.

    fast = unary_kernel("erf")          # fast(xp, x) -> array, or the reference for what it does not take
    ember.frontend.dispatch.register("erf", fast)     # done by ember/__init__.py

One kernel per (op, dtype), over a 1-D buffer whose length is a size symbol (ember/ir/symbolic.py),
so every array size uses the same machine code; compiled on first use and kept in the disk cache.
Arrays below MIN_SIZE, non-CPU arrays and other dtypes take the reference kernel.

The eager Adam / AdamW update is one such kernel too (`adam_update`): numpy runs PyTorch's for-loop
update as ~14 whole-array passes with temporaries (a GPT step's 28 parameters, 0.4 M values: ~2.8 ms
here); one generated pass reads p, g, exp_avg, exp_avg_sq and writes p, exp_avg, exp_avg_sq in place.

    adam_update(P, G, M, V, consts, "decoupled")   # True when it ran; False: the caller's numpy path

And index_add (an embedding's gradient; an eager step of compiled training steps too, the kernel IR
having no accumulating stores) through the row loop of ember/codegen/index_add.py: numpy's add.at adds
one row at a time and the sort + reduceat it was replaced with took ~0.25 ms (~1 ms in a training
step) for 1024 rows of 128; the loop, ~35 us a call (~10 us of it the loop).

    fast = index_add_kernel(dispatch.KERNELS["index_add"])   # the reference for what it does not take

The eager ops below this layer (pooling, a convolution's fold, masked gradients: ember/kernels/window_ops.py)
build their kernels themselves and compile them through `compile_one`, which ember/__init__.py installs
as ember/kernels/generated.py's COMPILE (the kernels layer cannot import the compiler).
"""
from __future__ import annotations

import threading

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.ops import OPS
from ember.kernels import generated

__all__ = ["unary_kernel", "compile_one", "FAST_UNARY", "MIN_SIZE", "adam_update", "ADAM_CONSTS",
           "index_add_kernel", "attention_kernel", "once"]

FAST_UNARY = ("erf",)      # measured slower in numpy than in generated code (see the docstring)
MIN_SIZE = generated.MIN_SIZE   # below this the call overhead (~10 us) outweighs the gain
_DTYPES = {np.dtype(np.float32): dt.float32, np.dtype(np.float64): dt.float64}
_cache: dict = {}
_lock = threading.Lock()


def once(key, build):
    """The process-wide value of `key`: build() on first use, under the lock (compiled code is built once;
    the machine code lives as long as the object holding it, here for the process)."""
    v = _cache.get(key)
    if v is None:
        with _lock:
            v = _cache.get(key)
            if v is None:
                v = _cache[key] = build()
    return v


def _unary_ir(op: str):
    def ir(x):
        from ember.ir.kernel import Unary      # kernel IR loads on first use: `import ember` stays fast
        return Unary(op, x)
    return ir


def unary_kernel(op: str):
    """fast(xp, x): op through generated code for large float32/float64 numpy arrays (kernels/generated.py
    `elementwise`: one kernel over a size symbol, a binding kept per size, any layout read in memory
    order), the reference kernel otherwise (and for good if compiling fails)."""
    ref = OPS[op].ref
    ir = _unary_ir(op)

    def fast(xp, x, **attrs):
        if xp is np and getattr(x, "dtype", None) in _DTYPES:
            out = generated.elementwise(f"unary_{op}", ir, [x])
            if out is not None:
                return out
        return ref(xp, x, **attrs)

    fast.__name__ = f"{op}_generated"
    fast.reference = ref                # what it runs below MIN_SIZE (and what constant folding uses)
    return fast


# ====================================================================== the fused Adam update
# The scalars of one Adam step, in this order in the kernel's constant buffer (the caller's dtype):
ADAM_CONSTS = ("decay",          # p *= decay                   (AdamW: 1 - lr * weight_decay)
               "l2",             # g += l2 * p                  (Adam's weight_decay)
               "one_m_beta1",    # m += (1 - beta1) * (g - m)   (lerp_)
               "beta2",          # v = v * beta2 + (1 - beta2) * g * g
               "one_m_beta2",
               "bc2_sqrt",       # denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
               "eps",
               "neg_step_size")  # p += -(lr / (1 - beta1 ** step)) * m / denom
ADAM_MODES = ("none", "decoupled", "l2")     # which weight decay the kernel applies
_ADAM_BOUND_MAX = 64        # bound kernels kept per (dtype, mode): one per distinct parameter size


def _adam_kernel(d: dt.DType, mode: str):
    """The compiled update over n = s0 values (once per dtype and weight-decay mode), with its
    per-size bindings."""
    def build():
        from ember.ir.kernel import Buf, Kernel, Load, Store, Unary, o
        from ember.ir.symbolic import SymInt
        from ember.runtime.cpu import compile_kernels
        n = SymInt({("s0",): 1}, 1 << 16)
        p_in, g_in, m_in, v_in = (Buf(name, (n,), d) for name in ("p", "g", "m", "v"))
        h_buf = Buf("h", (len(ADAM_CONSTS),), d)
        p_out, m_out, v_out = (Buf(name, (n,), d) for name in ("p_out", "m_out", "v_out"))
        h = {name: Load(h_buf, [i]) for i, name in enumerate(ADAM_CONSTS)}
        i = [o(0)]
        p, g, m, v = Load(p_in, i), Load(g_in, i), Load(m_in, i), Load(v_in, i)
        # the order of torch.optim's single-tensor Adam (and of the numpy path in ember/optim/adam.py)
        if mode == "decoupled":
            p = p * h["decay"]
        elif mode == "l2":
            g = g + p * h["l2"]
        m = m + h["one_m_beta1"] * (g - m)
        v = v * h["beta2"] + h["one_m_beta2"] * (g * g)
        denom = Unary("sqrt", v) / h["bc2_sqrt"] + h["eps"]
        p = p + h["neg_step_size"] * (m / denom)
        kern = Kernel([p_in, g_in, m_in, v_in, h_buf], [p_out, m_out, v_out], [n],
                      stores=[Store(p_out, i, p), Store(m_out, i, m), Store(v_out, i, v)],
                      name=f"eager_adam_{mode}_{d.short}")
        return compile_kernels([kern])[kern.name], {}
    return once(("adam", d, mode), build)


def adam_update(P: np.ndarray, G: np.ndarray, M: np.ndarray, V: np.ndarray, consts, mode: str) -> bool:
    """One Adam step of a parameter, in place on P, M (exp_avg) and V (exp_avg_sq), by one generated
    kernel: consts are the ADAM_CONSTS values, mode one of ADAM_MODES.  Writing an output over the
    input it reads element for element is what the compiled path does with mutated parameters
    (ember/passes/memory.py).  Returns False, doing nothing, where it does not apply (not float32 /
    float64 numpy arrays of one dtype and size, not contiguous, no working code generator): the
    caller then runs its numpy update."""
    d = _DTYPES.get(getattr(P, "dtype", None))
    if d is None or mode not in ADAM_MODES or _adam_broken:
        return False
    arrays = (P, G, M, V)
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != P.dtype or a.size != P.size or not a.flags.c_contiguous:
            return False
    if not P.flags.writeable or not M.flags.writeable or not V.flags.writeable:
        return False
    try:
        kernel, bound = _adam_kernel(d, mode)
    except Exception:  # noqa: BLE001 - no working code generator here: numpy it is
        _adam_broken.append(True)
        return False
    n = P.size
    if n < 2:               # (a size symbol is at least 2)
        return False
    k = bound.get(n)
    if k is None:
        if len(bound) >= _ADAM_BOUND_MAX:
            bound.pop(next(iter(bound)))
        k = bound[n] = kernel.at({"s0": n})
    # straight to the machine code: a GPT step updates 28 parameters, most of them 128 values,
    # where the launch path's ~15 us a call would cost more than the update
    from ember.runtime.cpu import _error_slot, data_pointer
    h, h_ptr = _consts_buffer(P.dtype)
    h[:] = consts
    p, m, v = data_pointer(P), data_pointer(M), data_pointer(V)
    err, err_ptr = _error_slot()
    status = k._fn(p, data_pointer(G), m, v, h_ptr, p, m, v, err_ptr, 0, n, n)
    if status:
        k._raise(status, err)
    return True


_local = threading.local()


def _consts_buffer(dtype) -> tuple:
    """(this thread's buffer for the ADAM_CONSTS of `dtype`, its address): refilled every call."""
    bufs = getattr(_local, "consts", None)
    if bufs is None:
        bufs = _local.consts = {}
    b = bufs.get(dtype)
    if b is None:
        a = np.zeros(len(ADAM_CONSTS), dtype=dtype)
        b = bufs[dtype] = (a, a.__array_interface__["data"][0])
    return b


_adam_broken: list = []


# ====================================================================== index_add
def _index_add_library():
    """The row-loop functions {numpy dtype: ctypes function} (compiled once, then from the disk cache)."""
    def build():
        import ctypes

        from ember.codegen import index_add as gen
        from ember.runtime import cpu
        target = cpu.host_target()
        text = gen.emit_module(target.triple, target.data_layout)
        native = cpu.NativeLibrary(text, "index_add", gen.__file__)
        P, I64 = ctypes.c_void_p, ctypes.c_int64
        fns = {np.dtype(d): native.function(name, P, P, P, I64, I64, I64, I64, I64, I64, P)
               for d, (name, _) in gen.FUNCTIONS.items()}
        return native, fns          # (the library owns the machine code)
    return once("index_add", build)[1]


def index_add_kernel(ref):
    """fast(xp, x, idx, src, dim): index_add (out = x.clone(); out[.., idx[i], ..] += src[.., i, ..]) of
    float32/float64 numpy arrays by the generated row loop; `ref` (the registered kernel) for the rest,
    and to raise its errors (an index out of range, a source of the wrong size)."""
    broken = []

    def fast(xp, x, idx, src, dim):
        if (broken or xp is not np or type(x) is not np.ndarray or type(src) is not np.ndarray
                or type(idx) is not np.ndarray or x.dtype not in _DTYPES or src.dtype != x.dtype
                or idx.dtype.kind not in "iu" or not x.ndim or not -x.ndim <= dim < x.ndim):
            return ref(xp, x, idx, src, dim=dim)
        d = dim % x.ndim
        a, n, b = int(np.prod(x.shape[:d])), x.shape[d], int(np.prod(x.shape[d + 1:]))
        flat = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)
        if src.size != a * flat.size * b:
            return ref(xp, x, idx, src, dim=dim)
        try:
            fn = _index_add_library()[x.dtype]
        except Exception:  # noqa: BLE001 - no working code generator here: the reference it is
            broken.append(True)
            return ref(xp, x, idx, src, dim=dim)
        out = np.array(x, order="C")
        src = np.ascontiguousarray(src)
        status = np.zeros(1, dtype=np.int64)
        ptr = _address
        fn(ptr(out), ptr(src), ptr(flat), a, flat.size, n, b, 0, b, ptr(status))
        if status[0]:           # an index outside [0, n): nothing was written; the reference says so
            return ref(xp, x, idx, src, dim=dim)
        return out

    fast.__name__ = "index_add_generated"
    fast.reference = ref
    return fast


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def compile_one(kernel):
    """A kernel IR Kernel compiled alone (through the disk cache): its KernelCallable (`launch(arrays)`,
    `at(sizes)`, ember/runtime/cpu.py)."""
    from ember.runtime.cpu import compile_kernels
    return compile_kernels([kernel])[kernel.name]


# ====================================================================== attention
def attention_kernel(op: str, ref):
    """The eager kernel of `attention` / `attention_grad`: ember/runtime/attention.py's fused kernels for
    float32 numpy arrays, `ref` (the op's reference) for the rest."""

    def fast(xp, q, k, v, masked, key, *g, **attrs):
        if xp is np:
            # imported on first use: it brings in the code generator and llvmlite, which `import ember` does not
            from ember.runtime import attention
            if op == "attention":
                out = attention.forward(q, k, v, masked, key=key, **attrs)
            else:
                out = attention.backward(q, k, v, masked, g[0], key=key, **attrs)
            if out is not None:
                return out
        return ref(xp, q, k, v, masked, key, *g, **attrs)

    fast.__name__ = f"{op}_generated"
    fast.reference = ref
    return fast
