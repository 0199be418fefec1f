"""Tensor factories: tensor, zeros, ones, full, arange, linspace, eye, rand, randn, randint, ..."""
from __future__ import annotations

import collections.abc
import math

import numpy as np

from ..ir import dtypes as dt
from ..ir.symbolic import SymInt
from ..ir.sizes import as_size, hint
from . import rng
from .device import canonical, CPU
from . import dispatch
from .dispatch import apply as P
from .tensor import Tensor, _relayout, _wrap


def _dtype(dtype, default=None):
    if dtype is None:
        return default or dt.default_float
    if isinstance(dtype, dt.DType):
        return dtype
    if dtype in (float,):
        return dt.float64
    if dtype is int:
        return dt.int64
    if dtype is bool:
        return dt.bool_
    if isinstance(dtype, str):
        return dt.by_name(dtype)
    return dt.from_numpy(dtype)


def _sizes(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = int(s.item())
        if not isinstance(s, (int, np.integer, SymInt)):
            raise TypeError(f"expected a sequence of integers as size, got {type(s).__name__}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
        out.append(as_size(s))      # a traced size that varies between calls stays symbolic
    return tuple(out)


def _finish(t, requires_grad):
    if requires_grad:
        t.requires_grad_(True)
    if dispatch._tracing and dispatch.tracer is not None:     # made while tracing: a value of the graph,
        t.__dict__["_made_in_trace"] = id(dispatch.tracer)    # not state (capture.py `inplace`)
    return t


def _infer_dtype(data):
    """PyTorch's dtype for Python data: Python bools, ints and floats count as bool, int64 and the default
    float; numpy scalars, arrays and tensors inside the data count with their own dtype; the result is
    their promotion (tensor([np.float64(1)]) is float64, tensor([np.float32(1), 2]) float32)."""
    result = None
    stack = [data]
    while stack:
        d = stack.pop()
        if isinstance(d, (list, tuple)):
            stack.extend(d)
            continue
        if isinstance(d, Tensor):
            leaf = d.dtype
        elif isinstance(d, (np.ndarray, np.generic)) and not isinstance(d, (np.bool_, np.complexfloating)):
            if isinstance(d, np.ndarray) and d.size == 0:
                continue
            leaf = dt.from_numpy(d.dtype)
        elif isinstance(d, (bool, np.bool_)):
            leaf = dt.bool_
        elif isinstance(d, int):
            leaf = dt.int64
        elif isinstance(d, float):
            leaf = dt.default_float
        elif isinstance(d, (complex, np.complexfloating)):
            raise TypeError("complex tensors are not supported")
        else:
            raise TypeError(f"Could not infer dtype of {type(d).__name__}")
        result = leaf if result is None else dt.promote_types(result, leaf)
    return dt.default_float if result is None else result   # tensor([]) is float, as in PyTorch


def _to_array(data, dtype):
    if isinstance(data, Tensor):
        return data.detach().cpu().numpy()
    if isinstance(data, (list, tuple)) and any(isinstance(e, Tensor) for e in data):
        return np.array([_to_array(e, dtype) for e in data], dtype=dtype.np)
    try:
        with np.errstate(over="ignore"):   # 1e10 -> float16 is inf, silently (as PyTorch)
            return np.array(data, dtype=dtype.np)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"could not convert data to a tensor of {dtype.name}: {e}") from None


def tensor(data, dtype=None, device=None, requires_grad=False, pin_memory=False):
    if isinstance(data, np.ndarray):
        d = _dtype(dtype) if dtype is not None else dt.from_numpy(data.dtype)
        arr = np.array(data, dtype=d.np)
    elif isinstance(data, Tensor):
        d = _dtype(dtype) if dtype is not None else data.dtype
        arr = data.detach().cpu().numpy().astype(d.np, copy=True)
    elif isinstance(data, np.generic):   # a numpy scalar keeps its dtype (torch.tensor(np.float64(1)))
        d = _dtype(dtype) if dtype is not None else dt.from_numpy(data.dtype)
        arr = np.array(data, dtype=d.np)
    else:
        if isinstance(data, (collections.abc.Sequence, collections.abc.Set)) and \
                not isinstance(data, (list, tuple, str, bytes)):
            data = list(data)          # deque, range, ... (PyTorch reads any sequence)
        d = _dtype(dtype) if dtype is not None else _infer_dtype(data)
        arr = _to_array(data, d)
    dev = canonical(device)
    t = _wrap(arr if dev.type == "cpu" else dev.xp.asarray(arr), dev)
    return _finish(t, requires_grad)


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (dtype or device) else data
    if isinstance(data, np.ndarray) and (dtype is None or _dtype(dtype).np == data.dtype) and \
            (device is None or canonical(device).type == "cpu") and data.dtype in dt._BY_NP:
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


asarray = as_tensor


def from_numpy(a):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(a).__name__})")
    dt.from_numpy(a.dtype)
    return _wrap(a, CPU)


def to_device(t, dev):
    """Copy t's data to another device (autograd: the gradient copies back)."""
    from .dispatch import attach_node
    from . import autograd as ag
    if dev.type == "cpu":
        data = t._data.get()
    else:
        with dev.xp.cuda.Device(dev.index or 0):
            try:
                data = dev.xp.asarray(t._data)
            except (TypeError, ValueError, NotImplementedError) as e:
                if t.dtype is dt.bfloat16:   # CuPy before 14 has no bfloat16 arrays
                    raise RuntimeError("bfloat16 tensors on cuda need a CuPy with bfloat16 arrays (CuPy 14+ with "
                                       "ml_dtypes; ember.cuda.is_bf16_supported() is False here): use "
                                       "float16 on the GPU") from e
                raise
    out = _wrap(data, dev)
    if ag.is_grad_enabled() and t.requires_grad:
        src_dev = t.device
        attach_node(out, "to_copy", lambda g, o, x: (to_device(g, src_dev),), {}, (t,), "")
    return out


def _size_kw(sizes: tuple, size, name: str) -> tuple:
    """The shape given positionally (zeros(2, 3), zeros((2, 3))) or as size= (zeros(size=(2, 3)))."""
    if size is None:
        return sizes
    if sizes:
        raise TypeError(f"{name}() got multiple values for argument 'size'")
    return (size,)


def _factory(fill, name):
    def f(*sizes, size=None, dtype=None, device=None, requires_grad=False, out=None, layout=None, pin_memory=False,
          memory_format=None):
        d = _dtype(dtype)
        dev = canonical(device)
        shape = _sizes(_size_kw(sizes, size, name))
        if any(isinstance(n, SymInt) for n in shape):   # a size that varies between calls: a graph value
            return _finish(P("full", shape=shape, value=d.np.type(fill or 0).item(), dtype=d, device=dev),
                           requires_grad)
        t = _wrap(dev.xp.full(shape, fill, dtype=d.np) if fill is not None else dev.xp.empty(shape, dtype=d.np), dev)
        return _finish(t, requires_grad)
    return f


zeros = _factory(0, "zeros")
ones = _factory(1, "ones")
empty = _factory(None, "empty")


def full(size, fill_value, dtype=None, device=None, requires_grad=False, **kw):
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dtype = dt.bool_ if isinstance(fill_value, bool) else dt.int64 if isinstance(fill_value, int) else dt.default_float
    d = _dtype(dtype)
    dev = canonical(device)
    shape = _sizes((size,) if isinstance(size, int) else (tuple(size),))
    return _finish(_wrap(dev.xp.full(shape, fill_value, dtype=d.np), dev), requires_grad)


def _like(fn):
    def f(x, dtype=None, device=None, requires_grad=False, memory_format=None, **kw):
        return _relayout(fn(*x.shape, dtype=dtype or x.dtype, device=device or x.device,
                            requires_grad=requires_grad), x, memory_format)
    return f


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)


def full_like(x, fill_value, dtype=None, device=None, requires_grad=False, memory_format=None, **kw):
    return _relayout(full(tuple(x.shape), fill_value, dtype=dtype or x.dtype, device=device or x.device,
                          requires_grad=requires_grad), x, memory_format)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False, **kw):
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    start, end, step = vals
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("arange: upper bound and larger bound inconsistent with step sign")
    if dtype is None:
        dtype = dt.int64 if all(isinstance(v, (int, np.integer, SymInt)) for v in vals) else dt.default_float
    if any(isinstance(v, SymInt) for v in vals) and step == 1:
        n = end - start                 # a traced size that varies between calls stays symbolic
    else:
        n = max(0, math.ceil((end - start) / step))
    dev = canonical(device)
    d = _dtype(dtype)
    return _finish(P("arange", n=n, start=start, step=step, dtype=d, device=dev), requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False, **kw):
    d = _dtype(dtype)
    dev = canonical(device)
    a = np.linspace(float(start), float(end), int(steps), dtype=np.float64).astype(d.np)
    return _finish(_wrap(a if dev.type == "cpu" else dev.xp.asarray(a), dev), requires_grad)


def logspace(start, end, steps, base=10.0, dtype=None, device=None, requires_grad=False):
    d = _dtype(dtype)
    a = np.logspace(float(start), float(end), int(steps), base=base).astype(d.np)
    return _finish(tensor(a, device=device), requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False, **kw):
    d = _dtype(dtype)
    dev = canonical(device)
    return _finish(_wrap(dev.xp.eye(n, n if m is None else m, dtype=d.np), dev), requires_grad)


# ------------------------------------------------------------------------------------- random
def manual_seed(seed):
    g = rng.current_generator()
    g.manual_seed(seed)
    return g


def seed():
    return rng.current_generator().seed()


def initial_seed():
    return rng.current_generator().initial_seed()


def get_rng_state():
    return rng.current_generator().get_state()


def set_rng_state(state):
    rng.current_generator().set_state(state)


def _gen(generator):
    return generator if generator is not None else rng.current_generator()


def _random(dist, size, dtype, device, requires_grad, generator):
    d = _dtype(dtype)
    if not d.is_floating_point:
        raise RuntimeError(f'"{dist}" not implemented for \'{d.name}\'')
    dev = canonical(device)
    shape = _sizes(size)
    n = math.prod(shape)
    # a symbolic count only happens while tracing, which rewinds the generator afterwards
    seed, off = _gen(generator).take(hint(n))
    key = _wrap(np.array([seed & 0x7FFFFFFFFFFFFFFF, off], dtype=np.int64), CPU)
    if dev.type != "cpu":
        key = to_device(key, dev)
    return _finish(P("random", key, shape=shape, dtype=d, dist=dist), requires_grad)


def rand(*sizes, size=None, dtype=None, device=None, requires_grad=False, generator=None, **kw):
    return _random("uniform", _size_kw(sizes, size, "rand"), dtype, device, requires_grad, generator)


def randn(*sizes, size=None, dtype=None, device=None, requires_grad=False, generator=None, **kw):
    return _random("normal", _size_kw(sizes, size, "randn"), dtype, device, requires_grad, generator)


def rand_like(x, dtype=None, device=None, requires_grad=False, memory_format=None):
    return _relayout(rand(*x.shape, dtype=dtype or x.dtype, device=device or x.device, requires_grad=requires_grad),
                     x, memory_format)


def randn_like(x, dtype=None, device=None, requires_grad=False, memory_format=None):
    return _relayout(randn(*x.shape, dtype=dtype or x.dtype, device=device or x.device, requires_grad=requires_grad),
                     x, memory_format)


def randint(low=None, high=None, size=None, dtype=None, device=None, generator=None, requires_grad=False):
    if size is None and isinstance(high, (tuple, list)):   # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    elif low is None:                                       # randint(high=5, size=...)
        low = 0
    if high is None:
        raise TypeError("randint() missing required argument 'high'")
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    shape = _sizes((size,) if isinstance(size, int) else (tuple(size),))
    g = _gen(generator).numpy_rng(math.prod(shape))
    a = g.integers(low, high, size=shape, dtype=np.int64)
    return tensor(a, dtype=_dtype(dtype, dt.int64), device=device)


def randint_like(x, low, high=None, dtype=None, device=None, memory_format=None):
    return _relayout(randint(low, high, tuple(x.shape), dtype=dtype or x.dtype, device=device or x.device),
                     x, memory_format)


def randperm(n, dtype=None, device=None, generator=None, requires_grad=False):
    g = _gen(generator).numpy_rng(n)
    return tensor(g.permutation(n).astype(np.int64), dtype=_dtype(dtype, dt.int64), device=device)


def bernoulli(p, generator=None):
    from . import math_ops as M
    return M.cast(M.lt(rand(*p.shape, dtype=p.dtype, device=p.device, generator=generator), p), p.dtype)


def normal(mean=0.0, std=1.0, size=None, generator=None, dtype=None, device=None):
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        ref = mean if isinstance(mean, Tensor) else std
        return randn(*ref.shape, dtype=ref.dtype, device=ref.device, generator=generator) * std + mean
    return randn(*_sizes((tuple(size),)), generator=generator, dtype=dtype, device=device) * std + mean


def multinomial(probs, num_samples, replacement=False, generator=None):
    from . import tracing_hooks
    tracing_hooks.value_needed(probs, "multinomial")
    p = probs.detach().cpu().numpy().astype(np.float64)
    if p.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if (p < 0).any() or not np.isfinite(p).all():
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    rows = p.reshape(-1, p.shape[-1])
    if not replacement and num_samples > rows.shape[1]:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    g = _gen(generator).numpy_rng(rows.size)
    out = np.empty((rows.shape[0], num_samples), dtype=np.int64)
    for i, r in enumerate(rows):
        s = r.sum()
        if s <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if replacement:
            out[i] = g.choice(len(r), size=num_samples, replace=True, p=r / s)
        else:
            # Gumbel top-k: sampling without replacement in proportion to the weights
            keys = np.log(g.random(len(r))) / np.where(r > 0, r, 1e-300)
            keys[r == 0] = -np.inf
            out[i] = np.argsort(-keys, kind="stable")[:num_samples]
    return tensor(out.reshape(p.shape[:-1] + (num_samples,)), device=probs.device)
