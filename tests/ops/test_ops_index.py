"""Indexing (__getitem__/__setitem__), gather/scatter, masked ops against torch."""
import numpy as np
import pytest

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, gradcheck, torch

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

S = (4, 5, 6)
I = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731  an index array (no grad)

KEYS = [
    0, -1, (1, 2), (-1, -2, -3), slice(None), slice(1, 3), slice(None, None, 2), slice(-3, None), slice(1, -1, 3),
    slice(10, 20), slice(3, 1), (slice(None), 1), (Ellipsis, 0), (0, Ellipsis), (None, 1), (Ellipsis, None),
    (1, None, slice(None), None), (slice(None), None, 2), (), Ellipsis, (slice(1, 3), slice(None, None, 2), -1),
    (None, Ellipsis, None),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_basic_getitem(key): check("getitem", lambda x: x[key], None, S)


ADV = [
    [0, 2], range(1, 3), [-1, 0], ([0, 1], [1, 2]), (slice(None), [0, 4]), (Ellipsis, [1, 1, 0]),
    ([0, 1], slice(None), [2, 3]), (1, [0, 1]), ([[0], [1]], [0, 2]), (slice(1, 3), [0, 1], [2, 3]), ([3], None, 1),
    (None, [0, 1]), ([True, False, True, False],), (slice(None), [True, False, True, False, True]),
]


@pytest.mark.parametrize("key", ADV, ids=repr)
def test_advanced_getitem(key): check("getitem", lambda x: x[key], None, S)


def test_tensor_index(): check("getitem", lambda x, i: x[i], None, S, I(3, 0, 3))
def test_tensor_index_2d(): check("getitem", lambda x, i: x[:, i], None, S, np.array([[0, 1], [4, 4]]))
def test_tensor_index_neg(): check("getitem", lambda x, i: x[i], None, S, I(-1, -4))
def test_tensor_index_int32(): check("getitem", lambda x, i: x[i], None, S, np.array([1, 2], np.int32))
def test_tensor_index_pair(): check("getitem", lambda x, i, j: x[i, :, j], None, S, I(0, 1, 3), I(5, 0, 1))
def test_0d_tensor_index(): check("getitem", lambda x, i: x[i], None, S, np.array(2))
def test_bool_mask(): check("getitem", lambda x: x[x > 0], None, S)
def test_bool_mask_partial(): check("getitem", lambda x, m: x[m], None, S, np.random.default_rng(0).random((4, 5)) < 0.5)
def test_bool_mask_dim1(): check("getitem", lambda x, m: x[:, m], None, S, np.array([True, False, True, True, False]))
def test_bool_mask_int(): check("getitem", lambda x: x[x > 1], None, S, dtype="int64", low=0, high=4)
def test_scalar_bool_index(): check("getitem", lambda x: x[True], None, (2, 3))
def test_scalar_false_index(): check("getitem", lambda x: x[False], None, (2, 3))
def test_index_0d(): check("getitem", lambda x: x[...], None, ())
def test_index_0d_none(): check("getitem", lambda x: x[None], None, ())
def test_index_repeat_grad(): check("getitem", lambda x, i: x[i], None, (4,), I(1, 1, 1, 2))


def test_index_errors():
    x = E.ones(3, 4)
    with pytest.raises(IndexError, match="out of bounds"):
        x[3]
    with pytest.raises(IndexError):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="out of bounds|out of range"):
        x[E.tensor([0, 5])]
    with pytest.raises(IndexError):
        x[E.tensor([1.0])]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        x[::-1]


def test_getitem_is_view():
    x = E.arange(12.0).view(3, 4)
    y = x[1:, ::2]
    assert y._base is x._base  # views of views share the root, as in PyTorch
    z = x[[0, 1]]
    assert z._base is None  # advanced indexing copies


# ------------------------------------------------------------------------------- setitem
def _set(key, value):
    def fn(x, *v):
        y = x.clone()
        y[key] = v[0] if v else value
        return y
    return fn


SET = [
    (0, 1.5), (-1, 2.0), ((1, 2), 3.0), (slice(1, 3), -1.0), ((slice(None), 0), 0.0), ((Ellipsis, -1), 5.0),
    ((slice(None, None, 2), 1, slice(1, None, 2)), 7.0), ([0, 2], 9.0), ((slice(None), [1, 3]), 4.0),
    (([0, 1], [2, 3]), 1.0), ((None, 1), 2.0),
]


@pytest.mark.parametrize("key,value", SET, ids=repr)
def test_setitem_scalar(key, value): check("setitem", _set(key, value), None, S)


def test_setitem_tensor_broadcast(): check("setitem", _set((slice(None), 1), None), None, S, (6,))
def test_setitem_tensor_full(): check("setitem", _set(slice(1, 3), None), None, S, (2, 5, 6))
def test_setitem_tensor_bcast_row(): check("setitem", _set((Ellipsis, slice(0, 2)), None), None, S, (5, 1))
def test_setitem_mask_scalar(): check("setitem", lambda x: _set(x > 0, 0.0)(x), None, S)
def test_setitem_mask_tensor(): check("setitem", lambda x, v: _set(x.detach() > 0, None)(x, v), None, (3, 4), (1,))
def test_setitem_mask_values(): check("setitem", lambda x: _set(x.detach() > 0, None)(x, x[x > 0] * 2), None, (3, 4))
def test_setitem_index_tensor(): check("setitem", lambda x, i, v: _set(i, None)(x, v), None, S, I(0, 3), (5, 6))
def test_setitem_int(): check("setitem", _set((0, slice(None)), 7), None, (3, 4), dtype="int64")
def test_setitem_int_float_value(): check("setitem", _set(0, 2.7), None, (3, 4), dtype="int64")
def test_setitem_bool_tensor(): check("setitem", _set(slice(None), True), None, (3, 4), dtype="bool")
def test_setitem_0d(): check("setitem", _set((), 3.0), None, ())
def test_setitem_ellipsis(): check("setitem", _set(Ellipsis, 3.0), None, (2, 2))
def test_setitem_value_dtype(): check("setitem", lambda x: _set(0, None)(x, E.ones(6, dtype=E.float64) if isinstance(x, E.Tensor) else torch.ones(6, dtype=torch.float64)), None, S)


def test_setitem_shape_mismatch():
    x = E.zeros(3, 4)
    with pytest.raises((RuntimeError, ValueError), match="shape"):
        x[0] = E.ones(3)


# ------------------------------------------------------------------- gather/scatter family
def test_gather(): check("gather", lambda x, i: x.gather(1, i), None, (3, 4), np.array([[0, 0], [1, 3], [2, 1]]))
def test_gather_dim0(): check("gather", lambda x, i: x.gather(0, i), None, (3, 4), np.array([[0, 1, 2, 0]]))
def test_gather_neg(): check("gather", lambda x, i: E.gather(x, -1, i) if isinstance(x, E.Tensor) else torch.gather(x, -1, i), None, (2, 3), np.array([[2], [0]]))
def test_scatter(): check("scatter", lambda x, i, s: x.scatter(1, i, s), None, (3, 4), np.array([[0, 1], [3, 2], [1, 0]]), (3, 2))
def test_scatter_value(): check("scatter", lambda x, i: x.scatter(0, i, 2.5), None, (3, 4), np.array([[0, 1, 2, 0]]))
def test_scatter_src_bigger(): check("scatter", lambda x, i, s: x.scatter(1, i, s), None, (3, 4), np.array([[0], [3], [1]]), (3, 3), grad=False)
def test_scatter_add(): check("scatter_add", lambda x, i, s: x.scatter_add(1, i, s), None, (3, 4), np.array([[0, 0], [3, 3], [1, 2]]), (3, 2))
def test_scatter_add_dim0(): check("scatter_add", lambda x, i, s: x.scatter_add(0, i, s), None, (3, 4), np.array([[0, 1, 2, 0], [0, 1, 1, 2]]), (2, 4))
def test_scatter_reduce_add(): check("scatter_add", lambda x, i, s: x.scatter(1, i, s, reduce="add"), None, (3, 4), np.array([[0, 0], [3, 3], [1, 2]]), (3, 2), grad=False)
def test_index_select(): check("index_select", lambda x, i: x.index_select(1, i), None, S, I(4, 0, 4))
def test_index_select_dim0(): check("index_select", lambda x, i: E.index_select(x, 0, i) if isinstance(x, E.Tensor) else torch.index_select(x, 0, i), None, S, I(3))
def test_index_add(): check("index_add", lambda x, i, s: x.index_add(0, i, s), None, (4, 3), I(0, 2, 0), (3, 3))
def test_index_fill(): check("index_fill", lambda x, i: x.index_fill(1, i, -1.0), None, (4, 3), I(0, 2))
def test_take(): check("take", lambda x, i: x.take(i), None, (3, 4), np.array([[0, 11], [-1, 5]]))
def test_take_along_dim(): check("take_along_dim", lambda x, i: x.take_along_dim(i, 1), None, (3, 4), np.array([[0], [3], [1]]))
def test_masked_fill(): check("masked_fill", lambda x: x.masked_fill(x > 0, -1.0), None, S)
def test_masked_fill_bcast(): check("masked_fill", lambda x, m: x.masked_fill(m, 0.5), None, S, np.array([True, False, True, False, False, True]))
def test_masked_fill_tensor_value(): check("masked_fill", lambda x, v: x.masked_fill(x.detach() > 0, v.sum()), None, S, (2,))
def test_masked_fill_int(): check("masked_fill", lambda x: x.masked_fill(x > 1, 0), None, S, dtype="int64", low=0, high=4)
def test_masked_select(): check("masked_select", lambda x: x.masked_select(x > 0), None, S)
def test_nonzero(): check("nonzero", lambda x: x.nonzero(), None, (3, 4), dtype="int64", low=0, high=2)
def test_nonzero_tuple(): check("nonzero", lambda x: x.nonzero(as_tuple=True), None, (3, 4), dtype="int64", low=0, high=2)
def test_where_1arg(): check("where1", lambda x: E.where(x > 0), lambda x: T.where(x > 0), (3, 4), grad=False)
def test_argwhere(): check("argwhere", lambda x: x.argwhere(), None, (3, 4), dtype="int64", low=0, high=2)


def test_gather_errors():
    x = E.ones(3, 4)
    with pytest.raises(IndexError, match="out of bounds"):
        x.gather(1, E.tensor([[4]]))
    with pytest.raises(RuntimeError, match="int64"):
        x.gather(1, E.tensor([[1]], dtype=E.int32))
    with pytest.raises(IndexError, match="out of bounds"):
        x.index_select(0, E.tensor([5]))
    with pytest.raises(RuntimeError, match="boolean"):
        x.masked_fill(E.ones(3, 4, dtype=E.int64), 0.0)


@pytest.mark.parametrize("fn", [
    lambda x: x[[0, 1, 1]], lambda x: x[:, [1, 0]], lambda x: x[x > 0], lambda x: x.gather(1, E.tensor([[0, 0], [2, 1]])),
    lambda x: x.index_select(1, E.tensor([2, 2, 0])), lambda x: x.masked_fill(x < 0, 0.0),
    lambda x: E.zeros(2, 5, dtype=E.float64).scatter_add(1, E.tensor([[0, 4, 4], [1, 1, 3]]), x),
])
def test_gradcheck_index(fn):
    rng = np.random.default_rng(0)
    gradcheck(fn, [rng.normal(size=(2, 3))])
