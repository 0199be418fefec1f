"""Reductions with dim (int or tuple) and keepdim, against torch."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, gradcheck, FLOATS, INTS

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

S = (3, 4, 5)
DIMS = [None, 0, -1, 1, (0, 2), (-1, 0)]


def _kw(dim, keepdim):
    return {} if dim is None else {"dim": dim, "keepdim": keepdim}


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS)
class TestReduceDims:
    def test_sum(self, dim, keepdim): check("sum", lambda x: x.sum(**_kw(dim, keepdim)), None, S)
    def test_mean(self, dim, keepdim): check("mean", lambda x: x.mean(**_kw(dim, keepdim)), None, S)
    def test_var(self, dim, keepdim): check("var", lambda x: x.var(**_kw(dim, keepdim)), None, S)
    def test_std(self, dim, keepdim): check("std", lambda x: x.std(**_kw(dim, keepdim)), None, S)
    def test_amax(self, dim, keepdim): check("amax", lambda x: x.amax(**_kw(dim, keepdim)), None, S)
    def test_amin(self, dim, keepdim): check("amin", lambda x: x.amin(**_kw(dim, keepdim)), None, S)
    def test_logsumexp(self, dim, keepdim): check("logsumexp", lambda x: x.logsumexp(**_kw(dim, keepdim)) if dim is not None else x.logsumexp(dim=(0, 1, 2)), None, S)
    def test_norm(self, dim, keepdim): check("norm", lambda x: x.norm(**_kw(dim, keepdim)), None, S)
    def test_all(self, dim, keepdim): check("all", lambda x: (x > -1.5).all(**_kw(dim, keepdim)) if dim is None or isinstance(dim, int) else (x > -1.5).all(dim=dim, keepdim=keepdim), None, S)
    def test_any(self, dim, keepdim): check("any", lambda x: (x > 1.5).any(**_kw(dim, keepdim)), None, S)
    def test_sum_int(self, dim, keepdim): check("sum", lambda x: x.sum(**_kw(dim, keepdim)), None, S, dtype="int32")
    def test_sum_bool(self, dim, keepdim): check("sum", lambda x: x.sum(**_kw(dim, keepdim)), None, S, dtype="bool")
    def test_count_nonzero(self, dim, keepdim): check("count_nonzero", lambda x: x.count_nonzero(dim) if dim is not None else x.count_nonzero(), None, S, dtype="int64", low=0, high=2)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
class TestReduceOneDim:
    def test_prod(self, dim, keepdim): check("prod", lambda x: x.prod(dim, keepdim=keepdim), None, S)
    def test_max(self, dim, keepdim): check("max", lambda x: tuple(x.max(dim, keepdim=keepdim)), None, S)
    def test_min(self, dim, keepdim): check("min", lambda x: tuple(x.min(dim, keepdim=keepdim)), None, S)
    def test_argmax(self, dim, keepdim): check("argmax", lambda x: x.argmax(dim, keepdim=keepdim), None, S)
    def test_argmin(self, dim, keepdim): check("argmin", lambda x: x.argmin(dim, keepdim=keepdim), None, S)
    def test_cumsum(self, dim, keepdim): check("cumsum", lambda x: x.cumsum(dim), None, S)
    def test_cumprod(self, dim, keepdim): check("cumprod", lambda x: x.cumprod(dim), None, S, low=0.5)
    def test_max_int(self, dim, keepdim): check("max", lambda x: tuple(x.max(dim, keepdim=keepdim)), None, S, dtype="int64", low=-9, high=9)


@pytest.mark.parametrize("dtype", FLOATS + ("float16",) + INTS)
class TestReduceDtypes:
    def test_sum(self, dtype): check("sum", lambda x: x.sum(), None, S, dtype=dtype, low=0, high=4)
    def test_sum_dim(self, dtype): check("sum", lambda x: x.sum(1), None, S, dtype=dtype, low=0, high=4)
    def test_prod(self, dtype): check("prod", lambda x: x.prod(), None, (5,), dtype=dtype, low=1, high=3)
    def test_max(self, dtype): check("max", lambda x: x.max(), None, S, dtype=dtype, low=0, high=9)
    def test_min_dim(self, dtype): check("min", lambda x: tuple(x.min(dim=1)), None, S, dtype=dtype, low=0, high=9)
    def test_argmax(self, dtype): check("argmax", lambda x: x.argmax(), None, S, dtype=dtype, low=0, high=9)
    def test_cumsum(self, dtype): check("cumsum", lambda x: x.cumsum(0), None, S, dtype=dtype, low=0, high=4)
    def test_amax(self, dtype): check("amax", lambda x: x.amax((0, 1)), None, S, dtype=dtype, low=0, high=9)


def test_mean_dtype(): check("mean", lambda x: x.mean(dtype=E.float64), lambda x: x.mean(dtype=T.float64), S)
def test_sum_dtype(): check("sum", lambda x: x.sum(dtype=E.float64), lambda x: x.sum(dtype=T.float64), S)
def test_mean_int_raises():
    with pytest.raises(RuntimeError, match="mean"):
        E.tensor([1, 2]).mean()


@pytest.mark.parametrize("kw", [{"unbiased": False}, {"unbiased": True}, {"correction": 0}, {"correction": 2}])
def test_var_correction(kw):
    check("var", lambda x: x.var(dim=1, **kw), None, S)
    check("std", lambda x: x.std(**kw), None, S)


def test_var_single_element(): check("var1", lambda x: x.var(), None, (1,), grad=False)
def test_std_mean(): check("std_mean", lambda x: E.std_mean(x, dim=1), lambda x: T.std_mean(x, dim=1), S)
def test_var_mean(): check("var_mean", lambda x: E.var_mean(x, dim=(0, 2), correction=0), lambda x: T.var_mean(x, dim=(0, 2), correction=0), S)
def test_max_ties(): check("max_ties", lambda x: x.max(), None, np.array([1.0, 3.0, 3.0, 2.0], np.float32))
def test_amax_ties(): check("amax_ties", lambda x: x.amax(0), None, np.array([[1.0, 3.0], [1.0, 2.0]], np.float32))
def test_max_dim_ties(): check("max_dim_ties", lambda x: tuple(x.max(0)), None, np.array([[1.0, 3.0], [1.0, 2.0]], np.float32))
def test_argmax_ties(): check("argmax_ties", lambda x: x.argmax(), None, np.array([1.0, 3.0, 3.0, 2.0], np.float32))
def test_prod_with_zero(): check("prod0", lambda x: x.prod(0), None, np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]], np.float32))
def test_prod_with_one_zero(): check("prod0", lambda x: x.prod(), None, np.array([2.0, 0.0, 3.0], np.float32))
def test_logsumexp_inf(): check("logsumexp_inf", lambda x: x.logsumexp(0), None, np.array([-np.inf, -np.inf], np.float32), grad=False)
def test_logsumexp_large(): check("logsumexp_large", lambda x: x.logsumexp(1), None, S, low=500, high=1000)
def test_logsumexp_int(): check("logsumexp", lambda x: x.logsumexp(1), None, S, dtype="int64")
def test_norm_p1(): check("norm1", lambda x: x.norm(p=1), None, S)
def test_norm_pinf(): check("norminf", lambda x: x.norm(p=float("inf"), dim=1), None, S)
def test_norm_p3(): check("norm3", lambda x: x.norm(p=3, dim=(0, 1)), None, S)
def test_norm_fro_dim(): check("norm_fro", lambda x: x.norm(dim=(0, 1)), None, S)
def test_max_binary(): check("max_binary", lambda x, y: E.max(x, y), lambda x, y: T.max(x, y), S, S)
def test_sum_0d(): check("sum_0d", lambda x: x.sum(), None, ())
def test_sum_0d_dim(): check("sum_0d_dim", lambda x: x.sum(0), None, ())
def test_sum_empty(): check("sum_empty", lambda x: x.sum(), None, (0, 3))
def test_sum_empty_dim(): check("sum_empty_dim", lambda x: x.sum(1), None, (0, 3))
def test_mean_empty(): check("mean_empty", lambda x: x.mean(), None, (0,), grad=False)
def test_all_empty(): check("all_empty", lambda x: x.all(), None, (0,), dtype="bool")
def test_any_empty(): check("any_empty", lambda x: x.any(), None, (0,), dtype="bool")
def test_all_float(): check("all_f", lambda x: x.all(), None, (4,))
def test_any_int_dim(): check("any_i", lambda x: x.any(1), None, (3, 4), dtype="int64", low=0, high=2)
def test_cumsum_bool(): check("cumsum_b", lambda x: x.cumsum(0), None, (5,), dtype="bool")
def test_argmax_keepdim_none(): check("argmax_k", lambda x: x.argmax(keepdim=True), None, S)


def test_max_raises_on_empty():
    with pytest.raises(RuntimeError):
        E.zeros(0).max()
    with pytest.raises(RuntimeError):
        E.zeros(0, 3).max(0)


def test_max_named_tuple():
    v, i = E.tensor([[1.0, 5.0], [7.0, 2.0]]).max(dim=1)
    r = E.tensor([[1.0, 5.0], [7.0, 2.0]]).max(dim=1)
    assert r.values.tolist() == [5.0, 7.0] and r.indices.tolist() == [1, 0]
    assert v.tolist() == [5.0, 7.0] and i.tolist() == [1, 0]


def test_dim_out_of_range():
    with pytest.raises(IndexError, match="Dimension out of range"):
        E.ones(2, 3).sum(2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "var", "logsumexp"])
def test_reduce_random_dims(op, shape, data):
    nd = len(shape)
    dims = data.draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd, unique_by=lambda d: d % nd))
    keepdim = data.draw(st.booleans())
    if op == "var" and np.prod([shape[d] for d in dims]) < 2:
        return
    check(op, lambda x: getattr(x, op)(dim=tuple(dims), keepdim=keepdim), None, tuple(shape))


@pytest.mark.parametrize("op", ["sum", "mean", "var", "std", "logsumexp", "amax", "prod", "norm"])
def test_gradcheck_reduce(op):
    rng = np.random.default_rng(0)
    gradcheck(lambda x: getattr(x, op)(dim=1) if op != "prod" else x.prod(1), [rng.uniform(0.5, 2, (3, 4))])
