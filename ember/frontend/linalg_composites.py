"""torch.linalg functions built on ember/frontend/lapack.py's decompositions and on matmul: pinv
(PyTorch's pinv_backward), matrix_rank, matrix_power, multi_dot, vecdot, cross, and torch's older
spellings (torch.svd returning V, torch.qr(some=), torch.cholesky, torch.pinverse, torch.cross).

In: float tensors [..., m, n]. Out: tensors / named tuples as PyTorch returns them.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import math_ops as M
from . import shape_ops as S
from .autograd import Function, no_grad
from .lapack import QRResult, _check_matrix, _eye_like, _mT, _row, cholesky, inv, qr, svd, svdvals
from .linalg import matmul
from .tensor import Tensor

__all__ = ["pinv", "matrix_rank", "matrix_power", "multi_dot", "vecdot", "cross", "svd_old", "qr_old",
           "cholesky_old", "cross_old", "pinverse"]


# ----------------------------------------------------------------------------- composites
def _tolerance(s: Tensor, A: Tensor, atol, rtol, rcond=None):
    """max(atol, rtol * sigma_max) with PyTorch's default rtol = eps * max(m, n) when neither is given."""
    smax = M.amax(s, -1, keepdim=True) if s.shape[-1] else M.mul(s.sum(-1, keepdim=True), 0.0)
    if rcond is not None:
        rtol = rcond
    if rtol is None:
        rtol = 0.0 if (atol is not None and (not isinstance(atol, (int, float)) or atol > 0)) else \
            float(np.finfo(A.dtype.np).eps) * max(A.shape[-2], A.shape[-1])
    tol = M.mul(smax, rtol)
    if atol is not None:
        tol = M.maximum(tol, atol if isinstance(atol, Tensor) else float(atol))
    return tol


class _Pinv(Function):
    @staticmethod
    def forward(ctx, A, atol, rtol):
        U, Sv, Vh = svd(A, full_matrices=False)
        tol = _tolerance(Sv, A, atol, rtol)
        keep = M.gt(Sv, tol)
        sinv = M.where(keep, M.reciprocal(M.where(keep, Sv, 1.0)), 0.0)
        out = matmul(M.mul(_mT(Vh), _row(sinv)), _mT(U))
        ctx.save_for_backward(A, out)
        return out

    @staticmethod
    def backward(ctx, g):
        A, P = ctx.saved_tensors       # PyTorch's pinv_backward
        m, n = A.shape[-2], A.shape[-1]
        Ph, gh = _mT(P), _mT(g)
        if m <= n:
            K = matmul(gh, P)
            KPh = matmul(K, Ph)
            r = M.add(M.sub(M.neg(_mT(matmul(P, K))), matmul(matmul(A, P), KPh)), KPh)
            return M.add(r, matmul(matmul(Ph, P), M.sub(gh, matmul(K, A)))), None, None
        K = matmul(P, gh)
        PhK = matmul(Ph, K)
        r = M.add(M.neg(_mT(matmul(K, P))), matmul(matmul(M.sub(gh, matmul(A, K)), P), Ph))
        return M.sub(M.add(r, PhK), matmul(matmul(PhK, P), A)), None, None


def pinv(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False) -> Tensor:
    """torch.linalg.pinv: the Moore-Penrose pseudo-inverse; singular values at or below
    max(atol, rtol * sigma_max) count as zero."""
    _check_matrix("linalg.pinv", A, square=False)
    return _Pinv.apply(A, atol, rtol)


def matrix_rank(A: Tensor, *, atol=None, rtol=None, hermitian: bool = False, tol=None) -> Tensor:
    """torch.linalg.matrix_rank: the number of singular values above max(atol, rtol * sigma_max)."""
    _check_matrix("linalg.matrix_rank", A, square=False)
    with no_grad():
        s = svdvals(A)
        if tol is not None:
            atol, rtol = tol, 0.0
        return M.sum(M.gt(s, _tolerance(s, A, atol, rtol)), -1)


def matrix_power(A: Tensor, n: int) -> Tensor:
    """torch.linalg.matrix_power: A^n by repeated squaring (n < 0: of inv(A); n = 0: identity)."""
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"linalg.matrix_power: A must be batches of square matrices, but they are "
                           f"{A.shape[-2] if A.ndim >= 2 else 1} by {A.shape[-1] if A.ndim else 1} matrices")
    if n == 0:
        return M.add(M.mul(A, 0), S.expand(_eye_like(A).to(A.dtype), tuple(A.shape)))
    if n < 0:
        A, n = inv(A), -n
    result, base = None, A
    while n:
        if n & 1:
            result = base if result is None else matmul(result, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return result


def multi_dot(tensors) -> Tensor:
    """torch.linalg.multi_dot: the product of a chain of matrices (first and last may be vectors)."""
    ts = list(tensors)
    if len(ts) < 2:
        raise RuntimeError(f"multi_dot(): expected at least 2 tensors but got {len(ts)}")
    first_vec, last_vec = ts[0].ndim == 1, ts[-1].ndim == 1
    if first_vec:
        ts[0] = S.unsqueeze(ts[0], 0)
    if last_vec:
        ts[-1] = S.unsqueeze(ts[-1], 1)
    for i, t in enumerate(ts):
        if t.ndim != 2:
            raise RuntimeError(f"multi_dot(): tensor {i} must be 2D but got {t.ndim}D")
    r = ts[0]
    for t in ts[1:]:
        r = matmul(r, t)
    if first_vec:
        r = S.squeeze(r, 0)
    if last_vec:
        r = S.squeeze(r, -1)
    return r


def vecdot(x: Tensor, y: Tensor, *, dim: int = -1) -> Tensor:
    """torch.linalg.vecdot: sum(x * y) along dim."""
    return M.sum(M.mul(x, y), dim)


def cross(input: Tensor, other: Tensor, dim: int | None = -1) -> Tensor:
    """torch.linalg.cross (dim=-1) / torch.cross (dim=None: the first dim of size 3): the 3-D cross product."""
    a, b = S.broadcast_tensors(input, other)
    if dim is None:
        sizes = [i for i, n in enumerate(a.shape) if n == 3]
        if not sizes:
            raise RuntimeError("no dimension of size 3 in input")
        dim = sizes[0]
    d = dim % max(a.ndim, 1)
    if a.shape[d] != 3:
        raise RuntimeError(f"linalg.cross: inputs dimension {dim} must have length 3. Got {input.shape[d]} and "
                           f"{other.shape[d]}")
    from .creation import tensor
    i1 = tensor([1, 2, 0], device=a.device)
    i2 = tensor([2, 0, 1], device=a.device)
    return M.sub(M.mul(S.index_select(a, d, i1), S.index_select(b, d, i2)),
                 M.mul(S.index_select(a, d, i2), S.index_select(b, d, i1)))


# --------------------------------------------------------------- torch.* spellings (older API)
def svd_old(input: Tensor, some: bool = True, compute_uv: bool = True):
    """torch.svd: (U, S, V) with V (not Vh); some=False gives the full U and V."""
    U, Sv, Vh = svd(input, full_matrices=not some)
    if not compute_uv:
        return SVDOldResult(M.mul(U.detach(), 0.0), Sv, M.mul(_mT(Vh).detach(), 0.0))
    return SVDOldResult(U, Sv, _mT(Vh))


SVDOldResult = namedtuple("svd", ["U", "S", "V"])


def qr_old(input: Tensor, some: bool = True) -> QRResult:
    """torch.qr: linalg.qr with mode 'reduced' (some=True) or 'complete'."""
    return qr(input, "reduced" if some else "complete")


def cholesky_old(input: Tensor, upper: bool = False) -> Tensor:
    """torch.cholesky (deprecated in PyTorch for linalg.cholesky)."""
    return cholesky(input, upper=upper)


def cross_old(input: Tensor, other: Tensor, dim: int | None = None) -> Tensor:
    """torch.cross: dim=None takes the first dim of size 3 (linalg.cross defaults to -1)."""
    return cross(input, other, dim)


def pinverse(input: Tensor, rcond: float = 1e-15) -> Tensor:
    """torch.pinverse: linalg.pinv with rtol=rcond."""
    return pinv(input, rtol=rcond)
