"""ember.autograd.Function beyond one output: tuples, mark_non_differentiable, setup_context,
set_materialize_grads, once_differentiable, saved outputs in double backward -- against torch."""
import numpy as np
import pytest

import ember
from ember.autograd.function import FunctionCtx, once_differentiable

torch = pytest.importorskip("torch")


def _sincos(lib):
    class SinCos(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            s, c = x.sin(), x.cos()
            ctx.save_for_backward(s, c)
            idx = x.argmax()
            ctx.mark_non_differentiable(idx)
            return s, c, idx

        @staticmethod
        def backward(ctx, gs, gc, gi):
            s, c = ctx.saved_tensors
            return gs * c - gc * s
    return SinCos


def test_tuple_outputs_and_non_differentiable_output():
    for lib in (ember, torch):
        x = lib.tensor([0.3, 1.2, -0.5], requires_grad=True)
        s, c, i = _sincos(lib).apply(x)
        assert s.requires_grad and c.requires_grad and not i.requires_grad
        (s * 2 + c).sum().backward()
        if lib is ember:
            eg = x.grad.numpy()
        else:
            np.testing.assert_allclose(eg, x.grad.numpy(), rtol=1e-6)
    x = ember.tensor([0.3, 1.2], requires_grad=True)
    s, c, _ = _sincos(ember).apply(x)
    s.sum().backward()                    # c got no gradient: backward receives zeros for it
    np.testing.assert_allclose(x.grad.numpy(), np.cos([0.3, 1.2]), rtol=1e-6)


def test_setup_context_style_and_materialize_grads_false():
    seen = []

    class Split(ember.autograd.Function):
        @staticmethod
        def forward(x):
            return x * 2, x * 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.set_materialize_grads(False)

        @staticmethod
        def backward(ctx, ga, gb):
            seen.append((ga is None, gb is None))
            return (ga * 2 if ga is not None else 0) + (gb * 3 if gb is not None else 0)
    x = ember.tensor([1.0, 2.0], requires_grad=True)
    a, b = Split.apply(x)
    b.sum().backward()
    assert seen == [(True, False)] and x.grad.tolist() == [3.0, 3.0]


def test_saved_output_has_history_for_double_backward():
    class Exp(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y
    x = ember.tensor([0.5, -1.0], requires_grad=True)
    (g,) = ember.autograd.grad(Exp.apply(x).sum(), [x], create_graph=True)
    (gg,) = ember.autograd.grad(g.sum(), [x])
    np.testing.assert_allclose(gg.numpy(), np.exp([0.5, -1.0]), rtol=1e-6)


def test_once_differentiable_and_ctx_class():
    class Sq(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            assert isinstance(ctx, FunctionCtx)
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g
    x = ember.tensor([3.0], requires_grad=True)
    Sq.apply(x).backward(ember.ones(1))
    assert x.grad.tolist() == [6.0]


def test_wrong_number_of_gradients_is_an_error():
    class Bad(ember.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, g):
            return g
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="returned an incorrect number of gradients"):
        Bad.apply(x, x).sum().backward()
