"""Autocast state and op policies: which ops run in the low dtype, which in float32, which promote.

In: the public op functions (linear, matmul, conv2d, softmax, mse_loss ...) are wrapped with
`@autocast_op("name")`; `ember.autocast` (ember/amp.py) turns regions on and off with `push`/`pop`.
Out: inside an enabled region, a wrapped op casts its floating tensor arguments on that device as its
policy says, then runs with autocast suspended for that device (PyTorch's autocast kernels
redispatch below the autocast key, so an op's inner ops are not cast again):

    LOWER     matrix products: floating args -> the region's dtype (bfloat16 on cpu, float16 on cuda)
    FP32      losses, reductions prone to overflow, ...: floating args -> float32
    FP32_OPT  softmax, sum, cumsum ... (cuda): 16-bit inputs run with dtype=float32 unless dtype= is given
    PROMOTE   cat, stack, addcmul ...: floating args -> the widest of them
    KEEP      not autocast in PyTorch but built from an op that is (cpu mv, dot): run with autocast off

The lists are PyTorch's, per device type (aten/src/ATen/autocast_mode.cpp); ops on neither list run
as they are. float64 tensors are never cast. Casts are ordinary `cast` primitives: autograd casts
each gradient back, so backward runs every op in its forward's dtype, and the tracer records them.
Casts of leaf tensors that require grad (parameters) to the low dtype are cached per region
(cache_enabled) and reused while the parameter's version is unchanged; never while tracing (a traced
cast is a graph node, and a cached eager copy would be baked into the graph as a constant).
"""
from __future__ import annotations

import functools
import threading
import weakref

from ..ir import dtypes as dt
from . import dispatch
from . import autograd as ag
from .tensor import Tensor

__all__ = ["autocast_op", "push", "pop", "is_enabled", "get_dtype", "clear_cache", "state_key", "POLICIES",
           "LOWER", "FP32", "FP32_OPT", "PROMOTE", "KEEP"]

LOWER, FP32, FP32_OPT, PROMOTE, KEEP = "lower", "fp32", "fp32_opt", "promote", "keep"

_CPU_LOWER = ("conv1d", "conv2d", "conv3d", "bmm", "mm", "baddbmm", "addmm", "addbmm", "linear", "matmul",
              "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "prelu",
              "scaled_dot_product_attention", "lstm",
              # not on PyTorch's list, but built from bmm/mm there (CompositeImplicit), so low as well
              "einsum", "tensordot")
_CPU_FP32 = ("avg_pool3d", "binary_cross_entropy", "prod", "cdist", "trace", "max_pool3d", "adaptive_avg_pool3d",
             "mse_loss", "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "poisson_nll_loss",
             "smooth_l1_loss", "cross_entropy", "l1_loss", "huber_loss", "margin_ranking_loss",
             "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "kl_div",
             "multilabel_margin_loss", "binary_cross_entropy_with_logits", "inverse", "pinverse")
_CPU_PROMOTE = ("cat", "stack")
_CPU_KEEP = ("mv", "dot")

_CUDA_LOWER = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
               "prelu", "addmm", "addmv", "addr", "matmul", "einsum", "mm", "mv", "linear", "addbmm", "baddbmm",
               "bmm", "chain_matmul", "multi_dot", "scaled_dot_product_attention")
_CUDA_FP32 = ("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal",
              "rsqrt", "sinh", "tan", "pow", "softplus", "layer_norm", "group_norm", "cosine_similarity",
              "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "kl_div",
              "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss",
              "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss",
              "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp",
              "interpolate", "cross_entropy")
_CUDA_FP32_OPT = ("prod", "softmax", "log_softmax", "cumprod", "cumsum", "sum", "norm")
_CUDA_PROMOTE = ("addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "scatter_add", "tensordot", "cat",
                 "stack")

POLICIES = {
    "cpu": {**{n: LOWER for n in _CPU_LOWER}, **{n: FP32 for n in _CPU_FP32},
            **{n: PROMOTE for n in _CPU_PROMOTE}, **{n: KEEP for n in _CPU_KEEP}},
    "cuda": {**{n: LOWER for n in _CUDA_LOWER}, **{n: FP32 for n in _CUDA_FP32},
             **{n: FP32_OPT for n in _CUDA_FP32_OPT}, **{n: PROMOTE for n in _CUDA_PROMOTE}},
}
# binary_cross_entropy is unsafe to autocast on cuda (PyTorch refuses it; use the logits form)
_CUDA_BANNED = ("binary_cross_entropy",)


class _State(threading.local):
    def __init__(self):
        self.dtypes: dict = {}        # device type -> the low dtype, for enabled device types only
        self.cache_on: dict = {}      # device type -> cache_enabled of the innermost region
        self.nesting = 0              # regions entered (enabled or not): the cache lives until 0
        self.cache: dict = {}         # id(leaf) -> (weakref, version, dtype, cast)


_state = _State()
_active = 0                           # enabled regions in all threads: 0 keeps the wrapped ops' fast path


def push(device_type: str, dtype, enabled: bool, cache_enabled: bool):
    """Enter a region; returns what `pop` needs to restore."""
    global _active
    st = _state
    prev = (device_type, st.dtypes.get(device_type), st.cache_on.get(device_type))
    if enabled:
        st.dtypes[device_type] = dtype
        st.cache_on[device_type] = cache_enabled
        _active += 1
    else:
        st.dtypes.pop(device_type, None)
    st.nesting += 1
    return prev, enabled


def pop(token) -> None:
    global _active
    (device_type, dtype, cache_on), enabled = token
    st = _state
    if dtype is None:
        st.dtypes.pop(device_type, None)
        st.cache_on.pop(device_type, None)
    else:
        st.dtypes[device_type] = dtype
        st.cache_on[device_type] = cache_on
    if enabled:
        _active -= 1
    st.nesting -= 1
    if st.nesting == 0:
        st.cache.clear()


def is_enabled(device_type: str) -> bool:
    return device_type in _state.dtypes


def get_dtype(device_type: str):
    return _state.dtypes.get(device_type)


def clear_cache() -> None:
    _state.cache.clear()


def state_key() -> tuple:
    """The enabled regions of this thread as ((device type, dtype name), ...): a guard of compiled
    functions (a trace under autocast records casts that a trace without it does not)."""
    if not _active:
        return ()
    return tuple(sorted((dev, d.name) for dev, d in _state.dtypes.items()))


# ------------------------------------------------------------------------------------ casting
def _eligible(t, dev: str) -> bool:
    return isinstance(t, Tensor) and t.dtype.is_floating_point and t.dtype is not dt.float64 and \
        t.device.type == dev


def _cast(t: Tensor, target, dev: str, cache: bool) -> Tensor:
    if t.dtype is target:
        return t
    if cache and t.requires_grad and t.grad_fn is None and t._base is None and t.dtype is dt.float32 \
            and dispatch.tracer is None and ag.is_grad_enabled():
        hit = _state.cache.get(id(t))
        if hit is not None and hit[0]() is t and hit[1] == t._vc[0] and hit[2] is target:
            return hit[3]
        out = dispatch.apply("cast", t, dtype=target)
        _state.cache[id(t)] = (weakref.ref(t), t._vc[0], target, out)
        return out
    return dispatch.apply("cast", t, dtype=target)


def _map(obj, fn):
    """fn over the tensors of an argument (tensors also inside lists/tuples: cat, stack, einsum)."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)) and any(isinstance(x, Tensor) for x in obj):
        return type(obj)(fn(x) if isinstance(x, Tensor) else x for x in obj)
    return obj


def _tensors(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if isinstance(x, Tensor))


class _Suspended:
    """Autocast off for one device type while a wrapped op runs (restored afterwards)."""

    __slots__ = ("dev", "dtype")

    def __init__(self, dev):
        self.dev = dev

    def __enter__(self):
        self.dtype = _state.dtypes.pop(self.dev)

    def __exit__(self, *exc):
        _state.dtypes[self.dev] = self.dtype
        return False


def _run(name, fn, args, kwargs):
    dtypes = _state.dtypes
    if not dtypes:
        return fn(*args, **kwargs)
    dev = None
    for t in _tensors(args, kwargs):
        dev = t.device.type
        break
    low = dtypes.get(dev)
    if low is None:
        return fn(*args, **kwargs)
    policy = POLICIES[dev].get(name)
    if policy is None:
        return fn(*args, **kwargs)
    if dev == "cuda" and name in _CUDA_BANNED:
        raise RuntimeError(f"ember.nn.functional.{name} and ember.nn.BCELoss are unsafe to autocast.\n"
                           "Many models use a sigmoid layer right before the binary cross entropy layer.\n"
                           "In this case, combine the two layers using ember.nn.functional."
                           "binary_cross_entropy_with_logits\nor ember.nn.BCEWithLogitsLoss. "
                           "binary_cross_entropy_with_logits and BCEWithLogits are\nsafe to autocast.")
    if policy == FP32_OPT:
        if kwargs.get("dtype") is None and any(_eligible(t, dev) and t.dtype.is_reduced_float
                                               for t in _tensors(args, kwargs)):
            kwargs = dict(kwargs, dtype=dt.float32)
    elif policy != KEEP:
        if policy == LOWER:
            target = low
        elif policy == FP32:
            target = dt.float32
        else:   # PROMOTE: float32 if any eligible argument is float32, else the low dtype
            target = low
            for t in _tensors(args, kwargs):
                if _eligible(t, dev):
                    if t.dtype is dt.float32:
                        target = dt.float32
                    elif t.dtype is not low and target is not dt.float32:
                        raise RuntimeError(f"Unexpected floating ScalarType in autocast promote: {name} got a "
                                           f"{t.dtype.name} tensor in a {low.name} autocast region")
        cache = policy == LOWER and _state.cache_on.get(dev, True)
        cast = lambda t: _cast(t, target, dev, cache) if _eligible(t, dev) else t  # noqa: E731
        args = tuple(_map(a, cast) for a in args)
        kwargs = {k: _map(v, cast) for k, v in kwargs.items()}
    with _Suspended(dev):
        return fn(*args, **kwargs)


def autocast_op(name: str):
    """Give a public op its autocast policy (looked up by `name` in POLICIES for each device type)."""
    if not any(name in p for p in POLICIES.values()):
        raise KeyError(f"autocast_op: {name!r} is on no autocast list")

    def deco(fn):
        @functools.wraps(fn)
        def f(*args, **kwargs):
            if not _active:
                return fn(*args, **kwargs)
            return _run(name, fn, args, kwargs)
        return f
    return deco
