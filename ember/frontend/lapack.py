"""Matrix decompositions and solvers (torch.linalg's inv, solve, det, slogdet, svd, qr, cholesky, eigh,
pinv ...) on the array library's LAPACK (numpy.linalg, cupy.linalg), with PyTorch's gradients.

In: float tensors of shape [..., m, n] (batched over the leading dims). Out: tensors, or PyTorch's
named tuples, with PyTorch's shapes, conventions (Vh not V, the sign of slogdet ...) and errors.

Each decomposition is an ember.autograd.Function: the forward calls LAPACK, the backward is PyTorch's
formula (FunctionsManual.cpp) written with ember ops, so gradients of gradients work too. They run
eagerly; inside ember.compile they are a graph break (B015) and the code around them is compiled.
Composites of these (solve_triangular, logdet here; pinv, matrix_rank, matrix_power ... in
linalg_composites.py) need no backward of their own.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import math_ops as M
from . import shape_ops as S
from . import tracing_hooks
from .autograd import Function
from .linalg import matmul
from .tensor import Tensor, _wrap

__all__ = ["inv", "inv_ex", "solve", "solve_triangular", "det", "slogdet", "logdet", "svd", "svdvals", "qr",
           "cholesky", "cholesky_ex", "eigh", "eigvalsh"]

SlogdetResult = namedtuple("slogdet", ["sign", "logabsdet"])
SVDResult = namedtuple("svd", ["U", "S", "Vh"])
QRResult = namedtuple("qr", ["Q", "R"])
EighResult = namedtuple("eigh", ["eigenvalues", "eigenvectors"])
InvExResult = namedtuple("inv_ex", ["inverse", "info"])
CholeskyExResult = namedtuple("cholesky_ex", ["L", "info"])


# ---------------------------------------------------------------------------------- helpers
def _arrays(op: str, *ts: Tensor):
    """The tensors' arrays for LAPACK; reading them while ember.compile traces is a graph break."""
    for t in ts:
        tracing_hooks.value_needed(t, "linalg")
    return [t._data for t in ts]


def _check_float(op: str, *ts: Tensor):
    for t in ts:
        tracing_hooks.value_needed(t, "linalg")     # B015 before any Function sees a traced tensor
        if not t.dtype.is_floating_point:
            raise RuntimeError(f"{op}: Expected a floating point or complex tensor as input. Got {M._tname(t.dtype)}")
        if t.dtype.is_reduced_float:
            raise RuntimeError(f"{op}: Low precision dtypes not supported. Got {M._tname(t.dtype)}")


def _check_matrix(op: str, A: Tensor, square: bool = True):
    if A.ndim < 2:
        raise RuntimeError(f"{op}: The input tensor A must have at least 2 dimensions.")
    if square and A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"{op}: A must be batches of square matrices, but they are {A.shape[-2]} by "
                           f"{A.shape[-1]} matrices")
    _check_float(op, A)


def _mT(x: Tensor) -> Tensor:
    return S.transpose(x, -2, -1)


def _diag_embed(v: Tensor) -> Tensor:
    return S.diag_embed(v)


def _col(v: Tensor) -> Tensor:      # [..., n] -> [..., n, 1]
    return S.unsqueeze(v, -1)


def _row(v: Tensor) -> Tensor:      # [..., n] -> [..., 1, n]
    return S.unsqueeze(v, -2)


def _scalar_mat(v: Tensor) -> Tensor:    # [...] -> [..., 1, 1]
    return S.unsqueeze(S.unsqueeze(v, -1), -1)


def _new(a, like: Tensor) -> Tensor:
    return _wrap(like._xp.asarray(a), like.device)


def _batch_msg(a: np.ndarray, bad: np.ndarray) -> str:
    if a.ndim == 2:
        return ""
    first = int(np.flatnonzero(np.asarray(bad).reshape(-1))[0])
    return f"(Batch element {first}): "


def _singular(op: str, a) -> RuntimeError:
    xp_a = a if isinstance(a, np.ndarray) else a.get()
    d = np.linalg.det(xp_a.astype(np.float64))
    what = "inversion" if "inv" in op else "solve"
    return RuntimeError(f"{op}: {_batch_msg(xp_a, d == 0)}The matrix is singular, so the {what} could not be "
                        "completed (PyTorch reports the zero pivot of its LU factorization here).")


# ------------------------------------------------------------------------------ inv, solve
class _Inv(Function):
    @staticmethod
    def forward(ctx, A):
        (a,) = _arrays("linalg.inv", A)
        try:
            r = A._xp.linalg.inv(a)
        except np.linalg.LinAlgError:
            raise _singular("linalg.inv", a) from None
        out = _new(r, A)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (Ainv,) = ctx.saved_tensors
        t = _mT(Ainv)
        return M.neg(matmul(matmul(t, g), t))


def inv(A: Tensor) -> Tensor:
    """torch.linalg.inv: the inverse of each square matrix; an error for singular ones."""
    _check_matrix("linalg.inv", A)
    return _Inv.apply(A)


def inv_ex(A: Tensor, *, check_errors: bool = False) -> InvExResult:
    """torch.linalg.inv_ex: (inverse, info); info > 0 marks singular matrices instead of raising."""
    _check_matrix("linalg.inv_ex", A)
    (a,) = _arrays("linalg.inv_ex", A)
    host = a if isinstance(a, np.ndarray) else a.get()
    info = (np.linalg.det(host.astype(np.float64)) == 0).astype(np.int32)
    if check_errors and info.any():
        raise _singular("linalg.inv_ex", a)
    if info.any():
        from .creation import tensor
        bad = tensor(info.astype(bool), device=A.device)
        safe = M.where(_scalar_mat(bad), S.expand(_eye_like(A), tuple(A.shape)), A)
        return InvExResult(_Inv.apply(safe), _new(info, A))
    return InvExResult(_Inv.apply(A), _new(info, A))


def _eye_like(A: Tensor) -> Tensor:
    from .creation import eye
    return eye(A.shape[-1], dtype=A.dtype, device=A.device)


class _Solve(Function):
    @staticmethod
    def forward(ctx, A, B):
        a, b = _arrays("linalg.solve", A, B)
        try:
            x = A._xp.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            raise _singular("linalg.solve", a) from None
        out = _new(x, A)
        ctx.save_for_backward(A, out)
        return out

    @staticmethod
    def backward(ctx, g):
        A, X = ctx.saved_tensors
        gB = _Solve.apply(_mT(A), g)
        return M.neg(matmul(gB, _mT(X))), gB


def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:
    """torch.linalg.solve: X with A X = B (left=False: X A = B). B is a batch of vectors when it has one
    dim fewer than A and matches A's leading dims; batch dims broadcast."""
    _check_matrix("linalg.solve", A)
    _check_float("linalg.solve", B)
    if A.dtype is not B.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found A of type "
                           f"{M._tname(A.dtype)} and B of type {M._tname(B.dtype)} instead")
    if not left:
        return _mT(solve(_mT(A), _mT(B)))
    n = A.shape[-1]
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    Bm = _col(B) if vector else B
    if Bm.ndim < 2 or Bm.shape[-2] != n:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation AX = B "
                           f"({A.shape[-2]}x{A.shape[-1]} and {Bm.shape[-2] if Bm.ndim >= 2 else Bm.shape[0]}x"
                           f"{Bm.shape[-1] if Bm.ndim >= 2 else 1})")
    batch = tuple(S.broadcast_shapes_(tuple(A.shape[:-2]), tuple(Bm.shape[:-2])))
    Ab = S.expand(A, batch + (n, n))
    Bb = S.expand(Bm, batch + tuple(Bm.shape[-2:]))
    X = _Solve.apply(Ab, Bb)
    return S.squeeze(X, -1) if vector else X


def solve_triangular(A: Tensor, B: Tensor, *, upper: bool, left: bool = True, unitriangular: bool = False) -> Tensor:
    """torch.linalg.solve_triangular: solve with the upper or lower triangle of A only (its unit
    diagonal with unitriangular=True); the gradient reaches that triangle only."""
    _check_matrix("linalg.solve_triangular", A)
    T = S.triu(A) if upper else S.tril(A)
    if unitriangular:
        eye = S.expand(_eye_like(A), tuple(A.shape))
        T = M.add(M.mul(T, M.sub(1.0, eye)), eye)
    if B.ndim < 2:
        raise RuntimeError("linalg.solve_triangular: The input tensor B must have at least 2 dimensions.")
    return solve(T, B, left=left)


# ------------------------------------------------------------------------------- determinant
class _Det(Function):
    @staticmethod
    def forward(ctx, A):
        (a,) = _arrays("linalg.det", A)
        out = _new(A._xp.linalg.det(a), A)
        ctx.save_for_backward(A, out)
        return out

    @staticmethod
    def backward(ctx, g):
        A, d = ctx.saved_tensors
        a = A.detach()._data
        xp = A._xp
        u, s, vh = xp.linalg.svd(a)
        worst = float((s[..., -1] / xp.maximum(s[..., 0], np.finfo(a.dtype).tiny)).min()) if s.size else 1.0
        if worst > np.sqrt(np.finfo(a.dtype).eps):     # well conditioned: g det A^-T (differentiable again)
            return M.mul(_scalar_mat(M.mul(g, d)), _mT(inv(A)))
        # (near) singular: the cofactor matrix from the SVD, det(U) det(V) U diag(prod_{j != i} s_j) V^T
        n = s.shape[-1]
        others = xp.stack([xp.prod(xp.delete(s, i, axis=-1), axis=-1) for i in range(n)], axis=-1) if n > 1 \
            else xp.ones_like(s)
        sign = xp.linalg.det(u) * xp.linalg.det(vh)
        cof = sign[..., None, None] * ((u * others[..., None, :]) @ vh)
        return M.mul(_scalar_mat(g), _new(cof, A))


def det(A: Tensor) -> Tensor:
    """torch.linalg.det (also torch.det): the determinant of each square matrix."""
    _check_matrix("linalg.det", A)
    return _Det.apply(A)


class _Slogdet(Function):
    @staticmethod
    def forward(ctx, A):
        (a,) = _arrays("linalg.slogdet", A)
        sign, logabs = A._xp.linalg.slogdet(a)
        s, la = _new(sign.astype(a.dtype), A), _new(logabs.astype(a.dtype), A)
        ctx.mark_non_differentiable(s)
        ctx.save_for_backward(A)
        return s, la

    @staticmethod
    def backward(ctx, g_sign, g_logabs):
        (A,) = ctx.saved_tensors
        return M.mul(_scalar_mat(g_logabs), _mT(inv(A)))


def slogdet(A: Tensor) -> SlogdetResult:
    """torch.linalg.slogdet: (sign, log|det|); sign is 0 and log|det| -inf for a singular matrix."""
    _check_matrix("linalg.slogdet", A)
    return SlogdetResult(*_Slogdet.apply(A))


def logdet(A: Tensor) -> Tensor:
    """torch.logdet: log(det(A)); NaN where det < 0, -inf where det = 0."""
    sign, la = slogdet(A)
    return M.where(M.lt(sign, 0), _full_nan(la), la)


def _full_nan(like: Tensor) -> Tensor:
    from .dispatch import apply as P
    return P("full", shape=tuple(like.shape), value=float("nan"), dtype=like.dtype, device=like.device)


# ------------------------------------------------------------------------------------- SVD
class _SVD(Function):
    @staticmethod
    def forward(ctx, A, full_matrices):
        (a,) = _arrays("linalg.svd", A)
        u, s, vh = A._xp.linalg.svd(a, full_matrices=full_matrices)
        U, Sv, Vh = _new(u, A), _new(s, A), _new(vh, A)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(U, Sv, Vh)
        return U, Sv, Vh

    @staticmethod
    def backward(ctx, gU, gS, gVh):
        U, Sv, Vh = ctx.saved_tensors
        k = Sv.shape[-1]
        # full_matrices=True: the extra singular vectors are arbitrary; their gradient is dropped (as PyTorch)
        U, Vh = U[..., :, :k], Vh[..., :k, :]
        gU = gU[..., :, :k] if gU is not None else None
        gVh = gVh[..., :k, :] if gVh is not None else None
        return _svd_backward(gU, gS, gVh, U, Sv, Vh), None


def _svd_backward(gU, gS, gVh, U, Sv, Vh):
    """PyTorch's svd_backward (real case), for A = U diag(S) Vh with k = min(m, n)."""
    m, n = U.shape[-2], Vh.shape[-1]
    if gU is None and gVh is None:
        return matmul(M.mul(U, _row(gS)), Vh) if gS is not None else None
    UhgU = VhgV = None
    if gU is not None:
        t = matmul(_mT(U), gU)
        UhgU = M.sub(t, _mT(t))
    if gVh is not None:
        t = matmul(Vh, _mT(gVh))
        VhgV = M.sub(t, _mT(t))
    S2 = M.mul(Sv, Sv)
    E = M.sub(_row(S2), _col(S2))
    k = Sv.shape[-1]
    eye = _eye_k(k, Sv)
    E = M.add(E, eye)          # 1 on the diagonal (its numerators are 0)
    if UhgU is not None and VhgV is not None:
        gA = M.div(M.add(M.mul(UhgU, _row(Sv)), M.mul(_col(Sv), VhgV)), E)
    elif UhgU is not None:
        gA = M.mul(M.div(UhgU, E), _row(Sv))
    else:
        gA = M.div(M.mul(_col(Sv), VhgV), E)
    if gS is not None:
        gA = M.add(gA, _diag_embed(gS))
    if m > n and gU is not None:
        gA = matmul(U, gA)
        gUSinv = M.div(gU, _row(Sv))
        gA = M.sub(M.add(gA, gUSinv), matmul(U, matmul(_mT(U), gUSinv)))
        return matmul(gA, Vh)
    if n > m and gVh is not None:
        gA = matmul(gA, Vh)
        SinvgVh = M.div(gVh, _col(Sv))
        gA = M.sub(M.add(gA, SinvgVh), matmul(matmul(SinvgVh, _mT(Vh)), Vh))
        return matmul(U, gA)
    return matmul(U, matmul(gA, Vh))


def _eye_k(k: int, like: Tensor) -> Tensor:
    from .creation import eye
    return eye(k, dtype=like.dtype, device=like.device)


def svd(A: Tensor, full_matrices: bool = True) -> SVDResult:
    """torch.linalg.svd: A = U diag(S) Vh, singular values descending."""
    _check_matrix("linalg.svd", A, square=False)
    return SVDResult(*_SVD.apply(A, full_matrices))


def svdvals(A: Tensor) -> Tensor:
    """torch.linalg.svdvals: the singular values (differentiable through U diag(gS) Vh)."""
    _check_matrix("linalg.svdvals", A, square=False)
    return _SVD.apply(A, False)[1]


# -------------------------------------------------------------------------------------- QR
class _QR(Function):
    @staticmethod
    def forward(ctx, A, mode):
        (a,) = _arrays("linalg.qr", A)
        if mode == "r":
            r = A._xp.linalg.qr(a, mode="r")
            ctx.mode = mode
            return _new(A._xp.zeros((0,), dtype=a.dtype), A), _new(r, A)
        q, r = A._xp.linalg.qr(a, mode=mode)
        Q, R = _new(q, A), _new(r, A)
        ctx.mode = mode
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(Q, R)
        return Q, R

    @staticmethod
    def backward(ctx, gQ, gR):
        if ctx.mode == "r":
            raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed when mode='r'. "
                               "Please use linalg.qr(A, mode='reduced') if you are going to differentiate through "
                               "linalg.qr.")
        Q, R = ctx.saved_tensors
        m, n = Q.shape[-2], R.shape[-1]
        if ctx.mode == "complete" and m > n:
            raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and nrows > ncols.")
        return _qr_backward(gQ, gR, Q, R), None


def _qr_backward(gQ, gR, Q, R):
    """A = QR: gA = (gQ + Q copyltu(M)) R^-T with M = R gR^T - gQ^T Q (m >= n). For m < n, A = [X | Y]:
    X = Q U takes the square rule with gQ + Y gV^T, and gY = Q gV (as TensorFlow's QrGrad)."""
    m, n = Q.shape[-2], R.shape[-1]
    if gQ is None:
        gQ = M.mul(Q, 0.0)
    if gR is None:
        gR = M.mul(R, 0.0)
    if m >= n:
        return _qr_square(gQ, gR, Q, R)
    U, gU, gV = R[..., :, :m], gR[..., :, :m], gR[..., :, m:]
    Y = matmul(Q, R[..., :, m:])
    gX = _qr_square(M.add(gQ, matmul(Y, _mT(gV))), gU, Q, U)
    return S.cat([gX, matmul(Q, gV)], -1)


def _qr_square(gQ, gR, Q, R):
    Mm = M.sub(matmul(R, _mT(gR)), matmul(_mT(gQ), Q))
    lower = S.tril(Mm, -1)
    copyltu = M.add(M.add(lower, _mT(lower)), _diag_embed(S.diagonal(Mm, 0, -2, -1)))
    rhs = M.add(gQ, matmul(Q, copyltu))
    # rhs R^{-T}: solve R X^T = rhs^T
    return _mT(solve_triangular(R, _mT(rhs), upper=True))


def qr(A: Tensor, mode: str = "reduced") -> QRResult:
    """torch.linalg.qr: A = QR with mode 'reduced', 'complete' or 'r' (Q empty)."""
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), "
                           "'r', or 'complete'")
    _check_matrix("linalg.qr", A, square=False)
    return QRResult(*_QR.apply(A, mode))


# -------------------------------------------------------------------------------- cholesky
def _not_pd(op: str, a) -> RuntimeError:
    host = a if isinstance(a, np.ndarray) else a.get()
    mats = host.reshape((-1,) + host.shape[-2:])
    for b, mat in enumerate(mats):
        for k in range(1, mat.shape[-1] + 1):
            try:
                np.linalg.cholesky(mat[:k, :k])
            except np.linalg.LinAlgError:
                where = f"(Batch element {b}): " if host.ndim > 2 else ""
                return RuntimeError(f"{op}: {where}The factorization could not be completed because the input is "
                                    f"not positive-definite (the leading minor of order {k} is not "
                                    "positive-definite).")
    return RuntimeError(f"{op}: The factorization could not be completed because the input is not positive-definite.")


class _Cholesky(Function):
    @staticmethod
    def forward(ctx, A):
        (a,) = _arrays("linalg.cholesky", A)
        try:
            lo = A._xp.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            raise _not_pd("linalg.cholesky", a) from None
        if A._xp is not np and not bool(A._xp.isfinite(lo).all()):   # cuSOLVER returns NaN instead
            raise _not_pd("linalg.cholesky", a)
        L = _new(lo, A)
        ctx.save_for_backward(L)
        return L

    @staticmethod
    def backward(ctx, gL):
        (L,) = ctx.saved_tensors
        gA = S.tril(matmul(_mT(L), gL))
        gA = M.mul(M.add(gA, _mT(S.tril(gA, -1))), 0.5)
        gA = solve_triangular(_mT(L), gA, upper=True)
        return solve_triangular(L, gA, upper=False, left=False)


def cholesky(A: Tensor, *, upper: bool = False) -> Tensor:
    """torch.linalg.cholesky: L lower triangular with A = L L^T (upper=True: U = L^T); reads A's lower
    triangle."""
    _check_matrix("linalg.cholesky", A)
    L = _Cholesky.apply(A)
    return _mT(L) if upper else L


def cholesky_ex(A: Tensor, *, upper: bool = False, check_errors: bool = False) -> CholeskyExResult:
    """torch.linalg.cholesky_ex: (L, info); info = k > 0 when the leading minor of order k is not
    positive-definite (L then holds NaN for that matrix)."""
    _check_matrix("linalg.cholesky_ex", A)
    try:
        L = cholesky(A, upper=upper)
        info = np.zeros(A.shape[:-2], np.int32)
        return CholeskyExResult(L, _new(info, A))
    except RuntimeError as e:
        if check_errors:
            raise
        msg = str(e)
        k = int(msg.split("order ")[1].split(" ")[0]) if "order " in msg else 1
        nan = M.mul(A.detach(), float("nan"))
        return CholeskyExResult(nan, _new(np.full(A.shape[:-2], k, np.int32), A))


# ------------------------------------------------------------------------------------ eigh
class _Eigh(Function):
    @staticmethod
    def forward(ctx, A, UPLO):
        (a,) = _arrays("linalg.eigh", A)
        w, v = A._xp.linalg.eigh(a, UPLO=UPLO)
        L, V = _new(w, A), _new(v, A)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(L, V)
        return L, V

    @staticmethod
    def backward(ctx, gL, gV):
        L, V = ctx.saved_tensors
        if gV is None:
            return (matmul(M.mul(V, _row(gL)), _mT(V)) if gL is not None else None), None
        VhgV = matmul(_mT(V), gV)
        VhgV = M.mul(M.sub(VhgV, _mT(VhgV)), 0.5)
        E = M.add(M.sub(_row(L), _col(L)), _eye_k(L.shape[-1], L))
        ret = M.div(VhgV, E)
        if gL is not None:
            ret = M.add(ret, _diag_embed(gL))
        return matmul(V, matmul(ret, _mT(V))), None


def eigh(A: Tensor, UPLO: str = "L") -> EighResult:
    """torch.linalg.eigh: eigenvalues (ascending) and orthonormal eigenvectors of a symmetric matrix,
    from its lower (UPLO='L') or upper triangle."""
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    _check_matrix("linalg.eigh", A)
    return EighResult(*_Eigh.apply(A, UPLO))


def eigvalsh(A: Tensor, UPLO: str = "L") -> Tensor:
    """torch.linalg.eigvalsh: the eigenvalues of a symmetric matrix, ascending."""
    return eigh(A, UPLO).eigenvalues
