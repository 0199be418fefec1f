"""Kernel IR: text form, parse round trip, names, validation errors, cost estimates."""
import numpy as np
import pytest

from ember.ir import dtypes as dt
from ember.ir.kernel import (Binary, Buf, Const, ExternKernel, IGather, Kernel, Load, Reduce, Store, Unary,
                             Where, IndexValue, o, r)
from ember.ir.kernel_text import parse_kernel

F32 = dt.float32

SOFTMAX_TEXT = """\
kernel k3_max_sub_exp_sum_div(x: f32[8192,1024]) -> (y: f32[8192,1024]) outer=[8192] inner=[1024] {
  %0 = load x[o0, r0] : f32
  %1 = reduce.max %0 : f32
  %2 = sub %0, %1 : f32
  %3 = exp %2 : f32
  %4 = reduce.sum %3 : f32
  %5 = div %3, %4 : f32
  store y[o0, r0] = %5
}"""


def build_softmax():
    x, y = Buf("x", (8192, 1024), F32), Buf("y", (8192, 1024), F32)
    v = Load(x, (o(0), r(0)))
    e = Unary("exp", Binary("sub", v, Reduce("max", v)))
    return Kernel([x], [y], outer=(8192,), inner=(1024,),
                  stores=[Store(y, (o(0), r(0)), Binary("div", e, Reduce("sum", e)))], id=3)


def test_softmax_text_and_name():
    k = build_softmax()
    assert str(k) == SOFTMAX_TEXT
    assert k.name == "k3_max_sub_exp_sum_div"
    assert k.n_passes == 2


def test_parse_round_trip_complex():
    x, ids, w = Buf("x", (4, 9, 9), F32), Buf("ids", (5,), dt.int64), Buf("w", (10, 3), F32)
    y, z = Buf("y", (4, 4), F32), Buf("z", (5, 3), dt.bool_)
    v = Load(x, (o(0), o(1) * 2 + r(0) - 1, 8 - r(1)), fill=-np.inf, masked=[1])
    g = Load(w, (IGather(ids, (o(0),), wrap=True), o(1) % 3))
    k = Kernel([x, ids, w], [y, z], (4, 4), (3, 3), [
        Store(y, (o(0), o(1)), Reduce("max", Where(Binary("lt", IndexValue(r(0)), Const(2, dt.int64)), v,
                                                   Const(0.5, F32)))),
    ], id=1)
    text = str(k)
    assert "load x[o0, o1*2 + r0 - 1, 8 - r1] if inbounds(1) else -inf" in text
    assert str(parse_kernel(text)) == text
    k2 = Kernel([ids, w], [z], (5, 3), stores=[Store(z, (o(0), o(1)), Unary("isnan", g))], id=2)
    assert "load w[wrap(ids[o0]), o1 % 3]" in str(k2)
    assert str(parse_kernel(str(k2))) == str(k2)


def test_deterministic_text():
    assert str(build_softmax()) == str(build_softmax())


def test_index_expression_printing():
    assert str((o(0) // 4) % 3) == "o0 // 4 % 3"
    assert str((o(0) + 1) * 2) == "(o0 + 1)*2"
    assert str(o(1) * 1 + 0) == "o1"
    assert str(7 - o(0) - 1) == "7 - o0 - 1"


@pytest.mark.parametrize("build, err", [
    (lambda x, y: Binary("add", Load(x, (o(0),)), Const(1, dt.int64)), TypeError),
    (lambda x, y: Unary("exp", Const(1, dt.int64)), TypeError),
    (lambda x, y: Binary("div", Const(1, dt.int64), Const(1, dt.int64)), TypeError),
    (lambda x, y: Load(x, (o(0), o(1))), ValueError),
    (lambda x, y: o(0) // o(1), ValueError),
])
def test_construction_errors(build, err):
    x, y = Buf("x", (4,), F32), Buf("y", (4,), F32)
    with pytest.raises(err):
        build(x, y)


def test_kernel_validation_errors():
    x, y = Buf("x", (4, 4), F32), Buf("y", (4,), F32)
    with pytest.raises(ValueError, match="index does not"):
        Kernel([x], [y], (4,), (4,), [Store(y, (o(0),), Load(x, (o(0), r(0))))])
    with pytest.raises(ValueError, match="r-axes"):
        Kernel([x], [y], (4,), (), [Store(y, (o(0),), Load(x, (o(0), r(0))))])
    with pytest.raises(ValueError, match="not a kernel input"):
        Kernel([], [y], (4,), (), [Store(y, (o(0),), Load(x, (o(0), o(0))))])


def test_costs():
    k = build_softmax()
    assert k.bytes_moved == 2 * 8192 * 1024 * 4
    assert k.flops == 8192 * 1024 * 5   # max, sub, exp, sum, div per element


def test_extern_kernel_text_and_args():
    a, b = Buf("a", (8, 16), F32), Buf("b", (16, 4), F32)
    mm, bias, out = Buf("mm", (8, 4), F32), Buf("bias", (4,), F32), Buf("out", (8, 4), F32)
    ep = Kernel([mm, bias], [out], (8, 4), stores=[
        Store(out, (o(0), o(1)), Unary("tanh", Load(mm, (o(0), o(1))) + Load(bias, (o(1),))))], id=5)
    x = ExternKernel("matmul", [a, b], mm, {}, epilogue=ep, id=5)
    assert x.name == "x5_matmul_add_tanh"
    assert [t.name for t in x.args] == ["a", "b", "bias", "out"]
    assert x.flops == 2 * 8 * 4 * 16 + ep.flops
    assert "extern x5_matmul_add_tanh = matmul(a, b)" in str(x)
