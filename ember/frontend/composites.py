"""More of torch's tensor functions, built from ember ops (so they differentiate and trace): trace,
diff, kron, tensordot, cdist, triu_indices / tril_indices, nansum / nanmean, isin, rot90, cov,
corrcoef, aminmax, cummax / cummin, logcumsumexp, quantile / nanquantile, atleast_1d/2d/3d,
block_diag, cartesian_prod, diagflat, fill_diagonal_.

In: tensors and PyTorch's arguments. Out: PyTorch's values, shapes, dtypes and gradients.
"""
from __future__ import annotations

import itertools
import math
from collections import namedtuple

import numpy as np

from ..ir import dtypes as dt
from ..ir.ops import norm_dim
from . import math_ops as M
from . import shape_ops as S
from .dispatch import apply as P
from .linalg import matmul, sort
from .tensor import Tensor

__all__ = ["trace", "diff", "kron", "tensordot", "cdist", "triu_indices", "tril_indices", "nansum", "nanmean",
           "isin", "rot90", "cov", "corrcoef", "aminmax", "cummax", "cummin", "logcumsumexp", "quantile",
           "nanquantile", "atleast_1d", "atleast_2d", "atleast_3d", "block_diag", "cartesian_prod", "diagflat",
           "fill_diagonal_"]

_AMinMax = namedtuple("aminmax", ["min", "max"])
_CumExt = namedtuple("cummax", ["values", "indices"])


def trace(x: Tensor) -> Tensor:
    """torch.trace: the sum of a matrix's diagonal (integers sum to int64)."""
    if x.ndim != 2:
        raise RuntimeError(f"trace: expected a matrix, but got tensor with dim {x.ndim}")
    return M.sum(S.diagonal(x))


def diff(x: Tensor, n: int = 1, dim: int = -1, prepend: Tensor | None = None, append: Tensor | None = None) -> Tensor:
    """torch.diff: the n-th forward difference along dim (bool: logical xor)."""
    if x.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    if n < 0:
        raise RuntimeError(f"order must be non-negative but got {n}")
    d = norm_dim(dim, x.ndim, "diff")
    parts = [t for t in (prepend, x, append) if t is not None]
    if len(parts) > 1:
        x = S.cat([t if t.ndim else S.expand(S.reshape(t, (1,) * x.ndim), tuple(1 if i == d else s for i, s in
                                                                                   enumerate(x.shape)))
                   for t in parts], d)
    for _ in range(n):
        a, b = S.narrow(x, d, 1, x.shape[d] - 1), S.narrow(x, d, 0, x.shape[d] - 1)
        x = M.logical_xor(a, b) if x.dtype is dt.bool_ else M.sub(a, b)
    return x


def kron(a: Tensor, b: Tensor) -> Tensor:
    """torch.kron: the Kronecker product (out[i*m + k, ...] = a[i, ...] * b[k, ...])."""
    nd = max(a.ndim, b.ndim)
    a = S.reshape(a, (1,) * (nd - a.ndim) + tuple(a.shape))
    b = S.reshape(b, (1,) * (nd - b.ndim) + tuple(b.shape))
    ai = S.reshape(a, tuple(itertools.chain.from_iterable((s, 1) for s in a.shape)))
    bi = S.reshape(b, tuple(itertools.chain.from_iterable((1, s) for s in b.shape)))
    return S.reshape(M.mul(ai, bi), tuple(p * q for p, q in zip(a.shape, b.shape)))


def tensordot(a: Tensor, b: Tensor, dims=2, out=None) -> Tensor:
    """torch.tensordot: contract the last `dims` dims of a with the first of b, or the listed pairs."""
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot expects dims >= 0, but got dims={dims}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = ([dims[0]] if isinstance(dims[0], int) else list(dims[0]),
                  [dims[1]] if isinstance(dims[1], int) else list(dims[1]))
    da = [norm_dim(d, a.ndim, "tensordot") for d in da]
    db = [norm_dim(d, b.ndim, "tensordot") for d in db]
    if len(da) != len(db):
        raise RuntimeError("both dimension lists should have same length")
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise RuntimeError(f"contracted dimensions need to match, but first has size {a.shape[i]} in dim {i} "
                               f"and second has size {b.shape[j]} in dim {j}")
    fa = [i for i in range(a.ndim) if i not in da]
    fb = [j for j in range(b.ndim) if j not in db]
    k = math.prod(a.shape[i] for i in da)
    am = S.reshape(S.permute(a, tuple(fa + da)), (math.prod(a.shape[i] for i in fa), k))
    bm = S.reshape(S.permute(b, tuple(db + fb)), (k, math.prod(b.shape[j] for j in fb)))
    return S.reshape(matmul(am, bm), tuple(a.shape[i] for i in fa) + tuple(b.shape[j] for j in fb))


def _safe_sqrt(s: Tensor) -> Tensor:
    """sqrt with gradient 0 at 0 (PyTorch's cdist/pdist backward gives 0 for coincident points)."""
    pos = M.gt(s, 0)
    return M.where(pos, M.sqrt(M.where(pos, s, 1.0)), 0.0)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode: str = "use_mm_for_euclid_dist_if_necessary") -> Tensor:
    """torch.cdist: the p-norm distance between each row of x1 [..., P, M] and of x2 [..., R, M]."""
    if x1.ndim < 2 or x2.ndim < 2:
        raise RuntimeError(f"cdist only supports at least 2D tensors, X1 got: {x1.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} X2: {x2.shape[-1]}")
    if not x1.dtype.is_floating_point:
        raise RuntimeError(f"cdist only supports floating-point dtypes, X1 got: {M._tname(x1.dtype)}")
    if p < 0:
        raise RuntimeError(f"cdist only supports non-negative p values, got {p}")
    P_, R = x1.shape[-2], x2.shape[-2]
    use_mm = p == 2 and (compute_mode == "use_mm_for_euclid_dist" or
                         (compute_mode == "use_mm_for_euclid_dist_if_necessary" and (P_ > 25 or R > 25)))
    if use_mm:   # |a|^2 + |b|^2 - 2 a.b: one matrix product (PyTorch's choice for many rows)
        n1 = M.sum(M.mul(x1, x1), -1, keepdim=True)
        n2 = M.sum(M.mul(x2, x2), -1, keepdim=True)
        d2 = M.add(M.sub(n1, M.mul(matmul(x1, S.transpose(x2, -2, -1)), 2.0)), S.transpose(n2, -2, -1))
        return _safe_sqrt(M.clamp_min(d2, 0.0))
    diff_ = M.sub(S.unsqueeze(x1, -2), S.unsqueeze(x2, -3))
    if p == 2:
        return _safe_sqrt(M.sum(M.mul(diff_, diff_), -1))
    a = M.abs(diff_)
    if p == 0:
        return M.sum(M.cast(M.ne(a, 0), x1.dtype), -1)
    if p == 1:
        return M.sum(a, -1)
    if math.isinf(p):
        return M.amax(a, -1)
    s = M.sum(M.pow(a, float(p)), -1)
    pos = M.gt(s, 0)
    return M.where(pos, M.pow(M.where(pos, s, 1.0), 1.0 / p), 0.0)


def _tri_indices(row: int, col: int, offset: int, upper: bool, dtype, device):
    from .creation import tensor
    r, c = np.triu_indices(row, offset, col) if upper else np.tril_indices(row, offset, col)
    return tensor(np.stack([r, c]).astype((dtype or dt.int64).np), device=device)


def triu_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None, layout=None) -> Tensor:
    """torch.triu_indices: [2, N] row/column indices of the upper triangle (diagonal `offset` and above)."""
    return _tri_indices(row, col, offset, True, dtype, device)


def tril_indices(row: int, col: int, offset: int = 0, *, dtype=None, device=None, layout=None) -> Tensor:
    """torch.tril_indices: [2, N] row/column indices of the lower triangle (diagonal `offset` and below)."""
    return _tri_indices(row, col, offset, False, dtype, device)


def nansum(x: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """torch.nansum: the sum treating NaN as 0."""
    if x.dtype.is_floating_point:
        x = M.where(M.isnan(x), 0.0, x)
    return M.sum(x, dim, keepdim, dtype=dtype)


def nanmean(x: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """torch.nanmean: the mean of the non-NaN values (NaN where there are none)."""
    if dtype is not None:
        x = M.cast(x, dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"nanmean(): expected input to have floating point or complex dtype but got "
                           f"{M._tname(x.dtype)}")
    ok = M.logical_not(M.isnan(x))
    return M.div(nansum(x, dim, keepdim), M.sum(M.cast(ok, x.dtype), dim, keepdim))


def isin(elements, test_elements, *, assume_unique: bool = False, invert: bool = False) -> Tensor:
    """torch.isin: whether each element occurs in test_elements."""
    from .creation import tensor
    e = elements if isinstance(elements, Tensor) else tensor(elements)
    t = test_elements if isinstance(test_elements, Tensor) else tensor(test_elements, device=e.device)
    e2, t2, _ = M.promote(e, S.reshape(t, (-1,)))
    if t.numel():
        hit = M.any(M.eq(S.unsqueeze(e2, -1), t2), -1)
    else:
        hit = P("full", shape=tuple(e.shape), value=False, dtype=dt.bool_, device=e.device)
    return M.logical_not(hit) if invert else hit


def rot90(x: Tensor, k: int = 1, dims=(0, 1)) -> Tensor:
    """torch.rot90: rotate by 90 degrees k times in the plane dims (from the first towards the second)."""
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if x.ndim < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {x.ndim}")
    d0, d1 = (norm_dim(d, x.ndim, "rot90") for d in dims)
    if d0 == d1:
        raise RuntimeError(f"expected rotation dims to be different, but got dim0 = {d0} and dim1 = {d1}")
    k %= 4
    if k == 1:
        return S.transpose(S.flip(x, (d1,)), d0, d1)
    if k == 2:
        return S.flip(x, (d0, d1))
    if k == 3:
        return S.flip(S.transpose(x, d0, d1), (d1,))
    return x.clone()


def cov(x: Tensor, *, correction: int = 1, fweights: Tensor | None = None, aweights: Tensor | None = None) -> Tensor:
    """torch.cov: the covariance of the variables in the rows of x (observations in columns)."""
    if x.ndim > 2:
        raise RuntimeError(f"cov(): expected input to have two or fewer dimensions but got an input with {x.ndim} "
                           "dimensions")
    if not x.dtype.is_floating_point:
        x = M.cast(x, dt.default_float)
    if x.ndim < 2:
        x = S.reshape(x, (1, -1))
    n = x.shape[1]
    w = None
    if fweights is not None:
        w = M.cast(fweights, x.dtype)
    if aweights is not None:
        w = M.cast(aweights, x.dtype) if w is None else M.mul(w, M.cast(aweights, x.dtype))
    if w is None:
        avg = M.mean(x, 1, keepdim=True)
        norm = float(n - correction)
    else:
        wsum = M.sum(w)
        avg = M.div(M.sum(M.mul(x, w), 1, keepdim=True), wsum)
        if correction == 0:
            norm = wsum
        elif aweights is None:
            norm = M.sub(wsum, float(correction))
        else:
            norm = M.sub(wsum, M.div(M.mul(M.sum(M.mul(w, M.cast(aweights, x.dtype))), float(correction)), wsum))
    xc = M.sub(x, avg)
    xw = xc if w is None else M.mul(xc, w)
    c = matmul(xw, S.transpose(xc, 0, 1))
    c = M.div(c, M.clamp_min(norm, 0.0) if isinstance(norm, Tensor) else max(norm, 0.0))
    return S.squeeze(c) if c.shape == (1, 1) else c


def corrcoef(x: Tensor) -> Tensor:
    """torch.corrcoef: Pearson correlation coefficients of the rows of x, clipped to [-1, 1]."""
    c = cov(x)
    if c.ndim == 0:
        return M.div(c, c)
    d = S.diagonal(c)
    std = M.sqrt(d)
    c = M.div(M.div(c, S.unsqueeze(std, 1)), S.unsqueeze(std, 0))
    return M.clamp(c, -1.0, 1.0)


def aminmax(x: Tensor, *, dim: int | None = None, keepdim: bool = False):
    """torch.aminmax: (min, max) in one call."""
    if dim is None:
        return _AMinMax(M.amin(x, (), keepdim), M.amax(x, (), keepdim))
    return _AMinMax(M.amin(x, dim, keepdim), M.amax(x, dim, keepdim))


def _cum_extreme(x: Tensor, dim: int, largest: bool, name: str):
    """Running max/min along dim and the index where it was reached (the last such index on ties, as
    PyTorch); values are gathered at the indices so the gradient goes to that element."""
    from . import tracing_hooks
    from .creation import tensor
    if x.ndim == 0:
        return _CumExt(M.mul(x, 1), tensor(0, device=x.device))
    d = norm_dim(dim, x.ndim, name)
    tracing_hooks.value_needed(x, "escape")
    a = np.moveaxis(x.detach().cpu().numpy(), d, -1)
    n = a.shape[-1]
    idx = np.zeros(a.shape, np.int64)
    best = a[..., 0].copy()
    for i in range(1, n):
        v = a[..., i]
        better = (v >= best) if largest else (v <= best)
        better |= np.isnan(v)
        better &= ~np.isnan(best) | np.isnan(v)
        best = np.where(better, v, best)
        idx[..., i] = np.where(better, i, idx[..., i - 1])
    indices = tensor(np.ascontiguousarray(np.moveaxis(idx, -1, d)), device=x.device)
    return _CumExt(P("gather", x, indices, dim=d), indices)


def cummax(x: Tensor, dim: int):
    """torch.cummax: (values, indices) of the running maximum along dim (NaN propagates)."""
    return _cum_extreme(x, dim, True, "cummax")


def cummin(x: Tensor, dim: int):
    """torch.cummin: (values, indices) of the running minimum along dim (NaN propagates)."""
    return _cum_extreme(x, dim, False, "cummin")


def logcumsumexp(x: Tensor, dim: int) -> Tensor:
    """torch.logcumsumexp: log(cumsum(exp(x))) without overflow (shifted by the max along dim)."""
    if not x.dtype.is_floating_point:
        x = M.cast(x, dt.default_float)
    if x.ndim == 0:
        return M.mul(x, 1.0)
    d = norm_dim(dim, x.ndim, "logcumsumexp")
    m = M.amax(x, d, keepdim=True).detach()
    m = M.where(M.isinf(m), 0.0, m)
    return M.add(M.log(M.cumsum(M.exp(M.sub(x, m)), d)), m)


def _quantile(x: Tensor, q, dim, keepdim: bool, interpolation: str, ignore_nan: bool, op: str) -> Tensor:
    from .creation import tensor
    if interpolation not in ("linear", "lower", "higher", "midpoint", "nearest"):
        raise RuntimeError(f"{op}() interpolation must be one of linear, lower, higher, midpoint or nearest. Got "
                           f"{interpolation}")
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"{op}() input tensor must be either float or double dtype")
    scalar_q = not isinstance(q, Tensor)
    qt = tensor(float(q) if scalar_q else 0.0, dtype=x.dtype, device=x.device) if scalar_q else M.cast(q, x.dtype)
    if qt.ndim > 1:
        raise RuntimeError(f"{op}() q must be a scalar or 1D tensor")
    if scalar_q and not 0 <= q <= 1:
        raise RuntimeError(f"{op}() q must be in the range [0, 1] but got {q}")
    if dim is None:
        xs, d = S.reshape(x, (-1,)), 0
    else:
        d = norm_dim(dim, x.ndim, op)
        xs = x
    vals = sort(xs, d).values if xs.ndim else xs          # NaN sorts last
    n = xs.shape[d] if xs.ndim else 1
    if ignore_nan:
        count = M.sum(M.cast(M.logical_not(M.isnan(xs)), x.dtype), d, keepdim=True)
    else:
        count = P("full", shape=(), value=float(n), dtype=x.dtype, device=x.device)
    qv = S.reshape(qt, (-1,)) if not scalar_q else S.reshape(tensor(float(q), dtype=x.dtype, device=x.device), (1,))
    # positions q * (count - 1) for every q: [nq, ..., 1, ...]
    shape_q = (qv.shape[0],) + (1,) * vals.ndim
    pos = M.mul(S.reshape(qv, shape_q), M.sub(count, 1.0))
    lo = M.floor(pos)
    hi = M.ceil(pos)
    if interpolation == "lower":
        hi = lo
    elif interpolation == "higher":
        lo = hi
    elif interpolation == "nearest":
        lo = hi = M.round(pos)
    last = float(max(n - 1, 0))
    big = S.expand(S.unsqueeze(vals, 0), (qv.shape[0],) + tuple(vals.shape))

    def at(p_):
        idx = M.cast(M.clamp(p_, 0.0, last), dt.int64)
        idx = S.expand(idx, (qv.shape[0],) + tuple(vals.shape[:d]) + (1,) + tuple(vals.shape[d + 1:]))
        return P("gather", big, idx, dim=d + 1)
    vlo, vhi = at(lo), at(hi)
    if interpolation == "midpoint":
        r = M.mul(M.add(vlo, vhi), 0.5)
    else:
        r = M.add(vlo, M.mul(M.sub(vhi, vlo), M.sub(pos, lo)))
    if ignore_nan:
        r = M.where(M.eq(count, 0.0), float("nan"), r)
    else:
        has_nan = M.any(M.isnan(xs), d, keepdim=True) if xs.ndim else M.isnan(xs)
        r = M.where(has_nan, float("nan"), r)
    if dim is None:
        r = S.reshape(r, (qv.shape[0],) + ((1,) * x.ndim if keepdim else ()))
    elif not keepdim:
        r = S.squeeze(r, d + 1)
    return S.squeeze(r, 0) if scalar_q else r


def quantile(input: Tensor, q, dim=None, keepdim: bool = False, *, interpolation: str = "linear") -> Tensor:
    """torch.quantile: the q-th quantiles along dim (all values when dim is None); NaN if any NaN."""
    return _quantile(input, q, dim, keepdim, interpolation, False, "quantile")


def nanquantile(input: Tensor, q, dim=None, keepdim: bool = False, *, interpolation: str = "linear") -> Tensor:
    """torch.nanquantile: quantile ignoring NaN values."""
    return _quantile(input, q, dim, keepdim, interpolation, True, "nanquantile")


def atleast_1d(*tensors):
    r = [S.reshape(t, (1,)) if t.ndim == 0 else t for t in _flat_args(tensors)]
    return r[0] if len(r) == 1 else tuple(r)


def atleast_2d(*tensors):
    r = [S.reshape(t, (1, 1)) if t.ndim == 0 else S.unsqueeze(t, 0) if t.ndim == 1 else t
         for t in _flat_args(tensors)]
    return r[0] if len(r) == 1 else tuple(r)


def atleast_3d(*tensors):
    def lift(t):
        if t.ndim == 0:
            return S.reshape(t, (1, 1, 1))
        if t.ndim == 1:
            return S.reshape(t, (1, t.shape[0], 1))
        if t.ndim == 2:
            return S.unsqueeze(t, -1)
        return t
    r = [lift(t) for t in _flat_args(tensors)]
    return r[0] if len(r) == 1 else tuple(r)


def _flat_args(tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return list(tensors[0])
    return list(tensors)


def block_diag(*tensors) -> Tensor:
    """torch.block_diag: the tensors (0-, 1- or 2-D) as blocks on a diagonal."""
    from .creation import zeros
    mats = []
    for i, t in enumerate(tensors):
        if t.ndim > 2:
            raise RuntimeError(f"torch.block_diag: Input tensors must have 2 or fewer dimensions. Input {i} has "
                               f"{t.ndim} dimensions")
        mats.append(S.reshape(t, (1, -1)) if t.ndim < 2 else t)
    if not mats:
        return zeros(1, 0)
    d = mats[0].dtype
    for m in mats[1:]:
        d = dt.promote_types(d, m.dtype)
    width = sum(m.shape[1] for m in mats)
    rows, col = [], 0
    for m in mats:
        m = M.cast(m, d)
        rows.append(P("pad", m, pads=((0, 0), (col, width - col - m.shape[1])), value=0))
        col += m.shape[1]
    return S.cat(rows, 0)


def cartesian_prod(*tensors) -> Tensor:
    """torch.cartesian_prod: every combination of the 1-D inputs' elements, [N, len(tensors)]."""
    if len(tensors) == 1:
        return tensors[0]
    grids = S.meshgrid(*tensors, indexing="ij")
    return S.stack([S.reshape(g, (-1,)) for g in grids], 1)


def diagflat(x: Tensor, offset: int = 0) -> Tensor:
    """torch.diagflat: x flattened onto the offset diagonal of a square matrix."""
    return S.diag(S.reshape(x, (-1,)), offset)


def fill_diagonal_(x: Tensor, fill_value, wrap: bool = False) -> Tensor:
    """Tensor.fill_diagonal_: write fill_value on the main diagonal (every dim of equal size unless 2-D;
    wrap=True continues below a tall matrix every n + 1 rows)."""
    if x.ndim < 2:
        raise RuntimeError("dimensions must larger than 1")
    if x.ndim > 2 and len(set(x.shape)) != 1:
        raise RuntimeError("all dimensions of input must be of equal length")
    from .creation import tensor
    n = min(x.shape)
    step = int(sum(np.cumprod((1,) + tuple(x.shape[::-1][:-1]))))     # 1 + ncols (+ ncols*nrows ...)
    if wrap and x.ndim == 2:     # a tall matrix starts over every ncols + 1 rows
        pos = np.arange(0, x.numel(), x.shape[1] + 1)
    else:
        pos = np.arange(n) * step
    flat = S.reshape(x, (-1,))
    value = P("full", shape=(len(pos),), value=fill_value, dtype=x.dtype, device=x.device)
    new = P("scatter", flat, tensor(pos.astype(np.int64), device=x.device), value, dim=0)
    return x._set_(S.reshape(new, tuple(x.shape)))
