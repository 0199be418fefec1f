"""The primitive layer itself: every schema has an eager kernel, every differentiable one a VJP
(checked by finite differences), and the primitives the public ops don't reach directly get a line
here against numpy."""
import numpy as np
import pytest

from ember.frontend import dispatch
from ember.frontend.dispatch import apply as P
from ember.ir.ops import OPS, ShapeError, TType, infer
from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, E, gradcheck

pytestmark = NUMPY_WARNINGS_ARE_ERRORS
rng = np.random.default_rng(0)


def test_every_primitive_has_a_kernel():
    assert sorted(set(OPS) - set(dispatch.KERNELS)) == []


@pytest.mark.parametrize("op", sorted(n for n, d in OPS.items() if d.differentiable))
def test_every_differentiable_primitive_has_a_vjp(op):
    assert op in dispatch.VJPS


def test_ops_doc_lists_every_primitive():
    from ember.tools.gen_ops_doc import render
    text = render()
    for op in OPS:
        assert f"| `{op}` |" in text


def _np(t):
    return t.detach().numpy()


def test_cast(): assert P("cast", E.tensor([1.7, -2.2]), dtype=E.int32).tolist() == [1, -2]
def test_cast_bool(): assert P("cast", E.tensor([0.0, 2.0]), dtype=E.bool).tolist() == [False, True]
def test_stop_gradient():
    x = E.tensor([1.0, 2.0], requires_grad=True)
    y = P("stop_gradient", x)
    assert not y.requires_grad and y.tolist() == [1.0, 2.0]
def test_pad(): np.testing.assert_array_equal(_np(P("pad", E.ones(2, 2), pads=((1, 0), (0, 2)), value=5.0)), np.pad(np.ones((2, 2), np.float32), ((1, 0), (0, 2)), constant_values=5))
def test_pad_negative_crops(): assert P("pad", E.arange(5.0), pads=((-1, -2),), value=0.0).tolist() == [1.0, 2.0]
def test_slice(): np.testing.assert_array_equal(_np(P("slice", E.arange(10.0), starts=(1,), stops=(9,), steps=(3,))), np.arange(10.0)[1:9:3])
def test_windows():
    x = rng.normal(size=(2, 5, 6)).astype(np.float32)
    w = P("windows", E.tensor(x), kernel=(2, 3), stride=(1, 2), dilation=(2, 1))
    ref = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::1, ::2, ::2, ::1]
    np.testing.assert_array_equal(_np(w), ref)
def test_fold_is_adjoint_of_windows():
    x = E.tensor(rng.normal(size=(1, 5, 6)))
    w = P("windows", x, kernel=(2, 2), stride=(1, 2), dilation=(1, 1))
    g = E.tensor(rng.normal(size=tuple(w.shape)))
    f = P("fold", g, size=(5, 6), kernel=(2, 2), stride=(1, 2), dilation=(1, 1))
    np.testing.assert_allclose((w * g).sum().item(), (x * f).sum().item(), rtol=1e-10)
def test_full(): assert P("full", shape=(2,), value=3, dtype=E.int32, device=None).tolist() == [3, 3]
def test_arange(): assert P("arange", n=4, start=1, step=2, dtype=E.int64, device=None).tolist() == [1, 3, 5, 7]
def test_random_deterministic():
    key = E.tensor([7, 0])
    a = P("random", key, shape=(3,), dtype=E.float32, dist="uniform")
    b = P("random", key, shape=(3,), dtype=E.float32, dist="uniform")
    assert a.tolist() == b.tolist()


GRADCHECK = {
    "pad": lambda x: P("pad", x, pads=((1, 2), (0, 1)), value=0.0),
    "slice": lambda x: P("slice", x, starts=(0, 1), stops=(3, 4), steps=(2, 2)),
    "windows": lambda x: P("windows", x, kernel=(2, 2), stride=(1, 1), dilation=(1, 1)),
    "fold": lambda x: P("fold", P("reshape", x, shape=(3, 2, 1, 2)), size=(3, 3), kernel=(1, 2), stride=(1, 1), dilation=(1, 1)),
    "cast": lambda x: P("cast", P("cast", x, dtype=E.float16), dtype=E.float64) * x,
    "expand": lambda x: P("expand", P("reshape", x, shape=(1, 3, 4)), shape=(2, 3, 4)),
    "cat": lambda x: P("cat", x, x * 2, dim=1),
    "index_add": lambda x: P("index_add", x, E.tensor([0, 0, 2]), x[[1, 2, 0]], dim=0),
    "scatter": lambda x: P("scatter", x, E.tensor([[0, 1], [2, 3], [1, 0]]), x[:, :2] * 3, dim=1),
}


@pytest.mark.parametrize("op", sorted(GRADCHECK))
def test_gradcheck_primitive(op):
    if op == "cast":  # through float16: the value is rounded, the gradient passes unchanged
        x = E.tensor(rng.normal(size=(3,)), requires_grad=True)
        (g,) = E.autograd.grad(P("cast", x, dtype=E.float16).sum(), x)
        assert g.dtype is E.float64 and g.tolist() == [1.0, 1.0, 1.0]
        return
    gradcheck(GRADCHECK[op], [rng.normal(size=(3, 4))], rtol=1e-4, atol=1e-6)


def test_schema_errors_are_shape_errors():
    with pytest.raises(ShapeError, match="same dtype"):
        infer("add", [TType((2,), E.float32), TType((2,), E.float64)], {})
    with pytest.raises(ShapeError, match="must match"):
        infer("add", [TType((2,), E.float32), TType((3,), E.float32)], {})
    with pytest.raises(ShapeError, match="expected 2 inputs"):
        infer("add", [TType((2,), E.float32)], {})
