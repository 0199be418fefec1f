"""The functions of ember/frontend/math_extra.py against torch: values, dtypes, shapes, gradients,
errors, and ember.compile == eager for some of them."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, assert_close, check, gradcheck  # noqa: E402

pytestmark = NUMPY_WARNINGS_ARE_ERRORS
NAN, INF = float("nan"), float("inf")
DTYPES = ("float32", "float64", "int64", "bool")


def _both(path):
    """ember.<path> / torch.<path> by the argument's type ("special.i0" reaches into the namespace)."""
    def fn(*xs, **kw):
        first = xs[0][0] if isinstance(xs[0], (list, tuple)) else xs[0]
        mod = ember if isinstance(first, E.Tensor) else torch
        for part in path.split("."):
            mod = getattr(mod, part)
        return mod(*xs, **kw)
    return fn


def _pair(fn, *arrays, rtol=1e-6, atol=1e-6):
    """fn(ember, *tensors) against fn(torch, *tensors): shape, dtype and values."""
    e = fn(ember, *[ember.tensor(a) for a in arrays])
    t = fn(torch, *[torch.tensor(a) for a in arrays])
    for a, r in zip(e if isinstance(e, tuple) else (e,), t if isinstance(t, tuple) else (t,)):
        assert_close(a, r, rtol, atol, str(fn))
    return e, t


# ---------------------------------------------------------------------- special functions
# (name, low, high): ranges that cover the series' branches (reflection, recurrence, tails)
UNARY = [("erfc", -4.0, 12.0), ("lgamma", -4.5, 25.0), ("digamma", -4.5, 25.0), ("special.erfc", -3.0, 3.0),
         ("special.gammaln", -4.5, 6.0), ("special.digamma", 0.1, 6.0), ("special.psi", -3.0, 3.0),
         ("special.i0", -30.0, 30.0), ("i0", -5.0, 5.0), ("special.ndtr", -9.0, 9.0),
         ("special.log_ndtr", -45.0, 12.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,low,high", UNARY, ids=[u[0] for u in UNARY])
def test_special_unary(name, low, high, dtype):
    # float32 results (also of integer inputs) are computed in float64 here, in float32 by PyTorch
    tol = dict(rtol=1e-9, atol=1e-12, grad_rtol=1e-7, grad_atol=1e-10) if dtype == "float64" else \
        dict(rtol=2e-5, atol=1e-5, grad_rtol=2e-4, grad_atol=1e-5)
    check(name, _both(name), None, (40,), dtype=dtype, low=low, high=high, **tol)


SPECIAL_VALUES = np.array([NAN, INF, -INF, -0.0, 0.0, 1.0, 2.0, -1.0, -2.0, -2.5, 0.5, 1e-8, -1e-8, 3.0, 30.0, -30.0,
                           171.0, 1e30, -1e30, 2.5, 2.4999, 1.4616321449683622], dtype=np.float64)


@pytest.mark.parametrize("name", ["erfc", "lgamma", "digamma", "i0", "special.ndtr", "special.log_ndtr"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values(name, dtype):
    """NaN, the infinities, signed zeros, poles, the branch edges and huge arguments, as PyTorch."""
    x = SPECIAL_VALUES.astype(dtype)
    _pair(lambda m, t: _both(name)(t), x, rtol=1e-6 if dtype == "float32" else 1e-12,
          atol=1e-7 if dtype == "float32" else 1e-14)      # digamma's float32 root: PyTorch's is off by 2e-8


def test_lgamma_digamma_grad_of_grad():
    """lgamma' = digamma, digamma' = polygamma(1) (and finite differences agree)."""
    x = np.array([0.3, 1.0, 1.7, -2.5, -0.4, 5.0, 12.0, 30.0])
    e = ember.tensor(x, requires_grad=True)
    g1, = ember.autograd.grad(ember.lgamma(e).sum(), e, create_graph=True)
    g2, = ember.autograd.grad(g1.sum(), e)
    np.testing.assert_allclose(g1.detach().numpy(), torch.digamma(torch.tensor(x)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(g2.numpy(), torch.polygamma(1, torch.tensor(x)).numpy(), rtol=1e-9)
    h = 1e-6
    fd = (ember.digamma(ember.tensor(x + h)) - ember.digamma(ember.tensor(x - h))).numpy() / (2 * h)
    np.testing.assert_allclose(fd, g2.numpy(), rtol=1e-6)


def test_special_inplace_and_methods():
    x = np.linspace(0.1, 4.0, 7)
    for name in ("erfc", "lgamma", "digamma", "i0", "sgn"):
        e, t = ember.tensor(x), torch.tensor(x)
        getattr(e, name + "_")()
        getattr(t, name + "_")()
        assert_close(e, t, 1e-12, 1e-14, name)
        assert_close(getattr(ember.tensor(x), name)(), getattr(torch.tensor(x), name)(), 1e-12, 1e-14, name)


# ------------------------------------------------------------------------------- small ones
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgn(dtype): check("sgn", _both("sgn"), None, (3, 4), dtype=dtype, grad=False)   # torch: a ZeroTensor


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int8"])
def test_positive(dtype):
    check("positive", _both("positive"), None, (3, 4), dtype=dtype)
    x = ember.ones(2)
    assert x.positive() is x


def test_sgn_special_values():
    _pair(lambda m, t: m.sgn(t), np.array([NAN, -0.0, 0.0, -INF, INF, -2.0], np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_rsub(dtype):
    check("rsub", _both("rsub"), None, (3, 4), (4,), dtype=dtype)
    check("rsub", lambda a: _both("rsub")(a, 5, alpha=2), None, (3,), dtype=dtype)


def test_rsub_promotion_and_errors():
    _pair(lambda m, t: m.rsub(t, 2.5), np.array([1, 2]))
    _pair(lambda m, t, o: m.rsub(t, o, alpha=2.0), np.array([1.0, 2.0], np.float32), np.array([3, 4]))
    with pytest.raises(RuntimeError, match="alpha must not be a floating point"):
        ember.rsub(ember.tensor([1, 2]), 5, alpha=0.5)
    with pytest.raises(RuntimeError, match="Subtraction"):
        ember.rsub(ember.tensor([True]), ember.tensor([True]))
    with pytest.raises(RuntimeError, match="bool tensor is not supported"):
        ember.positive(ember.tensor([True]))


def test_scalar_tensor():
    for args, kw in (((3,), {}), ((True,), {}), ((2.5,), {"dtype": "float64"}), ((7,), {"dtype": "int64"})):
        kw_e = {k: getattr(ember, v) for k, v in kw.items()}
        kw_t = {k: getattr(torch, v) for k, v in kw.items()}
        assert_close(ember.scalar_tensor(*args, **kw_e), torch.scalar_tensor(*args, **kw_t), 0, 0)
    assert ember.scalar_tensor(1.0, requires_grad=True).requires_grad


# ----------------------------------------------------------------------------- integer ops
INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8")


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_gcd_lcm(dtype):
    lo = 0 if dtype == "uint8" else -40
    check("gcd", _both("gcd"), None, (5, 6), (6,), dtype=dtype, low=lo, high=40)
    check("lcm", _both("lcm"), None, (5, 6), (5, 1), dtype=dtype, low=lo, high=12)


def test_gcd_lcm_edges():
    a = np.array([12, -18, 0, 0, 7, 2 ** 40 * 3, -(2 ** 62), 832040])
    b = np.array([8, 12, 0, -5, -3, 2 ** 35 * 9, 2 ** 61, 514229])      # the last pair: consecutive Fibonacci
    for op in ("gcd", "lcm"):
        _pair(lambda m, x, y: getattr(m, op)(x, y), a, b)
        _pair(lambda m, x, y: getattr(m, op)(x, y), np.array([-128, 12], np.int8), np.array([0, 3], np.int8))
        _pair(lambda m, x, y: getattr(m, op)(x, y), np.array([12, 9], np.int8), np.array([8, 6]))   # -> int64
        e, t = ember.tensor(a), torch.tensor(a)
        getattr(e, op + "_")(ember.tensor(b))
        getattr(t, op + "_")(torch.tensor(b))
        assert_close(e, t, 0, 0, op + "_")


def test_gcd_errors():
    with pytest.raises(NotImplementedError, match="gcd_cpu.*Float"):
        ember.gcd(ember.tensor([12.0]), ember.tensor([8.0]))
    with pytest.raises(NotImplementedError, match="Bool"):
        ember.lcm(ember.tensor([True]), ember.tensor([True]))
    with pytest.raises(TypeError):
        ember.gcd(ember.tensor([12]), 8)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_shifts(dtype):
    bits = 8 * np.dtype(dtype).itemsize
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, size=(4, bits + 6), endpoint=True).astype(dtype)
    a[0, :4] = [0, 1, -1 if info.min else 1, info.min]
    b = np.arange(-3 if info.min else 0, bits + 3)[: bits + 6].astype(dtype)
    b = np.resize(b, bits + 6).astype(dtype)
    for op in ("bitwise_left_shift", "bitwise_right_shift", "__lshift__", "__rshift__"):
        _pair(lambda m, x, y: getattr(m if op[0] == "b" else x, op)(*((x, y) if op[0] == "b" else (y,))), a, b)
    _pair(lambda m, x: x << 3, a)
    _pair(lambda m, x: x >> 2, a)
    _pair(lambda m, x: 3 << x, b[b >= 0] % bits)        # __rlshift__, the count a tensor
    _pair(lambda m, x: -100 >> x if dtype != "uint8" else 200 >> x, b[b >= 0] % bits)


def test_shift_inplace_promotion_and_errors():
    for op in ("__ilshift__", "__irshift__", "bitwise_left_shift_", "bitwise_right_shift_"):
        e, t = ember.tensor([1, -8, 100, -1, 7]), torch.tensor([1, -8, 100, -1, 7])
        getattr(e, op)(ember.tensor([0, 1, 63, 64, -1]))
        getattr(t, op)(torch.tensor([0, 1, 63, 64, -1]))
        assert_close(e, t, 0, 0, op)
    _pair(lambda m, x, y: x << y, np.array([1, 2], np.int8), np.array([1, 2]))      # int8, int64 -> int64
    _pair(lambda m, x: x << 1, np.array([True, False]))                              # bool, int -> int64
    _pair(lambda m, x: m.bitwise_left_shift(3, x), np.array([1, 2]))
    for bad in (ember.tensor([1.0]), ember.tensor([True])):
        with pytest.raises(NotImplementedError, match="lshift_cpu"):
            bad << bad
    with pytest.raises(NotImplementedError, match="rshift_cpu.*Float"):
        ember.tensor([1, 2]) >> 1.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_heaviside(dtype):
    x = np.array([[-1.5, 0.0, 2.0, -0.0], [0.0, 3.0, -2.0, 1.0]]).astype(dtype)
    v = np.array([0.5, 7.0, 0.0, -1.0]).astype(dtype)
    _pair(lambda m, a, b: m.heaviside(a, b), x, v)
    _pair(lambda m, a, b: a.heaviside(b), x, v[:1])


def test_heaviside_nan_inplace_errors():
    _pair(lambda m, a, b: m.heaviside(a, b), np.array([NAN, -INF, INF], np.float32), np.array([0.5], np.float32))
    e, t = ember.tensor([-1.0, 0.0, 2.0]), torch.tensor([-1.0, 0.0, 2.0])
    e.heaviside_(ember.tensor([0.25]))
    t.heaviside_(torch.tensor([0.25]))
    assert_close(e, t, 0, 0)
    with pytest.raises(RuntimeError, match="different dtypes"):
        ember.heaviside(ember.tensor([1, 0]), ember.tensor([0.5]))
    with pytest.raises(TypeError):
        ember.heaviside(ember.tensor([1.0]), 0.5)


# -------------------------------------------------------------------------------- stacking
@pytest.mark.parametrize("dtype", DTYPES)
def test_column_stack_dstack_row_stack(dtype):
    for name in ("column_stack", "dstack", "row_stack"):
        check(name, lambda a, b, c: _both(name)([a, b, c]), None, (4,), (4,), (4,), dtype=dtype)
    check("column_stack", lambda a, b, c: _both("column_stack")([a, b, c]), None, (3,), (3, 2), (3,), dtype=dtype)
    check("column_stack", lambda a, b: _both("column_stack")([a, b]), None, (2, 2, 3), (2, 1, 3), dtype=dtype)
    check("dstack", lambda a, b: _both("dstack")([a, b]), None, (2, 3), (2, 3, 2), dtype=dtype)
    check("row_stack", lambda a, b: _both("row_stack")([a, b]), None, (2, 3), (3,), dtype=dtype)


def test_stacking_mixed_dtypes_scalars_errors():
    _pair(lambda m, a, b, c: m.column_stack([a, b, c]), np.array([1, 2]), np.array([[3.0], [4.0]], np.float32),
          np.array([5, 6], np.int8))
    _pair(lambda m, a, b: m.column_stack([a, b]), np.array(1), np.array(2))
    _pair(lambda m, a, b: m.dstack([a, b]), np.array(1), np.array(2.0))
    for name in ("column_stack", "dstack", "row_stack"):
        with pytest.raises(RuntimeError, match="non-empty"):
            getattr(ember, name)([])


@pytest.mark.parametrize("dtype", DTYPES)
def test_msort(dtype):
    check("msort", _both("msort"), None, (5, 3), dtype=dtype)
    check("msort", lambda x: x.msort(), None, (6,), dtype=dtype)


# ---------------------------------------------------------------------------- trapezoid
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_trapezoid(dtype):
    check("trapezoid", _both("trapezoid"), None, (3, 5), dtype=dtype)
    check("trapezoid", lambda y: _both("trapezoid")(y, dx=0.25, dim=0), None, (4, 3), dtype=dtype)
    check("trapezoid", lambda y: _both("trapezoid")(y, dx=2), None, (4,), dtype=dtype)
    check("trapezoid", _both("trapezoid"), None, (3, 5), (5,), dtype=dtype)               # x 1-d
    check("trapezoid", _both("trapezoid"), None, (3, 5), (3, 5), dtype=dtype)             # x like y
    check("trapezoid", lambda y, x: _both("trapezoid")(y, x, dim=0), None, (4, 3), (4,), dtype=dtype)
    check("trapz", _both("trapz"), None, (2, 6), (6,), dtype=dtype)
    check("trapz", lambda y: _both("trapz")(y, dx=3.0), None, (2, 6), dtype=dtype)


def test_trapezoid_edges_and_errors():
    for shape, dim in (((1,), -1), ((2, 0), -1), ((2, 0), 0), ((3, 1), 1)):
        _pair(lambda m, y: m.trapezoid(y, dim=dim), np.ones(shape, np.float32))
    _pair(lambda m, y, x: m.trapezoid(y, x), np.array([1.0, 2.0, 4.0]), np.array([0, 1, 3]))     # float64, int64
    _pair(lambda m, y, x: m.trapezoid(y, x), np.array([1, 2, 4]), np.array([0, 1, 3]))           # ints: float32
    with pytest.raises(RuntimeError, match="bool is not supported"):
        ember.trapezoid(ember.tensor([True, False]))
    with pytest.raises(RuntimeError, match="one `x` value for each sample point"):
        ember.trapezoid(ember.ones(2, 3), ember.ones(4))
    with pytest.raises(TypeError):
        ember.trapezoid(ember.ones(3), 2.0)
    with pytest.raises(IndexError):
        ember.trapezoid(ember.tensor(1.0))


# ---------------------------------------------------------------------- vander, combinations
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int8", "bool"])
def test_vander(dtype):
    # PyTorch 2.x's own vander backward fails (an in-place cumprod): gradients against finite differences
    check("vander", _both("vander"), None, (4,), dtype=dtype, grad=False)
    check("vander", lambda x: _both("vander")(x, N=6, increasing=True), None, (3,), dtype=dtype, grad=False)
    check("vander", lambda x: _both("vander")(x, 2), None, (5,), dtype=dtype, grad=False)
    check("vander", lambda x: _both("vander")(x, N=0), None, (3,), dtype=dtype, grad=False)


def test_vander_grad_empty_errors():
    gradcheck(lambda x: ember.vander(x, 5), [np.array([0.0, 1.5, -2.0, 0.0, 0.7])])
    gradcheck(lambda x: ember.vander(x, increasing=True), [np.array([0.3, -1.1, 0.0])])
    _pair(lambda m, x: m.vander(x), np.zeros((0,), np.float32))
    for bad, match in ((ember.ones(2, 2), "one-dimensional"), (ember.tensor(2.0), "one-dimensional")):
        with pytest.raises(RuntimeError, match=match):
            ember.vander(bad)
    with pytest.raises(RuntimeError, match="non-negative"):
        ember.vander(ember.ones(2), N=-1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_combinations(dtype):
    for r, rep in ((2, False), (3, False), (2, True), (3, True), (1, False), (5, False), (0, False)):
        check("combinations", lambda x: _both("combinations")(x, r=r, with_replacement=rep), None, (4,),
              dtype=dtype)
    _pair(lambda m, x: m.combinations(x), np.zeros((0,), np.float32))
    with pytest.raises(RuntimeError, match="Expect a 1D vector"):
        ember.combinations(ember.ones(1, 2))
    with pytest.raises(RuntimeError, match="non-negative"):
        ember.combinations(ember.ones(3), r=-1)


# ------------------------------------------------------------------------ mode, nanmedian
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
def test_mode(dtype):
    # few distinct values: many ties, in count and in value (the smallest wins, at its last index)
    x = np.random.default_rng(3).integers(0, 2 if dtype == "bool" else 4, size=(6, 7)).astype(dtype)
    for dim, keepdim in ((-1, False), (0, True), (1, False)):
        check("mode", lambda t: _both("mode")(t, dim, keepdim), None, x, dtype=dtype)
    assert type(ember.mode(ember.tensor([[1, 2]]))).__name__ == "mode"


def test_mode_grad_scalar_errors():
    x = np.array([[3.0, 1.0, 2.0, 1.0, 2.0, 3.0, 3.0, 1.0], [2.0, 2.0, 1.0, 1.0, 2.0, 1.0, 5.0, 5.0]])
    check("mode", lambda t: t.mode(1), None, x, dtype="float64")
    _pair(lambda m, t: m.mode(t), np.array(5.0))
    _pair(lambda m, t: m.mode(t, 0), np.array(5.0))
    with pytest.raises(IndexError, match="non-zero size"):
        ember.mode(ember.zeros(2, 0), 1)


NM = np.array([[1.0, NAN, 3.0, 2.0], [2.0, 2.0, 1.0, 1.0], [NAN, 1.0, 1.0, NAN], [5.0, 1.0, 5.0, 1.0]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nanmedian(dtype):
    x = NM.astype(dtype)
    check("nanmedian", _both("nanmedian"), None, x, dtype=dtype)                 # full: ties share the grad
    check("nanmedian", lambda t: t.nanmedian(1), None, x, dtype=dtype)
    check("nanmedian", lambda t: t.nanmedian(0, keepdim=True), None, x, dtype=dtype)
    check("nanmedian", lambda t: t.nanmedian(-1), None, (5, 6), dtype=dtype)
    _pair(lambda m, t: m.nanmedian(t), np.array([NAN, NAN], dtype))
    _pair(lambda m, t: m.nanmedian(t), np.zeros((0,), dtype))
    _pair(lambda m, t: m.nanmedian(t, 0), np.array(3.0, dtype))


def test_nanmedian_ints_and_errors():
    check("nanmedian", lambda t: t.nanmedian(1), None, (4, 5), dtype="int64", low=0, high=3)
    check("nanmedian", _both("nanmedian"), None, (4, 5), dtype="int32")
    with pytest.raises(NotImplementedError, match="Bool"):
        ember.nanmedian(ember.tensor([True, False]))
    with pytest.raises(IndexError, match="non-zero size"):
        ember.nanmedian(ember.zeros(2, 0), 1)


# ---------------------------------------------------------------------------- masked_scatter
MASK = np.array([[True, False, True], [False, True, True]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_scatter(dtype):
    mask_e, mask_t = ember.tensor(MASK), torch.tensor(MASK)

    def fn(x, src, row=False):
        m = mask_e if isinstance(x, E.Tensor) else mask_t
        return x.masked_scatter(m[0] if row else m, src)
    check("masked_scatter", fn, None, (2, 3), (7,), dtype=dtype)
    check("masked_scatter", lambda x, s: fn(x, s, True), None, (2, 3), (2, 5), dtype=dtype)      # mask broadcast
    check("masked_scatter", lambda x, s: fn(x, s, True), None, (3,), (4,), dtype=dtype)          # x broadcast


def test_masked_scatter_inplace_and_errors():
    e, t = ember.zeros(2, 3), torch.zeros(2, 3)
    e.masked_scatter_(ember.tensor([[True], [False]]), ember.arange(10.0))
    t.masked_scatter_(torch.tensor([[True], [False]]), torch.arange(10.0))
    assert_close(e, t, 0, 0)
    _pair(lambda m, x, k, s: m.masked_scatter(x, k, s), np.zeros(4, np.float32), np.zeros(4, bool),
          np.zeros(0, np.float32))
    with pytest.raises(RuntimeError, match="Number of elements of source < number of ones in mask"):
        ember.zeros(2, 3).masked_scatter(ember.tensor([True, False, True]), ember.arange(3.0))
    with pytest.raises(RuntimeError, match="only supports boolean masks"):
        ember.zeros(3).masked_scatter(ember.tensor([1, 0, 1], dtype=ember.uint8), ember.arange(3.0))
    with pytest.raises(RuntimeError, match="same dtypes"):
        ember.zeros(3).masked_scatter(ember.tensor([True, False, True]), ember.arange(3))
    with pytest.raises(RuntimeError):
        ember.zeros(3).masked_scatter_(ember.tensor([[True], [False]]), ember.arange(10.0))


# ---------------------------------------------------------------------------------- compile
def test_compiled_matches_eager():
    x = ember.tensor(np.linspace(-3.7, 9.3, 24).reshape(4, 6))
    fns = [lambda t: ember.erfc(t) + ember.lgamma(t),
           lambda t: ember.digamma(t) * ember.special.log_ndtr(t),
           lambda t: ember.trapezoid(t, dx=0.5) + ember.trapezoid(t, t[0], dim=1),
           lambda t: ember.vander(t[0], 4).sum(0) + ember.column_stack([t[0], t[1]]).sum(1).sum()]
    for fn in fns:
        np.testing.assert_allclose(ember.compile(fn)(x).numpy(), fn(x).numpy(), rtol=1e-12, atol=1e-12)
    i = ember.tensor(np.arange(-12, 12).reshape(4, 6), dtype=ember.int8)   # gcd traces a fixed loop: short for int8
    for fn in (lambda t: (t << 3) + (t >> 2) + (t << t[0]), lambda t: ember.gcd(t, t[0] + 7)):
        assert ember.compile(fn)(i).tolist() == fn(i).tolist()


def test_compiled_gradient_matches_eager():
    x = np.linspace(0.2, 6.0, 12)

    def loss(t):
        return (ember.lgamma(t) * ember.erfc(t * 0.3)).sum() + ember.trapezoid(ember.digamma(t))

    grads = []
    for f in (loss, ember.compile(loss)):
        t = ember.tensor(x, requires_grad=True)
        f(t).backward()
        grads.append(t.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
