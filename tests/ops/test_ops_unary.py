"""Elementwise unary ops against torch: one line per op, across float dtypes (and ints where torch
takes them)."""
import numpy as np
import pytest

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, check, gradcheck, FLOATS, INTS

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

S = (3, 4)
ALLF = FLOATS + ("float16",)


@pytest.mark.parametrize("dtype", ALLF)
class TestFloatUnary:
    def test_exp(self, dtype): check("exp", lambda x: x.exp(), None, S, dtype=dtype, np_fn=np.exp)
    def test_log(self, dtype): check("log", lambda x: x.log(), None, S, dtype=dtype, low=0.1, np_fn=np.log)
    def test_log1p(self, dtype): check("log1p", lambda x: x.log1p(), None, S, dtype=dtype, low=-0.9, np_fn=np.log1p)
    def test_expm1(self, dtype): check("expm1", lambda x: x.expm1(), None, S, dtype=dtype, np_fn=np.expm1)
    def test_sqrt(self, dtype): check("sqrt", lambda x: x.sqrt(), None, S, dtype=dtype, low=0.1, np_fn=np.sqrt)
    def test_rsqrt(self, dtype): check("rsqrt", lambda x: x.rsqrt(), None, S, dtype=dtype, low=0.1, np_fn=lambda x: 1 / np.sqrt(x))
    def test_sin(self, dtype): check("sin", lambda x: x.sin(), None, S, dtype=dtype, np_fn=np.sin)
    def test_cos(self, dtype): check("cos", lambda x: x.cos(), None, S, dtype=dtype, np_fn=np.cos)
    def test_tanh(self, dtype): check("tanh", lambda x: x.tanh(), None, S, dtype=dtype, np_fn=np.tanh)
    def test_sigmoid(self, dtype): check("sigmoid", lambda x: x.sigmoid(), None, S, dtype=dtype, low=-20, high=20, np_fn=lambda x: 1 / (1 + np.exp(-x)))
    def test_erf(self, dtype): check("erf", lambda x: x.erf(), None, S, dtype=dtype, low=-3, high=3)
    def test_abs(self, dtype): check("abs", lambda x: x.abs(), None, S, dtype=dtype, np_fn=np.abs)
    def test_neg(self, dtype): check("neg", lambda x: -x, None, S, dtype=dtype, np_fn=np.negative)
    def test_sign(self, dtype): check("sign", lambda x: x.sign(), None, S, dtype=dtype, np_fn=np.sign)
    def test_reciprocal(self, dtype): check("reciprocal", lambda x: x.reciprocal(), None, S, dtype=dtype, low=0.5, np_fn=np.reciprocal)
    def test_floor(self, dtype): check("floor", lambda x: x.floor(), None, S, dtype=dtype, low=-5, high=5, np_fn=np.floor)
    def test_ceil(self, dtype): check("ceil", lambda x: x.ceil(), None, S, dtype=dtype, low=-5, high=5, np_fn=np.ceil)
    def test_round(self, dtype): check("round", lambda x: x.round(), None, S, dtype=dtype, low=-5, high=5, np_fn=np.round)
    def test_trunc(self, dtype): check("trunc", lambda x: x.trunc(), None, S, dtype=dtype, low=-5, high=5, np_fn=np.trunc)
    def test_square(self, dtype): check("square", lambda x: x.square(), None, S, dtype=dtype, np_fn=np.square)
    def test_relu(self, dtype): check("relu", lambda x: x.relu(), None, S, dtype=dtype)
    def test_frac(self, dtype): check("frac", lambda x: x.frac(), None, S, dtype=dtype, low=-5, high=5)
    def test_log2(self, dtype): check("log2", lambda x: x.log2(), None, S, dtype=dtype, low=0.1)
    def test_log10(self, dtype): check("log10", lambda x: x.log10(), None, S, dtype=dtype, low=0.1)
    def test_exp2(self, dtype): check("exp2", lambda x: x.exp2(), None, S, dtype=dtype)
    def test_tan(self, dtype): check("tan", lambda x: x.tan(), None, S, dtype=dtype, low=-1, high=1)
    def test_isnan(self, dtype): check("isnan", lambda x: (x / x).isnan(), None, S, dtype=dtype, low=-1, high=1)
    def test_clamp(self, dtype): check("clamp", lambda x: x.clamp(-0.5, 0.7), None, S, dtype=dtype)
    def test_clamp_min(self, dtype): check("clamp_min", lambda x: x.clamp(min=0.1), None, S, dtype=dtype)
    def test_clamp_max(self, dtype): check("clamp_max", lambda x: x.clamp(max=0.1), None, S, dtype=dtype)
    def test_clip(self, dtype): check("clip", lambda x: x.clip(-1, 1), None, S, dtype=dtype)
    def test_pow2(self, dtype): check("pow2", lambda x: x ** 2, None, S, dtype=dtype)
    def test_pow3(self, dtype): check("pow3", lambda x: x ** 3, None, S, dtype=dtype)
    def test_pow_half(self, dtype): check("pow.5", lambda x: x ** 0.5, None, S, dtype=dtype, low=0.1)
    def test_pow_neg(self, dtype): check("pow-1.5", lambda x: x ** -1.5, None, S, dtype=dtype, low=0.5)
    def test_rpow(self, dtype): check("rpow", lambda x: 2.0 ** x, None, S, dtype=dtype)


@pytest.mark.parametrize("dtype", INTS)
class TestIntUnary:
    def test_abs(self, dtype): check("abs", lambda x: x.abs(), None, S, dtype=dtype, low=-5, high=5)
    def test_neg(self, dtype): check("neg", lambda x: -x, None, S, dtype=dtype, low=-5, high=5)
    def test_sign(self, dtype): check("sign", lambda x: x.sign(), None, S, dtype=dtype, low=-5, high=5)
    def test_floor(self, dtype): check("floor", lambda x: x.floor(), None, S, dtype=dtype, low=-5, high=5)
    def test_exp(self, dtype): check("exp", lambda x: x.exp(), None, S, dtype=dtype, low=-3, high=3)
    def test_sqrt(self, dtype): check("sqrt", lambda x: x.sqrt(), None, S, dtype=dtype, low=0, high=9)
    def test_sigmoid(self, dtype): check("sigmoid", lambda x: x.sigmoid(), None, S, dtype=dtype, low=-5, high=5)
    def test_isnan(self, dtype): check("isnan", lambda x: x.isnan(), None, S, dtype=dtype)
    def test_isfinite(self, dtype): check("isfinite", lambda x: x.isfinite(), None, S, dtype=dtype)
    def test_clamp(self, dtype): check("clamp", lambda x: x.clamp(1, 3), None, S, dtype=dtype, low=-5, high=5)
    def test_clamp_float(self, dtype): check("clamp", lambda x: x.clamp(0.5, 2.5), None, S, dtype=dtype, low=-5, high=5)
    def test_square(self, dtype): check("square", lambda x: x.square(), None, S, dtype=dtype, low=-5, high=5)
    def test_pow(self, dtype): check("pow", lambda x: x ** 2, None, S, dtype=dtype, low=-5, high=5)
    def test_invert(self, dtype): check("invert", lambda x: ~x, None, S, dtype=dtype, low=-5, high=5)


def test_special_values():
    vals = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-30, 1e30], dtype=np.float32)
    for name in ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "erf", "abs",
                 "neg", "sign", "reciprocal", "floor", "ceil", "round", "trunc", "isnan", "isinf", "isfinite"):
        check(name, lambda x, n=name: getattr(x, n)(), None, vals, grad=False)


def test_bool_unary():
    check("logical_not", lambda x: x.logical_not(), None, S, dtype="bool")
    check("invert", lambda x: ~x, None, S, dtype="bool")
    check("isfinite", lambda x: x.isfinite(), None, S, dtype="bool")


def test_round_half_even(): check("round", lambda x: x.round(), None, np.array([0.5, 1.5, 2.5, -0.5, -2.5], np.float32))
def test_round_decimals(): check("round", lambda x: x.round(decimals=2), None, S, grad=False)
def test_clamp_tensor(): check("clamp", lambda x, lo, hi: x.clamp(lo, hi), None, S, (4,), (3, 1))
def test_sign_zero(): check("sign", lambda x: x.sign(), None, np.array([0.0, -0.0, 2.0, -3.0], np.float32))
def test_abs_grad_at_zero(): check("abs", lambda x: x.abs(), None, np.array([0.0, 1.0, -1.0], np.float32))
def test_relu_grad_at_zero(): check("relu", lambda x: x.relu(), None, np.array([0.0, 1.0, -1.0], np.float32))
def test_clamp_grad_at_bound(): check("clamp", lambda x: x.clamp(0.0, 1.0), None, np.array([0.0, 1.0, -1.0, 0.5, 2.0], np.float32))
def test_nan_to_num(): check("nan_to_num", lambda x: (x.log()).nan_to_num(), None, np.array([0.0, 1.0, -1.0, np.inf], np.float32), grad=False)
def test_pow_zero_base(): check("pow", lambda x: x ** 2.5, None, np.array([0.0, 1.0, 2.0], np.float32))
def test_sqrt_grad_at_zero(): check("sqrt", lambda x: x.sqrt(), None, np.array([0.0, 1.0], np.float32))


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "tanh", "sigmoid", "erf", "log1p", "expm1",
                                  "reciprocal", "rsqrt", "cos", "abs"])
def test_gradcheck_unary(name):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 2.0, size=(5,))
    gradcheck(lambda t: getattr(t, name)(), [x])


def test_0d_and_empty():
    check("exp0d", lambda x: x.exp(), None, ())
    check("exp_empty", lambda x: x.exp(), None, (0, 3))
    check("neg_empty_int", lambda x: -x, None, (0,), dtype="int64")


def test_eager_erf_on_large_arrays_runs_generated_code_and_matches_libm():
    """Large float32/float64 arrays take the generated kernel (ember/runtime/eager_kernels.py); small
    ones, other devices and dtypes the reference; both agree with libm's erf."""
    import math

    import numpy as np

    import ember
    from ember.frontend import dispatch
    from ember.runtime import eager_kernels
    assert dispatch._BASE["erf"].__name__ == "erf_generated"
    x = np.linspace(-6, 6, eager_kernels.MIN_SIZE * 3, dtype=np.float64)
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(ember.erf(ember.tensor(x)).numpy(), want, rtol=0, atol=1e-15)
    got32 = ember.erf(ember.tensor(x.astype(np.float32))).numpy()
    assert got32.dtype == np.float32 and np.abs(got32 - want).max() < 2.5e-7
    small = ember.erf(ember.tensor(x[:100].astype(np.float32))).numpy()
    np.testing.assert_allclose(small, want[:100], atol=2.5e-7)
    strided = ember.tensor(x.astype(np.float32)).view(-1, 2)[:, 0]     # not contiguous: the reference
    np.testing.assert_allclose(ember.erf(strided).numpy(), want[::2], atol=2.5e-7)
    # bindings are kept per (dtype, size): sizes and dtypes taking turns each get their own
    for n, d in ((5, np.float32), (3, np.float64), (5, np.float64), (3, np.float32), (5, np.float32)):
        xs = x[:eager_kernels.MIN_SIZE * n].astype(d)
        np.testing.assert_allclose(ember.erf(ember.tensor(xs)).numpy(), want[:xs.size], rtol=0,
                                   atol=2.5e-7 if d == np.float32 else 1e-15)
