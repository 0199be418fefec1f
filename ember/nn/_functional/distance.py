"""normalize, cosine_similarity, pairwise_distance, pdist, cdist as composites."""
from __future__ import annotations

from ...frontend import math_ops as M
from ...frontend import shape_ops as S
from ...frontend.autocast import autocast_op
from ._util import Tensor


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    denom = M.clamp_min(M.norm(input, p, dim, keepdim=True), eps)
    return M.div(input, denom)


@autocast_op("cosine_similarity")
def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    x1, x2 = S.broadcast_tensors(x1, x2)
    return M.sum(M.mul(M.div(x1, _norm_at_least(x1, dim, eps)), M.div(x2, _norm_at_least(x2, dim, eps))), dim)


def _norm_at_least(x, dim, eps):
    """max(||x||, eps) along dim (kept), as PyTorch divides by it: where the norm is below eps the
    divisor is the constant eps -- sqrt is never differentiated at 0 (a zero vector's gradient was NaN)."""
    sq = M.sum(M.mul(x, x), dim, keepdim=True)
    big = M.gt(sq, eps * eps)
    return M.where(big, M.sqrt(M.where(big, sq, 1.0)), eps)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    d = M.add(M.sub(x1, x2), eps)
    nd = max(x1.ndim, x2.ndim)
    return M.norm(d, p, dim=nd - 1 if nd else None, keepdim=keepdim)


@autocast_op("cdist")
def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, compute_mode=None) -> Tensor:
    d = M.sub(S.unsqueeze(x1, -2), S.unsqueeze(x2, -3))
    if p == 2:
        return M.sqrt(M.sum(M.mul(d, d), -1))
    return M.norm(d, p, dim=-1)


@autocast_op("pdist")
def pdist(input: Tensor, p: float = 2.0) -> Tensor:
    import numpy as np
    n = input.shape[0]
    i, j = np.triu_indices(n, 1)
    from ._util import const
    a = S.index_select(input, 0, const(i.astype(np.int64), input))
    b = S.index_select(input, 0, const(j.astype(np.int64), input))
    return M.norm(M.sub(a, b), p, dim=1)
