"""Compiled and eager agree on integer and special values, and both agree with PyTorch: integer
division by zero raises ZeroDivisionError, integer powers with negative exponents, float -> integer
casts of NaN, infinities and out-of-range values."""
import numpy as np
import pytest
import torch

import ember

INT_DTYPES = ["uint8", "int8", "int16", "int32", "int64"]


def _both(f, *args):
    """(eager result or exception, compiled (llvm) result or exception)."""
    out = []
    for fn in (f, ember.compile(f, backend="llvm")):
        try:
            out.append(fn(*args).numpy())
        except RuntimeError as e:
            out.append(e)
    return out


def _divisors(dtype):
    d = getattr(ember, dtype)
    a = ember.tensor([7, -7, 5, 0, 100, -128] if dtype != "uint8" else [7, 250, 5, 0, 100, 128], dtype=d)
    return a, d


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("op", ["floor_divide", "remainder", "trunc"])
def test_integer_division_by_zero_raises_like_pytorch(op, dtype):
    a, d = _divisors(dtype)
    b = ember.tensor([2, 2, 0, 3, 7, 3], dtype=d)
    f = {"floor_divide": lambda a, b: a // b, "remainder": lambda a, b: a % b,
         "trunc": lambda a, b: ember.div(a, b, rounding_mode="trunc")}[op]
    tf = {"floor_divide": lambda a, b: a // b, "remainder": lambda a, b: a % b,
          "trunc": lambda a, b: torch.div(a, b, rounding_mode="trunc")}[op]
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        tf(torch.from_numpy(a.numpy()), torch.from_numpy(b.numpy()))
    for r in _both(f, a, b):
        assert isinstance(r, RuntimeError) and "ZeroDivisionError" in str(r)
    nz = ember.tensor([2, -3, 1, 3, 7, 3] if dtype != "uint8" else [2, 3, 1, 3, 7, 3], dtype=d)
    want = tf(torch.from_numpy(a.numpy()), torch.from_numpy(nz.numpy())).numpy()
    for r in _both(f, a, nz):
        np.testing.assert_array_equal(r, want)


def test_nonzero_constant_divisor_stays_in_a_kernel():
    cf = ember.compile(lambda i: (i // 3) * 3 + i % 3, backend="llvm")
    i = ember.arange(-7, 8)
    np.testing.assert_array_equal(cf(i).numpy(), i.numpy())
    prog = cf.variants[0].forward_exec.program
    assert not prog.eager_steps and len(prog.kernels) == 1


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_integer_power_with_negative_exponent(dtype):
    d = getattr(ember, dtype)
    x = ember.tensor([0, 1, -1, -1, 2, -3, 5, 3], dtype=d)
    y = ember.tensor([-1, -3, -3, -2, -1, -2, 2, 0], dtype=d)
    want = (torch.from_numpy(x.numpy()) ** torch.from_numpy(y.numpy())).numpy()
    for r in _both(lambda x, y: x ** y, x, y):
        np.testing.assert_array_equal(r, want)
    with pytest.raises(RuntimeError, match="negative integer powers"):
        torch.from_numpy(x.numpy()) ** -1
    for r in _both(lambda x: x ** -1, x):
        assert isinstance(r, RuntimeError) and "Integers to negative integer powers are not allowed" in str(r)


SPECIAL = [float("nan"), float("inf"), -float("inf"), -0.0, 3e10, -3e10, 2.7, -2.7, 40000.0, -40000.0, 300.0,
           -300.0, 2147483520.0, -2147483648.0]


@pytest.mark.parametrize("src", ["float16", "float32", "float64"])
@pytest.mark.parametrize("dst", INT_DTYPES + ["bool"])
def test_float_to_int_casts_of_special_values(src, dst):
    vals = np.array(SPECIAL, dtype=getattr(np, src))
    x = ember.tensor(vals)
    want = torch.from_numpy(vals).to(getattr(torch, dst)).numpy()
    with np.errstate(invalid="ignore"):
        for r in _both(lambda x: (x + 0).to(getattr(ember, dst)), x):
            np.testing.assert_array_equal(r, want)
