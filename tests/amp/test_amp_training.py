"""Training under autocast(bf16) follows float32 training: the MNIST CNN on separable synthetic digits,
200 SGD steps from the same initial weights, eager and compiled; the smoothed loss curves stay within 2%
of float32's (plus a small absolute margin where the loss approaches zero)."""
import os
import sys

import numpy as np
import pytest

import ember

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
from bench_models import make_mnist_net  # noqa: E402  (the one definition of the seed CNN)

F = ember.nn.functional


def _curve(bf16: bool, steps: int, compiled: bool):
    ember.manual_seed(0)
    model = make_mnist_net(ember)
    model.eval()                                   # no dropout: both runs see the same function
    opt = ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    rng = np.random.default_rng(0)
    protos = rng.standard_normal((10, 1, 28, 28)).astype(np.float32)

    def loss_fn(x, y):
        with ember.autocast("cpu", enabled=bf16):
            return F.nll_loss(model(x), y)
    fn = ember.compile(loss_fn) if compiled else loss_fn
    losses = []
    for _ in range(steps):
        y = rng.integers(0, 10, 32)
        x = protos[y] + 0.5 * rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
        opt.zero_grad()
        loss = fn(ember.tensor(x), ember.tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.convolve(np.array(losses), np.ones(20) / 20, "valid")


@pytest.mark.slow
@pytest.mark.parametrize("compiled", (False, True), ids=("eager", "compiled"))
def test_bf16_loss_curve_tracks_fp32(compiled):
    fp32 = _curve(False, 200, compiled)
    bf16 = _curve(True, 200, compiled)
    assert fp32[-1] < 0.5 * fp32[0]                # it learned
    np.testing.assert_allclose(bf16, fp32, rtol=0.02, atol=0.02)
