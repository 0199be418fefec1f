"""matmul (all the 1-D / batched / broadcast cases), mm, bmm, einsum, sort, topk, multinomial ..."""
import numpy as np
import pytest

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, gradcheck

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

MATMUL = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
          ((5, 2, 3), (5, 3, 4)), ((2, 1, 2, 3), (5, 3, 4)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)), ((1, 3), (3, 1))]


@pytest.mark.parametrize("a,b", MATMUL, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul(a, b, dtype): check("matmul", lambda x, y: x @ y, None, a, b, dtype=dtype)


def test_matmul_fn(): check("matmul", E.matmul, T.matmul, (4, 3), (3, 2))
def test_matmul_int(): check("matmul", lambda x, y: x @ y, None, (4, 3), (3, 2), dtype="int64")
def test_mm(): check("mm", lambda x, y: x.mm(y), None, (4, 3), (3, 2))
def test_bmm(): check("bmm", lambda x, y: x.bmm(y), None, (2, 4, 3), (2, 3, 5))
def test_mv(): check("mv", lambda x, y: x.mv(y), None, (4, 3), (3,))
def test_dot(): check("dot", lambda x, y: x.dot(y), None, (4,), (4,))
def test_outer(): check("outer", lambda x, y: x.outer(y), None, (4,), (3,))
def test_addmm(): check("addmm", lambda b, x, y: E.addmm(b, x, y, beta=0.5, alpha=2), lambda b, x, y: T.addmm(b, x, y, beta=0.5, alpha=2), (2,), (4, 3), (3, 2))
def test_baddbmm(): check("baddbmm", lambda b, x, y: E.baddbmm(b, x, y), lambda b, x, y: T.baddbmm(b, x, y), (2, 4, 2), (2, 4, 3), (2, 3, 2))
def test_addbmm(): check("addbmm", lambda b, x, y: E.addbmm(b, x, y, beta=0.5, alpha=2), lambda b, x, y: T.addbmm(b, x, y, beta=0.5, alpha=2), (4, 2), (3, 4, 3), (3, 3, 2))
def test_addmv(): check("addmv", lambda b, x, y: b.addmv(x, y, alpha=3), lambda b, x, y: b.addmv(x, y, alpha=3), (4,), (4, 3), (3,))
def test_addr(): check("addr", lambda b, x, y: E.addr(b, x, y, beta=2), lambda b, x, y: T.addr(b, x, y, beta=2), (4, 3), (4,), (3,))


@pytest.mark.parametrize("op", ["addmm", "addmv", "addr", "baddbmm", "addbmm"])
def test_beta_zero_ignores_input_nan_but_grads_it(op):
    """PyTorch's add* rule: beta == 0 drops the input (its nan does not propagate), its gradient is zero."""
    shapes = {"addmm": ((2, 2), (2, 3), (3, 2)), "addmv": ((2,), (2, 3), (3,)), "addr": ((2, 3), (2,), (3,)),
              "baddbmm": ((2, 2, 2), (2, 2, 3), (2, 3, 2)), "addbmm": ((2, 2), (2, 2, 3), (2, 3, 2))}[op]
    x = E.full(shapes[0], float("nan"), requires_grad=True)
    a, b = E.randn(*shapes[1]), E.randn(*shapes[2])
    out = getattr(E, op)(x, a, b, beta=0)
    assert not out.isnan().any()
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(shapes[0], np.float32))


def test_matmul_errors():
    with pytest.raises(RuntimeError, match=r"cannot be multiplied \(2x3 and 4x5\)"):
        E.ones(2, 3) @ E.ones(4, 5)
    with pytest.raises(RuntimeError, match="same dtype"):
        E.ones(2, 3) @ E.ones(3, 4, dtype=E.float64)
    with pytest.raises(RuntimeError, match="1D"):
        E.ones(()) @ E.ones(3)
    with pytest.raises(RuntimeError, match="must be a matrix"):
        E.ones(3).mm(E.ones(3, 2))
    with pytest.raises(RuntimeError, match="3D"):
        E.ones(3, 2).bmm(E.ones(2, 3))


EINSUM = [("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
          ("ii->i", [(3, 3)]), ("ii", [(3, 3)]), ("ij->ji", [(2, 3)]), ("ij->", [(2, 3)]), ("i,i->", [(4,), (4,)]),
          ("i,j->ij", [(3,), (4,)]), ("...ij,...jk->...ik", [(5, 2, 3), (5, 3, 4)]), ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
          ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]), ("abc->cab", [(2, 3, 4)]), ("ijk,ik->j", [(2, 3, 4), (2, 4)]),
          ("i j, j k -> i k", [(2, 3), (3, 4)]), ("ij,ij->ij", [(2, 3), (2, 3)])]


@pytest.mark.parametrize("eq,shapes", EINSUM, ids=[e for e, _ in EINSUM])
def test_einsum(eq, shapes): check("einsum", lambda *xs: E.einsum(eq, *xs), lambda *xs: T.einsum(eq, *xs), *shapes)


def test_einsum_list(): check("einsum", lambda x, y: E.einsum("ij,jk", [x, y]), lambda x, y: T.einsum("ij,jk", [x, y]), (2, 3), (3, 4))


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort(dim, descending): check("sort", lambda x: tuple(x.sort(dim, descending=descending)), None, (4, 5))


@pytest.mark.parametrize("dtype", ["int64", "int32", "float16", "uint8", "bool"])
def test_sort_dtypes(dtype): check("sort", lambda x: tuple(x.sort(descending=True, stable=True)), None, (4, 6), dtype=dtype, low=0, high=4)


def test_sort_stable(): check("sort", lambda x: tuple(x.sort(stable=True)), None, np.array([3, 1, 3, 1, 2, 1]))
def test_sort_stable_desc(): check("sort", lambda x: tuple(x.sort(descending=True, stable=True)), None, np.array([3, 1, 3, 1, 2, 1]))
def test_argsort(): check("argsort", lambda x: x.argsort(0), None, (4, 5))
def test_argsort_desc(): check("argsort", lambda x: x.argsort(descending=True), None, (4, 5))
def test_sort_nan(): check("sort", lambda x: tuple(x.sort()), None, np.array([2.0, np.nan, 1.0, -np.inf], np.float32), grad=False)
def test_sort_0d(): check("sort", lambda x: tuple(x.sort()), None, ())


@pytest.mark.parametrize("k,dim,largest", [(2, -1, True), (1, 0, True), (3, 1, False), (5, -1, True), (0, 1, True)])
def test_topk(k, dim, largest): check("topk", lambda x: tuple(x.topk(k, dim, largest=largest)), None, (4, 5))


def test_topk_int(): check("topk", lambda x: tuple(x.topk(2)), None, (3, 6), dtype="int64", low=-50, high=50)
def test_kthvalue(): check("kthvalue", lambda x: tuple(x.kthvalue(2, 1)), None, (3, 5))
def test_median(): check("median", lambda x: x.median(), None, (3, 5))
def test_median_dim(): check("median", lambda x: tuple(x.median(1)), None, (3, 5))
def test_equal():
    assert E.equal(E.tensor([1, 2]), E.tensor([1, 2])) is True
    assert E.equal(E.tensor([1, 2]), E.tensor([1, 3])) is False
    assert E.equal(E.tensor([1, 2]), E.tensor([1, 2, 3])) is False
    assert E.tensor([1.0]).equal(E.tensor([1.0]))


def test_allclose():
    a = E.tensor([1.0, 2.0, float("nan")])
    assert E.allclose(a[:2], a[:2] + 1e-9)
    assert not E.allclose(a[:2], a[:2] + 1e-3)
    assert not E.allclose(a, a)
    assert E.allclose(a, a, equal_nan=True)
    assert E.tensor([1.0, 2.0]).allclose(E.tensor([1.001, 2.0]), rtol=1e-2)
    check("isclose", lambda x, y: x.isclose(y, atol=0.5), None, (3, 4), (3, 4), grad=False)


def test_multinomial_reproducible_and_valid():
    p = E.tensor([[0.0, 1.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    E.manual_seed(0)
    a = E.multinomial(p, 2)
    E.manual_seed(0)
    b = p.multinomial(2) if hasattr(p, "multinomial") else E.multinomial(p, 2)
    assert a.tolist() == b.tolist() and a.dtype is E.int64 and a.shape == (2, 2)
    assert sorted(a[0].tolist()) == [1, 2]
    assert len(set(a[1].tolist())) == 2
    r = E.multinomial(E.tensor([0.2, 0.8]), 4000, replacement=True)
    frac = float((r == 1).float().mean())
    assert 0.75 < frac < 0.85
    with pytest.raises(RuntimeError, match="without replacement"):
        E.multinomial(E.tensor([0.5, 0.5]), 3)
    with pytest.raises(RuntimeError):
        E.multinomial(E.tensor([-1.0, 2.0]), 1)


@pytest.mark.parametrize("fn", [lambda x, y: x @ y, lambda x, y: E.einsum("ij,kj->ik", x, y.t()),
                                lambda x, y: (x @ y).sort(1)[0], lambda x, y: (x @ y).topk(2)[0]])
def test_gradcheck_linalg(fn):
    rng = np.random.default_rng(0)
    gradcheck(fn, [rng.normal(size=(3, 4)), rng.normal(size=(4, 5))])
