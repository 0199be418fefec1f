"""The tensor functions of ember/frontend/composites.py (and fmax/fmin) against torch: values, dtypes,
gradients, errors."""
import math

import numpy as np
import pytest

import ember
from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, needs_torch, torch

pytestmark = NUMPY_WARNINGS_ARE_ERRORS
F64 = "float64"


def _call(name, *args, **kw):
    """ember.name / torch.name on the same arguments (tensors converted)."""
    return lambda *xs: getattr(ember if isinstance(xs[0], E.Tensor) else torch, name)(*xs, *args, **kw)


def test_trace(): check("trace", lambda x: x.trace(), None, (3, 4), dtype=F64)
def test_trace_int(): check("trace", lambda x: x.trace(), None, (3, 3), dtype="int32")
def test_diff(): check("diff", lambda x: x.diff(), None, (3, 5), dtype=F64)
def test_diff_n2_dim0(): check("diff", lambda x: x.diff(n=2, dim=0), None, (5, 3), dtype=F64)
def test_diff_prepend(): check("diff", lambda x, p: x.diff(dim=1, prepend=p), None, (3, 4), (3, 2), dtype=F64)
def test_diff_bool(): check("diff", lambda x: x.diff(), None, (6,), dtype="bool")
def test_kron(): check("kron", E.kron, T.kron, (2, 3), (3, 2), dtype=F64)
def test_kron_mixed_ndim(): check("kron", E.kron, T.kron, (2,), (2, 3, 2), dtype=F64)
def test_tensordot(): check("tensordot", _call("tensordot", dims=2), None, (2, 3, 4), (3, 4, 5), dtype=F64)
def test_tensordot_pairs(): check("tensordot", _call("tensordot", dims=([0, 2], [2, 0])), None, (2, 3, 4), (4, 5, 2), dtype=F64)
def test_cdist_p2(): check("cdist", E.cdist, T.cdist, (2, 4, 3), (2, 5, 3), dtype=F64)
def test_cdist_p1(): check("cdist", _call("cdist", p=1.0), None, (4, 3), (5, 3), dtype=F64)
def test_cdist_p3(): check("cdist", _call("cdist", p=3.0), None, (4, 3), (5, 3), dtype=F64, low=0.1)
def test_cdist_pinf(): check("cdist", _call("cdist", p=math.inf), None, (4, 3), (5, 3), dtype=F64)
def test_cdist_mm(): check("cdist", E.cdist, T.cdist, (30, 3), (27, 3), dtype=F64, rtol=1e-7)
def test_nansum(): check("nansum", lambda x: (x / (x > 0)).nansum(1), None, (3, 4), dtype=F64, grad=False)
def test_nanmean(): check("nanmean", lambda x: x.log().nanmean(0), None, (4, 3), dtype=F64)
def test_rot90(): check("rot90", lambda x: x.rot90(1, (0, 2)), None, (2, 3, 4), dtype=F64)
def test_rot90_k(): check("rot90", lambda x: ember.stack([x.rot90(k) for k in (-1, 2, 3, 4)]) if isinstance(x, E.Tensor) else torch.stack([x.rot90(k) for k in (-1, 2, 3, 4)]), None, (3, 3), dtype=F64)
def test_cov(): check("cov", lambda x: x.cov(), None, (3, 6), dtype=F64)
def test_cov_weights(): check("cov", lambda x, w: x.cov(correction=0, aweights=w), None, (3, 6), (6,), dtype=F64, low=0.5)
def test_cov_fweights(): check("cov", lambda x: x.cov(fweights=x[0].abs().long() + 1 if isinstance(x, E.Tensor) else x[0].abs().long() + 1), None, (2, 5), dtype=F64, low=0.5, high=3)
def test_corrcoef(): check("corrcoef", lambda x: x.corrcoef(), None, (3, 6), dtype=F64)
def test_aminmax(): check("aminmax", lambda x: x.aminmax(dim=1), None, (3, 4), dtype=F64)
def test_cummax(): check("cummax", lambda x: x.round().cummax(1), None, (3, 6), dtype=F64, low=-3, high=3)
def test_cummin(): check("cummin", lambda x: x.cummin(0), None, (5, 3), dtype=F64)
def test_logcumsumexp(): check("logcumsumexp", lambda x: x.logcumsumexp(1), None, (3, 5), dtype=F64, low=-50, high=50)
def test_quantile(): check("quantile", lambda x: x.quantile(0.3), None, (3, 5), dtype=F64)
def test_quantile_dim(): check("quantile", lambda x, q: x.quantile(q, dim=1, keepdim=True), None, (3, 5), np.array([0.1, 0.5, 1.0]), dtype=F64)
@pytest.mark.parametrize("how", ["lower", "higher", "midpoint", "nearest"])
def test_quantile_interpolation(how): check("quantile", lambda x: x.quantile(0.35, dim=0, interpolation=how), None, (6, 2), dtype=F64)
def test_nanquantile(): check("nanquantile", lambda x: x.log().nanquantile(0.5, dim=1), None, (3, 6), dtype=F64)
def test_diagflat(): check("diagflat", lambda x: x.diagflat(1), None, (2, 2), dtype=F64)
def test_block_diag(): check("block_diag", E.block_diag, T.block_diag, (2, 3), (1,), (2, 2), dtype=F64)
def test_cartesian_prod(): check("cartesian_prod", E.cartesian_prod, T.cartesian_prod, (3,), (2,), dtype=F64)
def test_fmax(): check("fmax", E.fmax, T.fmax, np.array([1.0, math.nan, 2.0, math.nan, 3.0]), np.array([2.0, 1.0, math.nan, math.nan, 3.0]), dtype=F64)
def test_fmin(): check("fmin", E.fmin, T.fmin, np.array([1.0, math.nan, 2.0, math.nan, 3.0]), np.array([2.0, 1.0, math.nan, math.nan, 3.0]), dtype=F64)


@needs_torch
def test_index_builders_isin_atleast_fill_diagonal():
    for r, c, o in ((3, 4, 1), (4, 3, -1), (3, 3, 0)):
        assert ember.triu_indices(r, c, o).tolist() == torch.triu_indices(r, c, o).tolist()
        assert ember.tril_indices(r, c, o).tolist() == torch.tril_indices(r, c, o).tolist()
    assert ember.triu_indices(3, 3).dtype is ember.int64
    a = np.array([[1, 2, 3], [4, 5, 2]])
    assert ember.isin(ember.tensor(a), ember.tensor([2, 5])).tolist() == torch.isin(torch.tensor(a), torch.tensor([2, 5])).tolist()
    assert ember.isin(ember.tensor(a), 2, invert=True).tolist() == torch.isin(torch.tensor(a), 2, invert=True).tolist()
    assert [t.shape for t in ember.atleast_2d(ember.tensor(1.0), ember.ones(3))] == [(1, 1), (1, 3)]
    assert ember.atleast_3d(ember.ones(2, 3)).shape == torch.atleast_3d(torch.ones(2, 3)).shape
    assert ember.atleast_1d(ember.tensor(2)).shape == (1,)
    for shape, wrap in (((3, 3), False), ((7, 3), True), ((7, 3), False), ((2, 2, 2), False)):
        e, t = ember.zeros(*shape), torch.zeros(*shape)
        e.fill_diagonal_(5.0, wrap)
        t.fill_diagonal_(5.0, wrap)
        assert e.tolist() == t.tolist(), (shape, wrap)


def test_errors():
    with pytest.raises(RuntimeError, match="trace: expected a matrix"):
        ember.ones(3).trace()
    with pytest.raises(RuntimeError, match="X1 and X2 must have the same number of columns"):
        ember.cdist(ember.ones(2, 3), ember.ones(2, 4))
    with pytest.raises(RuntimeError, match="contracted dimensions need to match"):
        ember.tensordot(ember.ones(2, 3), ember.ones(2, 3), dims=1)
    with pytest.raises(RuntimeError, match=r"q must be in the range \[0, 1\]"):
        ember.quantile(ember.ones(3), 1.5)
    with pytest.raises(RuntimeError, match="expected rotation dims to be different"):
        ember.ones(2, 2).rot90(1, (0, 0))


def test_cdist_gradient_is_zero_for_coincident_points():
    x = ember.tensor([[0.0, 1.0], [2.0, 3.0]], requires_grad=True)
    ember.cdist(x, x.detach()).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
