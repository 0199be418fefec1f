"""ember.linalg: torch.linalg's norms (composites of ember ops) and its decompositions and solvers
(ember/frontend/lapack.py: LAPACK forward, PyTorch's gradients)."""
from __future__ import annotations

from .frontend import math_ops as M
from .frontend.lapack import (  # noqa: F401
    inv, inv_ex, solve, solve_triangular, det, slogdet, svd, svdvals, qr, cholesky, cholesky_ex, eigh, eigvalsh)
from .frontend.linalg_composites import pinv, matrix_rank, matrix_power, multi_dot, vecdot, cross  # noqa: F401
from .frontend.linalg import matmul  # noqa: F401
from .frontend.shape_ops import diagonal as _diagonal

__all__ = ["vector_norm", "matrix_norm", "norm", "inv", "inv_ex", "solve", "solve_triangular", "det", "slogdet",
           "svd", "svdvals", "qr", "cholesky", "cholesky_ex", "eigh", "eigvalsh", "pinv", "matrix_rank",
           "matrix_power", "multi_dot", "vecdot", "cross", "matmul", "diagonal"]


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """torch.linalg.diagonal: torch.diagonal with the last two dims as default."""
    return _diagonal(A, offset, dim1, dim2)


def vector_norm(x, ord=2, dim=None, keepdim=False, dtype=None):
    """torch.linalg.vector_norm: the ord-norm of x flattened (dim=None) or along dim."""
    if dtype is not None:
        x = x.to(dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point tensor as input. Got {x.dtype.name}")
    a = M.abs(x)
    if ord == float("inf"):
        return M.amax(a, () if dim is None else dim, keepdim)
    if ord == float("-inf"):
        return M.amin(a, () if dim is None else dim, keepdim)
    if ord == 0:
        return M.sum(M.cast(M.ne(x, 0), x.dtype), dim, keepdim)
    if ord == 1:
        return M.sum(a, dim, keepdim)
    if ord == 2:
        return M._sqrt0(M.sum(M.mul(x, x), dim, keepdim))     # a zero vector's gradient is 0, as PyTorch's
    return M._pnorm(a, ord, dim, keepdim)


def matrix_norm(x, ord="fro", dim=(-2, -1), keepdim=False, dtype=None):
    """torch.linalg.matrix_norm for ord 'fro', 'nuc', 1, -1, 2, -2, inf, -inf (2, -2 and 'nuc' from the
    singular values)."""
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    if ord == "fro":
        return M._sqrt0(M.sum(M.mul(x, x), dim, keepdim))
    d0, d1 = (d % x.ndim for d in dim)
    if ord in ("nuc", 2, -2):
        moved = x.movedim((d0, d1), (-2, -1))
        s = svdvals(moved)
        r = M.sum(s, -1) if ord == "nuc" else M.amax(s, -1) if ord == 2 else M.amin(s, -1)
        if keepdim:
            r = r.unsqueeze(min(d0, d1)).unsqueeze(max(d0, d1))
        return r
    a = M.abs(x)
    if ord in (1, -1):
        s = M.sum(a, d0, keepdim=True)
        r = M.amax(s, d1, keepdim=True) if ord == 1 else M.amin(s, d1, keepdim=True)
    elif ord in (float("inf"), float("-inf")):
        s = M.sum(a, d1, keepdim=True)
        r = M.amax(s, d0, keepdim=True) if ord > 0 else M.amin(s, d0, keepdim=True)
    else:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    return r if keepdim else r.squeeze(max(d0, d1)).squeeze(min(d0, d1))


def norm(x, ord=None, dim=None, keepdim=False, dtype=None):
    """torch.linalg.norm: vector norm for 1-D input or an int dim, matrix norm for 2-D / a pair of dims."""
    if isinstance(dim, int) or (dim is None and ord is None) or (dim is None and x.ndim == 1):
        return vector_norm(x, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    if dim is None:
        dim = (-2, -1)
    if len(tuple(dim)) == 1:
        return vector_norm(x, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    return matrix_norm(x, "fro" if ord is None else ord, tuple(dim), keepdim, dtype=dtype)
