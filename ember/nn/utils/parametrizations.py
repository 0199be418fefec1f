"""nn.utils.parametrizations: weight_norm, spectral_norm and orthogonal as parametrizations (PyTorch's
newer API; the state_dict holds parametrizations.<name>.original0/1 resp. .original, the power-iteration
buffers, orthogonal's base).

orthogonal maps an unconstrained matrix onto the orthogonal ones: matrix_exp / cayley of the
skew-symmetric part of its lower triangle, or the product of the Householder reflectors stored below
its diagonal, all in ember ops (matrix_exp by scaling and squaring a Taylor polynomial) so autograd
differentiates them.  With use_trivialization (the default) the result multiplies a fixed orthogonal
`base`, the QR factor of the initial weight, and the stored original starts at -I, which maps to I."""
from __future__ import annotations

import math

import numpy as np

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend import shape_ops as S
from ...frontend.creation import eye, randn, zeros_like
from ...frontend.lapack import qr, solve
from ...frontend.linalg import matmul
from ...frontend.tensor import Tensor, _wrap
from ...ir import dtypes as dt
from .._functional.distance import normalize
from ..modules.module import Module
from . import parametrize
from .spectral_norm import _is_conv_transpose
from .weight_norm import _weight_norm, norm_except_dim

__all__ = ["weight_norm", "spectral_norm", "orthogonal"]


class _WeightNorm(Module):
    def __init__(self, dim: int | None = 0):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g: Tensor, weight_v: Tensor) -> Tensor:
        return _weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight: Tensor):
        return norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    """module.<name> = g * v / ||v||, with g = parametrizations.<name>.original0, v = original1."""
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    return module


class _SpectralNorm(Module):
    def __init__(self, weight: Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError("Dimension out of range (expected to be in range of "
                             f"[-{ndim}, {ndim - 1}] but got {dim})")
        if n_power_iterations <= 0:
            raise ValueError("Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={n_power_iterations}")
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            weight_mat = self._reshape_weight_to_matrix(weight.detach())
            h, w = weight_mat.shape
            u = weight_mat.new_empty(h).normal_(0, 1)
            v = weight_mat.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", normalize(u, dim=0, eps=self.eps))
            self.register_buffer("_v", normalize(v, dim=0, eps=self.eps))
            self._power_method(weight_mat, 15)

    def _reshape_weight_to_matrix(self, weight: Tensor) -> Tensor:
        if self.dim != 0:
            weight = weight.permute(self.dim, *(d for d in range(weight.dim()) if d != self.dim))
        return weight.flatten(1)

    def _power_method(self, weight_mat: Tensor, n_power_iterations: int) -> None:
        with ag.no_grad():
            wm = weight_mat.detach()
            for _ in range(n_power_iterations):
                self._u.copy_(normalize(wm.mv(self._v), dim=0, eps=self.eps))
                self._v.copy_(normalize(wm.t().mv(self._u), dim=0, eps=self.eps))

    def forward(self, weight: Tensor) -> Tensor:
        if weight.ndim == 1:
            return normalize(weight, dim=0, eps=self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            self._power_method(weight_mat, self.n_power_iterations)
        u, v = self._u.clone(), self._v.clone()
        sigma = u.dot(weight_mat.mv(v))
        return weight / sigma

    def right_inverse(self, value: Tensor) -> Tensor:
        return value


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None) -> Module:
    """module.<name> = W / sigma(W) as a parametrization (power iteration in training mode)."""
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if dim is None:
        dim = 1 if _is_conv_transpose(module) else 0
    parametrize.register_parametrization(module, name, _SpectralNorm(weight, n_power_iterations, dim, eps))
    return module


# ------------------------------------------------------------------------------------- orthogonal
def _mT(x: Tensor) -> Tensor:
    return S.transpose(x, -2, -1)


def _eye_like(n: int, like: Tensor) -> Tensor:
    return eye(n, dtype=like.dtype, device=like.device)


def _matrix_exp(A: Tensor) -> Tensor:
    """exp(A) by scaling and squaring: a degree-18 Taylor polynomial of A / 2^s, with |A / 2^s| <= 1/2,
    squared s times (float64-accurate there; the norm fixes s, read eagerly)."""
    n = A.shape[-1]
    v = A.detach().abs().sum(-2).max()        # the 1-norm
    norm = float(v.item()) if v.numel() else 0.0
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    X = M.div(A, float(2 ** s)) if s else A
    I = _eye_like(n, A)
    E, term = I, I
    for j in range(1, 19):
        term = M.div(matmul(term, X), float(j))
        E = M.add(E, term)
    for _ in range(s):
        E = matmul(E, E)
    return E


def _householder_product(A: Tensor, tau: Tensor) -> Tensor:
    """The first k columns of H_1 ... H_k, H_i = I - tau_i v_i v_i^T with v_i column i of A below the
    diagonal and 1 on it (LAPACK's orgqr)."""
    n, k = A.shape[-2], A.shape[-1]
    rows = np.arange(n)[:, None]
    Q = _eye_like(n, A)
    for i in range(k):
        below = _wrap(np.asarray(rows > i, dtype=A.dtype.np), A.device)
        unit = _wrap(np.asarray(rows == i, dtype=A.dtype.np), A.device)
        v = M.add(M.mul(S.narrow(A, -1, i, 1), below), unit)                # [..., n, 1]
        t = S.unsqueeze(S.narrow(tau, -1, i, 1), -1)                         # [..., 1, 1]
        Q = M.sub(Q, M.mul(matmul(matmul(Q, v), _mT(v)), t))
    return S.narrow(Q, -1, 0, k)


def _make_orthogonal(A: Tensor) -> Tensor:
    """The Q of A's QR decomposition with R's diagonal made positive (unique)."""
    Q, R = qr(A)
    return M.mul(Q, S.unsqueeze(M.sign(S.diagonal(R, 0, -2, -1)), -2))


def _is_orthogonal(Q: Tensor) -> bool:
    n, k = Q.shape[-2], Q.shape[-1]
    eps = 10.0 * n * float(np.finfo(Q.dtype.np).eps)
    return bool(M.le(M.abs(M.sub(matmul(_mT(Q), Q), _eye_like(k, Q))), eps).all())


class _Orthogonal(Module):
    def __init__(self, weight: Tensor, orthogonal_map: str, *, use_trivialization: bool = True):
        super().__init__()
        self.shape = tuple(weight.shape)
        self.orthogonal_map = orthogonal_map
        if use_trivialization:
            self.register_buffer("base", None)

    def forward(self, X: Tensor) -> Tensor:
        n, k = X.shape[-2], X.shape[-1]
        transposed = n < k
        if transposed:
            X = _mT(X)
            n, k = k, n
        if self.orthogonal_map in ("matrix_exp", "cayley"):
            # the skew-symmetric A = L - L^T of X's lower triangle, X padded to n x n with zeros
            X = S.tril(X)
            if n != k:
                X = S.cat([X, M.mul(S.narrow(X, -1, 0, 1), 0.0).expand(*X.shape[:-1], n - k)], -1)
            A = M.sub(X, _mT(X))
            if self.orthogonal_map == "matrix_exp":
                Q = _matrix_exp(A)
            else:   # cayley: (I - A/2)^-1 (I + A/2)
                Id = _eye_like(n, A)
                Q = solve(M.sub(Id, M.mul(A, 0.5)), M.add(Id, M.mul(A, 0.5)))
            if n != k:
                Q = S.narrow(Q, -1, 0, k)
        else:
            # the reflectors below the diagonal; the diagonal's sign (truncated to an int) flips columns
            A = S.tril(X, -1)
            tau = M.div(2.0, M.add(M.sum(M.mul(A, A), -2), 1.0))
            Q = _householder_product(A, tau)
            Q = M.mul(Q, S.unsqueeze(M.cast(M.cast(S.diagonal(X, 0, -2, -1), dt.int32), X.dtype), -2))
        if getattr(self, "base", None) is not None:
            Q = matmul(self.base, Q)
        return _mT(Q) if transposed else Q

    def right_inverse(self, Q: Tensor) -> Tensor:
        if tuple(Q.shape) != self.shape:
            raise ValueError(f"Expected a matrix or batch of matrices of shape {self.shape}. Got a tensor of shape "
                             f"{tuple(Q.shape)}.")
        Q_init = Q
        n, k = Q.shape[-2], Q.shape[-1]
        transpose = n < k
        if transpose:
            Q = _mT(Q)
            n, k = k, n
        with ag.no_grad():
            if not hasattr(self, "base"):
                if self.orthogonal_map != "householder":
                    raise NotImplementedError("It is not possible to assign to the matrix exponential or the "
                                              "Cayley parametrizations when use_trivialization=False.")
                return self._householder_inverse(Q, transpose)
            if n == k:
                Q = Q.clone() if _is_orthogonal(Q) else _make_orthogonal(Q)
            else:   # completed to a square orthogonal matrix by random columns
                N = randn(*Q.shape[:-2], n, n - k, dtype=Q.dtype, device=Q.device)
                Q = _make_orthogonal(S.cat([Q, N], -1))
            self.base = Q
            # -I maps to I (householder of zeros with the diagonal's sign -1, matrix_exp of 0)
            neg_id = zeros_like(Q_init)
            S.diagonal(neg_id, 0, -2, -1).fill_(-1.0)
            return neg_id

    @staticmethod
    def _householder_inverse(Q: Tensor, transpose: bool) -> Tensor:
        """The reflectors of Q's QR (LAPACK geqrf, by numpy's raw QR) with the diagonal holding the signs
        that make householder(A) == Q."""
        q = np.asarray(Q.detach().cpu().numpy())
        flat = q.reshape((-1,) + q.shape[-2:])
        out = np.empty_like(flat)
        for b, m in enumerate(flat):
            h, tau = np.linalg.qr(m, mode="raw")
            a = h.T.copy()
            d = np.sign(np.diagonal(a)).copy()
            d[tau == 0] *= -1
            np.fill_diagonal(a, d)
            out[b] = a
        A = _wrap(out.reshape(q.shape).astype(q.dtype), Q.device)
        return _mT(A) if transpose else A


def orthogonal(module: Module, name: str = "weight", orthogonal_map: str | None = None, *,
               use_trivialization: bool = True) -> Module:
    """module.<name> constrained to orthogonal (semi-orthogonal for a rectangular weight) matrices;
    orthogonal_map: "matrix_exp" (square default), "cayley" or "householder" (rectangular default)."""
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if weight.ndim < 2:
        raise ValueError(f"Expected a matrix or batch of matrices. Got a tensor of {weight.ndim} dimensions.")
    if orthogonal_map is None:
        orthogonal_map = "matrix_exp" if weight.shape[-2] == weight.shape[-1] else "householder"
    if orthogonal_map not in ("matrix_exp", "cayley", "householder"):
        raise ValueError('orthogonal_map has to be one of "matrix_exp", "cayley", "householder". '
                         f"Got: {orthogonal_map}")
    orth = _Orthogonal(weight, orthogonal_map, use_trivialization=use_trivialization)
    parametrize.register_parametrization(module, name, orth, unsafe=True)
    return module
