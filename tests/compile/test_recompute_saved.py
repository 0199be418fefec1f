"""Saved values that are one cheap pointwise op of other saved values are recomputed in the backward
(ember/compiler/joint.py _recompute_cheap): which values a forward saves, and compiled == eager
(values and gradients) where it happens."""
import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")


def _saved_ops(cf):
    """{op name: how many saved values it makes} of the compiled function's (single) variant."""
    (cg,) = cf.variants
    out = {}
    for n in cg.backward.saved:
        out[n.op] = out.get(n.op, 0) + 1
    return out


def _grads(f, args, compiled):
    ts = [ember.tensor(a, requires_grad=True) for a in args]
    fn = ember.compile(f) if compiled else f
    y = fn(*ts)
    y.sum().backward() if y.ndim else y.backward()
    return (fn if compiled else None), [y.detach().numpy()] + [t.grad.numpy() for t in ts]


def test_layer_norm_saves_no_normalised_copy():
    def f(x, w, b):
        return (F.layer_norm(x, (32,), w, b) * x).sum()
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((8, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32),
            rng.standard_normal(32).astype(np.float32)]
    cf, got = _grads(f, args, True)
    _, want = _grads(f, args, False)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    saved = _saved_ops(cf)
    # x - mean and rstd are saved (the backward needs them); (x - mean) * rstd is recomputed from them
    assert saved.get("sub", 0) >= 1 and saved.get("rsqrt", 0) == 1
    assert saved.get("mul", 0) == 0, saved


def test_exact_gelu_saves_no_scaled_input():
    def f(x, w):
        return (F.gelu(x @ w) ** 2).sum()
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((16, 8)).astype(np.float32), rng.standard_normal((8, 24)).astype(np.float32)]
    cf, got = _grads(f, args, True)
    tx, tw = (torch.tensor(a, requires_grad=True) for a in args)
    (torch.nn.functional.gelu(tx @ tw) ** 2).sum().backward()
    for g, w in zip(got, [None, tx.grad.numpy(), tw.grad.numpy()]):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-5)
    # saved: x (the product) and erf's half-sum 0.5 * erf(x / sqrt(2)) + 0.5, besides the inputs; x / sqrt(2)
    # and the GELU value x * that (the square's VJP reads it) are recomputed from them
    assert _saved_ops(cf) == {"matmul": 1, "add": 1, "placeholder": 2}


def test_a_value_a_product_reads_stays_saved():
    # y = x * 2 feeds a matmul in the forward: written anyway, so the backward reads it instead of recomputing
    def f(x, w):
        y = x * 2.0
        return ((y @ w) * y.sum()).sum()
    rng = np.random.default_rng(2)
    args = [rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 3)).astype(np.float32)]
    cf, got = _grads(f, args, True)
    _, want = _grads(f, args, False)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert _saved_ops(cf).get("mul", 0) == 1
