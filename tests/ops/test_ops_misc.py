"""Aliases and smaller ops: one line each against torch."""
import numpy as np

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check

pytestmark = NUMPY_WARNINGS_ARE_ERRORS
S = (3, 4)


def test_absolute(): check("absolute", E.absolute, T.absolute, S)
def test_negative(): check("negative", E.negative, T.negative, S)
def test_subtract(): check("subtract", E.subtract, T.subtract, S, S)
def test_multiply(): check("multiply", E.multiply, T.multiply, S, S)
def test_divide(): check("divide", E.divide, T.divide, S, S, low=0.5)
def test_true_divide(): check("true_divide", E.true_divide, T.true_divide, S, S, low=0.5)
def test_divide_(): check("divide_", lambda x, y: x.clone().divide_(y), None, S, S, low=0.5)
def test_fix(): check("fix", E.fix, T.fix, S, low=-3, high=3)
def test_fix_(): check("fix_", lambda x: x.clone().fix_(), None, S, low=-3, high=3)
def test_flipud(): check("flipud", E.flipud, T.flipud, S)
def test_moveaxis(): check("moveaxis", lambda x: E.moveaxis(x, 0, 1), lambda x: T.moveaxis(x, 0, 1), S)
def test_swapdims(): check("swapdims", lambda x: E.swapdims(x, 0, 1), lambda x: T.swapdims(x, 0, 1), S)
def test_ravel(): check("ravel", E.ravel, T.ravel, S)
def test_concat(): check("concat", lambda x, y: E.concat([x, y]), lambda x, y: T.concat([x, y]), S, S)
def test_concatenate(): check("concatenate", lambda x, y: E.concatenate([x, y], 1), lambda x, y: T.concatenate([x, y], 1), S, S)
def test_inner(): check("inner", E.inner, T.inner, (4,), (4,))
def test_ger(): check("ger", E.ger, T.outer, (4,), (3,))
def test_adjoint(): check("adjoint", E.adjoint, T.adjoint, S)
def test_broadcast_tensors(): check("broadcast_tensors", E.broadcast_tensors, T.broadcast_tensors, (3, 1), (4,))
def test_isposinf(): check("isposinf", E.isposinf, T.isposinf, np.array([np.inf, -np.inf, 1.0, np.nan], np.float32))
def test_isneginf(): check("isneginf", E.isneginf, T.isneginf, np.array([np.inf, -np.inf, 1.0, np.nan], np.float32))
def test_isinf(): check("isinf", E.isinf, T.isinf, np.array([np.inf, -np.inf, 1.0, np.nan], np.float32))
def test_isfinite(): check("isfinite", E.isfinite, T.isfinite, np.array([np.inf, -np.inf, 1.0, np.nan], np.float32))
def test_atan(): check("atan", E.atan, T.atan, S, grad=False)
def test_dist(): check("dist", E.dist, T.dist, S, S)
def test_float_power(): check("float_power", lambda x: E.float_power(x, 2), lambda x: T.float_power(x, 2), S)
def test_bitwise_and(): check("bitwise_and", E.bitwise_and, T.bitwise_and, S, S, dtype="int32", low=0, high=16)
def test_bitwise_or(): check("bitwise_or", E.bitwise_or, T.bitwise_or, S, S, dtype="int32", low=0, high=16)
def test_bitwise_xor(): check("bitwise_xor", E.bitwise_xor, T.bitwise_xor, S, S, dtype="int16", low=0, high=16)
def test_bitwise_not(): check("bitwise_not", E.bitwise_not, T.bitwise_not, S, dtype="int64", low=-8, high=8)
def test_bitwise_not_bool(): check("bitwise_not", E.bitwise_not, T.bitwise_not, S, dtype="bool")
def test_iand(): check("__iand__", lambda x, y: x.clone().__iand__(y), None, S, S, dtype="int64", low=0, high=8)
def test_ior(): check("__ior__", lambda x, y: x.clone().__ior__(y), None, S, S, dtype="bool")
def test_ixor(): check("__ixor__", lambda x, y: x.clone().__ixor__(y), None, S, S, dtype="uint8", low=0, high=8)
def test_ifloordiv(): check("__ifloordiv__", lambda x, y: x.clone().__ifloordiv__(y), None, S, S, dtype="int64", low=1, high=8)
def test_imod(): check("__imod__", lambda x, y: x.clone().__imod__(y), None, S, S, dtype="int64", low=1, high=8)
def test_ipow(): check("__ipow__", lambda x: x.clone().__ipow__(2), None, S)
def test_rmatmul(): check("__rmatmul__", lambda x, y: x.__rmatmul__(y), None, (4, 2), (3, 4))
def test_ror(): check("__ror__", lambda x: x.__ror__(True), None, S, dtype="bool")
def test_rxor(): check("__rxor__", lambda x: x.__rxor__(5), None, S, dtype="int64", low=0, high=8)
def test_rand(): check("__rand__", lambda x: x.__rand__(6), None, S, dtype="int64", low=0, high=8)
def test_greater(): check("greater", lambda x, y: x.greater(y), None, S, S)
def test_greater_equal(): check("greater_equal", lambda x, y: x.greater_equal(y), None, S, S)
def test_less(): check("less", lambda x, y: x.less(y), None, S, S)
def test_less_equal(): check("less_equal", lambda x, y: x.less_equal(y), None, S, S)
def test_not_equal(): check("not_equal", lambda x, y: x.not_equal(y), None, S, S, dtype="int64", low=0, high=2)
def test_fmax(): check("fmax", lambda x, y: x.fmax(y), None, S, S)
def test_fmin(): check("fmin", lambda x, y: x.fmin(y), None, S, S)
def test_floor_divide(): check("floor_divide", E.floor_divide, T.floor_divide, S, S, low=0.5, grad=False)
def test_floor_divide_(): check("floor_divide_", lambda x, y: x.clone().floor_divide_(y), None, S, S, dtype="int64", low=1, high=9)
def test_remainder_fn(): check("remainder", E.remainder, T.remainder, S, S, low=0.5, grad=False)
def test_fmod_fn(): check("fmod", E.fmod, T.fmod, S, S, low=0.5, grad=False)
def test_square_fn(): check("square", E.square, T.square, S)
def test_relu_fn(): check("relu", E.relu, T.relu, S)
def test_softmax(): check("softmax", lambda x: x.softmax(-1), None, S)
def test_log_softmax(): check("log_softmax", lambda x: x.log_softmax(0), None, S)
def test_softmax_dtype(): check("softmax", lambda x: E.softmax(x, 1, dtype=E.float64), lambda x: T.softmax(x, 1, dtype=T.float64), S)
def test_lerp_tensor_weight(): check("lerp", lambda x, y, w: x.lerp(y, w), None, S, S, S)
def test_cumprod_fn(): check("cumprod", lambda x: E.cumprod(x, 1), lambda x: T.cumprod(x, 1), S, grad=False)
def test_logical_xor_fn(): check("logical_xor", E.logical_xor, T.logical_xor, S, S, dtype="bool")
def test_select_fn(): check("select", lambda x: E.select(x, 0, 1), lambda x: T.select(x, 0, 1), S)
def test_tensor_split_idx(): check("tensor_split", lambda x: E.tensor_split(x, [1, 3], 1), lambda x: T.tensor_split(x, [1, 3], 1), S)
def test_take_fn(): check("take", lambda x, i: E.take(x, i), lambda x, i: T.take(x, i), S, np.array([0, 5, 11]))
def test_index_add_alpha(): check("index_add", lambda x, i, s: x.index_add(1, i, s, alpha=2), None, S, np.array([0, 3]), (3, 2))
def test_diag_2d(): check("diag", lambda x: E.diag(x, -1), lambda x: T.diag(x, -1), (4, 4))
def test_addmm_default(): check("addmm", E.addmm, T.addmm, (3, 2), (3, 4), (4, 2))
def test_var_mean_fn(): check("var_mean", lambda x: E.var_mean(x, 1), lambda x: T.var_mean(x, 1), S)
def test_prod_fn(): check("prod", lambda x: E.prod(x, 1, dtype=E.float64), lambda x: T.prod(x, 1, dtype=T.float64), S)
def test_count_nonzero_fn(): check("count_nonzero", E.count_nonzero, T.count_nonzero, S, dtype="int32", low=0, high=2)
def test_clamp_min_fn(): check("clamp_min", lambda x: E.clamp_min(x, 0.2), lambda x: T.clamp_min(x, 0.2), S)
def test_clamp_max_fn(): check("clamp_max", lambda x: E.clamp_max(x, 0.2), lambda x: T.clamp_max(x, 0.2), S)
def test_masked_fill_(): check("masked_fill_", lambda x: x.clone().masked_fill_(x.detach() > 0, 1.0), None, S)
def test_scatter_(): check("scatter_", lambda x, i: x.clone().scatter_(1, i, 0.0), None, S, np.array([[0], [1], [3]]))
def test_index_fill_(): check("index_fill_", lambda x, i: x.clone().index_fill_(0, i, 2.0), None, S, np.array([1]))
def test_t_(): check("t_", lambda x: x.clone().t_(), None, S)
def test_unsqueeze_(): check("unsqueeze_", lambda x: x.clone().unsqueeze_(1), None, S, grad=False)
def test_squeeze_(): check("squeeze_", lambda x: x.clone().squeeze_(), None, (3, 1), grad=False)


def test_misc_factories_and_predicates():
    assert E.is_tensor(E.ones(1)) and not E.is_tensor(1.0)
    assert E.is_floating_point(E.ones(1)) and not E.is_floating_point(E.ones(1, dtype=E.int64))
    assert E.numel(E.ones(2, 3)) == 6 and E.clone(E.ones(2)).tolist() == [1.0, 1.0]
    assert not E.detach(E.ones(2, requires_grad=True)).requires_grad
    assert E.broadcast_shapes((3, 1), (4,)) == (3, 4)
    assert E.result_type(E.ones(1, dtype=E.int32), 1.0) is E.float32
    assert E.can_cast(E.int32, E.float32) and not E.can_cast(E.float32, E.int64)
    b = E.bernoulli(E.full((1000,), 0.3))
    assert set(b.unique().tolist() if hasattr(b, "unique") else np.unique(b.numpy()).tolist()) <= {0.0, 1.0}
    assert E.seed() >= 0
    assert E.tensor(5).__index__() == 5 and complex(E.tensor(2.0)) == 2 + 0j
    assert E.ones(2).data_ptr() != 0


def test_bernoulli_and_exponential_inplace():
    E.manual_seed(0)
    x = E.empty(10000).bernoulli_(0.25)
    assert abs(float(x.mean()) - 0.25) < 0.02
    y = E.empty(10000).exponential_(2.0)
    assert abs(float(y.mean()) - 0.5) < 0.03 and float(y.min()) >= 0
    z = E.empty(100, dtype=E.int64).random_(0, 5)
    assert set(z.tolist()) <= set(range(5))
