"""ember: a PyTorch-shaped deep-learning framework with a graph-capturing compiler.

    import ember as torch       # ordinary training scripts run unchanged

Eager mode lives in ember/frontend; ember.compile traces into ember/ir graphs, ember/passes fuses
them into kernel IR, ember/codegen emits LLVM or CUDA C, ember/runtime runs it.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .ir import dtypes as _dt
from .ir.dtypes import DType as dtype  # noqa: F401  (ember.dtype, like torch.dtype)

float32 = float = _dt.float32
float64 = double = _dt.float64
float16 = half = _dt.float16
bfloat16 = _dt.bfloat16
int64 = long = _dt.int64
int32 = int = _dt.int32
int16 = short = _dt.int16
int8 = _dt.int8
uint8 = _dt.uint8
bool = _dt.bool_

from .frontend.tensor import Tensor, Size  # noqa: E402
from .frontend import prims as _prims  # noqa: E402,F401  (registers eager kernels and VJPs)
from .frontend import methods as _methods  # noqa: E402

_methods.bind()

from .frontend.device import device  # noqa: E402
from .frontend.rng import Generator  # noqa: E402
from .frontend.creation import (  # noqa: E402
    tensor, as_tensor, asarray, from_numpy, zeros, ones, full, empty, zeros_like, ones_like, empty_like,
    full_like, arange, linspace, logspace, eye, rand, randn, rand_like, randn_like, randint, randint_like,
    randperm, bernoulli, normal, multinomial, manual_seed, seed, initial_seed, get_rng_state, set_rng_state)
from .frontend.math_ops import (  # noqa: E402
    add, sub, subtract, mul, multiply, div, divide, true_divide, floor_divide, remainder, pow, float_power,
    maximum, minimum, eq, ne, lt, le, gt, ge, logical_and, logical_or, logical_not, logical_xor,
    bitwise_not, bitwise_and, bitwise_or, bitwise_xor, where, exp, exp2, log, log2, log10, log1p, expm1,
    sqrt, rsqrt, sin, cos, tan, tanh, sigmoid, erf, abs, absolute, neg, negative, sign, reciprocal, floor,
    ceil, round, trunc, fix, frac, clamp, clip, clamp_min, clamp_max, isnan, isinf, isfinite, isposinf,
    isneginf, nan_to_num, lerp, addcmul, addcdiv, square, relu, sum, mean, var, std, var_mean,
    std_mean, prod, amax, amin, argmax, argmin, max, min, logsumexp, cumsum, cumprod, all, any,
    count_nonzero, norm, dist, softmax, log_softmax, equal, allclose, isclose, return_types)
from .frontend.shape_ops import (  # noqa: E402
    reshape, permute, transpose, swapaxes, swapdims, t, adjoint, movedim, moveaxis, squeeze, unsqueeze,
    flatten, ravel, unflatten, broadcast_to, broadcast_tensors, repeat_interleave, tile, cat, concat,
    concatenate, stack, hstack, vstack, split, tensor_split, chunk, narrow, select, unbind, flip, fliplr,
    flipud, roll, tril, triu, diagonal, diag, diag_embed, index_select, take, take_along_dim, gather,
    scatter, scatter_add, index_add, index_fill, masked_fill, nonzero, argwhere, masked_select)
from .frontend.math_special import (  # noqa: E402
    atan, arctan, atan2, arctan2, asin, arcsin, acos, arccos, sinh, cosh, asinh, arcsinh, acosh, arccosh, atanh,
    arctanh, erfinv, hypot, logaddexp, logaddexp2, xlogy, copysign, deg2rad, rad2deg, sinc, logit, signbit)
from .frontend.composites import (  # noqa: E402
    trace, diff, kron, tensordot, cdist, triu_indices, tril_indices, nansum, nanmean, isin, rot90, cov, corrcoef,
    aminmax, cummax, cummin, logcumsumexp, quantile, nanquantile, atleast_1d, atleast_2d, atleast_3d, block_diag,
    cartesian_prod, diagflat)
from .frontend.math_extra import (  # noqa: E402
    sgn, positive, rsub, scalar_tensor, erfc, lgamma, digamma, i0, gcd, lcm, heaviside, bitwise_left_shift,
    bitwise_right_shift, column_stack, dstack, row_stack, msort, trapezoid, trapz, vander, combinations, mode,
    nanmedian, masked_scatter)
from .frontend.indexing_ops import (  # noqa: E402
    index_put, index_copy, scatter_reduce, searchsorted, bucketize, histc, bincount, unique, unique_consecutive)
from .frontend.lapack import det, slogdet, logdet, inv as inverse  # noqa: E402
from .frontend.linalg_composites import (  # noqa: E402
    pinverse, matrix_power, cross_old as cross, svd_old as svd, qr_old as qr, cholesky_old as cholesky)
from .frontend.shape_ops import broadcast_shapes_ as broadcast_shapes  # noqa: E402
from .frontend.shape_ops import meshgrid  # noqa: E402,F401
from .frontend.linalg import (  # noqa: E402
    matmul, mm, bmm, mv, dot, inner, outer, ger, addmm, baddbmm, addbmm, addmv, addr, einsum, sort, argsort, topk, kthvalue,
    median)
from .frontend.autograd import (  # noqa: E402
    no_grad, enable_grad, inference_mode, set_grad_enabled, is_grad_enabled, is_inference_mode_enabled)
from .frontend.printing import set_printoptions  # noqa: E402
from . import autograd  # noqa: E402,F401
from . import cuda  # noqa: E402,F401
from .frontend.legacy import CPU_TYPES as _legacy  # noqa: E402
from .kernels import blas_threads as _blas_threads  # noqa: E402
from .kernels import casts as _casts  # noqa: E402
from .kernels import host_memory as _host_memory  # noqa: E402
from .frontend import dispatch as _dispatch  # noqa: E402
from .runtime import eager_kernels as _eager_kernels  # noqa: E402
from .kernels import generated as _generated  # noqa: E402

for _op in _eager_kernels.FAST_UNARY:     # eager ops numpy has no fast loop for: generated code, compiled on use
    _dispatch.register(_op, _eager_kernels.unary_kernel(_op))
_generated.COMPILE = _eager_kernels.compile_one          # eager ops' generated kernels (kernels/generated.py)
_dispatch.FUSED["adam"] = _eager_kernels.adam_update      # the eager Adam/AdamW update: one generated kernel
_dispatch.register("index_add", _eager_kernels.index_add_kernel(_dispatch._BASE["index_add"]))   # a row loop
for _op in ("attention", "attention_grad"):     # fused attention: generated kernels (ember/runtime/attention.py)
    _dispatch.register(_op, _eager_kernels.attention_kernel(_op, _dispatch._BASE[_op]))

# the legacy typed-tensor constructors: ember.FloatTensor(2, 3), ember.LongTensor([1, 2]), isinstance checks
(FloatTensor, DoubleTensor, HalfTensor, BFloat16Tensor, LongTensor, IntTensor, ShortTensor, CharTensor, ByteTensor,
 BoolTensor) = (_legacy[n] for n in ("FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor", "LongTensor",
                                     "IntTensor", "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor"))


def _bf16_matmul(a, b, bias=None, out=None):
    """The generated bfloat16 GEMM (bias: bf16 [N], added in its epilogue; out: where to write), compiled
    on first use (importing the compiler stays lazy)."""
    from .runtime import gemm_bf16
    return gemm_bf16.matmul(a, b, bias, out=out)


_blas_threads.BF16_MATMUL = _bf16_matmul


def _f32_matmul(a, b, out=None):
    """The generated float32 GEMM for the products it runs faster than BLAS on this CPU (None: leave it to
    BLAS; runtime/gemm_f32.py `plan`, `host_takes`)."""
    from .runtime import gemm_f32
    _blas_threads.F32_MATMUL = gemm_f32.matmul      # later calls go straight there
    return gemm_f32.matmul(a, b, out)


_blas_threads.F32_MATMUL = _f32_matmul


def _f32_gathered(a, src, desc, out, transposed=False):
    """The generated float32 GEMM over an im2col gathered in place (None: materialize it)."""
    from .runtime import gemm_f32
    _blas_threads.F32_GATHERED = gemm_f32.matmul_gathered
    return gemm_f32.matmul_gathered(a, src, desc, out, transposed)


_blas_threads.F32_GATHERED = _f32_gathered


def _bf16_convert(x, dtype):
    """float32 <-> bfloat16 of a contiguous array by the generated kernels (None: not those dtypes)."""
    from .runtime import gemm_bf16
    return gemm_bf16.convert(x, dtype)


_casts.CONVERT = _bf16_convert
_host_memory.tune()     # eager arrays reuse freed memory instead of faulting in fresh pages (see the module)

fmod = _methods._fmod
fmax, fmin = _methods._fmax, _methods._fmin


def _accept_torch_names():
    """ember.sum(x, axis=0), ember.pow(t, exponent=2): PyTorch's keyword names on the public functions."""
    import inspect
    from .frontend.torch_names import accept_torch_names
    g = globals()
    done = {}               # one wrapper per function: aliases stay the same object (arctan2 is atan2)
    for name, fn in list(g.items()):
        if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__.startswith("ember.frontend."):
            if id(fn) not in done:
                done[id(fn)] = accept_torch_names(fn, name)
            g[name] = done[id(fn)]


_accept_torch_names()


def is_tensor(obj):
    return isinstance(obj, Tensor)


def is_floating_point(t):
    return t.dtype.is_floating_point


def numel(t):
    return t.numel()


def clone(t):
    return t.clone()


def detach(t):
    return t.detach()


def set_default_dtype(d):
    if not d.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    _dt.default_float = d


def get_default_dtype():
    return _dt.default_float


def promote_types(a, b):
    return _dt.promote_types(a, b)


def result_type(a, b):
    from .frontend.math_ops import promote
    return promote(a, b)[2]


def can_cast(from_, to):
    return from_.category <= to.category


def is_grad_enabled_():
    return is_grad_enabled()


from .frontend.typeinfo import (  # noqa: E402,F401
    finfo, iinfo, memory_format, contiguous_format, channels_last, channels_last_3d, preserve_format)

_matmul_precision = "highest"
_deterministic = False


def set_num_threads(n: int) -> None:
    """Threads for ember's compiled kernels and matrix products (torch.set_num_threads); numpy's
    BLAS itself stays on one thread, ember splits large products (ember/kernels/blas_threads.py)."""
    import os
    if n < 1:
        raise ValueError("set_num_threads expects a positive integer")
    os.environ["EMBER_NUM_THREADS"] = str(n)


def get_num_threads() -> int:
    from .runtime.cpu import num_threads
    return num_threads()


_interop_threads: int | None = None


def set_num_interop_threads(n: int) -> None:
    """torch.set_num_interop_threads: ember runs one op at a time on the calling thread (its kernels
    split across get_num_threads() workers), so the figure is kept for get_num_interop_threads and
    changes nothing.  As in torch it may be set once, before any parallel work."""
    import builtins                 # `int` here is ember.int, the dtype
    global _interop_threads
    if not isinstance(n, builtins.int) or n < 1:
        raise RuntimeError(f"set_num_interop_threads expects a positive integer, got {n!r}")
    if _interop_threads is not None:
        raise RuntimeError("Error: cannot set number of interop threads after parallel work has started "
                           "or set_num_interop_threads called")
    _interop_threads = n


def get_num_interop_threads() -> int:
    return _interop_threads or 1


def set_float32_matmul_precision(precision: str) -> None:
    """Accepted for compatibility: float32 products are always computed in float32 here."""
    global _matmul_precision
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(f"Invalid precision {precision!r}: expected 'highest', 'high' or 'medium'")
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    return _matmul_precision


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """ember's kernels are deterministic already (fixed reduction orders, counter-based RNG)."""
    global _deterministic
    _deterministic = not not mode   # (`bool` is ember.bool in this module)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


def _lazy(name):
    import importlib
    return importlib.import_module(f"ember.{name}")


def __getattr__(name):
    # heavier namespaces load on first use (keeps `import ember` fast)
    if name in ("nn", "optim", "utils", "datasets", "compiler", "amp", "distributed", "linalg", "backends",
                "serialization", "onnx", "accelerator", "cpu", "profiler", "distributions", "special", "testing",
                "random", "_dynamo", "func"):
        return _lazy(name)
    if name in ("autocast", "GradScaler", "is_autocast_available", "get_autocast_dtype", "clear_autocast_cache"):
        return getattr(_lazy("amp"), name)
    if name in ("is_autocast_enabled", "is_autocast_cpu_enabled", "get_autocast_cpu_dtype", "get_autocast_gpu_dtype"):
        return getattr(_lazy("amp"), "_" + name if name != "is_autocast_enabled" else name)
    if name in ("is_anomaly_enabled", "is_anomaly_check_nan_enabled"):
        return getattr(_lazy("autograd"), name)
    if name in ("save", "load"):
        return getattr(_lazy("serialization"), name)
    if name in ("compile", "explain", "mark_dynamic", "maybe_mark_dynamic", "mark_static"):
        return getattr(_lazy("compiler"), name)
    raise AttributeError(f"module 'ember' has no attribute '{name}'")
