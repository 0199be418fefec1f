"""ember.linalg decompositions and solvers (ember/frontend/lapack.py) against torch.linalg in float64:
values, gradients (first and, for inv/solve/det, second order), errors, and the graph break under compile."""
import numpy as np
import pytest

import ember
from ember import diagnostics as records

torch = pytest.importorskip("torch")
L = ember.linalg
rng = np.random.default_rng(0)


def _pair(a):
    return ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _spd(n, batch=()):
    a = rng.standard_normal(batch + (n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def _compare(e_fn, t_fn, *arrays, rtol=1e-10, atol=1e-10, grad=True, seed=1):
    """Values of e_fn/t_fn on the same float64 inputs, then the gradients of sum(w * out) for a random w."""
    es, ts = zip(*[_pair(a) for a in arrays])
    eo, to = e_fn(*es), t_fn(*ts)
    eo = eo if isinstance(eo, (tuple, list)) else (eo,)
    to = to if isinstance(to, (tuple, list)) else (to,)
    for a, b in zip(eo, to):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=atol)
    if not grad:
        return
    r = np.random.default_rng(seed)
    ws = [r.standard_normal(tuple(b.shape)) for b in to]
    el = sum((a * ember.tensor(w)).sum() for a, w, b in zip(eo, ws, to) if b.requires_grad)
    tl = sum((b * torch.tensor(w)).sum() for w, b in zip(ws, to) if b.requires_grad)
    eg = ember.autograd.grad(el, list(es))
    tg = torch.autograd.grad(tl, list(ts))
    for a, b in zip(eg, tg):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol * 100, atol=atol * 100)


# ------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("batch", [(), (2,)])
def test_inv_det_slogdet(batch):
    a = rng.standard_normal(batch + (4, 4))
    _compare(L.inv, torch.linalg.inv, a)
    _compare(L.det, torch.linalg.det, a)
    _compare(lambda x: L.slogdet(x)[1], lambda x: torch.linalg.slogdet(x)[1], a)
    s = L.slogdet(ember.tensor(a))
    assert s.sign.tolist() == torch.linalg.slogdet(torch.tensor(a)).sign.tolist()
    _compare(ember.logdet, torch.logdet, _spd(3, batch))
    _compare(lambda x: x.inverse(), lambda x: x.inverse(), a)


def test_solve_shapes_broadcasting_left_and_vectors():
    a, b = rng.standard_normal((2, 3, 3)), rng.standard_normal((3, 2))
    _compare(L.solve, torch.linalg.solve, a, b)                        # batch broadcast of B
    _compare(L.solve, torch.linalg.solve, a, rng.standard_normal((2, 3)))   # a batch of vectors
    _compare(L.solve, torch.linalg.solve, a[0], rng.standard_normal(3))     # one vector
    _compare(lambda x, y: L.solve(x, y, left=False), lambda x, y: torch.linalg.solve(x, y, left=False),
             a, rng.standard_normal((4, 3)))
    for upper in (True, False):
        _compare(lambda x, y: L.solve_triangular(x, y, upper=upper),
                 lambda x, y: torch.linalg.solve_triangular(x, y, upper=upper), a + 3 * np.eye(3), b)
    _compare(lambda x, y: L.solve_triangular(x, y, upper=False, left=False, unitriangular=True),
             lambda x, y: torch.linalg.solve_triangular(x, y, upper=False, left=False, unitriangular=True),
             a, rng.standard_normal((2, 3)))


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 4, 3)])
def test_svd_values_and_gauge_invariant_gradients(shape):
    a = rng.standard_normal(shape)
    _compare(L.svdvals, torch.linalg.svdvals, a)

    def loss(lib):     # functions of A that do not depend on the signs of the singular vectors
        def f(x):
            U, S, Vh = lib.linalg.svd(x, full_matrices=False)
            return (U * U, S, Vh * Vh, (U * S.unsqueeze(-2)) @ Vh)
        return f
    _compare(loss(ember), loss(torch), a)
    U, S, Vh = L.svd(ember.tensor(a))
    assert U.shape == torch.linalg.svd(torch.tensor(a)).U.shape and Vh.shape[-1] == shape[-1]


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_qr_values_and_gradients(shape):
    a = rng.standard_normal(shape)
    _compare(L.qr, torch.linalg.qr, a)
    if shape[0] <= shape[1]:
        _compare(lambda x: L.qr(x, mode="complete"), lambda x: torch.linalg.qr(x, mode="complete"), a)
    q, r = L.qr(ember.tensor(a), mode="r")
    assert q.numel() == 0 and np.allclose(np.abs(r.numpy()), np.abs(torch.linalg.qr(torch.tensor(a), mode="r")[1].numpy()))


def test_cholesky_eigh():
    a = _spd(4, (2,))
    _compare(L.cholesky, torch.linalg.cholesky, a)
    _compare(lambda x: L.cholesky(x, upper=True), lambda x: torch.linalg.cholesky(x, upper=True), a)
    _compare(L.eigvalsh, torch.linalg.eigvalsh, a)

    def loss(lib):
        def f(x):
            w, v = lib.linalg.eigh(x)
            return w, v * v
        return f
    _compare(loss(ember), loss(torch), a)
    s = rng.standard_normal((3, 3))
    _compare(lambda x: L.eigh(x, UPLO="U")[0], lambda x: torch.linalg.eigh(x, UPLO="U")[0], s)


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (3, 3)])
def test_pinv_rank_norms(shape):
    a = rng.standard_normal(shape)
    _compare(L.pinv, torch.linalg.pinv, a)
    _compare(ember.pinverse, torch.pinverse, a)
    for o in (2, -2, "nuc"):
        _compare(lambda x: L.matrix_norm(x, o), lambda x: torch.linalg.matrix_norm(x, o), a)
    low = a[:, :1] @ a[:1, :]
    assert L.matrix_rank(ember.tensor(low)).item() == torch.linalg.matrix_rank(torch.tensor(low)).item() == 1
    assert L.matrix_rank(ember.tensor(a)).item() == min(shape)


def test_matrix_power_multi_dot_vecdot_cross():
    a = rng.standard_normal((2, 3, 3))
    for n in (0, 1, 3, -2):
        _compare(lambda x: L.matrix_power(x, n), lambda x: torch.linalg.matrix_power(x, n), a)
    m = [rng.standard_normal(s) for s in ((3,), (3, 4), (4, 2), (2,))]
    _compare(lambda *x: L.multi_dot(x), lambda *x: torch.linalg.multi_dot(x), *m)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    _compare(L.vecdot, torch.linalg.vecdot, x, y)
    _compare(L.cross, torch.linalg.cross, x, y)
    _compare(lambda p, q: ember.cross(p.T, q.T), lambda p, q: torch.cross(p.T, q.T, dim=0), x, y)


def test_old_api_spellings():
    a = rng.standard_normal((4, 3))
    U, S, V = ember.svd(ember.tensor(a))
    tU, tS, tV = torch.svd(torch.tensor(a))
    np.testing.assert_allclose(np.abs(V.numpy()), np.abs(tV.numpy()), rtol=1e-10)
    assert U.shape == tU.shape and ember.svd(ember.tensor(a), some=False).U.shape == (4, 4)
    q, r = ember.qr(ember.tensor(a))
    np.testing.assert_allclose((q @ r).numpy(), a, atol=1e-12)
    c = ember.tensor(_spd(3))
    np.testing.assert_allclose(ember.cholesky(c).numpy(), torch.cholesky(torch.tensor(c.numpy())).numpy())
    s = _spd(3)
    assert ember.tensor(s).det().item() == pytest.approx(np.linalg.det(s), rel=1e-12)


# ------------------------------------------------------------------------ gradients, 2nd order
def test_second_order_gradients_of_inv_det_solve():
    a = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    b = rng.standard_normal((3, 2))
    for e_fn, t_fn in ((lambda x, y: L.inv(x).sum() + L.solve(x, y).pow(2).sum() + L.det(x) ** 2,
                        lambda x, y: torch.linalg.inv(x).sum() + torch.linalg.solve(x, y).pow(2).sum() +
                        torch.linalg.det(x) ** 2),):
        (ea, eb), (ta, tb) = zip(_pair(a), _pair(b))
        eg = ember.autograd.grad(e_fn(ea, eb), [ea, eb], create_graph=True)
        tg = torch.autograd.grad(t_fn(ta, tb), [ta, tb], create_graph=True)
        e2 = ember.autograd.grad(sum((g * g).sum() for g in eg), [ea, eb])
        t2 = torch.autograd.grad(sum((g * g).sum() for g in tg), [ta, tb])
        for x, y in zip(e2, t2):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-8)


def _cofactors(a):
    n = a.shape[-1]
    c = np.empty_like(a)
    for i in range(n):
        for j in range(n):
            minor = np.delete(np.delete(a, i, axis=-2), j, axis=-1)
            c[..., i, j] = (-1) ** (i + j) * np.linalg.det(minor)
    return c


def test_det_gradient_of_singular_matrices_is_the_cofactor_matrix():
    """d det / dA is the cofactor matrix, non-zero for rank n-1. (PyTorch returns 0 * inv(A) = 0 when its LU
    determinant of such a matrix rounds to exactly 0; ember takes the SVD route then.)"""
    a = rng.standard_normal((3, 3))
    a[2] = a[0] + a[1]            # rank 2
    b = np.zeros((3, 3))
    b[0, 0] = 1.0                 # rank 1: every cofactor is 0
    x = ember.tensor(np.stack([a, b, np.zeros((3, 3))]), requires_grad=True)
    d = L.det(x)
    d.backward(ember.ones(3))
    np.testing.assert_allclose(x.grad.numpy(), _cofactors(x.detach().numpy()), atol=1e-12)
    y = ember.tensor(a, requires_grad=True)       # alone: its determinant need not round to exactly 0
    L.det(y).backward()
    np.testing.assert_allclose(y.grad.numpy(), _cofactors(a), atol=1e-12)


# ------------------------------------------------------------------------------- errors etc.
def test_errors():
    with pytest.raises(RuntimeError, match="A must be batches of square matrices, but they are 2 by 3 matrices"):
        L.inv(ember.randn(2, 3))
    with pytest.raises(RuntimeError, match="Expected a floating point or complex tensor as input. Got Long"):
        L.inv(ember.ones(2, 2, dtype=ember.int64))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        L.det(ember.randn(3))
    with pytest.raises(RuntimeError, match="singular"):
        L.inv(ember.zeros(2, 2, dtype=ember.float64))
    with pytest.raises(RuntimeError, match=r"Incompatible shapes of A and B for the equation AX = B \(3x3 and 4x1\)"):
        L.solve(ember.randn(3, 3), ember.randn(4))
    with pytest.raises(RuntimeError, match="leading minor of order 1 is not positive-definite"):
        L.cholesky(-ember.eye(3))
    with pytest.raises(RuntimeError, match="leading minor of order 2"):
        L.cholesky(ember.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(RuntimeError, match="qr received unrecognized mode"):
        L.qr(ember.randn(3, 3), mode="full")
    x = ember.randn(3, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="not computed when mode='r'"):
        L.qr(x, mode="r")[1].sum().backward()


def test_inv_ex_and_cholesky_ex_report_instead_of_raising():
    a = ember.tensor(np.stack([np.eye(2), np.zeros((2, 2))]))
    inverse, info = L.inv_ex(a)
    assert info.tolist() == [0, 1] and np.allclose(inverse[0].numpy(), np.eye(2))
    Lc, info = L.cholesky_ex(ember.tensor([[1.0, 2.0], [2.0, 1.0]]))
    assert info.item() == 2
    with pytest.raises(RuntimeError):
        L.cholesky_ex(ember.tensor([[1.0, 2.0], [2.0, 1.0]]), check_errors=True)


def test_float32_works():
    a = ember.tensor(_spd(3).astype(np.float32), requires_grad=True)
    L.det(a).backward()
    t = torch.tensor(a.detach().numpy(), requires_grad=True)
    torch.linalg.det(t).backward()
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-4)
    assert L.inv(a).dtype is ember.float32


def test_under_compile_the_decomposition_is_a_graph_break_b015():
    def f(a, b):
        return L.solve(a * 2, b).relu().sum()
    a, b = ember.tensor(_spd(3)), ember.randn(3, 2, dtype=ember.float64)
    with records.collect() as recs:
        r = ember.compile(f, backend="eager")(a, b)
    assert r.item() == pytest.approx(f(a, b).item())
    br = [q for q in recs if q.kind == "breaks"]
    assert br and br[0].code == "B015" and "LAPACK" in br[0].reason
