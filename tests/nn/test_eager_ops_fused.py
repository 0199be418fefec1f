"""Eager ops that run as one autograd node instead of a composite: relu and gelu (generated passes), dropout
(one product), softmax, log_softmax, layer_norm, nll_loss's backward -- values, gradients, double backward and grad_fn names equal
PyTorch's; and an eager training step leaves nothing for the garbage collector."""
from __future__ import annotations

import gc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ember
import ember.nn.functional as F
from ember.kernels import generated

from nn_helpers import PATHS, kernels

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _specials(rng, shape, dtype):
    a = rng.standard_normal(shape)
    a[rng.random(shape) < 0.1] = 0.0
    a[rng.random(shape) < 0.05] = -0.0
    a[rng.random(shape) < 0.05] = np.nan
    a[rng.random(shape) < 0.05] = np.inf
    a[rng.random(shape) < 0.05] = -np.inf
    return a.astype(dtype)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       transpose=st.booleans(), seed=st.integers(0, 10_000))
def test_relu_matches_torch(path, shape, dtype, transpose, seed):
    rng = np.random.default_rng(seed)
    a = _specials(rng, tuple(shape), dtype)
    if transpose:
        a = a.T                                 # a non-contiguous input
    g = _specials(rng, a.shape, dtype)          # NaN / inf gradients are masked, not multiplied
    tx = torch.tensor(a, requires_grad=True)
    ty = TF.relu(tx)
    ty.backward(torch.tensor(g))
    ex = ember.tensor(a, requires_grad=True)
    with kernels(path):
        ey = F.relu(ex)
        ey.backward(ember.tensor(g))
    assert ey.grad_fn.name() == "ReluBackward0" and ey.dtype == ex.dtype
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())
    np.testing.assert_array_equal(np.signbit(ey.detach().numpy()), np.signbit(ty.detach().numpy()))   # -0.0
    np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())


def test_relu_double_backward_inplace_and_integers():
    a = np.random.default_rng(1).standard_normal((5, 7))
    ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    (eg,) = ember.autograd.grad((F.relu(ex) ** 3).sum(), [ex], create_graph=True)
    (tg,) = torch.autograd.grad((TF.relu(tx) ** 3).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(eg.detach().numpy(), tg.detach().numpy())
    np.testing.assert_allclose(ember.autograd.grad(eg.sum(), [ex])[0].numpy(),
                               torch.autograd.grad(tg.sum(), [tx])[0].numpy())
    x = ember.tensor(a)
    F.relu(x, inplace=True)                                  # no graph: written into x
    np.testing.assert_array_equal(x.numpy(), np.maximum(a, 0))
    y = F.relu(ex)
    with ember.no_grad():
        y.add_(1.0)                                          # the saved result changed: PyTorch's error
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    i = ember.tensor(np.array([-2, 0, 3]))
    assert F.relu(i).tolist() == [0, 0, 3] and F.relu(i).dtype == ember.int64


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@settings(max_examples=10, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=3), dtype=st.sampled_from([np.float32, np.float64]),
       transpose=st.booleans(), seed=st.integers(0, 10_000))
def test_gelu_matches_torch(path, approximate, shape, dtype, transpose, seed):
    """One GeluBackward0 node through generated passes (or the composite below the size threshold): values and
    gradients as PyTorch's, NaN and infinities included, any layout."""
    rng = np.random.default_rng(seed)
    a = _specials(rng, tuple(shape), dtype) * 3
    if transpose:
        a = a.T
    g = rng.standard_normal(a.shape).astype(dtype)
    tx = torch.tensor(a, requires_grad=True)
    ty = TF.gelu(tx, approximate=approximate)
    ty.backward(torch.tensor(g))
    ex = ember.tensor(a, requires_grad=True)
    with kernels(path):
        ey = F.gelu(ex, approximate=approximate)
        ey.backward(ember.tensor(g))
    if path == "generated":
        assert ey.grad_fn.name() == "GeluBackward0"
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), **(dict(rtol=2e-5, atol=2e-5) if dtype == np.float32
                                                                   else tol))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_double_backward(approximate):
    a = np.random.default_rng(2).standard_normal(5000)
    ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    (eg,) = ember.autograd.grad(F.gelu(ex, approximate=approximate).sum(), [ex], create_graph=True)
    (tg,) = torch.autograd.grad(TF.gelu(tx, approximate=approximate).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(eg.detach().numpy(), tg.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ember.autograd.grad(eg.sum(), [ex])[0].numpy(),
                               torch.autograd.grad(tg.sum(), [tx])[0].numpy(), rtol=1e-10, atol=1e-10)
    with pytest.raises(RuntimeError, match="approximate argument"):
        F.gelu(ex, approximate="erf")


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       data=st.data(), seed=st.integers(0, 10_000))
def test_softmax_matches_torch(shape, dtype, data, seed):
    """One SoftmaxBackward0 node: values and gradients as PyTorch's along any dim, with -inf (masked
    scores, whole rows of them: NaN), inf and NaN."""
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    a = _specials(rng, tuple(shape), dtype)
    g = rng.standard_normal(a.shape).astype(dtype)
    tx = torch.tensor(a, requires_grad=True)
    ty = TF.softmax(tx, dim)
    ty.backward(torch.tensor(g))
    ex = ember.tensor(a, requires_grad=True)
    ey = F.softmax(ex, dim)
    ey.backward(ember.tensor(g))
    assert ey.grad_fn.name() == "SoftmaxBackward0"
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), equal_nan=True, **tol)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), equal_nan=True, **tol)


def test_softmax_double_backward():
    rng = np.random.default_rng(4)
    a, w = rng.standard_normal((4, 9)), rng.standard_normal((4, 9))
    ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    (eg,) = ember.autograd.grad((F.softmax(ex, -1) * ember.tensor(w)).sum(), [ex], create_graph=True)
    (tg,) = torch.autograd.grad((TF.softmax(tx, -1) * torch.tensor(w)).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(eg.detach().numpy(), tg.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ember.autograd.grad((eg ** 2).sum(), [ex])[0].numpy(),
                               torch.autograd.grad((tg ** 2).sum(), [tx])[0].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ns", [((16, 64, 128), (128,)), ((4, 5, 6, 7), (6, 7)), ((9,), (9,))])
def test_layer_norm_matches_torch(affine, dtype, shape, ns):
    """One NativeLayerNormBackward0 node: output and the input / weight / bias gradients as PyTorch's, a NaN
    row included (its gradients NaN where PyTorch's are)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    if len(shape) > 2:
        x[(1,) * (len(shape) - len(ns))] = np.nan
    w, b = rng.standard_normal(ns).astype(dtype), rng.standard_normal(ns).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)

    def run(lib, fn):
        ts = [lib.tensor(v, requires_grad=True) for v in (x, w, b)]
        y = fn(ts[0], ns, ts[1] if affine != "none" else None, ts[2] if affine == "both" else None, 1e-5)
        y.backward(lib.tensor(g))
        return y, [t.grad for t in ts]
    (ey, eg), (ty, tg) = run(ember, F.layer_norm), run(torch, TF.layer_norm)
    assert ey.grad_fn.name() == "NativeLayerNormBackward0"
    tol = dict(rtol=2e-5, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), equal_nan=True, **tol)
    for e, t in zip(eg, tg):
        assert (e is None) == (t is None)
        if t is not None:
            np.testing.assert_allclose(e.numpy(), t.numpy(), equal_nan=True, **tol)


def test_layer_norm_double_backward_and_fallbacks():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((4, 10)), rng.standard_normal(10), rng.standard_normal(10)
    E = [ember.tensor(v, requires_grad=True) for v in (x, w, b)]
    T = [torch.tensor(v, requires_grad=True) for v in (x, w, b)]
    ge = ember.autograd.grad((F.layer_norm(E[0], (10,), E[1], E[2]) ** 3).sum(), E, create_graph=True)
    gt = torch.autograd.grad((TF.layer_norm(T[0], (10,), T[1], T[2]) ** 3).sum(), T, create_graph=True)
    for a, c in zip(ge, gt):
        np.testing.assert_allclose(a.detach().numpy(), c.detach().numpy(), rtol=1e-10, atol=1e-12)
    sum((v.sum() ** 2 for v in ge), ember.tensor(0.0)).backward()
    sum((v.sum() ** 2 for v in gt), torch.tensor(0.0, dtype=torch.float64)).backward()
    for a, c in zip(E, T):
        np.testing.assert_allclose(a.grad.numpy(), c.grad.numpy(), rtol=1e-9, atol=1e-10)
    # a weight of the wrong shape takes the composite, which refuses it
    with pytest.raises(RuntimeError):
        F.layer_norm(ember.tensor(x), (10,), ember.tensor(w[:5]))


@pytest.mark.parametrize("fn,shape,mask", [(F.dropout, (64, 50), (64, 50)), (F.dropout2d, (8, 20, 6, 6), (8, 20, 1, 1)),
                                           (F.dropout1d, (4, 6, 9), (4, 6, 1))])
def test_dropout_is_the_composite_product(fn, shape, mask):
    """Same random numbers as ember.rand from the same seed, kept where u >= p, scaled; gradient the mask."""
    p = 0.3
    a = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    ember.manual_seed(7)
    x = ember.tensor(a, requires_grad=True)
    y = fn(x, p, True)
    ember.manual_seed(7)
    keep = (ember.rand(*mask).numpy() >= p).astype(np.float32) * np.float32(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y.detach().numpy(), a * keep)
    y.backward(ember.ones(*shape))
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(keep, shape))
    assert y.grad_fn.name() == "MulBackward0"
    (gg,) = ember.autograd.grad((fn(x, p, True) ** 2).sum(), [x], create_graph=True)   # differentiable again
    assert gg.requires_grad


def test_dropout2d_keeps_a_batch_last_layout():
    a = np.ascontiguousarray(np.random.default_rng(3).standard_normal((20, 8, 8, 64)).astype(np.float32))
    x = ember.tensor(a.transpose(3, 0, 1, 2), requires_grad=True)
    y = F.dropout2d(x, 0.5, True)
    assert np.argmin(y.detach().numpy().strides) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_matches_torch(dtype):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((6, 5, 3)).astype(dtype)
    a[0, :, 0] = -np.inf                       # a row of -inf: NaN, as in PyTorch
    a[1, 2, 1] = np.inf
    for dim in (0, 1, -1):
        ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        ey, ty = F.log_softmax(ex, dim=dim), TF.log_softmax(tx, dim=dim)
        assert ey.grad_fn.name() == "LogSoftmaxBackward0"
        np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-6)
        w = rng.standard_normal(a.shape).astype(dtype)
        (eg,) = ember.autograd.grad((ey * ember.tensor(w)).sum(), [ex], create_graph=True)
        (tg,) = torch.autograd.grad((ty * torch.tensor(w)).sum(), [tx], create_graph=True)
        np.testing.assert_allclose(eg.detach().numpy(), tg.detach().numpy(), rtol=1e-5, atol=1e-6)
        fin = np.isfinite(tg.detach().numpy())
        (egg,) = ember.autograd.grad((eg[ember.tensor(fin)] ** 2).sum(), [ex])
        (tgg,) = torch.autograd.grad((tg[torch.tensor(fin)] ** 2).sum(), [tx])
        np.testing.assert_allclose(egg.numpy(), tgg.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_backward_matches_torch(reduction):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((16, 10)).astype(np.float32)
    t = rng.integers(0, 10, 16)
    t[3] = -100                                 # ignored
    w = rng.random(10).astype(np.float32)
    ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    el = F.nll_loss(ex, ember.tensor(t), weight=ember.tensor(w), reduction=reduction)
    tl = TF.nll_loss(tx, torch.tensor(t), weight=torch.tensor(w), reduction=reduction)
    el.sum().backward()
    tl.sum().backward()
    np.testing.assert_allclose(el.detach().numpy(), tl.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


def test_an_eager_training_step_leaves_no_garbage():
    """Every node the backward ran drops what it saved, and no op leaves a recorded-then-detached result
    behind: the step's tensors are freed by reference counting, not by the garbage collector."""
    nn = ember.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 5 * 5, 10)

        def forward(self, x):
            x = F.dropout2d(F.relu(F.max_pool2d(self.conv(x), 2)), 0.2, self.training)
            return F.log_softmax(self.fc(F.dropout(x.flatten(1), 0.2, self.training)), dim=1)

    net = Net()
    opt = ember.optim.SGD(net.parameters(), lr=0.01, momentum=0.5)
    x = ember.randn(16, 1, 12, 12)
    y = ember.tensor(np.arange(16) % 10)

    def step():
        opt.zero_grad()
        F.nll_loss(net(x), y).backward()
        opt.step()

    step()
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(3):
            step()
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


@pytest.mark.parametrize("dist", ["uniform", "normal"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_draws_are_the_reference_bit_for_bit(dist, dtype):
    """ember.rand / randn (dropout's masks) through the generated kernel equal ember/ir/rng.py's numpy."""
    from ember.frontend.prims import _random_kernel
    from ember.ir import dtypes as dt
    from ember.ir.ops import OPS
    if generated.COMPILE is None:
        pytest.skip("no code generator")
    d = getattr(dt, dtype)
    for seed, offset, shape in [(1, 0, (1000,)), (12345, 77, (64, 20, 1, 1)), (2 ** 62 + 5, 2 ** 40, (3, 7)), (0, 5, (1,))]:
        key = np.array([seed, offset], np.int64)
        got, ref = _random_kernel(np, key, shape, d, dist), OPS["random"].ref(np, key, shape, d, dist)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias):
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((3, 4)), rng.standard_normal(3)

    def run(T):
        tx, tw, tb = (T.tensor(a, requires_grad=True) for a in (x, w, b))
        ins = [tx, tw] + ([tb] if bias else [])
        y = T.nn.functional.linear(tx, tw, tb if bias else None)
        gs = T.autograd.grad((y ** 3).sum(), ins, create_graph=True)
        ggs = T.autograd.grad(sum((g ** 2).sum() for g in gs), ins, allow_unused=True)
        return [y.detach().numpy()] + [g.detach().numpy() for g in gs] + [g.numpy() for g in ggs if g is not None], y

    ref, ty = run(torch)
    got, ey = run(ember)
    assert ey.grad_fn.name() == ("AddmmBackward0" if bias else "MmBackward0")
    for a, e in zip(ref, got):
        np.testing.assert_allclose(e, a, rtol=1e-10, atol=1e-10)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        F.linear(ember.randn(2, 5), ember.randn(3, 4))


@pytest.mark.parametrize("spelling", ["ember.relu", "Tensor.relu", "F.relu"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_every_relu_is_torchs_on_signed_zeros_nan_and_their_gradient(spelling, compiled, dtype):
    """ember.relu, Tensor.relu and F.relu are one implementation (ember/frontend/relu.py): -0.0 and NaN pass,
    the gradient is masked where the result is <= 0 -- eager (small: the composite; large: the generated
    pass) and compiled alike."""
    fn = {"ember.relu": ember.relu, "Tensor.relu": lambda t: t.relu(), "F.relu": F.relu}[spelling]
    vals = np.array([-0.0, 0.0, -1.0, 2.0, np.nan, -np.inf, np.inf] * 1000, np.float32)   # (7000 > MIN_SIZE)
    for n in (7, vals.size):
        x = ember.tensor(vals[:n]).to(getattr(ember, dtype)).requires_grad_(True)
        tx = torch.tensor(vals[:n]).to(getattr(torch, dtype)).requires_grad_(True)
        y = (ember.compile(fn) if compiled else fn)(x)
        y.backward(ember.ones(n, dtype=x.dtype))
        ty = torch.relu(tx)
        ty.backward(torch.ones(n, dtype=tx.dtype))
        got, want = y.detach().double().numpy(), ty.detach().double().numpy()
        np.testing.assert_array_equal(got, want)
        num = ~np.isnan(want)        # (PyTorch's bf16 NaN may come back with its sign bit set)
        assert np.array_equal(np.signbit(got[num]), np.signbit(want[num]))
        np.testing.assert_array_equal(x.grad.double().numpy(), tx.grad.double().numpy())
    assert ember.relu(ember.tensor([-2, 0, 3])).tolist() == [0, 0, 3]
