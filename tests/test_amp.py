"""ember.amp: autocast on the CPU (bfloat16 products) and dynamic loss scaling (more in tests/amp/)."""
import math
import warnings

import numpy as np

import ember
import ember.nn as nn
import ember.nn.functional as F


def test_autocast_cpu_runs_products_in_bfloat16_without_warnings():
    m = nn.Linear(4, 3)
    x = ember.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ember.autocast(device_type="cpu"):
            y = m(x)
        with ember.autocast("cpu", enabled=False):
            y2 = m(x)
    assert y.dtype is ember.bfloat16 and y2.dtype is ember.float32
    assert ember.allclose(y.float(), y2, rtol=2e-2, atol=2e-2)


def test_autocast_as_decorator_and_disabled():
    @ember.autocast("cuda", enabled=False)
    def f(a, b):
        return a @ b
    assert f(ember.ones(2, 2), ember.ones(2, 2)).dtype is ember.float32
    assert not ember.amp.is_autocast_enabled()


def test_grad_scaler_scales_unscales_and_skips_non_finite_steps():
    ember.manual_seed(0)
    m = nn.Linear(3, 1)
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    scaler = ember.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    x, y = ember.randn(8, 3), ember.randn(8, 1)
    w0 = m.weight.detach().clone()
    loss = F.mse_loss(m(x), y)
    scaler.scale(loss).backward()
    g_scaled = m.weight.grad.clone()
    scaler.step(opt)
    scaler.update()
    # the step used the unscaled gradient
    np.testing.assert_allclose((w0 - m.weight.detach()).numpy(), (0.1 * g_scaled / 1024.0).numpy(), rtol=1e-5, atol=1e-7)
    # an inf gradient: the step is skipped and the scale backs off
    opt.zero_grad()
    w1 = m.weight.detach().clone()
    (scaler.scale(F.mse_loss(m(x), y)) * math.inf).backward()
    scaler.step(opt)
    scaler.update()
    assert ember.equal(m.weight.detach(), w1)
    assert scaler.get_scale() == 512.0
    assert ember.cuda.amp.GradScaler is ember.amp.GradScaler
