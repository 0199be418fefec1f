"""ember.autograd: backward/grad, grad modes, hooks, Function, in-place + views, errors, deep graphs."""
import sys

import numpy as np
import pytest

import ember as E
from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, torch, needs_torch, gradcheck

pytestmark = [NUMPY_WARNINGS_ARE_ERRORS, pytest.mark.usefixtures("grad_mode_restored")]
from tests.ops.helpers import grad_mode_restored  # noqa: E402,F401  (the fixture)


def t(*v, **kw):
    return E.tensor(list(v), requires_grad=True, **kw)


# ------------------------------------------------------------------------------ basics
def test_backward_scalar_and_accumulation():
    x = t(1.0, 2.0, 3.0)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0, 9.0]
    x.grad = None
    x.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    x.grad.zero_()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_backward_gradient_argument():
    x = t(1.0, 2.0)
    y = x * 3
    y.backward(gradient=E.tensor([1.0, 10.0]))
    assert x.grad.tolist() == [3.0, 30.0]
    z = t(1.0, 2.0)
    (z * 2).backward(E.tensor([0.5, 0.5]))
    assert z.grad.tolist() == [1.0, 1.0]


def test_backward_non_scalar_errors():
    x = t(1.0, 2.0)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    one = E.tensor([[3.0]], requires_grad=True)
    (one * 2).backward()  # one element is fine
    assert one.grad.tolist() == [[2.0]]
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 2).backward(E.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        E.ones(2).sum().backward()


def test_second_backward_through_freed_graph():
    x = t(1.0, 2.0)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph():
    x = t(1.0, 2.0)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.clone()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1.numpy(), rtol=1e-6)


def test_grad_does_not_accumulate():
    x = t(1.0, 2.0)
    y = (x ** 2).sum()
    (g,) = E.autograd.grad(y, x)
    assert g.tolist() == [2.0, 4.0] and x.grad is None and not g.requires_grad
    a, b = t(1.0), t(2.0)
    ga, gb = E.autograd.grad((a * b).sum(), [a, b])
    assert ga.tolist() == [2.0] and gb.tolist() == [1.0]


def test_grad_unused_and_materialize():
    x, y = t(1.0), t(2.0)
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        E.autograd.grad((x * 2).sum(), [x, y])
    gx, gy = E.autograd.grad((x * 2).sum(), [x, y], allow_unused=True)
    assert gy is None and gx.tolist() == [2.0]
    gx, gy = E.autograd.grad((x * 2).sum(), [x, y], materialize_grads=True)
    assert gy.tolist() == [0.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        E.autograd.grad((x * 2).sum(), [E.ones(1)])


def test_grad_multiple_outputs_and_grad_outputs():
    x = t(1.0, 2.0)
    (g,) = E.autograd.grad([x * 2, x * x], x, [E.ones(2), E.tensor([1.0, 0.5])])
    assert g.tolist() == [4.0, 4.0]


def test_autograd_backward_fn_and_inputs():
    x, y = t(1.0), t(2.0)
    E.autograd.backward([(x * y).sum()])
    assert x.grad.tolist() == [2.0] and y.grad.tolist() == [1.0]
    a, b = t(1.0), t(3.0)
    (a * b).sum().backward(inputs=[a])
    assert a.grad.tolist() == [3.0] and b.grad is None


def test_diamond_and_shared_subexpressions():
    x = t(2.0)
    y = x * x
    z = y + y * 3 + y.exp()
    z.sum().backward()
    expected = 2 * 2.0 * (4 + np.exp(4.0))
    np.testing.assert_allclose(x.grad.item(), expected, rtol=1e-5)


def test_leaf_used_twice_in_one_op():
    x = t(3.0)
    (x * x).backward()
    assert x.grad.item() == 6.0


# -------------------------------------------------------------------------- higher order
def test_grad_of_grad_cubic():
    x = t(2.0)
    (g,) = E.autograd.grad(x ** 3, x, create_graph=True)
    assert g.requires_grad and g.item() == 12.0
    (g2,) = E.autograd.grad(g, x, create_graph=True)
    assert g2.item() == 12.0
    (g3,) = E.autograd.grad(g2, x)
    assert g3.item() == 6.0


def test_grad_of_grad_tanh():
    x = E.tensor([0.3, -1.2], requires_grad=True, dtype=E.float64)
    (g,) = E.autograd.grad(x.tanh().sum(), x, create_graph=True)
    (g2,) = E.autograd.grad(g.sum(), x)
    th = np.tanh(x.detach().numpy())
    np.testing.assert_allclose(g.detach().numpy(), 1 - th ** 2, rtol=1e-12)
    np.testing.assert_allclose(g2.numpy(), -2 * th * (1 - th ** 2), rtol=1e-12)


@pytest.mark.parametrize("fn", [lambda x: (x.sin() * x).sum(), lambda x: (x.exp() / (1 + x * x)).sum(),
                                lambda x: x.sigmoid().prod(), lambda x: (x @ x.t()).logsumexp(1).sum(),
                                lambda x: x.pow(2.5).mean(), lambda x: x.softmax(-1)[:, 0].sum() if x.ndim > 1 else x.sum()])
def test_hessian_vector_against_finite_differences(fn):
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.5, 1.5, (2, 3))
    x = E.tensor(x0, requires_grad=True)
    (g,) = E.autograd.grad(fn(x), x, create_graph=True)
    v = rng.normal(size=x0.shape)
    (hv,) = E.autograd.grad((g * E.tensor(v)).sum(), x)
    eps = 1e-6

    def grad_at(a):
        xa = E.tensor(a, requires_grad=True)
        return E.autograd.grad(fn(xa), xa)[0].numpy()
    fd = (grad_at(x0 + eps * v) - grad_at(x0 - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hv.numpy(), fd, rtol=1e-5, atol=1e-7)


def test_backward_create_graph():
    x = t(3.0)
    y = x ** 2
    y.backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.item() == 6.0
    g = x.grad
    x.grad = None
    g.backward()
    assert x.grad.item() == 2.0


# ---------------------------------------------------------------------------- grad modes
def test_no_grad_context_and_decorator():
    x = t(1.0)
    with E.no_grad():
        y = x * 2
        assert not E.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and E.is_grad_enabled()

    @E.no_grad()
    def f(a):
        return a * 2
    assert not f(x).requires_grad

    @E.no_grad
    def g(a):
        return a * 2
    assert not g(x).requires_grad and E.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = t(1.0)
    with E.no_grad():
        with E.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad

    @E.enable_grad()
    def f(a):
        return a * 2
    with E.no_grad():
        assert f(x).requires_grad


def test_inference_mode_and_set_grad_enabled():
    x = t(1.0)
    with E.inference_mode():
        assert not (x * 2).requires_grad
    with E.inference_mode(False):
        assert (x * 2).requires_grad

    @E.inference_mode()
    def f(a):
        return a * 2
    assert not f(x).requires_grad
    with E.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert E.is_grad_enabled()
    E.set_grad_enabled(False)
    try:
        assert not E.is_grad_enabled()
    finally:
        E.set_grad_enabled(True)
    assert E.is_grad_enabled()

    @E.set_grad_enabled(False)
    def h(a):
        return a * 2
    assert not h(x).requires_grad and E.is_grad_enabled()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with E.no_grad():
            raise ValueError
    assert E.is_grad_enabled()


def test_grad_mode_is_thread_local():
    import threading
    seen = []
    with E.no_grad():
        th = threading.Thread(target=lambda: seen.append(E.is_grad_enabled()))
        th.start()
        th.join()
    assert seen == [True]


def test_detach():
    x = t(1.0, 2.0)
    y = (x * 2).detach()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    z = x * 2
    z.detach_()
    assert not z.requires_grad and z.grad_fn is None
    d = x.detach()
    d.zero_()  # shares storage with x
    assert x.tolist() == [0.0, 0.0]
    assert x._version == d._version


# ------------------------------------------------------------------------ hooks, retain_grad
def test_register_hook_modifies_grad():
    x = t(1.0, 2.0)
    seen = []
    h = x.register_hook(lambda g: seen.append(g.tolist()))
    y = x * 2
    y.register_hook(lambda g: g * 10)
    y.sum().backward()
    assert seen == [[20.0, 20.0]] and x.grad.tolist() == [20.0, 20.0]
    h.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert seen == [[20.0, 20.0]]
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        E.ones(2).register_hook(lambda g: g)


def test_retain_grad():
    x = t(1.0, 2.0)
    y = x * 3
    y.retain_grad()
    z = y * y
    assert y.retains_grad
    z.sum().backward()
    assert y.grad.tolist() == [6.0, 12.0] and x.grad.tolist() == [18.0, 36.0]
    w = x * 2
    w.sum().backward()
    assert w.grad is None
    x.retain_grad()  # no-op on a leaf


def test_function_subclass():
    class Cube(E.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x)
            ctx.k = k
            return x ** 3 * k

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x ** 2 * ctx.k, None
    x = t(1.0, 2.0)
    y = Cube.apply(x, 2.0)
    assert y.requires_grad and y.grad_fn is not None and y.tolist() == [2.0, 16.0]
    y.sum().backward()
    assert x.grad.tolist() == [6.0, 24.0]
    with E.no_grad():
        assert not Cube.apply(x, 1.0).requires_grad
    assert not Cube.apply(E.ones(2), 1.0).requires_grad


def test_function_two_tensor_inputs():
    class MulAdd(E.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b + a

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * (b + 1), g * a
    a, b = t(2.0), t(5.0)
    MulAdd.apply(a, b).sum().backward()
    assert a.grad.item() == 6.0 and b.grad.item() == 2.0


# ----------------------------------------------------------------------- in-place and views
def test_inplace_on_leaf_requiring_grad_errors():
    x = t(1.0, 2.0)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad is being used in an in-place"):
        x.add_(1)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x += 1
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x[0] = 5.0
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x[0:1].mul_(2)
    with E.no_grad():
        x.add_(1)
        x[0] = 5.0
    assert x.tolist() == [5.0, 3.0] and x.requires_grad and x.is_leaf


def test_writes_through_data_or_detach_of_a_leaf_are_allowed():
    """`p.data[0] = v`, `p.detach()[mask] = v`, views of those: PyTorch allows them (old init code writes
    weights this way); the leaf's values change, its history does not, the version counter is shared.
    A view taken under no_grad and written in grad mode is still refused."""
    x = t(1.0, -2.0, 3.0)
    v0 = x._version
    x.data[0] = 5.0
    x.detach()[x.detach() < 0] = 0.0
    x.data[1:][0:1] = 7.0
    assert x.tolist() == [5.0, 7.0, 3.0] and x.requires_grad and x.is_leaf and x.grad_fn is None
    assert x._version == v0 + 3
    (x * x).sum().backward()
    assert x.grad.tolist() == [10.0, 14.0, 6.0]
    with E.no_grad():
        v = x[:2]
    with pytest.raises(RuntimeError, match="in-place"):
        v[0] = 1.0


def test_saved_value_modified_inplace_errors():
    x = t(1.0, 2.0)
    y = x.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation") as e:
        y.sum().backward()
    assert "ExpBackward0" in str(e.value) and "version 1; expected version 0" in str(e.value)
    a = t(1.0, 2.0)
    b = a * 1
    c = b * b
    b.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        c.sum().backward()
    p = t(1.0, 2.0)
    q = p.sin()
    p_view = p.detach()
    p_view.zero_()  # a write through a detached alias bumps the shared version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        q.sum().backward()


def test_inplace_ops_that_dont_save_are_fine():
    x = t(1.0, 2.0)
    y = x * 2
    y.add_(1)
    y.mul_(3)
    y.div_(2)
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("op", ["exp_", "sin_", "sigmoid_", "tanh_", "sqrt_", "neg_", "abs_", "pow_"])
def test_inplace_unary_grads(op):
    x0 = np.array([0.3, 1.7, 0.9])
    x = E.tensor(x0, requires_grad=True)
    y = x * 1
    getattr(y, op)(*((2.5,) if op == "pow_" else ()))
    y.sum().backward()
    xr = E.tensor(x0, requires_grad=True)
    getattr(xr, op[:-1])(*((2.5,) if op == "pow_" else ())).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy(), rtol=1e-12)


def test_inplace_with_tensor_operand_grads():
    x, w = t(1.0, 2.0), t(3.0, 4.0)
    y = x * 1
    y.mul_(w)
    y.add_(w, alpha=2)
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 4.0] and w.grad.tolist() == [3.0, 4.0]


def test_clone_then_setitem_grad():
    x = E.ones(3, 4, requires_grad=True)
    y = x.clone()
    y[:, 0] = 0
    y.sum().backward()
    expected = np.ones((3, 4))
    expected[:, 0] = 0
    assert y.grad_fn is not None
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_setitem_with_grad_value():
    x = E.zeros(2, 3, requires_grad=True)
    v = E.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    y[1] = v * 2
    (y * E.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])).sum().backward()
    assert v.grad.tolist() == [2.0, 4.0, 6.0]
    assert x.grad.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_setitem_mask_grad():
    x = E.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    y = x * 2
    y[y < 0] = 0.0
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 0.0]


def test_inplace_on_view_of_nonleaf():
    x = E.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    v = y[0]
    v.mul_(10)
    assert y.tolist() == [[10.0, 20.0], [3.0, 4.0]]
    (y * y).sum().backward()
    assert x.grad.tolist() == [[200.0, 400.0], [6.0, 8.0]]


def test_inplace_on_view_then_use_view():
    x = E.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.clone()
    v = y[1:]
    v.exp_()
    (v.sum() + y[0]).backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, np.exp(2.0), np.exp(3.0)], rtol=1e-6)


@needs_torch
def test_inplace_view_chain_matches_torch():
    def run(m):
        x = m.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], requires_grad=True)
        y = x * 2
        y[:, 1].add_(x[:, 0])
        y.t()[2].mul_(y[:, 0].clone())
        y[0] = y[1] * 3
        z = (y ** 2).sum()
        z.backward()
        return y.detach().numpy(), x.grad.numpy()
    for a, b in zip(run(E), run(torch)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_fill_and_zero_keep_history():
    x = t(1.0, 2.0)
    y = x * 2
    y.zero_()
    assert y.requires_grad
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]


def test_copy_grad_flows_from_src():
    x = t(1.0, 2.0)
    y = E.zeros(2)
    y.copy_(x * 3)
    assert y.requires_grad
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_version_counter_shared_by_views():
    x = E.zeros(2, 2)
    v = x[0]
    assert x._version == 0
    v.add_(1)
    assert x._version == 1 and v._version == 1
    x.t().mul_(2)
    assert v._version == 2


# -------------------------------------------------------------------------- deep graphs
def test_chain_of_100k_ops_does_not_recurse():
    limit = sys.getrecursionlimit()
    x = E.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.backward()
    assert x.grad.item() == 1.0
    assert sys.getrecursionlimit() == limit
    del y  # dropping the graph must not recurse either (no deep __del__ chains)


def test_wide_graph():
    x = t(1.0)
    total = sum((x * i for i in range(1000)), E.zeros(1))
    total.sum().backward()
    assert x.grad.item() == sum(range(1000))


# ------------------------------------------------------------------------------- errors
def test_errors_name_op_shapes_dtypes():
    with pytest.raises(RuntimeError) as e:
        E.ones(2, 3) + E.ones(4)
    assert "add" in str(e.value) and "[2, 3]" in str(e.value) and "[4]" in str(e.value)
    with pytest.raises(RuntimeError) as e:
        E.ones(2, 3, dtype=E.float64) @ E.ones(2, 3, dtype=E.float64)
    assert "matmul" in str(e.value) and "2x3" in str(e.value)
    with pytest.raises(IndexError) as e:
        E.ones(3).gather(0, E.tensor([5]))
    assert "gather" in str(e.value) and "float32[3]" in str(e.value)


def test_integer_outputs_dont_require_grad():
    x = t(1.0, 3.0, 2.0)
    assert not x.argmax().requires_grad and not (x > 1).requires_grad
    v, i = x.max(0)
    assert v.requires_grad and not i.requires_grad
    assert not x.long().requires_grad


def test_grad_dtype_matches_input():
    for d in (E.float32, E.float64, E.float16):
        x = E.ones(3, dtype=d, requires_grad=True)
        (x * 2).sum().backward()
        assert x.grad.dtype is d


def test_gradcheck_composites():
    rng = np.random.default_rng(0)
    gradcheck(lambda x: x.softmax(-1), [rng.normal(size=(2, 4))])
    gradcheck(lambda x: x.log_softmax(0), [rng.normal(size=(3, 2))])
    gradcheck(lambda x, y: E.where(x > 0, x * y, y.exp()), [rng.normal(size=(3,)), rng.normal(size=(3,))])
    gradcheck(lambda x: x.var(0) + x.std(1).sum(), [rng.normal(size=(3, 4))])
    gradcheck(lambda x: x.norm(), [rng.normal(size=(3, 4))])
    gradcheck(lambda x: x.cumsum(1), [rng.normal(size=(2, 4))])


@needs_torch
@pytest.mark.parametrize("case", range(4))
def test_view_history_after_base_written_matches_torch(case):
    """A view taken before its base (or a sibling view) was written in place sees the new history."""
    def run(m):
        x = m.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        y = x * 1
        v, w = y[0:2], y[1:]
        if case == 0:
            y.mul_(2)
        elif case == 1:
            w.add_(x[1:] * x[1:])
        elif case == 2:
            y.mul_(2)
            w.add_(x[1:] * x[1:])
        else:
            y[3] = x[0] * 5
            v.mul_(x[2:])
        (v * v).sum().backward()
        return x.grad.numpy()
    np.testing.assert_allclose(run(E), run(torch), rtol=1e-6)


def test_view_backward_directly_after_base_write():
    x = E.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    v = y[0:1]
    y.mul_(3)
    v.sum().backward()
    assert x.grad.tolist() == [3.0, 0.0]


# ------------------------------------------------------------- gradients handed to leaves
def _returns(make):
    """A Function whose backward returns make(g) (and records a weak reference to its array)."""
    import weakref
    seen = []

    class F(E.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            r = make(g)
            seen.append(weakref.ref(r._data))
            return r
    return F, seen


def test_a_gradient_nothing_else_holds_becomes_the_leaf_grad_without_a_copy():
    F, seen = _returns(lambda g: g * 2.0)
    x = t(1.0, 2.0, 3.0)
    F.apply(x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0] and x.grad._base is None
    assert seen[0]() is x.grad._data          # taken over, as PyTorch's AccumulateGrad steals it


def test_a_gradient_something_else_holds_is_copied():
    kept = []
    F, seen = _returns(lambda g: kept.append(g * 2.0) or kept[-1])
    x = t(1.0, 2.0)
    F.apply(x).sum().backward()
    assert not np.shares_memory(x.grad.numpy(), kept[0].numpy())
    kept[0].add_(5.0)
    assert x.grad.tolist() == [2.0, 2.0]


def test_leaves_never_share_a_gradient():
    x, y = t(1.0, 2.0), t(3.0, 4.0)
    (x + y).sum().backward()                    # add's VJP hands the same tensor to both
    assert not np.shares_memory(x.grad.numpy(), y.grad.numpy())
    a, c = E.randn(2, 3, requires_grad=True), E.randn(6, requires_grad=True)
    (a.reshape(-1) + c).sum().backward()        # a view of one leaf's gradient reaches the other
    assert not np.shares_memory(a.grad.numpy(), c.grad.numpy())
    c.grad.add_(1.0)
    assert a.grad.tolist() == [[1.0] * 3] * 2
    z = t(1.0, 2.0)
    w = z * 1.0
    w.retain_grad()
    w.sum().backward()
    assert not np.shares_memory(z.grad.numpy(), w.grad.numpy())


def test_the_callers_gradient_and_hooked_gradients_are_copied():
    g0 = E.ones(3)
    x = t(1.0, 2.0, 3.0)
    (x * 1.0).backward(g0)
    assert not np.shares_memory(x.grad.numpy(), g0.numpy())
    stash = []
    y = t(1.0, 2.0)
    y.register_hook(lambda g: stash.append(g))
    (y * 3.0).sum().backward()
    stash[0].add_(1.0)
    assert y.grad.tolist() == [3.0, 3.0]
