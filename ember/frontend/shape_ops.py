"""Shape, movement and indexing ops as PyTorch spells them, built on the movement/index primitives.

Ops that are views in PyTorch (view, reshape when possible, permute, transpose, squeeze, unsqueeze,
expand, slicing, select, narrow, split, chunk, unbind, flatten, unflatten, diagonal, movedim)
share their input's storage and version counter in eager mode; everything else returns new storage.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from ..ir import dtypes as dt
from ..ir.symbolic import SymInt
from ..ir.sizes import as_size, same
from ..ir.ops import norm_dim, broadcast_shapes
from . import autograd as ag
from .autocast import autocast_op
from .dispatch import apply as P
from . import dispatch
from .tensor import Tensor, _wrap


def _as_view(x, out):
    """Mark `out` as a view of `x` when their arrays share memory (eager mode)."""
    if dispatch.tracer is None and out._data is not x._data and np.may_share_memory(out._data, x._data) \
            if x.device.type == "cpu" else False:
        out._base = x._base if x._base is not None else x
        out._vc = x._vc
    elif x.device.type != "cpu" and dispatch.tracer is None:
        # cupy: a view shares its base's allocation (as_strided views have no .base)
        try:
            if out._data is not x._data and out._data.data.mem is x._data.data.mem:
                out._base = x._base if x._base is not None else x
                out._vc = x._vc
        except AttributeError:
            pass
    if out._base is not None and out.requires_grad:
        out.__dict__["_vseen"] = out._vc[0]   # the storage version this view's history describes
    if out._base is not None and x.__dict__.get("_detached"):
        out.__dict__["_detached"] = True      # a view of a detached tensor is detached from the base's graph too
    return out


def refresh_view(v):
    """v's storage was written through its base or another view after v's history was recorded:
    rebuild the history as a gather from the base's current one (PyTorch regenerates views too)."""
    base = v._base
    v.__dict__["_vseen"] = v._vc[0]
    if not base.requires_grad or dispatch.tracer is not None:
        return
    try:
        pos = _view_positions(base, v)
    except RuntimeError:
        return
    from .creation import tensor
    with ag.enable_grad():
        flat = P("reshape", base, shape=(base.numel(),))
        r = P("take", flat, tensor(pos.reshape(-1), device=base.device), dim=0)
        r = P("reshape", r, shape=tuple(v.shape))
    v.grad_fn = r.grad_fn


def _sizes(args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    if len(args) == 1 and isinstance(args[0], Tensor):
        return tuple(args[0].tolist())
    return tuple(args)


def _slice_bounds(start, stop, step: int, size):
    """slice(start, stop, step).indices(size)[:2] for step > 0, also for symbolic sizes and bounds
    (the clamps then compare sizes: guards of a dynamic trace)."""
    if not any(isinstance(v, SymInt) for v in (start, stop, size)):
        return slice(start, stop, step).indices(size)[:2]

    def norm(v, default):
        if v is None:
            return default
        v = as_size(v.__index__() if not isinstance(v, (int, SymInt)) else v)
        if v < 0:
            v = v + size
            return 0 if v < 0 else v
        return size if v > size else v
    return norm(start, 0), norm(stop, size)


def _infer_shape(shape, numel, op="view"):
    shape = [as_size(s) for s in shape]     # traced sizes that vary between calls stay symbolic
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        i = shape.index(-1)
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape[i] = numel // known
    n = 1
    for s in shape:
        if s < 0:
            raise RuntimeError(f"invalid shape dimension {s}")
        n *= s
    if n != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return tuple(shape)


def reshape(x, *shape):
    shape = _infer_shape(_sizes(shape), x.numel(), "reshape")
    if shape == tuple(x.shape):
        return _as_view(x, P("reshape", x, shape=shape))
    return _as_view(x, P("reshape", x, shape=shape))


def view(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], dt.DType):
        return view_dtype(x, shape[0])
    shape = _infer_shape(_sizes(shape), x.numel(), "view")
    if dispatch.tracer is None and not _viewable(x._data, shape):
        if x._base is None:
            # x is a fresh op result whose array ember laid out its own way (conv returns a
            # channels-last view of its GEMM output): PyTorch would hand back a contiguous tensor
            # here, so `conv(x).view(n, -1)` must work; only views the user made keep the error
            return reshape(x, shape)
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                           "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    return _as_view(x, P("reshape", x, shape=shape))


def _viewable(a, shape):
    if a.flags.c_contiguous or a.size <= 1:
        return True
    try:
        v = a.view()
        v.shape = shape
        return True
    except (AttributeError, ValueError):
        return False


def view_dtype(x, dtype):
    if dtype.itemsize != x.dtype.itemsize:
        raise RuntimeError("view(dtype): only same-size dtypes are supported")
    t = _wrap(x._data.view(dtype.np), x.device)
    return _as_view(x, t)


def view_as(x, other):
    return view(x, tuple(other.shape))


def reshape_as(x, other):
    return reshape(x, tuple(other.shape))


def permute(x, *dims):
    dims = tuple(norm_dim(d, x.ndim, "permute") for d in _sizes(dims))
    if len(dims) != x.ndim or len(set(dims)) != len(dims):
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                           f"length of the desired ordering of dimensions i.e. input.dim() = {x.ndim} is not equal "
                           f"to len(dims) = {len(dims)}" if len(dims) != x.ndim else "permute(): duplicate dims are not allowed.")
    if dims == tuple(range(x.ndim)):
        return _as_view(x, P("reshape", x, shape=tuple(x.shape)))
    return _as_view(x, P("permute", x, dims=dims))


def transpose(x, dim0, dim1):
    n = x.ndim
    if n == 0:
        return _as_view(x, P("reshape", x, shape=()))
    d0, d1 = norm_dim(dim0, n, "transpose"), norm_dim(dim1, n, "transpose")
    dims = list(range(n))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, tuple(dims))


swapaxes = swapdims = transpose


def t(x):
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return transpose(x, 0, 1) if x.ndim == 2 else _as_view(x, P("reshape", x, shape=tuple(x.shape)))


def adjoint(x):
    return transpose(x, -2, -1)


def movedim(x, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src = [norm_dim(s, x.ndim, "movedim") for s in src]
    dst = [norm_dim(d, x.ndim, "movedim") for d in dst]
    order = [i for i in range(x.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(x, tuple(order))


moveaxis = movedim


def squeeze(x, dim=None):
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        dims = {norm_dim(d, x.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)} if x.ndim else set()
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return _as_view(x, P("reshape", x, shape=shape))


def unsqueeze(x, dim):
    d = norm_dim(dim, x.ndim + 1, "unsqueeze")
    shape = tuple(x.shape)
    return _as_view(x, P("reshape", x, shape=shape[:d] + (1,) + shape[d:]))


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, (1,))
    s = norm_dim(start_dim, x.ndim, "flatten")
    e = norm_dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = tuple(x.shape)
    return reshape(x, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def ravel(x):
    return reshape(x, (-1,))


def unflatten(x, dim, sizes):
    d = norm_dim(dim, x.ndim, "unflatten")
    shape = tuple(x.shape)
    sizes = _infer_shape(sizes, shape[d], "unflatten")
    return reshape(x, shape[:d] + sizes + shape[d + 1:])


def expand(x, *sizes):
    sizes = _sizes(sizes)
    off = len(sizes) - x.ndim
    if off < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to the "
                           f"number of dimensions in the tensor ({x.ndim})")
    shape = tuple(x.shape[i - off] if (s == -1 and i >= off) else s for i, s in enumerate(sizes))
    if shape == tuple(x.shape):
        return _as_view(x, P("reshape", x, shape=shape))
    return _as_view(x, P("expand", x, shape=shape))


def expand_as(x, other):
    return expand(x, tuple(other.shape))


def broadcast_to(x, shape):
    return expand(x, tuple(shape))


def broadcast_tensors(*ts):
    shape = broadcast_shapes(*(tuple(t.shape) for t in ts))
    return tuple(expand(t, shape) for t in ts)


def meshgrid(*tensors, indexing: str | None = None):
    """Coordinate grids from 1-D tensors (or 0-d): 'ij' (matrix, the default) or 'xy' (Cartesian: the
    grid of the first two inputs swapped). Each output is an expanded view of its input."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if not tensors:
        raise RuntimeError("meshgrid expects a non-empty TensorList")
    if indexing is None:
        import warnings
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.",
                      UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f"torch.meshgrid: indexing must be one of \"xy\" or \"ij\", but received: {indexing}")
    for t_ in tensors:
        if t_.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t_.ndim}D")
    ts = [reshape(t_, (-1,)) for t_ in tensors]
    swap = indexing == "xy" and len(ts) >= 2
    if swap:
        ts[0], ts[1] = ts[1], ts[0]
    shape = tuple(t_.shape[0] for t_ in ts)
    outs = []
    for i, t_ in enumerate(ts):
        view = [1] * len(ts)
        view[i] = -1
        outs.append(expand(reshape(t_, tuple(view)), shape))
    if swap:
        outs[0], outs[1] = outs[1], outs[0]
    return tuple(outs)


def broadcast_shapes_(*shapes):
    from .tensor import Size
    return Size(broadcast_shapes(*(tuple(s) if not isinstance(s, int) else (s,) for s in shapes)))


def repeat(x, *sizes):
    sizes = _sizes(sizes)
    if len(sizes) < x.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    shape = (1,) * (len(sizes) - x.ndim) + tuple(x.shape)
    y = reshape(x, shape)
    # [a, b] repeated [r, s]: expand to [r, a, s, b] and merge
    inter = []
    for r, n in zip(sizes, shape):
        inter += [1, n]
    y = reshape(y, tuple(inter))
    tgt = []
    for r, n in zip(sizes, shape):
        tgt += [r, n]
    y = P("expand", y, shape=tuple(tgt))
    return P("reshape", y, shape=tuple(r * n for r, n in zip(sizes, shape)))


def tile(x, dims):
    dims = tuple(dims)
    if len(dims) < x.ndim:
        dims = (1,) * (x.ndim - len(dims)) + dims
    return repeat(x, dims)


def repeat_interleave(x, repeats=None, dim=None, *, output_size=None):
    if repeats is None:     # torch.repeat_interleave(repeats): index i repeated repeats[i] times
        if x.ndim != 1:
            raise RuntimeError("repeat_interleave only accept 1D vector as repeat")
        from .creation import arange
        return repeat_interleave(arange(x.shape[0], device=x.device), x, 0, output_size=output_size)
    out = _repeat_interleave(x, repeats, dim)
    n = out.shape[0 if dim is None else dim]
    if output_size is not None and n != output_size:
        raise RuntimeError(f"repeat_interleave: Invalid output_size, expected {n} but got {output_size}")
    return out


def _repeat_interleave(x, repeats, dim):
    if dim is None:
        x = flatten(x)
        dim = 0
    d = norm_dim(dim, x.ndim, "repeat_interleave")
    if isinstance(repeats, Tensor):
        if repeats.numel() == 1:
            repeats = int(repeats.item())
        else:
            idx = np.repeat(np.arange(x.shape[d]), repeats.numpy())
            from .creation import tensor
            return index_select(x, d, tensor(idx, device=x.device))
    shape = tuple(x.shape)
    y = unsqueeze(x, d + 1)
    y = expand(y, shape[:d + 1] + (repeats,) + shape[d + 1:])
    return reshape(y, shape[:d] + (shape[d] * repeats,) + shape[d + 1:])


@autocast_op("cat")
def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    # PyTorch skips legacy empty 1-D tensors
    nonempty = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]
    if not nonempty:
        return tensors[0].clone()
    tensors = nonempty
    from .math_ops import cast
    d = tensors[0].dtype
    for t_ in tensors[1:]:
        d = dt.promote_types(d, t_.dtype)
    tensors = [cast(t_, d) for t_ in tensors]
    dim = norm_dim(dim, tensors[0].ndim, "cat")
    if len(tensors) == 1:
        return tensors[0].clone()
    return P("cat", *tensors, dim=dim)


concat = concatenate = cat


@autocast_op("stack")
def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    s0 = tuple(tensors[0].shape)
    for i, t_ in enumerate(tensors):
        if tuple(t_.shape) != s0:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(s0)} at entry 0 and "
                               f"{list(t_.shape)} at entry {i}")
    d = norm_dim(dim, len(s0) + 1, "stack")
    return cat([unsqueeze(t_, d) for t_ in tensors], d)


def hstack(ts):
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(ts):
    return cat([atleast_2d(t_) for t_ in ts], 0)


def atleast_2d(x):
    return reshape(x, (1, -1)) if x.ndim < 2 else x


def _slice_dim(x, d, start, stop, step=1):
    n = x.ndim
    starts, stops, steps = [0] * n, list(x.shape), [1] * n
    starts[d], stops[d], steps[d] = start, stop, step
    return _as_view(x, P("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps)))


def narrow(x, dim, start, length):
    d = norm_dim(dim, x.ndim, "narrow")
    if isinstance(start, Tensor):
        start = int(start.item())
    n = x.shape[d]
    if start < 0:
        start += n
    if not (0 <= start <= n) or length < 0 or start + length > n:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return _slice_dim(x, d, start, start + length)


def select(x, dim, index):
    d = norm_dim(dim, x.ndim, "select")
    n = x.shape[d]
    if not -n <= index < n:
        raise IndexError(f"index {index} is out of bounds for dimension {d} with size {n}")
    index %= n
    y = _slice_dim(x, d, index, index + 1)
    shape = tuple(x.shape)
    return _as_view(x, P("reshape", y, shape=shape[:d] + shape[d + 1:]))


def split(x, split_size_or_sections, dim=0):
    d = norm_dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, SymInt)):     # (a traced size: x.shape[-1] under dynamic=True)
        s = split_size_or_sections
        if s <= 0 and n > 0:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {n}")
        sizes = [s] * (n // s) + ([n % s] if n % s else []) if s > 0 else [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at "
                               f"dimension {d}), but got split_sizes={sizes}")
    out, off = [], 0
    for s in sizes:
        out.append(_slice_dim(x, d, off, off + s))
        off += s
    return tuple(out)


def tensor_split(x, indices_or_sections, dim=0):
    d = norm_dim(dim, x.ndim, "tensor_split")
    n = x.shape[d]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        q, r = divmod(n, k)
        sizes = [q + 1] * r + [q] * (k - r)
    else:
        b = [0] + list(indices_or_sections) + [n]
        sizes = [builtins.max(0, builtins.min(n, b[i + 1]) - builtins.min(n, b[i])) for i in range(len(b) - 1)]
    return split(x, sizes, d)


def chunk(x, chunks, dim=0):
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0")
    d = norm_dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    s = -(-n // chunks) if n else 1
    return split(x, builtins.max(s, 1), d)


def unbind(x, dim=0):
    d = norm_dim(dim, x.ndim, "unbind")
    return tuple(select(x, d, i) for i in range(x.shape[d]))


def flip(x, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    dims = tuple(sorted({norm_dim(d, x.ndim, "flip") for d in dims}))
    out = P("flip", x, dims=dims if x.ndim else ())     # a 0-d x: dim 0 / -1 name x itself
    if dispatch.tracer is None and (out._data is x._data or out._data.base is not None):
        out._data = out._data.copy()   # PyTorch's flip copies; numpy's and cupy's are views
    return out


def fliplr(x):
    return flip(x, 1)


def flipud(x):
    return flip(x, 0)


def roll(x, shifts, dims=None):
    if dims is None:
        return reshape(roll(flatten(x), shifts, 0), tuple(x.shape))
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    for s, d in zip(shifts, dims):
        d = norm_dim(d, x.ndim, "roll")
        n = x.shape[d]
        if n == 0:
            continue
        s %= n
        if s:
            x = cat([_slice_dim(x, d, n - s, n), _slice_dim(x, d, 0, n - s)], d)
    return x


def _tri_mask(x, diagonal, upper):
    from .creation import arange
    n, m = x.shape[-2], x.shape[-1]
    r = reshape(arange(n, device=x.device), (n, 1))
    c = reshape(arange(m, device=x.device), (1, m))
    diff = c - r
    return diff >= diagonal if upper else diff <= diagonal


def _zero_of(x):
    """The number 0 that keeps x's dtype in where(): False for bool (0 would promote it to int64)."""
    return False if x.dtype is dt.bool_ else 0


def tril(x, diagonal=0):
    if x.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    from .math_ops import where
    return where(_tri_mask(x, diagonal, False), x, _zero_of(x))


def triu(x, diagonal=0):
    if x.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    from .math_ops import where
    return where(_tri_mask(x, diagonal, True), x, _zero_of(x))


def diagonal(x, offset=0, dim1=0, dim2=1):
    d1, d2 = norm_dim(dim1, x.ndim, "diagonal"), norm_dim(dim2, x.ndim, "diagonal")
    y = movedim(x, (d1, d2), (-2, -1))
    n, m = y.shape[-2], y.shape[-1]
    k = builtins.max(0, builtins.min(n, m - offset) if offset >= 0 else builtins.min(n + offset, m))
    from .creation import arange
    rows = arange(k, device=x.device) + builtins.max(0, -offset)
    cols = arange(k, device=x.device) + builtins.max(0, offset)
    flat = reshape(y, tuple(y.shape[:-2]) + (n * m,))
    out = P("take", flat, rows * m + cols, dim=flat.ndim - 1)   # the history: a gather
    if dispatch.tracer is None:
        # the data: a strided view of x, as in PyTorch (x.diagonal().fill_(0) writes into x)
        xp = x._xp
        sl = [slice(None)] * x.ndim
        sl[d1], sl[d2] = slice(builtins.max(0, -offset), None), slice(builtins.max(0, offset), None)
        st = xp.moveaxis(x._data[tuple(sl)], (d1, d2), (-2, -1))
        out._data = xp.lib.stride_tricks.as_strided(st, st.shape[:-2] + (k,),
                                                     st.strides[:-2] + (st.strides[-2] + st.strides[-1],))
        _as_view(x, out)
    return out


def diag(x, diagonal_=0):
    if x.ndim == 1:
        n = x.shape[0] + builtins.abs(diagonal_)
        from .creation import zeros
        out = zeros(n, n, dtype=x.dtype, device=x.device)
        r = np.arange(x.shape[0]) + builtins.max(0, -diagonal_)
        c = np.arange(x.shape[0]) + builtins.max(0, diagonal_)
        from .creation import tensor
        idx = tensor(r * n + c, device=x.device)
        flat = P("scatter", reshape(out, (n * n,)), idx, x, dim=0)
        return reshape(flat, (n, n))
    return diagonal(x, diagonal_).clone()      # torch.diag copies (Tensor.diagonal is the view)


def diag_embed(x, offset=0, dim1=-2, dim2=-1):
    d1, d2 = norm_dim(dim1, x.ndim + 1, "diag_embed"), norm_dim(dim2, x.ndim + 1, "diag_embed")
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    from .creation import arange, zeros
    from .math_ops import where
    k = builtins.abs(offset)
    if k:   # pad so that row r of the (n+k)-square holds x[r] (offset > 0) or x[r-k] (offset < 0)
        z = zeros(tuple(x.shape[:-1]) + (k,), dtype=x.dtype, device=x.device)
        x = cat([x, z] if offset > 0 else [z, x], -1)
    i = arange(x.shape[-1], device=x.device)
    on_diag = (unsqueeze(i, 0) - unsqueeze(i, 1)) == offset
    out = where(on_diag, unsqueeze(x, -1), _zero_of(x))      # where, not a product: inf/nan stay on the diagonal
    return movedim(out, (-2, -1), (d1, d2))


# ------------------------------------------------------------------------------ indexing
def _index_tensor(idx, device):
    from .creation import tensor
    if isinstance(idx, Tensor):
        return idx
    return tensor(idx, dtype=dt.int64 if isinstance(idx, list) and not idx else None, device=device)   # x[[]]


def _normalize_neg(idx, n):
    """Negative indices count from the end (x[-1]); done with ops so it traces."""
    if dispatch.tracer is None and idx.device.type == "cpu":
        if idx.numel() and int(idx._data.min()) < 0:
            from .math_ops import where, add
            return where(idx < 0, add(idx, n), idx)
        return idx
    from .math_ops import where, add
    return where(idx < 0, add(idx, n), idx)


def index_select(x, dim, index):
    d = norm_dim(dim, x.ndim, "index_select")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    if index.dtype not in (dt.int64, dt.int32):
        raise RuntimeError(f"index_select(): Expected dtype int32/int64 for index but got {index.dtype.name}")
    if index.ndim == 0:             # a scalar index selects one entry, the dim kept (PyTorch's)
        index = reshape(index, (1,))
    if x.ndim == 0:
        return reshape(P("take", reshape(x, (1,)), index, dim=0), ())
    return P("take", x, index, dim=d)


def take(x, index):
    return P("take", reshape(x, (-1,)), _normalize_neg(index, x.numel()), dim=0)


def take_along_dim(x, indices, dim=None):
    if dim is None:
        return take(x, reshape(indices, (-1,)))
    d = norm_dim(dim, x.ndim, "take_along_dim")
    shape = list(broadcast_shapes(tuple(x.shape[:d]) + (1,) + tuple(x.shape[d + 1:]),
                                  tuple(indices.shape[:d]) + (1,) + tuple(indices.shape[d + 1:])))
    xs = list(shape)
    xs[d] = x.shape[d]
    ish = list(shape)
    ish[d] = indices.shape[d]
    return gather(expand(x, tuple(xs)), d, expand(indices, tuple(ish)))


def gather(x, dim, index, sparse_grad=False):
    d = norm_dim(dim, x.ndim, "gather")
    if index.dtype is not dt.int64:
        raise RuntimeError(f"gather(): Expected dtype int64 for index, got {index.dtype.name}")
    return P("gather", x, index, dim=d)


def scatter(x, dim, index, src=None, value=None, reduce=None):
    if src is None:
        src = value
    d = norm_dim(dim, x.ndim, "scatter")
    if not isinstance(src, Tensor):
        src = P("full", shape=tuple(index.shape), value=src, dtype=x.dtype, device=x.device)
    from .math_ops import cast
    src = cast(src, x.dtype)
    if reduce in ("add", "sum"):
        return P("scatter_add", x, index, src, dim=d)
    if reduce == "multiply":
        return P("scatter_reduce", x, index, src, dim=d, reduce="prod", include_self=True)
    if reduce is not None:
        raise RuntimeError(f"reduce argument must be either add or multiply, got {reduce}")
    return P("scatter", x, index, src, dim=d)


@autocast_op("scatter_add")
def scatter_add(x, dim, index, src):
    from .math_ops import cast
    return P("scatter_add", x, index, cast(src, x.dtype), dim=norm_dim(dim, x.ndim, "scatter_add"))


def index_add(x, dim, index, source, alpha=1):
    from .math_ops import cast, mul
    d = norm_dim(dim, x.ndim, "index_add")
    src = cast(source, x.dtype) if alpha == 1 else cast(mul(source, alpha), x.dtype)
    return P("index_add", x, index, src, dim=d)


def index_fill(x, dim, index, value):
    d = norm_dim(dim, x.ndim, "index_fill")
    from .creation import zeros
    mask = P("index_add", zeros(x.shape[d], dtype=dt.float32, device=x.device), index,
             P("full", shape=tuple(index.shape), value=1.0, dtype=dt.float32, device=x.device), dim=0) > 0
    shape = [1] * x.ndim
    shape[d] = x.shape[d]
    from .math_ops import where
    return where(reshape(mask, tuple(shape)), value, x)


def masked_fill(x, mask, value):
    from .math_ops import where, cast
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        value = cast(value, x.dtype)
    elif not x.dtype.is_floating_point and not x.dtype.is_complex:    # the value takes x's type (2.5 -> 2)
        try:
            value = bool(value) if x.dtype is dt.bool_ else int(value)
        except (OverflowError, ValueError):
            raise RuntimeError(f"value cannot be converted to type {x.dtype.name} without overflow") from None
    if mask.dtype is not dt.bool_:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype.name}")
    broadcast_shapes(tuple(mask.shape), tuple(x.shape), op="masked_fill")
    out = where(mask, value, x)
    if tuple(out.shape) != tuple(x.shape):
        raise RuntimeError(f"masked_fill: mask of shape {list(mask.shape)} does not broadcast to the input's "
                           f"shape {list(x.shape)}")
    return out


def nonzero(x, as_tuple=False):
    from . import tracing_hooks
    tracing_hooks.value_needed(x, "nonzero")
    from .creation import tensor
    d = x._data if x.device.type == "cpu" else x._data.get()
    idx = np.nonzero(np.atleast_1d(d))     # numpy refuses 0-d; PyTorch reads a 0-d x as one element
    if as_tuple:
        return tuple(tensor(i.astype(np.int64), device=x.device) for i in idx)
    return tensor(np.stack(idx, axis=1).astype(np.int64) if d.ndim else np.zeros((int(bool(d)), 0), np.int64),
                  device=x.device)


def argwhere(x):
    return nonzero(x)


def masked_select(x, mask):
    x, mask = broadcast_tensors(x, mask)
    return getitem(x, mask)


def _is_index_tensor(k):
    return isinstance(k, (Tensor, list, tuple, np.ndarray))    # a tuple inside the key is a sequence index


def _sequence_as_tuple(key):
    """PyTorch's (and old numpy's) reading of a list key: one holding a tensor, a sequence, a slice,
    Ellipsis or None is a tuple of indices (x[[[0, 1]]] is x[[0, 1]], x[[t0, t1]] is x[t0, t1])."""
    if isinstance(key, list) and len(key) < 32 and any(
            isinstance(k, (Tensor, list, tuple, range, np.ndarray, slice)) or k is None or k is Ellipsis
            for k in key):
        return tuple(key)
    return key


def _expand_key(x, key):
    """Normalise an index key into a list, expanding Ellipsis; bool tensors count their dims."""
    if not isinstance(key, tuple):
        key = (key,)
    key = list(key)
    consumed = 0
    for k in key:
        if k is None or k is Ellipsis:
            continue
        if isinstance(k, Tensor) and k.dtype is dt.bool_:
            consumed += builtins.max(k.ndim, 1) if k.ndim else 0
        elif isinstance(k, bool):
            continue
        else:
            consumed += 1
    ells = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(ells) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ells:
        i = ells[0]
        key[i:i + 1] = [slice(None)] * (x.ndim - consumed)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    return key


def getitem(x, key):
    key = _expand_key(x, _sequence_as_tuple(key))
    # pass 1: basic indexing (ints, slices, None); advanced indices are kept and applied after
    shape = tuple(x.shape)
    n = x.ndim
    starts, stops, steps = [0] * n, list(shape), [1] * n
    new_shape = []          # result shape after basic indexing, with None dims inserted
    adv = []                # (position in new_shape, index tensor or bool mask)
    d = 0
    for k in key:
        if k is None:
            new_shape.append(1)
            continue
        if isinstance(k, bool) or (isinstance(k, Tensor) and k.dtype is dt.bool_ and k.ndim == 0):
            # x[True] adds a dim of 1; x[False] a dim of 0
            kv = bool(k) if isinstance(k, bool) else bool(k.item())
            new_shape.append(1)
            if not kv:
                adv.append((len(new_shape) - 1, "empty"))
            continue
        if isinstance(k, Tensor) and k.dtype is dt.bool_:
            for j in range(k.ndim):
                if k.shape[j] != shape[d + j]:
                    raise IndexError(f"The shape of the mask {list(k.shape)} at index {j} does not match the shape "
                                     f"of the indexed tensor {list(shape)} at index {d + j}")
            adv.append((len(new_shape), k))
            new_shape.extend(shape[d:d + k.ndim])
            d += k.ndim
            continue
        if d >= n:
            raise IndexError(f"too many indices for tensor of dimension {n}")
        if isinstance(k, Tensor) and k.ndim == 0 and k.dtype.is_integer and dispatch.tracer is None:
            k = int(k.item())
        if isinstance(k, (int, np.integer)):
            k = int(k)
            size = shape[d]
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dimension {d} with size {size}")
            k %= size
            starts[d], stops[d] = k, k + 1
            d += 1
            continue
        if isinstance(k, slice):
            st = 1 if k.step is None else int(k.step)
            if st <= 0:
                raise ValueError("step must be greater than zero")
            a, b = _slice_bounds(k.start, k.stop, st, shape[d])
            b = builtins.max(a, b)
            starts[d], stops[d], steps[d] = a, b, st
            new_shape.append(len(range(a, b, st)) if st != 1 or not isinstance(b - a, SymInt) else b - a)
            d += 1
            continue
        if _is_index_tensor(k) or isinstance(k, range):
            if isinstance(k, range):
                k = list(k)
            kt = _index_tensor(k, x.device)
            if kt.dtype is dt.bool_:
                adv.append((len(new_shape), kt))
                new_shape.extend(shape[d:d + kt.ndim])
                d += kt.ndim
                continue
            if not kt.dtype.is_integer:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            adv.append((len(new_shape), (kt, shape[d])))
            new_shape.append(shape[d])
            d += 1
            continue
        raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
                         f"valid indices (got {type(k).__name__})")
    new_shape.extend(shape[d:])
    y = x
    # (a stop that is not the same size as the dim slices, even if the sizes happen to agree)
    if any(s0 != 0 or not same(s1, n_) or st != 1 for s0, s1, st, n_ in zip(starts, stops, steps, shape)):
        y = _as_view(x, P("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps)))
    if tuple(y.shape) != tuple(new_shape):
        y = _as_view(x, P("reshape", y, shape=tuple(new_shape)))
    if not adv:
        return y
    return _advanced(y, adv)


def _advanced(y, adv):
    """Apply advanced indices (integer tensors, bool masks) at their positions in y, numpy's rules."""
    positions, idx = [], []
    for pos, k in adv:
        if isinstance(k, str):  # x[False]
            from .creation import zeros
            positions.append(pos)
            idx.append(zeros(0, dtype=dt.int64, device=y.device))
            continue
        if isinstance(k, Tensor):  # bool mask over k.ndim dims: nonzero gives one index per dim
            parts = nonzero(k, as_tuple=True)
            for j, p in enumerate(parts):
                positions.append(pos + j)
                idx.append(p)
            continue
        kt, size = k
        positions.append(pos)
        idx.append(_normalize_neg(kt, size))
    from .math_ops import cast
    idx = [cast(i, dt.int64) for i in idx]
    if len(idx) == 1:
        return P("take", y, idx[0], dim=positions[0])
    bshape = broadcast_shapes(*(tuple(i.shape) for i in idx), op="index")
    idx = [expand(i, bshape) for i in idx]
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if not adjacent:
        rest = [i for i in range(y.ndim) if i not in positions]
        y = permute(y, tuple(positions) + tuple(rest))
        positions = list(range(len(positions)))
    p0 = positions[0]
    sizes = [y.shape[p] for p in positions]
    lin = idx[0]
    for i, s in zip(idx[1:], sizes[1:]):
        lin = lin * s + i
    shape = tuple(y.shape)
    merged = reshape(y, shape[:p0] + (math.prod(sizes),) + shape[p0 + len(positions):])
    return P("take", merged, lin, dim=p0)


def _np_key(key, device, host=False):
    """An index key with Tensors replaced by arrays, for numpy's (or cupy's) own __setitem__;
    host=True gives numpy arrays (for indexing a host-side table)."""
    def conv(k):
        if isinstance(k, Tensor):
            return k._data.get() if host and k.device.type != "cpu" else k._data
        if isinstance(k, list) and any(isinstance(e, Tensor) for e in k):
            return [conv(e) for e in k]
        return k
    if isinstance(key, tuple):
        return tuple(conv(k) for k in key)
    return conv(key)


def setitem(x, key, value):
    key = _sequence_as_tuple(key)
    from .tracing_hooks import active, tracing
    tracing_now = active()
    grad = ag._mode.enabled and (x.requires_grad or (isinstance(value, Tensor) and value.requires_grad))
    if isinstance(value, Tensor) and value.device != x.device:
        if value.ndim == 0 and value.device.type == "cpu":
            value = value.item()
        else:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"{x.device} and {value.device}!")
    if not tracing_now and not grad:
        x._check_inplace()
        if (x._base is not None and x._base.requires_grad and ag._mode.enabled and x._base.grad_fn is None
                and not x.__dict__.get("_detached")):
            raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
        if not getattr(x._data.flags, "writeable", True):   # cupy arrays have no such flag
            raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers to a "
                               "single memory location. Please clone() the tensor before performing the operation.")
        v = value._data if isinstance(value, Tensor) else value
        try:
            x._data[_np_key(key, x.device)] = v
        except (ValueError, IndexError) as e:
            raise type(e)(f"index_put_: {e}") from None
        x._vc[0] += 1
        return x
    from .math_ops import where, cast
    # a whole-shape bool mask with a scalar value is a where (keeps traced graphs whole)
    if isinstance(key, Tensor) and key.dtype is dt.bool_ and tuple(key.shape) == tuple(x.shape) and \
            (not isinstance(value, Tensor) or value.ndim == 0):
        return x._set_(where(key, cast(value, x.dtype) if isinstance(value, Tensor) else value, x))
    # general case: the positions the key selects (computed from shapes) receive the value
    from .creation import tensor
    pos_all = np.arange(x.numel(), dtype=np.int64).reshape(tuple(x.shape))
    if tracing(*(k for k in (key if isinstance(key, tuple) else (key,)) if isinstance(k, Tensor))):
        from . import dispatch as _d
        _d.tracer.graph_break("setitem with a traced index tensor", x)
    sel = pos_all[_np_key(_materialize_key(key), x.device, host=True)]
    sel_t = tensor(sel.reshape(-1), device=x.device)
    if not isinstance(value, Tensor):
        value = P("full", shape=(), value=value, dtype=x.dtype, device=x.device)
    value = cast(value, x.dtype)
    try:
        v = expand(value, sel.shape)
    except Exception:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(value.shape)} cannot be broadcast to "
                           f"indexing result of shape {list(sel.shape)}") from None
    flat = reshape(x, (-1,)) if x.is_leaf or True else None
    new = P("scatter", flat, sel_t, reshape(v, (-1,)), dim=0)
    return x._set_(reshape(new, tuple(x.shape)))


def _materialize_key(key):
    if isinstance(key, tuple):
        return tuple(_materialize_key(k) for k in key)
    if isinstance(key, Tensor):
        return key.detach()
    return key


def _view_positions(base, view):
    """Flat positions (base's C order) of each element of its view: byte arithmetic on strides.  A base
    laid out otherwise -- a convolution's result is a permuted batch-last array -- maps its memory
    offsets back to its flat positions first."""
    b, v = base._data, view._data
    isz = b.itemsize
    start = (view.data_ptr() - base.data_ptr()) // isz   # data_ptr: numpy or cupy
    strides = tuple((s // isz) * 8 for s in v.strides)
    if b.flags.c_contiguous:
        pos = np.arange(b.size, dtype=np.int64)
        return np.lib.stride_tricks.as_strided(pos[start:], shape=v.shape, strides=strides).copy()
    if any(st < 0 for st in b.strides) or b.size == 0:
        raise RuntimeError("in-place on a view of a tensor with negative strides that requires grad is not "
                           "supported")
    span = 1 + sum((n - 1) * (st // isz) for n, st in zip(b.shape, b.strides))
    mem = np.arange(span, dtype=np.int64)
    base_offsets = np.lib.stride_tricks.as_strided(mem, shape=b.shape,
                                                   strides=tuple((st // isz) * 8 for st in b.strides))
    flat_of = np.full(span, -1, dtype=np.int64)
    flat_of[base_offsets.reshape(-1)] = np.arange(b.size, dtype=np.int64)
    return flat_of[np.lib.stride_tricks.as_strided(mem[start:], shape=v.shape, strides=strides)]


def _write_view_into_base(base, view, result):
    """Autograd for an in-place write through a view: the base's history becomes a scatter of the
    new values into the old base (PyTorch's CopySlices)."""
    from .creation import tensor
    pos = tensor(_view_positions(base, view).reshape(-1), device=base.device)
    flat = reshape(base.detach() if not base.requires_grad else _history(base), (-1,))
    new = P("scatter", flat, pos, reshape(result, (-1,)), dim=0)
    new = P("reshape", new, shape=tuple(base.shape))
    base.grad_fn = new.grad_fn
    base.requires_grad = True


def _history(base):
    """A tensor object carrying base's current autograd history (before the write)."""
    t = _wrap(base._data.copy(), base.device)
    t.grad_fn = base.grad_fn
    t.requires_grad = base.requires_grad
    if base.grad_fn is None and base.requires_grad:
        t._accum = base._accumulator()
        t.grad_fn = None
    return t
