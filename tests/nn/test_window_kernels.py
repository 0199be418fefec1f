"""Eager max pooling and the convolution's fold as generated kernels (ember/kernels/window_ops.py) and as
numpy (the fallback): values, indices and gradients equal PyTorch's on random windows, strides, paddings,
dilations, ceil_mode, memory layouts, ties, NaN and -inf; double backward; bad input errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ember
import ember.nn.functional as F
from ember.frontend.prims import _fold_kernel
from ember.kernels import generated, window_ops

from nn_helpers import PATHS, kernels

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _values(rng, shape, specials):
    """Small integers (ties in most windows), with some NaN / -inf when asked."""
    a = rng.integers(-3, 4, shape).astype(np.float64)
    if specials:
        a[rng.random(shape) < 0.05] = np.nan
        a[rng.random(shape) < 0.05] = -np.inf
    return a


def _layout(a, how):
    """The same values as a C-contiguous, a batch-last (a convolution's result) or a strided array."""
    if how == "batch_last" and a.ndim > 2:
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 0, -1)), -1, 0)
    if how == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    return a


@st.composite
def pools(draw):
    nd = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    sizes = tuple(draw(st.integers(di * (ki - 1) + 1, 9)) for ki, di in zip(k, d))
    lead = (draw(st.integers(1, 3)),) * draw(st.integers(1, 2))          # [C, ...] (unbatched) or [N, C, ...]
    return dict(nd=nd, k=k, s=s, p=p, d=d, shape=lead + sizes, ceil=draw(st.booleans()),
                layout=draw(st.sampled_from(["c", "batch_last", "strided"])), specials=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])), seed=draw(st.integers(0, 10_000)))


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=40, deadline=None)
@given(case=pools())
def test_max_pool_matches_torch(path, case):
    nd, k, s, p, d = case["nd"], case["k"], case["s"], case["p"], case["d"]
    rng = np.random.default_rng(case["seed"])
    a = _values(rng, case["shape"], case["specials"]).astype(case["dtype"])
    fn, tfn = getattr(F, f"max_pool{nd}d"), getattr(TF, f"max_pool{nd}d")
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=case["ceil"], return_indices=True)
    tx = torch.tensor(a, requires_grad=True)
    ty, ti = tfn(tx, **kw)
    ex = ember.tensor(_layout(a, case["layout"]), requires_grad=True)
    g = rng.standard_normal(tuple(ty.shape)).astype(case["dtype"])
    with kernels(path):
        ey, ei = fn(ex, **kw)
        ey.backward(ember.tensor(g))
    np.testing.assert_array_equal(ey.detach().numpy(), ty.detach().numpy())     # NaN == NaN here
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())
    assert ey.dtype == ex.dtype and ei.dtype == ember.int64
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_mnist_pools_take_the_generated_kernels():
    if generated.COMPILE is None:
        pytest.skip("no code generator")
    x = ember.tensor(np.random.default_rng(0).standard_normal((64, 10, 24, 24)).astype(np.float32),
                     requires_grad=True)
    y = F.max_pool2d(x, 2)
    y.sum().backward()
    ops = [key[0] for key in generated._cache]
    assert "max_pool" in ops and "max_pool_grad" in ops


@pytest.mark.parametrize("path", PATHS)
def test_batch_last_input_keeps_its_layout(path):
    a = np.ascontiguousarray(np.random.default_rng(1).standard_normal((10, 24, 24, 64)).astype(np.float32))
    x = ember.tensor(a.transpose(3, 0, 1, 2), requires_grad=True)        # [N, C, H, W] stored [C, H, W, N]
    with kernels(path):
        y = F.max_pool2d(x, 2)
    assert np.argmin(y.detach().numpy().strides) == 0                      # the batch stays innermost
    ref = TF.max_pool2d(torch.tensor(a.transpose(3, 0, 1, 2)), 2)
    np.testing.assert_array_equal(y.detach().numpy(), ref.numpy())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nd,kw", [(2, dict(kernel_size=3, stride=2, padding=1)),
                                   (2, dict(kernel_size=2)),
                                   (1, dict(kernel_size=3, stride=1, dilation=2))])
def test_double_backward_matches_torch(path, nd, kw):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3) + (9,) * nd)
    fn, tfn = getattr(F, f"max_pool{nd}d"), getattr(TF, f"max_pool{nd}d")
    ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    with kernels(path):
        (eg,) = ember.autograd.grad((fn(ex, **kw) ** 3).sum(), [ex], create_graph=True)
    (tg,) = torch.autograd.grad((tfn(tx, **kw) ** 3).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(eg.detach().numpy(), tg.detach().numpy(), rtol=1e-12)
    (egg,) = ember.autograd.grad((eg * eg).sum(), [ex])
    (tgg,) = torch.autograd.grad((tg * tg).sum(), [tx])
    np.testing.assert_allclose(egg.numpy(), tgg.numpy(), rtol=1e-10)


def test_half_precision_takes_numpy():
    a = np.random.default_rng(4).standard_normal((2, 3, 80, 80)).astype(np.float16)
    ex, tx = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    F.max_pool2d(ex, 3, 2, 1).sum().backward()
    TF.max_pool2d(tx, 3, 2, 1).sum().backward()
    np.testing.assert_array_equal(ex.grad.numpy(), tx.grad.numpy())


def test_bad_input_errors():
    x = ember.randn(1, 2, 8, 8)
    with pytest.raises(RuntimeError, match="pad should be smaller than or equal to half of kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="pad should be smaller than or equal to half of kernel size"):
        F.max_pool2d(x, 3, padding=2, dilation=2)        # PyTorch: half the kernel size, not the dilated one
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.max_pool2d(ember.randn(1, 2, 1, 1), 3, dilation=2, padding=1)
    # PyTorch max-pools integer tensors in 2-D (not bool)
    assert F.max_pool2d(ember.ones(1, 2, 8, 8, dtype=ember.int64), 2).dtype is ember.int64
    with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
        F.max_pool2d(ember.ones(1, 2, 8, 8, dtype=ember.bool), 2)
    with pytest.raises(RuntimeError, match="Expected 3D or 4D input"):
        F.max_pool2d(ember.randn(8, 8), 2)
    with pytest.raises(RuntimeError, match="stride should be greater than zero"):
        F.max_pool2d(x, 2, stride=0)


# ------------------------------------------------------------------------------------------ fold
@st.composite
def folds(draw):
    nd = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    lo = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    hi = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    size = tuple(draw(st.integers(max(1, di * (ki - 1) + 1 - a - b), 8)) for ki, di, a, b in zip(k, d, lo, hi))
    return dict(k=k, d=d, s=s, lo=lo, hi=hi, size=size, n=draw(st.integers(1, 4)), c=draw(st.integers(1, 3)),
                batch_last=draw(st.booleans()), seed=draw(st.integers(0, 10_000)))


@settings(max_examples=30, deadline=None)
@given(case=folds())
def test_fold_matches_the_strided_adds(case):
    """window_ops.fold (cropped to the input) against prims._fold_kernel (one strided add per offset)."""
    if generated.COMPILE is None:
        pytest.skip("no code generator")
    k, d, s, lo, hi, size = case["k"], case["d"], case["s"], case["lo"], case["hi"], case["size"]
    nd = len(k)
    padded = tuple(n + a + b for n, a, b in zip(size, lo, hi))
    outs = tuple((p - di * (ki - 1) - 1) // si + 1 for p, ki, si, di in zip(padded, k, s, d))
    rng = np.random.default_rng(case["seed"])
    cols = rng.standard_normal((case["n"], case["c"]) + outs + k)
    if case["batch_last"]:        # what a convolution's column gradient looks like: [C, *k, *outs, N] in memory
        mem = np.ascontiguousarray(cols.transpose((1,) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
                                                  + (0,)))
        cols = mem.transpose((2 * nd + 1, 0) + tuple(range(nd + 1, 2 * nd + 1)) + tuple(range(1, nd + 1)))
    ref = _fold_kernel(np, cols, padded, k, s, d)
    ref = ref[(slice(None), slice(None)) + tuple(slice(a, a + n) for a, n in zip(lo, size))]
    with kernels("generated"):
        got = window_ops.fold(cols, size, k, s, d, lo)
    assert got is not None and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 8), c=st.integers(1, 3), o=st.integers(1, 4), hw=st.integers(4, 10), k=st.integers(1, 4),
       stride=st.integers(1, 3), padding=st.integers(0, 3), dilation=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_conv_input_gradient_through_the_generated_fold(n, c, o, hw, k, stride, padding, dilation, seed):
    if generated.COMPILE is None:
        pytest.skip("no code generator")
    if hw + 2 * padding < dilation * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n * 16, c, hw, hw)).astype(np.float32)      # 16n: runs long enough to gather
    w = rng.standard_normal((o, c, k, k)).astype(np.float32)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    with kernels("generated"):
        ey = F.conv2d(ex, ember.tensor(w), **kw)
        g = rng.standard_normal(tuple(ey.shape)).astype(np.float32)
        ey.backward(ember.tensor(g))
    TF.conv2d(tx, torch.tensor(w), **kw).backward(torch.tensor(g))
    ref = tx.grad.numpy()
    np.testing.assert_allclose(ex.grad.numpy(), ref, rtol=1e-4, atol=1e-4 * (np.abs(ref).max() + 1))


def test_window_ops_decline_what_they_do_not_take():
    a = np.zeros((2, 3, 70, 70), np.float16)
    assert window_ops.max_pool(a, (2, 2), (2, 2), (1, 1), (0, 0), (35, 35)) is None         # 16-bit: numpy
    b = np.zeros((2, 3, 4, 4), np.float32)
    assert window_ops.max_pool(b, (2, 2), (2, 2), (1, 1), (0, 0), (2, 2)) is None            # small: numpy
    big = np.zeros((2, 3, 90, 90), np.float32)
    k = (9, 9)                                                                               # 81 > MAX_TAPS
    assert math.prod(k) > window_ops.MAX_TAPS
    assert window_ops.max_pool(big, k, k, (1, 1), (0, 0), (10, 10)) is None


def test_composite_convolution_folds_through_the_generated_kernel():
    """float64 (no gathered product): the composite's fold primitive runs the generated gather."""
    if generated.COMPILE is None:
        pytest.skip("no code generator")
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((8, 3, 14, 14)), rng.standard_normal((4, 3, 3, 3))
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    before = len(generated.built)
    F.conv2d(ex, ember.tensor(w), stride=2, padding=1, dilation=2).sum().backward()
    TF.conv2d(tx, torch.tensor(w), stride=2, padding=1, dilation=2).sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert any(key[0] == "fold" for key in generated.built[before:]) or \
        any(key[0] == "fold" and key[1] == "<f8" for key in generated._cache)
