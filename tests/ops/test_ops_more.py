"""The elementwise composites of ember/frontend/math_special.py and the indexing ops of
ember/frontend/indexing_ops.py against torch (values, dtypes, gradients, errors), plus compiled == eager."""
import math

import numpy as np
import pytest

import ember
from ember import diagnostics as records
from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, needs_torch, torch

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

S = (3, 4)
F = ("float32", "float64")


# ------------------------------------------------------------------------------ elementwise
@pytest.mark.parametrize("dtype", F)
class TestUnaryComposites:
    def test_atan(self, dtype): check("atan", lambda x: x.atan(), None, S, dtype=dtype, low=-6, high=6)
    def test_asin(self, dtype): check("asin", lambda x: x.asin(), None, S, dtype=dtype, low=-0.95, high=0.95)
    def test_acos(self, dtype): check("acos", lambda x: x.acos(), None, S, dtype=dtype, low=-0.95, high=0.95)
    def test_sinh(self, dtype): check("sinh", lambda x: x.sinh(), None, S, dtype=dtype, low=-3, high=3)
    def test_cosh(self, dtype): check("cosh", lambda x: x.cosh(), None, S, dtype=dtype, low=-3, high=3)
    def test_asinh(self, dtype): check("asinh", lambda x: x.asinh(), None, S, dtype=dtype, low=-4, high=4)
    def test_acosh(self, dtype): check("acosh", lambda x: x.acosh(), None, S, dtype=dtype, low=1.1, high=5)
    def test_atanh(self, dtype): check("atanh", lambda x: x.atanh(), None, S, dtype=dtype, low=-0.9, high=0.9)
    def test_erfinv(self, dtype): check("erfinv", lambda x: x.erfinv(), None, S, dtype=dtype, low=-0.99, high=0.99)
    def test_deg2rad(self, dtype): check("deg2rad", lambda x: x.deg2rad(), None, S, dtype=dtype, low=-360, high=360)
    def test_rad2deg(self, dtype): check("rad2deg", lambda x: x.rad2deg(), None, S, dtype=dtype)
    def test_sinc(self, dtype): check("sinc", lambda x: x.sinc(), None, S, dtype=dtype, low=-3, high=3)
    def test_logit(self, dtype): check("logit", lambda x: x.logit(), None, S, dtype=dtype, low=0.05, high=0.95)
    def test_logit_eps(self, dtype): check("logit", lambda x: ember.logit(x, 0.2) if isinstance(x, E.Tensor)
                                           else torch.logit(x, 0.2), None, S, dtype=dtype, low=0.05, high=0.95)


@pytest.mark.parametrize("dtype", F)
class TestBinaryComposites:
    def test_atan2(self, dtype): check("atan2", E.atan2, T.atan2, S, S, dtype=dtype, low=-3, high=3)
    def test_atan2_broadcast(self, dtype): check("atan2", E.atan2, T.atan2, S, (4,), dtype=dtype)
    def test_hypot(self, dtype): check("hypot", E.hypot, T.hypot, S, S, dtype=dtype)
    def test_logaddexp(self, dtype): check("logaddexp", E.logaddexp, T.logaddexp, S, S, dtype=dtype, low=-5, high=5)
    def test_logaddexp2(self, dtype): check("logaddexp2", E.logaddexp2, T.logaddexp2, S, S, dtype=dtype)
    def test_xlogy(self, dtype): check("xlogy", E.xlogy, T.xlogy, S, S, dtype=dtype, low=0.1, high=3)
    def test_copysign(self, dtype):    # the gradient of the sign source is zero (None here, zeros in torch)
        check("copysign", lambda a, b: E.copysign(a, b.detach()) if isinstance(a, E.Tensor) else
              T.copysign(a, b.detach()), None, S, S, dtype=dtype)


@needs_torch
@pytest.mark.parametrize("name,xs", [
    ("atan", [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-300, 1e300, 0.66, 2.4142135623730951, -1e5]),
    ("asin", [-1.0, 1.0, 1.5, -2.0, 0.0, 1e-200, math.nan]),
    ("acos", [-1.0, 1.0, 1.5, 0.0, math.nan]),
    ("sinh", [0.0, 1e-10, -30.0, 700.0, 710.0, -710.0, math.inf, math.nan]),
    ("cosh", [0.0, 1e-10, -30.0, 700.0, 710.0, math.inf, -math.inf, math.nan]),
    ("asinh", [0.0, -1e-10, 1e10, -1e300, math.inf, -math.inf, math.nan]),
    ("acosh", [1.0, 0.5, -3.0, 1e10, 1e300, math.inf, math.nan]),
    ("atanh", [1.0, -1.0, 1.5, 0.0, 1e-12, 0.999999, math.nan]),
    ("erfinv", [1.0, -1.0, 1.5, -2.0, 0.0, 1e-12, 0.7, -0.7, 0.999999, math.nan]),
])
def test_special_values_float64(name, xs):
    x = np.array(xs)
    e = getattr(ember, name)(ember.tensor(x)).numpy()
    # sinh and cosh of 710 are finite (1.117e308); PyTorch's vectorised AVX2 kernel overflows there (its
    # AVX-512 one does not): libm's value (numpy's) is the reference for those two
    ref = np if name in ("sinh", "cosh") else None
    t = getattr(ref, name)(x) if ref else getattr(torch, name)(torch.tensor(x)).numpy()
    # erfinv's Newton steps on erf lose digits as erf(x) nears 1 (1e-11 at 1 - 1e-6)
    np.testing.assert_allclose(e, t, rtol=1e-10 if name == "erfinv" else 1e-12, atol=0, equal_nan=True)


@needs_torch
@pytest.mark.parametrize("name", ["atan2", "hypot", "logaddexp", "logaddexp2", "copysign"])
def test_binary_special_values_float64(name):
    sp = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -2.5]
    y, x = (a.ravel() for a in np.meshgrid(sp, sp))
    e = getattr(ember, name)(ember.tensor(y), ember.tensor(x)).numpy()
    t = getattr(torch, name)(torch.tensor(y), torch.tensor(x)).numpy()
    np.testing.assert_allclose(e, t, rtol=1e-12, atol=1e-15, equal_nan=True)
    if name in ("atan2", "copysign"):       # the signed zeros too
        np.testing.assert_array_equal(np.signbit(e[e == 0]), np.signbit(t[e == 0]))


@needs_torch
def test_xlogy_zero_and_nan_and_scalars():
    x = np.array([0.0, 0.0, 2.0, 0.0, 3.0])
    y = np.array([0.0, math.nan, 0.0, -1.0, 2.0])
    np.testing.assert_array_equal(ember.xlogy(ember.tensor(x), ember.tensor(y)).numpy(),
                                  torch.xlogy(torch.tensor(x), torch.tensor(y)).numpy())
    np.testing.assert_allclose(ember.xlogy(2.0, ember.tensor(y)).numpy(), torch.xlogy(2.0, torch.tensor(y)).numpy())
    np.testing.assert_allclose(ember.xlogy(ember.tensor(x), 3.0).numpy(), torch.xlogy(torch.tensor(x), 3.0).numpy())


@needs_torch
def test_erfinv_float64_accuracy_and_gradient():
    y = np.concatenate([np.linspace(-0.999, 0.999, 401), 1 - np.logspace(-6, -1, 11)])
    e = ember.tensor(y, requires_grad=True)
    t = torch.tensor(y, requires_grad=True)
    np.testing.assert_allclose(ember.erfinv(e).detach().numpy(), torch.erfinv(t).detach().numpy(), rtol=1e-11)
    ember.erfinv(e).sum().backward()
    torch.erfinv(t).sum().backward()
    np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-8)


def test_integer_inputs_compute_in_the_default_float():
    for name in ("atan", "sinh", "cosh", "asinh", "deg2rad", "rad2deg", "erfinv"):
        r = getattr(ember, name)(ember.tensor([0, 1]))
        assert r.dtype is ember.float32, name
    assert ember.atan2(ember.tensor([1]), ember.tensor([2])).dtype is ember.float32
    assert ember.hypot(ember.tensor([3.0], dtype=ember.float64), ember.tensor([4])).dtype is ember.float64


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_inputs_return_half(half):
    x = ember.tensor([0.25, -0.5], dtype=getattr(ember, half))
    for name in ("atan", "asin", "sinh", "erfinv", "atanh"):
        r = getattr(ember, name)(x)
        assert r.dtype is getattr(ember, half)
        np.testing.assert_allclose(r.float().numpy(), getattr(np, {"asin": "arcsin", "atan": "arctan",
                                                                   "atanh": "arctanh"}.get(name, name))(
            x.float().numpy()) if name != "erfinv" else [0.2253, -0.4769], rtol=2e-3 if half == "float16" else 1e-2)


def test_inplace_variants_and_aliases():
    x = ember.tensor([0.1, 0.5])
    y = x.clone().erfinv_()
    np.testing.assert_allclose(y.numpy(), ember.erfinv(x).numpy())
    assert ember.arctan2 is ember.atan2 and ember.arcsinh is ember.asinh
    z = x.clone()
    z.atan2_(ember.tensor([1.0, -1.0]))
    np.testing.assert_allclose(z.numpy(), np.arctan2([0.1, 0.5], [1.0, -1.0]), rtol=1e-6)


def test_trunc_normal_pattern():
    """The timm / DeiT trunc_normal_: uniform, erfinv_, scale, clamp: all values inside [a, b]."""
    ember.manual_seed(0)
    lo, hi = 0.5 * (1 + math.erf(-2 / math.sqrt(2))), 0.5 * (1 + math.erf(2 / math.sqrt(2)))
    t = ember.empty(2000)
    with ember.no_grad():
        t.uniform_(2 * lo - 1, 2 * hi - 1)
        t.erfinv_()
        t.mul_(0.02 * math.sqrt(2.0))
        t.clamp_(min=-0.04, max=0.04)
    a = t.numpy()
    assert a.min() >= -0.04 and a.max() <= 0.04 and abs(a.std() - 0.0176) < 0.002


def test_composites_compile_to_the_eager_values_and_gradients():
    def f(x, y):
        u = x.tanh() * 0.9
        return ember.stack([x.atan(), u.asin(), u.acos(), x.sinh(), x.cosh(), x.asinh(), (x.abs() + 1.2).acosh(),
                            u.atanh(), u.erfinv(), ember.atan2(x, y), ember.hypot(x, y), ember.logaddexp(x, y),
                            ember.xlogy(x.abs(), y.abs() + 0.1), ember.copysign(x, y), x.deg2rad(), x.sinc()])
    ember.manual_seed(0)
    x, y = ember.randn(4, 5, requires_grad=True), ember.randn(4, 5, requires_grad=True)
    w = ember.randn(16, 4, 5)
    eager = f(x, y)
    gx, gy = ember.autograd.grad((eager * w).sum(), [x, y])
    with records.collect() as recs:
        cf = ember.compile(f, backend="auto")
        out = cf(x, y)
        cgx, cgy = ember.autograd.grad((out * w).sum(), [x, y])
    assert not [r for r in recs if r.kind in ("breaks", "fallbacks")], [str(r) for r in recs]
    for a, b in ((out, eager), (cgx, gx), (cgy, gy)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=2e-4, atol=2e-5)


# --------------------------------------------------------------------------------- indexing
def _lt(*a):
    return [ember.tensor(np.asarray(v)) for v in a], [torch.tensor(np.asarray(v)) for v in a]


@needs_torch
@pytest.mark.parametrize("accumulate", [False, True])
def test_index_put_values_and_grads(accumulate):
    rng = np.random.default_rng(0)
    x0, v0 = rng.standard_normal((4, 3, 2)), rng.standard_normal((5, 2))
    i0, i1 = np.array([0, 3, -1, 2, 0]), np.array([1, 2, 0, 0, 1])
    if not accumulate:
        i1 = np.array([1, 2, 0, 0, 2])   # no duplicate positions: torch leaves their winner unspecified
    outs = []
    for lib in (ember, torch):
        x = lib.tensor(x0, requires_grad=True)
        v = lib.tensor(v0, requires_grad=True)
        r = (x * 1).index_put((lib.tensor(i0), lib.tensor(i1)), v, accumulate=accumulate)
        (r * lib.tensor(np.arange(24.0).reshape(4, 3, 2))).sum().backward()
        outs.append([r.detach().numpy(), x.grad.numpy(), v.grad.numpy()])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@needs_torch
def test_index_put_inplace_bool_mask_and_broadcast_value():
    x, t = ember.zeros(3, 4), torch.zeros(3, 4)
    x.index_put_((ember.tensor([True, False, True]),), ember.tensor([1.0, 2, 3, 4]))
    t.index_put_((torch.tensor([True, False, True]),), torch.tensor([1.0, 2, 3, 4]))
    np.testing.assert_array_equal(x.numpy(), t.numpy())
    x.index_put_((ember.tensor([0, 0]), ember.tensor([1, 1])), ember.tensor(5.0), accumulate=True)
    t.index_put_((torch.tensor([0, 0]), torch.tensor([1, 1])), torch.tensor(5.0), accumulate=True)
    np.testing.assert_array_equal(x.numpy(), t.numpy())


def test_index_put_errors():
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 3"):
        ember.zeros(3, 4).index_put_((ember.tensor([0, 5]),), ember.tensor(1.0))
    with pytest.raises(IndexError, match="too many indices"):
        ember.zeros(3).index_put_((ember.tensor([0]), ember.tensor([0])), ember.tensor(1.0))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        ember.zeros(3, 4).index_put_((ember.tensor([0, 1]),), ember.ones(3))
    with pytest.raises(IndexError, match="tensors used as indices"):
        ember.zeros(3).index_put_((ember.tensor([0.0]),), ember.tensor(1.0))


@needs_torch
def test_index_copy_values_grads_and_errors():
    rng = np.random.default_rng(1)
    x0, s0 = rng.standard_normal((3, 5)), rng.standard_normal((3, 2))
    res = []
    for lib in (ember, torch):
        x, s = lib.tensor(x0, requires_grad=True), lib.tensor(s0, requires_grad=True)
        r = x.index_copy(1, lib.tensor([4, 0]), s)
        (r * lib.tensor(np.arange(15.0).reshape(3, 5))).sum().backward()
        res.append([r.detach().numpy(), x.grad.numpy(), s.grad.numpy()])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b)
    y = ember.zeros(3, 2)
    y.index_copy_(0, ember.tensor([2, 0]), ember.tensor([[1.0, 2], [3, 4]]))
    assert y.tolist() == [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]]
    with pytest.raises(IndexError, match=r"Number of indices \(2\) should be equal to source.size\(dim\) \(1\)"):
        ember.zeros(3, 2).index_copy(0, ember.tensor([2, 0]), ember.tensor([[1.0, 2]]))
    with pytest.raises(IndexError, match="same slice shapes"):
        ember.zeros(3, 2).index_copy(0, ember.tensor([2, 0]), ember.zeros(2, 3))


@needs_torch
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_values_and_grads(reduce, include_self):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((4, 3))
    s0 = rng.standard_normal((5, 3))
    x0[1, 0], s0[2, 1], s0[3, 1], s0[0, 2] = 0.0, 0.0, 0.0, 0.0    # zeros for prod's special cases
    s0[4, 0] = s0[1, 0]                                            # a tie for amax/amin
    idx = np.array([[0, 1, 2], [0, 1, 2], [1, 3, 0], [1, 3, 0], [0, 2, 2]])
    res = []
    for lib in (ember, torch):
        x, s = lib.tensor(x0, requires_grad=True), lib.tensor(s0, requires_grad=True)
        r = x.scatter_reduce(0, lib.tensor(idx), s, reduce, include_self=include_self)
        (r * lib.tensor(np.arange(12.0).reshape(4, 3) - 5)).sum().backward()
        res.append([r.detach().numpy(), x.grad.numpy(), s.grad.numpy()])
    for what, a, b in zip(("value", "x.grad", "src.grad"), *res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=what)


@needs_torch
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
def test_scatter_reduce_integers(reduce):
    e, t = _lt([1, 2, 3, 4], [0, 0, 1], [5, 6, 7])
    for inc in (True, False):
        assert ember.scatter_reduce(e[0], 0, e[1], e[2], reduce, include_self=inc).tolist() == \
            torch.scatter_reduce(t[0], 0, t[1], t[2], reduce, include_self=inc).tolist()


def test_scatter_reduce_errors_and_scatter_multiply():
    x = ember.zeros(3)
    with pytest.raises(RuntimeError, match="reduce argument must be either sum, prod, mean, amax or amin"):
        x.scatter_reduce(0, ember.tensor([0]), ember.ones(1), "max")
    with pytest.raises(RuntimeError, match="self.dtype to be equal to src.dtype"):
        x.scatter_reduce(0, ember.tensor([0]), ember.ones(1, dtype=ember.float64), "sum")
    with pytest.raises(IndexError, match="out of bounds"):
        x.scatter_reduce(0, ember.tensor([3]), ember.ones(1), "amax")
    r = ember.full((3,), 2.0).scatter(0, ember.tensor([0, 0, 2]), ember.tensor([3.0, 4.0, 5.0]), reduce="multiply")
    assert r.tolist() == [24.0, 2.0, 10.0]


@needs_torch
def test_unfold_values_grads_and_errors():
    check("unfold", lambda x: x.unfold(1, 3, 2), None, (2, 7, 3), dtype="float64")
    check("unfold", lambda x: x.unfold(-1, 2, 1), None, (4, 5), dtype="float64")
    check("unfold", lambda x: x.unfold(0, 4, 4), None, (9,), dtype="float64")
    assert ember.tensor(5.0).unfold(0, 1, 1).tolist() == [5.0]
    with pytest.raises(RuntimeError, match="maximum size for tensor at dimension 0 is 3 but size is 5"):
        ember.arange(3.0).unfold(0, 5, 1)
    with pytest.raises(RuntimeError, match="step is 0 but must be > 0"):
        ember.arange(3.0).unfold(0, 2, 0)
    x = ember.arange(6.0)
    v = x.unfold(0, 2, 2)
    x[0] = 10.0
    assert v[0, 0].item() == 10.0      # a view, as in PyTorch


@needs_torch
def test_searchsorted_and_bucketize():
    seq, vals = np.array([1, 3, 5, 7]), np.array([[3, 6], [9, 0]])
    for right in (False, True):
        e = ember.searchsorted(ember.tensor(seq), ember.tensor(vals), right=right)
        t = torch.searchsorted(torch.tensor(seq), torch.tensor(vals), right=right)
        assert e.tolist() == t.tolist() and e.dtype is ember.int64
    s2 = np.array([[1.0, 3, 5], [2, 4, 6]])
    v2 = np.array([[3.0, 0], [5, 7]])
    assert ember.searchsorted(ember.tensor(s2), ember.tensor(v2), side="right").tolist() == \
        torch.searchsorted(torch.tensor(s2), torch.tensor(v2), side="right").tolist()
    assert ember.searchsorted(ember.tensor([5.0, 1, 3]), ember.tensor([3.0]), sorter=ember.tensor([1, 2, 0])).tolist() \
        == [1]
    r = ember.searchsorted(ember.tensor([1, 3]), 2, out_int32=True)
    assert r.dtype is ember.int32 and r.ndim == 0 and r.item() == 1
    b = ember.bucketize(ember.tensor([[1, 5], [3, 9]]), ember.tensor([1, 3, 5, 7]), right=True)
    assert b.tolist() == torch.bucketize(torch.tensor([[1, 5], [3, 9]]), torch.tensor([1, 3, 5, 7]),
                                         right=True).tolist()
    with pytest.raises(RuntimeError, match="first N-1 dimensions"):
        ember.searchsorted(ember.tensor(s2), ember.tensor([3.0, 5.0]))
    with pytest.raises(RuntimeError, match="side and right can't be set to opposites"):
        ember.searchsorted(ember.tensor(seq), ember.tensor(vals), right=True, side="left")
    with pytest.raises(RuntimeError, match="boundaries tensor must be 1 dimension"):
        ember.bucketize(ember.tensor([1]), ember.tensor(s2))


def test_searchsorted_and_histc_compile_without_breaks():
    def f(x, b):
        return ember.bucketize(x, b).float() + ember.histc(x, bins=4, min=-2, max=2).sum() + ember.histc(x, bins=3)[0]
    x, b = ember.randn(20), ember.tensor([-1.0, 0.0, 1.0])
    with records.collect() as recs:
        r = ember.compile(f, backend="eager")(x, b)
    assert not [q for q in recs if q.kind == "breaks"]
    np.testing.assert_array_equal(r.numpy(), f(x, b).numpy())


@needs_torch
def test_histc_matches_torch():
    rng = np.random.default_rng(3)
    for a, kw in ((rng.standard_normal(200), dict(bins=10, min=-2, max=2)), (rng.random(50), dict(bins=7)),
                  (np.array([1.0, 1.0, 1.0]), dict(bins=3)), (np.array([0.0, 1.0, 2.0, 3.0]), dict(bins=3, min=0, max=3))):
        for d in ("float32", "float64"):
            e = ember.histc(ember.tensor(a.astype(d)), **kw)
            t = torch.histc(torch.tensor(a.astype(d)), **kw)
            assert e.dtype.name == d and e.tolist() == t.tolist(), (kw, d)
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        ember.histc(ember.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="bins must be > 0"):
        ember.histc(ember.tensor([1.0]), bins=0)


@needs_torch
def test_bincount():
    a = np.array([0, 3, 1, 3, 3])
    w = np.array([0.5, 1.0, 2.0, 0.25, 1.0])
    assert ember.bincount(ember.tensor(a)).tolist() == torch.bincount(torch.tensor(a)).tolist()
    assert ember.bincount(ember.tensor(a), minlength=7).tolist() == torch.bincount(torch.tensor(a), minlength=7).tolist()
    for wd in ("float32", "float64", "int32"):
        e = ember.bincount(ember.tensor(a), ember.tensor(w.astype(wd)))
        t = torch.bincount(torch.tensor(a), torch.tensor(w.astype(wd)))
        assert e.dtype.name == str(t.dtype).split(".")[1] and e.tolist() == t.tolist()
    assert ember.bincount(ember.tensor([], dtype=ember.int64)).tolist() == []
    assert ember.tensor([1, 1]).bincount().tolist() == [0, 2]
    with pytest.raises(RuntimeError, match="bincount only supports 1-d non-negative integral inputs"):
        ember.bincount(ember.tensor([-1]))
    with pytest.raises(RuntimeError, match="bincount only supports 1-d non-negative integral inputs"):
        ember.bincount(ember.tensor([1.0]))
    with pytest.raises(RuntimeError, match="weights should be 1-d and have the same length as input"):
        ember.bincount(ember.tensor([1]), ember.ones(2))


@needs_torch
def test_unique_and_unique_consecutive():
    a = np.array([3, 1, 2, 3, 1, 5, 5])
    for kw in (dict(), dict(return_inverse=True), dict(return_counts=True), dict(return_inverse=True,
                                                                               return_counts=True), dict(sorted=False)):
        e, t = ember.unique(ember.tensor(a), **kw), torch.unique(torch.tensor(a), **kw)
        e, t = (e if isinstance(e, tuple) else (e,)), (t if isinstance(t, tuple) else (t,))
        assert [x.tolist() for x in e] == [x.tolist() for x in t], kw
        e, t = ember.unique_consecutive(ember.tensor(a), **{k: v for k, v in kw.items() if k != "sorted"}), \
            torch.unique_consecutive(torch.tensor(a), **{k: v for k, v in kw.items() if k != "sorted"})
        e, t = (e if isinstance(e, tuple) else (e,)), (t if isinstance(t, tuple) else (t,))
        assert [x.tolist() for x in e] == [x.tolist() for x in t], kw
    m = np.array([[1, 2], [1, 2], [0, 3], [1, 2]])
    for dim in (0, 1):
        e = ember.unique(ember.tensor(m), dim=dim, return_inverse=True, return_counts=True)
        t = torch.unique(torch.tensor(m), dim=dim, return_inverse=True, return_counts=True)
        assert [x.tolist() for x in e] == [x.tolist() for x in t]
        e = ember.unique_consecutive(ember.tensor(m), dim=dim, return_inverse=True, return_counts=True)
        t = torch.unique_consecutive(torch.tensor(m), dim=dim, return_inverse=True, return_counts=True)
        assert [x.tolist() for x in e] == [x.tolist() for x in t]
    inv = ember.tensor([[2.0, 1.0], [2.0, 7.0]]).unique(return_inverse=True)[1]
    assert inv.shape == (2, 2) and inv.tolist() == [[1, 0], [1, 2]]


def test_unique_and_bincount_break_the_graph_with_b006():
    def f(x):
        return ember.unique(x).float().sum() + ember.bincount(x).sum()
    x = ember.tensor([1, 2, 2, 5])
    with records.collect() as recs:
        r = ember.compile(f, backend="eager")(x)
    assert r.item() == f(x).item()
    assert [q.code for q in recs if q.kind == "breaks"][:1] == ["B006"]


def test_tensor_h_mh():
    x = ember.randn(2, 3)
    assert x.H.shape == (3, 2) and x.mH.shape == (3, 2)
    assert ember.randn(4, 2, 3).mH.shape == (4, 3, 2)
    with pytest.raises(RuntimeError, match="only supported on matrices"):
        ember.randn(4, 2, 3).H


# ---------------------------------------------------------------------------------- special
@needs_torch
@pytest.mark.parametrize("name,arrays", [
    ("entr", [np.array([0.0, 0.5, 2.0, -1.0, math.nan])]),
    ("ndtri", [np.array([0.01, 0.3, 0.5, 0.97])]),
    ("expit", [np.array([-30.0, 0.2, 5.0])]),
    ("logit", [np.array([0.1, 0.5, 0.9])]),
    ("xlog1py", [np.array([0.0, 0.0, 2.0, 1.5]), np.array([-1.0, math.nan, 0.5, 3.0])]),
    ("xlogy", [np.array([0.0, 2.0]), np.array([0.0, 3.0])]),
    ("erfinv", [np.array([-0.5, 0.25])]),
    ("sinc", [np.array([0.0, 0.5, -1.5])]),
])
def test_special_namespace(name, arrays):
    e = getattr(ember.special, name)(*[ember.tensor(a) for a in arrays])
    t = getattr(torch.special, name)(*[torch.tensor(a) for a in arrays])
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12, atol=1e-14, equal_nan=True)


@needs_torch
def test_special_gradients():
    check("entr", lambda x: ember.special.entr(x) if isinstance(x, E.Tensor) else torch.special.entr(x), None, S,
          dtype="float64", low=0.1, high=2)
    check("xlog1py", lambda x, y: ember.special.xlog1py(x, y) if isinstance(x, E.Tensor) else
          torch.special.xlog1py(x, y), None, S, S, dtype="float64", low=0.1, high=2)
    check("ndtri", lambda x: ember.special.ndtri(x) if isinstance(x, E.Tensor) else torch.special.ndtri(x), None, S,
          dtype="float64", low=0.05, high=0.95)


def test_indexing_ops_compile_to_the_eager_values_and_gradients():
    """index_put / index_copy / scatter_reduce / unfold inside ember.compile: no graph break, the same
    values and gradients (scatter_reduce runs as an eager step of the compiled graph)."""
    idx_put = (ember.tensor([0, 2, 2]), ember.tensor([1, 0, 0]))
    idx = ember.tensor([[0, 1, 1, 0, 2], [2, 2, 0, 1, 1], [1, 0, 2, 2, 0], [0, 0, 1, 1, 2]])

    def f(x, v, s):
        a = x.index_put(idx_put, v[:, 0], accumulate=True)
        b = x.index_copy(0, ember.tensor([2, 0]), s[:2, :5])
        c = x.scatter_reduce(0, idx[:3], s[:3, :5], "amax", include_self=False)
        d = x.scatter_reduce(1, idx[:3, :4], s[:3, :4], "prod")
        e = s.unfold(1, 3, 2).sum(-1)
        return a.sum() + (b * b).sum() + c.sum() + d.sum() + (e * e).sum()
    ember.manual_seed(0)
    x = ember.randn(3, 5, requires_grad=True)
    v = ember.randn(3, 5, requires_grad=True)
    s = ember.randn(4, 7, requires_grad=True)
    eager = f(x, v, s)
    grads = ember.autograd.grad(eager, [x, v, s])
    with records.collect() as recs:
        out = ember.compile(f, backend="auto")(x, v, s)
        cgrads = ember.autograd.grad(out, [x, v, s])
    assert not [r for r in recs if r.kind == "breaks"], [str(r) for r in recs]
    np.testing.assert_allclose(out.item(), eager.item(), rtol=1e-5)
    for a, b in zip(cgrads, grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
