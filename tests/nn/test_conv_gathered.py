"""Eager convolutions through products that gather their columns (ember/frontend/conv_gathered.py):
values and gradients equal PyTorch's on random shapes, strides, paddings and dilations; double backward
goes through the composite; float64, groups and short runs keep the composite."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")


def _pair(rng, shape):
    a = rng.standard_normal(shape).astype(np.float32)
    return ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 4), o=st.integers(1, 6), hw=st.integers(4, 12), k=st.integers(1, 4),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2), bias=st.booleans(),
       seed=st.integers(0, 10_000))
def test_conv2d_matches_torch(n, c, o, hw, k, stride, padding, dilation, bias, seed):
    if hw + 2 * padding < dilation * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    (ex, tx), (ew, tw), (eb, tb) = _pair(rng, (n, c, hw, hw)), _pair(rng, (o, c, k, k)), _pair(rng, (o,))
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    ey = F.conv2d(ex, ew, eb if bias else None, **kw)
    ty = torch.nn.functional.conv2d(tx, tw, tb if bias else None, **kw)
    np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ey.backward(ember.tensor(g))
    ty.backward(torch.tensor(g))
    for e, t in [(ex, tx), (ew, tw)] + ([(eb, tb)] if bias else []):
        ref = t.grad.numpy()
        np.testing.assert_allclose(e.grad.numpy(), ref, rtol=1e-3, atol=1e-4 * (np.abs(ref).max() + 1))


def test_mnist_convolutions_take_the_gathered_path():
    rng = np.random.default_rng(0)
    (ex, _), (ew, _), (eb, _) = _pair(rng, (64, 1, 28, 28)), _pair(rng, (10, 1, 5, 5)), _pair(rng, (10,))
    y = F.conv2d(ex, ew, eb)
    assert "Gathered" in y.grad_fn.name()
    # float64, groups, and runs shorter than 16 values keep the composite
    assert "Gathered" not in F.conv2d(ex.double(), ew.double(), eb.double()).grad_fn.name()
    (gx, _), (gw, _) = _pair(rng, (64, 4, 12, 12)), _pair(rng, (4, 2, 3, 3))
    assert "Gathered" not in F.conv2d(gx, gw, groups=2).grad_fn.name()
    (sx, _) = _pair(rng, (2, 1, 6, 6))
    assert "Gathered" not in F.conv2d(sx, ew[:, :, :3, :3]).grad_fn.name()


def test_conv1d_and_conv3d_match_torch():
    rng = np.random.default_rng(2)
    for fn, tfn, xs, ws in [(F.conv1d, torch.nn.functional.conv1d, (32, 3, 50), (5, 3, 4)),
                            (F.conv3d, torch.nn.functional.conv3d, (16, 2, 6, 6, 6), (3, 2, 3, 3, 3))]:
        (ex, tx), (ew, tw), (eb, tb) = _pair(rng, xs), _pair(rng, ws), _pair(rng, ws[:1])
        ey, ty = fn(ex, ew, eb, padding=1), tfn(tx, tw, tb, padding=1)
        np.testing.assert_allclose(ey.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
        ey.sum().backward()
        ty.sum().backward()
        for e, t in [(ex, tx), (ew, tw), (eb, tb)]:
            np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-3, atol=1e-3)


def test_double_backward_matches_torch():
    """create_graph through the gathered node runs the composite's backward: gradients of gradients."""
    rng = np.random.default_rng(1)
    (ex, tx), (ew, tw), (eb, tb) = _pair(rng, (32, 3, 10, 10)), _pair(rng, (4, 3, 3, 3)), _pair(rng, (4,))
    ey, ty = F.conv2d(ex, ew, eb, padding=1), torch.nn.functional.conv2d(tx, tw, tb, padding=1)
    assert "Gathered" in ey.grad_fn.name()
    (egx,) = ember.autograd.grad((ey ** 2).sum(), [ex], create_graph=True)
    (tgx,) = torch.autograd.grad((ty ** 2).sum(), [tx], create_graph=True)
    np.testing.assert_allclose(egx.detach().numpy(), tgx.detach().numpy(), rtol=1e-3, atol=1e-2)
    (egw,) = ember.autograd.grad((egx ** 2).sum(), [ew])
    (tgw,) = torch.autograd.grad((tgx ** 2).sum(), [tw])
    np.testing.assert_allclose(egw.numpy(), tgw.numpy(), rtol=1e-3, atol=1e-1)
