"""nn.init distributions and gains (against the formulas PyTorch documents) and nn.utils."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
import ember.nn as nn
from nn_helpers import torch


def stats(t):
    a = t.detach().numpy()
    return a.mean(), a.std(), a.min(), a.max()


def test_calculate_gain_and_fans_match_torch():
    for nl, p in [("linear", None), ("relu", None), ("tanh", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                  ("selu", None), ("sigmoid", None), ("conv2d", None)]:
        assert nn.init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))
    for shape in [(3, 4), (8, 4, 3, 3), (2, 6, 5)]:
        assert nn.init._calculate_fan_in_and_fan_out(ember.empty(*shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape))
    with pytest.raises(ValueError):
        nn.init._calculate_fan_in_and_fan_out(ember.empty(3))


def test_uniform_normal_constant():
    t = ember.empty(200, 300)
    m, s, lo, hi = stats(nn.init.uniform_(t, -2, 3))
    assert lo >= -2 and hi <= 3 and abs(m - 0.5) < 0.02 and abs(s - 5 / math.sqrt(12)) < 0.02
    m, s, _, _ = stats(nn.init.normal_(t, 1.0, 0.5))
    assert abs(m - 1.0) < 0.01 and abs(s - 0.5) < 0.01
    assert float(nn.init.constant_(t, 0.3).mean()) == pytest.approx(0.3)
    assert float(nn.init.zeros_(t).abs().sum()) == 0 and float(nn.init.ones_(t).mean()) == 1
    e = nn.init.eye_(ember.empty(3, 4))
    np.testing.assert_array_equal(e.numpy(), np.eye(3, 4))


def test_xavier_kaiming_std_and_bounds():
    t = ember.empty(256, 128)
    fan_in, fan_out = 128, 256
    _, s, lo, hi = stats(nn.init.xavier_uniform_(t, gain=2.0))
    a = 2.0 * math.sqrt(6.0 / (fan_in + fan_out))
    assert -a <= lo and hi <= a and hi > 0.98 * a
    _, s, _, _ = stats(nn.init.xavier_normal_(t))
    assert abs(s - math.sqrt(2.0 / (fan_in + fan_out))) < 0.003
    _, s, lo, hi = stats(nn.init.kaiming_uniform_(t, a=math.sqrt(5)))
    bound = math.sqrt(6 / ((1 + 5) * fan_in))
    assert -bound <= lo and hi <= bound and hi > 0.98 * bound
    _, s, _, _ = stats(nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"))
    assert abs(s - math.sqrt(2.0 / fan_out)) < 0.003


def test_trunc_normal_and_orthogonal():
    t = ember.empty(100, 100)
    m, s, lo, hi = stats(nn.init.trunc_normal_(t, mean=0.5, std=1.0, a=-1.0, b=2.0))
    assert lo >= -1.0 and hi <= 2.0
    ref = torch.nn.init.trunc_normal_(torch.empty(200, 200), mean=0.5, std=1.0, a=-1.0, b=2.0)
    assert abs(m - float(ref.mean())) < 0.03 and abs(s - float(ref.std())) < 0.03
    q = nn.init.orthogonal_(ember.empty(6, 10)).numpy().astype(np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(6), atol=1e-5)
    q = nn.init.orthogonal_(ember.empty(10, 3, 2), gain=2.0).numpy().reshape(10, 6).astype(np.float64)
    np.testing.assert_allclose(q.T @ q, 4 * np.eye(6), atol=1e-4)


def test_init_is_in_place_without_grad_tracking():
    p = nn.Parameter(ember.empty(4, 4))
    r = nn.init.kaiming_uniform_(p)
    assert r is p and p.is_leaf and p.grad_fn is None and p.requires_grad


def test_init_is_seeded():
    ember.manual_seed(0)
    a = nn.Linear(4, 4).weight.detach().numpy().copy()
    ember.manual_seed(0)
    b = nn.Linear(4, 4).weight.detach().numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
def test_clip_grad_norm_matches_torch(norm_type):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    ep = [nn.Parameter(ember.zeros(*g.shape)) for g in grads]
    tp = [torch.nn.Parameter(torch.zeros(*g.shape)) for g in grads]
    for p, q, g in zip(ep, tp, grads):
        p.grad = ember.tensor(g)
        q.grad = torch.tensor(g)
    en = nn.utils.clip_grad_norm_(ep, 1.5, norm_type)
    tn = torch.nn.utils.clip_grad_norm_(tp, 1.5, norm_type)
    assert float(en) == pytest.approx(float(tn), rel=1e-5)
    for p, q in zip(ep, tp):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_nonfinite_and_value():
    p = nn.Parameter(ember.zeros(3))
    p.grad = ember.tensor([1.0, float("inf"), 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    p.grad = ember.tensor([-3.0, 0.5, 7.0])
    nn.utils.clip_grad_value_(p, 1.0)
    assert p.grad.tolist() == [-1.0, 0.5, 1.0]
    assert float(nn.utils.clip_grad_norm_([nn.Parameter(ember.zeros(1))], 1.0)) == 0.0


def test_parameters_to_vector_roundtrip():
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    v = nn.utils.parameters_to_vector(m.parameters())
    assert v.shape == (3 * 2 + 2 + 2 + 1,)
    w0 = m[0].weight
    nn.utils.vector_to_parameters(v * 0 + 1, m.parameters())
    assert m[0].weight is w0 and float(m[0].weight.sum()) == 6.0 and float(m[1].bias.sum()) == 1.0
