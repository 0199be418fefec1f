"""Gradients PyTorch defines at the edges, found by a probe sweep: BCE-with-logits at x == 0, BCE at
p in {0, 1}, softplus / hardswish at their switch points, adaptive max pooling's ties, attention rows
that attend to nothing -- and the functional forms PyTorch has (max_pool*_with_indices, F.elu_ & co)."""
import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _both(fn, *arrays, grads=True):
    """fn(lib, F, *tensors) under ember and torch: the values and the inputs' gradients."""
    out = []
    for lib, fl in ((ember, F), (torch, TF)):
        xs = [lib.tensor(a, requires_grad=grads and a.dtype.kind == "f") for a in arrays]
        y = fn(lib, fl, *xs)
        ys = y if isinstance(y, tuple) else (y,)
        if grads:
            ys[0].float().sum().backward() if ys[0].ndim else ys[0].backward()
        out.append(([v.detach().float().numpy() for v in ys],
                    [x.grad.numpy() if x.grad is not None else None for x in xs]))
    return out


def _check(fn, *arrays, rtol=1e-5, atol=1e-6):
    (ev, eg), (tv, tg) = _both(fn, *arrays)
    for a, b in zip(ev, tv):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    for a, b in zip(eg, tg):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


F32 = np.float32


def test_bce_with_logits_gradient_at_zero():
    x = np.array([0.0, 0.0, 3.0, -50.0, 60.0], F32)
    t = np.array([1.0, 0.0, 0.3, 1.0, 0.0], F32)
    _check(lambda L, fl, x, t: fl.binary_cross_entropy_with_logits(x, t, reduction="sum"), x, t)
    _check(lambda L, fl, x, t: fl.binary_cross_entropy_with_logits(x, t, pos_weight=L.tensor(2.0)), x, t)


def test_bce_gradient_is_finite_at_saturated_probabilities():
    _check(lambda L, fl, x: fl.binary_cross_entropy(L.sigmoid(x), L.tensor([0.0, 1.0, 0.6])),
           np.array([20.0, -20.0, 0.3], F32))
    _check(lambda L, fl, p: fl.binary_cross_entropy(p, L.tensor([1.0, 0.0, 0.2]), reduction="sum"),
           np.array([0.0, 1.0, 0.5], F32), rtol=1e-5, atol=1.0)       # (+-1e12 at the ends)
    _check(lambda L, fl, p: fl.binary_cross_entropy(p, L.tensor([1.0, 0.0]), weight=L.tensor([2.0, 3.0])),
           np.array([0.2, 0.9], F32))


@pytest.mark.parametrize("name, fn, xs", [
    ("softplus", lambda L, fl, x: fl.softplus(x), [20.0, 19.9, 20.1, -3.0]),
    ("softplus_beta", lambda L, fl, x: fl.softplus(x, beta=2, threshold=5), [2.5, 2.4, 2.6]),
    ("mish", lambda L, fl, x: fl.mish(x), [20.0, 1.0]),
    ("hardswish", lambda L, fl, x: fl.hardswish(x), [-3.0, 3.0, -2.9, 2.9, -4.0])])
def test_activation_gradient_at_switch_points(name, fn, xs):
    _check(fn, np.array(xs, F32))


def test_adaptive_max_pool_ties_and_indices():
    _check(lambda L, fl, x: fl.adaptive_max_pool1d(x, 2), np.array([[[1, 1, 1, 2, 2]]], F32))
    _check(lambda L, fl, x: fl.adaptive_max_pool2d(L.relu(x), 4), np.zeros((1, 1, 6, 6), F32))
    x = np.sin(np.arange(70, dtype=F32)).reshape(1, 2, 5, 7)
    for size in [(3, 4), (5, 7), 2]:
        (ev, _), (tv, _) = _both(lambda L, fl, x: fl.adaptive_max_pool2d(x, size, return_indices=True), x, grads=False)
        np.testing.assert_array_equal(ev[1], tv[1])
        np.testing.assert_allclose(ev[0], tv[0])
    (ev, _), (tv, _) = _both(lambda L, fl, x: fl.adaptive_max_pool1d(x[0], 3, return_indices=True), x, grads=False)
    np.testing.assert_array_equal(ev[1], tv[1])
    for name in ("max_pool2d_with_indices", "max_pool1d_with_indices"):
        a = x if name.startswith("max_pool2d") else x[0]
        (ev, _), (tv, _) = _both(lambda L, fl, x: getattr(fl, name)(x, 2), a, grads=False)
        np.testing.assert_array_equal(ev[1], tv[1])


def test_adaptive_max_pool_compiled_equals_eager():
    x = ember.randn(2, 3, 7, 9, requires_grad=True)

    def f(x):
        return F.adaptive_max_pool2d(ember.relu(x), (4, 5)).sum()
    g_eager = ember.autograd.grad(f(x), x)[0]
    g_comp = ember.autograd.grad(ember.compile(f)(x), x)[0]
    np.testing.assert_array_equal(g_eager.numpy(), g_comp.numpy())


@pytest.mark.parametrize("mask", ["bool", "float", "key_padding", "none"])
def test_sdpa_rows_that_attend_to_nothing_give_zero(mask):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 3, 4, 8)).astype(F32)

    def fn(L, fl, q):
        if mask == "bool":
            m = L.tensor(np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], bool))
        elif mask == "float":
            m = L.zeros(4, 4)
            m[0] = float("-inf")
            m[3, 1:] = float("-inf")
        elif mask == "key_padding":
            m = L.ones(2, 1, 1, 4, dtype=L.bool)
            m[1] = False
        else:
            m = None
        return fl.scaled_dot_product_attention(q, L.flip(q, [2]), L.flip(q, [2]), attn_mask=m) * L.arange(8.0)
    _check(fn, q, rtol=1e-4, atol=1e-5)


def test_sdpa_empty_rows_compiled_equals_eager():
    q = ember.randn(2, 3, 4, 8, requires_grad=True)
    m = ember.rand(4, 4) > 0.5
    m[1] = False

    def f(q, m):
        return (F.scaled_dot_product_attention(q, q, q, attn_mask=m) * 2).sum()
    g1 = ember.autograd.grad(f(q, m), q)[0]
    g2 = ember.autograd.grad(ember.compile(f)(q, m), q)[0]
    assert not np.isnan(g2.numpy()).any()
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["elu_", "leaky_relu_", "hardtanh_", "selu_", "celu_", "rrelu_"])
def test_functional_inplace_forms(name):
    e, t = ember.tensor([-1.0, 2.0]), torch.tensor([-1.0, 2.0])
    assert getattr(F, name)(e) is e
    getattr(TF, name)(t)
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6)
    e, t = ember.tensor([-1.0, 2.0]), torch.tensor([-1.0, 2.0])
    F.threshold_(e, 0.5, 9.0)
    TF.threshold_(t, 0.5, 9.0)
    np.testing.assert_array_equal(e.numpy(), t.numpy())


@pytest.mark.parametrize("targets", [[-100, -100], [1, -100], [0, 2]])
def test_cross_entropy_with_every_target_ignored_has_zero_gradient(targets):
    x = np.sin(np.arange(6.0)).reshape(2, 3).astype(F32)
    _check(lambda L, fl, x: fl.cross_entropy(x, L.tensor(targets)), x)
    _check(lambda L, fl, x: fl.nll_loss(fl.log_softmax(x, 1), L.tensor(targets), weight=L.tensor([1.0, 2.0, 3.0])), x)
    xe = ember.tensor(x, requires_grad=True)
    loss = ember.compile(lambda x, y: F.cross_entropy(x, y))(xe, ember.tensor(targets))
    grad = ember.autograd.grad(loss, xe)[0]
    assert not np.isnan(grad.numpy()).any() and np.isnan(loss.item()) == (targets == [-100, -100])


def test_in_place_ops_on_a_convolution_output():
    """y = conv(x) is a view of the convolution's batch-last result: y.div_(), y[:, 0] = 0, y += r (a
    normalisation, a residual) had raised "in-place on a view of a non-contiguous tensor"."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, 3, 3)).astype(F32)
    x = rng.standard_normal((2, 2, 16, 16)).astype(F32)

    def fn(L, fl, x, w):
        y = fl.conv2d(x, w, padding=1)
        y.div_(2.0)
        y[:, 0] = 0
        y += x[:, :1]
        return y * L.arange(16.0)
    _check(fn, x, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "hardtanh", "elu", "silu", "relu6", "dropout"])
def test_inplace_activation_writes_its_input_with_autograd(name):
    """F.<act>(y, inplace=True) on a tensor that requires grad writes y (it had returned a new tensor and
    left y unactivated); gradients as PyTorch's."""
    x = np.array([-1.5, 2.0, -3.0, 0.5], F32)

    def fn(L, fl, w):
        y = w * 1
        kw = dict(p=0.0, training=True) if name == "dropout" else {}
        r = getattr(fl, name)(y, inplace=True, **kw)
        assert r is y
        return y * L.tensor([1.0, 2.0, 3.0, 4.0])
    _check(fn, x)
