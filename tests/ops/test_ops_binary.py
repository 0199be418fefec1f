"""Elementwise binary ops, comparisons, where and PyTorch's type promotion, against torch."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, T, check, gradcheck, FLOATS, INTS, torch, needs_torch

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

S = (3, 4)
ALL = FLOATS + ("float16",) + INTS + ("bool",)


@pytest.mark.parametrize("dtype", FLOATS + ("float16",))
class TestFloatBinary:
    def test_add(self, dtype): check("add", lambda x, y: x + y, None, S, S, dtype=dtype, np_fn=np.add)
    def test_sub(self, dtype): check("sub", lambda x, y: x - y, None, S, S, dtype=dtype, np_fn=np.subtract)
    def test_mul(self, dtype): check("mul", lambda x, y: x * y, None, S, S, dtype=dtype, np_fn=np.multiply)
    def test_div(self, dtype): check("div", lambda x, y: x / y, None, S, S, dtype=dtype, low=0.5, np_fn=np.divide)
    def test_pow(self, dtype): check("pow", lambda x, y: x ** y, None, S, S, dtype=dtype, low=0.5)
    def test_maximum(self, dtype): check("maximum", E.maximum, T.maximum, S, S, dtype=dtype, np_fn=np.maximum)
    def test_minimum(self, dtype): check("minimum", E.minimum, T.minimum, S, S, dtype=dtype, np_fn=np.minimum)
    def test_add_alpha(self, dtype): check("add", lambda x, y: x.add(y, alpha=2), None, S, S, dtype=dtype)
    def test_sub_alpha(self, dtype): check("sub", lambda x, y: x.sub(y, alpha=0.5), None, S, S, dtype=dtype)
    def test_remainder(self, dtype): check("remainder", lambda x, y: x % y, None, S, S, dtype=dtype, low=0.5, high=3, grad=False)
    def test_fmod(self, dtype): check("fmod", lambda x, y: x.fmod(y), None, S, S, dtype=dtype, low=-3, high=3, grad=False)
    def test_floordiv(self, dtype): check("floordiv", lambda x, y: x // y, None, S, S, dtype=dtype, low=0.5, high=3, grad=False)
    def test_div_floor(self, dtype): check("div_floor", lambda x, y: x.div(y, rounding_mode="floor"), None, S, S, dtype=dtype, low=-3, high=3, grad=False)
    def test_div_trunc(self, dtype): check("div_trunc", lambda x, y: x.div(y, rounding_mode="trunc"), None, S, S, dtype=dtype, low=-3, high=3, grad=False)
    def test_lerp(self, dtype): check("lerp", lambda x, y: x.lerp(y, 0.3), None, S, S, dtype=dtype)
    def test_addcmul(self, dtype): check("addcmul", lambda x, y, z: x.addcmul(y, z, value=0.5), None, S, S, S, dtype=dtype)
    def test_addcdiv(self, dtype): check("addcdiv", lambda x, y, z: x.addcdiv(y, z, value=0.5), None, S, S, S, dtype=dtype, low=0.5)
    def test_where(self, dtype): check("where", lambda x, y: E.where(x > y, x, y), lambda x, y: T.where(x > y, x, y), S, S, dtype=dtype)


@pytest.mark.parametrize("dtype", INTS)
class TestIntBinary:
    def test_add(self, dtype): check("add", lambda x, y: x + y, None, S, S, dtype=dtype, low=0, high=10)
    def test_sub(self, dtype): check("sub", lambda x, y: x - y, None, S, S, dtype=dtype, low=0, high=10)
    def test_mul(self, dtype): check("mul", lambda x, y: x * y, None, S, S, dtype=dtype, low=0, high=10)
    def test_truediv(self, dtype): check("div", lambda x, y: x / y, None, S, S, dtype=dtype, low=1, high=10)
    def test_floordiv(self, dtype): check("floordiv", lambda x, y: x // y, None, S, S, dtype=dtype, low=1, high=10)
    def test_remainder(self, dtype): check("remainder", lambda x, y: x % y, None, S, S, dtype=dtype, low=1, high=10)
    def test_pow(self, dtype): check("pow", lambda x, y: x ** y, None, S, S, dtype=dtype, low=0, high=4)
    def test_maximum(self, dtype): check("maximum", E.maximum, T.maximum, S, S, dtype=dtype, low=0, high=10)
    def test_and(self, dtype): check("and", lambda x, y: x & y, None, S, S, dtype=dtype, low=0, high=10)
    def test_or(self, dtype): check("or", lambda x, y: x | y, None, S, S, dtype=dtype, low=0, high=10)
    def test_xor(self, dtype): check("xor", lambda x, y: x ^ y, None, S, S, dtype=dtype, low=0, high=10)


def test_int_div_negative(): check("floordiv", lambda x, y: x // y, None, S, S, dtype="int64", low=-7, high=7, seed=3) if False else \
    check("floordiv", lambda x, y: x // y, None, np.array([-7, 7, -7, 7]), np.array([2, 2, -2, -2]))
def test_int_remainder_negative(): check("remainder", lambda x, y: x % y, None, np.array([-7, 7, -7, 7]), np.array([2, 2, -2, -2]))
def test_float_remainder_negative(): check("remainder", lambda x, y: x % y, None, np.array([-7., 7, -7, 7], np.float32), np.array([2., 2, -2, -2], np.float32), grad=False)
def test_fmod_negative(): check("fmod", lambda x, y: x.fmod(y), None, np.array([-7., 7, -7, 7], np.float32), np.array([2., 2, -2, -2], np.float32), grad=False)
def test_div_trunc_int(): check("div_trunc", lambda x, y: x.div(y, rounding_mode="trunc"), None, np.array([-7, 7, -7, 7]), np.array([2, 2, -2, -2]))
def test_div_floor_int(): check("div_floor", lambda x, y: x.div(y, rounding_mode="floor"), None, np.array([-7, 7, -7, 7]), np.array([2, 2, -2, -2]))
def test_int_div_zero():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        E.tensor([1, 2]) // E.tensor([1, 0])


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8", "bool"])
def test_compare(op, dtype):
    check(op, lambda x, y: getattr(x, op)(y), None, S, S, dtype=dtype, low=0, high=3)


@pytest.mark.parametrize("op", ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"])
def test_compare_operators_with_scalar(op):
    check(op, lambda x: getattr(x, op)(1), None, S, dtype="int64", low=0, high=3)
    check(op, lambda x: getattr(x, op)(0.5), None, S, dtype="int64", low=0, high=3)
    check(op, lambda x: getattr(x, op)(0.5), None, S)


@pytest.mark.parametrize("op", ["logical_and", "logical_or", "logical_xor"])
@pytest.mark.parametrize("dtype", ["bool", "float32", "int32"])
def test_logical(op, dtype):
    check(op, lambda x, y: getattr(x, op)(y), None, S, S, dtype=dtype, low=0, high=2)


def test_bool_ops():
    check("and", lambda x, y: x & y, None, S, S, dtype="bool")
    check("or", lambda x, y: x | y, None, S, S, dtype="bool")
    check("xor", lambda x, y: x ^ y, None, S, S, dtype="bool")
    check("bool_add", lambda x, y: x + y, None, S, S, dtype="bool")
    check("bool_mul", lambda x, y: x * y, None, S, S, dtype="bool")


# ------------------------------------------------------------------ scalars on either side
SCALARS = [2, 2.5, True, -1]


@pytest.mark.parametrize("s", SCALARS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "uint8", "bool", "float16"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "pow"])
def test_scalar_operators(op, dtype, s):
    if op == "sub" and (dtype == "bool" or isinstance(s, bool)):
        with pytest.raises(RuntimeError, match="Subtraction, the `-` operator, with"):
            E.ones(2, dtype=E.bool) - s
        return
    if op == "pow" and dtype in INTS + ("bool",) and isinstance(s, int) and s < 0:
        pytest.skip("integer to negative power raises in both")
    if op == "pow" and dtype == "bool" and isinstance(s, bool):
        pytest.skip("torch: pow not implemented for bool")
    fwd = getattr(__import__("operator"), op)
    low, high = (0.5, 3) if op in ("truediv", "pow") else (-3, 3)
    grad = dtype != "float16" and not (op == "pow" and isinstance(s, bool))  # torch's pow backward asserts on bools
    check(op, lambda x: fwd(x, s), None, S, dtype=dtype, low=low, high=high, grad=grad)
    if op == "pow" and dtype in INTS + ("bool",) and isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 \
            and dtype != "bool":
        return
    check("r" + op, lambda x: fwd(s, x), None, S, dtype=dtype, low=1, high=3, grad=grad)


@pytest.mark.parametrize("op", ["__iadd__", "__isub__", "__imul__", "__itruediv__"])
@pytest.mark.parametrize("s", [2, 0.5])
def test_inplace_operators(op, s):
    check(op, lambda x: getattr(x.clone(), op)(s), None, S)
    check(op, lambda x, y: getattr(x.clone(), op)(y), None, S, (4,))


def test_inplace_int_float_scalar_errors():
    x = E.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="can't be cast"):
        x += 0.5
    with pytest.raises(RuntimeError, match="can't be cast"):
        x /= 2
    x += 2
    assert x.tolist() == [3, 4, 5] and x.dtype is E.int64


def test_binary_with_numpy_scalar():
    # (torch's own backward chokes on numpy scalars, so its side multiplies by the float)
    check("np_scalar", lambda x: x * np.float64(2.0), lambda x: x * 2.0, S)
    check("np_scalar_r", lambda x: np.float32(2.0) * x, lambda x: 2.0 * x, S)


# ------------------------------------------------------------------------ type promotion
PROMO_DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


@needs_torch
@pytest.mark.parametrize("a,b", list(itertools.combinations_with_replacement(PROMO_DTYPES, 2)))
def test_promote_types(a, b):
    assert E.promote_types(getattr(E, a if a != "bool" else "bool"), getattr(E, b)).name == \
        str(torch.promote_types(getattr(torch, a), getattr(torch, b))).split(".")[1]


@needs_torch
@pytest.mark.parametrize("a", PROMO_DTYPES)
@pytest.mark.parametrize("b", PROMO_DTYPES)
@pytest.mark.parametrize("zero_dim", ["none", "a", "b"])
def test_result_type_tensors(a, b, zero_dim):
    sa = () if zero_dim == "a" else (2,)
    sb = () if zero_dim == "b" else (2,)
    ea, eb = E.ones(sa, dtype=getattr(E, a)), E.ones(sb, dtype=getattr(E, b))
    ta, tb = torch.ones(sa, dtype=getattr(torch, a)), torch.ones(sb, dtype=getattr(torch, b))
    assert (ea * eb).dtype.name == str((ta * tb).dtype).split(".")[1]
    assert E.result_type(ea, eb).name == str(torch.result_type(ta, tb)).split(".")[1]


@needs_torch
@pytest.mark.parametrize("a", PROMO_DTYPES)
@pytest.mark.parametrize("s", [True, 3, 2.5])
def test_result_type_scalar(a, s):
    ea, ta = E.ones(2, dtype=getattr(E, a)), torch.ones(2, dtype=getattr(torch, a))
    assert (ea * s).dtype.name == str((ta * s).dtype).split(".")[1]
    assert (s * ea).dtype.name == str((s * ta).dtype).split(".")[1]
    assert (ea / 2).dtype.name == str((ta / 2).dtype).split(".")[1]


def test_promotion_examples():
    assert (E.tensor([1, 2]) + 0.5).dtype is E.float32
    assert (E.tensor([True]) + 1).dtype is E.int64
    assert (E.tensor([1.0]) + E.tensor([1.0], dtype=E.float64)).dtype is E.float64
    assert (E.tensor([1.0], dtype=E.float16) + E.tensor(1.0, dtype=E.float64)).dtype is E.float16
    assert (E.tensor([1], dtype=E.int8) + E.tensor(1000)).dtype is E.int8
    assert (E.tensor([1], dtype=E.int8) + E.tensor(1.0)).dtype is E.float32
    assert (E.tensor([1, 2]) / 2).dtype is E.float32
    assert (E.tensor([1, 2]) / E.tensor([2, 2])).dtype is E.float32
    assert E.tensor([1, 3]).div(2).tolist() == [0.5, 1.5]


def test_where_promotion():
    c = E.tensor([True, False])
    assert E.where(c, E.tensor([1, 2]), 0.5).dtype is E.float32
    assert E.where(c, 1.0, 0).dtype is E.float32
    assert E.where(c, E.tensor([1, 2], dtype=E.int32), 0).dtype is E.int32
    check("where_scalar", lambda x: E.where(x > 0, x, 0.0), lambda x: T.where(x > 0, x, 0.0), S)
    check("where_bcast", lambda c, x, y: E.where(c > 0, x, y), lambda c, x, y: T.where(c > 0, x, y), (3, 1), (1, 4), (4,))


# ------------------------------------------------------------------------------ broadcasting
@settings(max_examples=25, deadline=None)
@given(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4))
@pytest.mark.parametrize("op", ["add", "mul", "sub", "div", "maximum"])
def test_broadcast_binary(op, shapes):
    a, b = shapes.input_shapes
    fn = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "sub": lambda x, y: x - y,
          "div": lambda x, y: x / y, "maximum": lambda x, y: x.maximum(y)}[op]
    check(op, fn, None, a, b, low=0.5, high=2)


def test_broadcast_error_message():
    with pytest.raises(RuntimeError, match=r"size of tensor a \(3\) must match the size of tensor b \(4\)"):
        E.ones(2, 3) + E.ones(4)


@pytest.mark.parametrize("op", ["add", "mul", "div", "pow", "maximum"])
def test_gradcheck_binary(op):
    rng = np.random.default_rng(0)
    fn = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
          "pow": lambda x, y: x ** y, "maximum": lambda x, y: E.maximum(x, y)}[op]
    gradcheck(fn, [rng.uniform(0.5, 2, (2, 3)), rng.uniform(0.5, 2, (3,))])


def test_maximum_ties_grad():
    check("maximum_tie", E.maximum, T.maximum, np.array([1.0, 2.0, 3.0], np.float32), np.array([1.0, 1.0, 4.0], np.float32))
    check("minimum_tie", E.minimum, T.minimum, np.array([1.0, 2.0, 3.0], np.float32), np.array([1.0, 1.0, 4.0], np.float32))


def test_nan_propagation():
    a = np.array([np.nan, 1.0, 2.0], np.float32)
    b = np.array([1.0, np.nan, 0.0], np.float32)
    check("maximum_nan", E.maximum, T.maximum, a, b, grad=False)
    check("minimum_nan", E.minimum, T.minimum, a, b, grad=False)
    check("clamp_nan", lambda x: x.clamp(0, 1), None, a, grad=False)
