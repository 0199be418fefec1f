"""The eager Adam / AdamW update as one generated kernel (ember/runtime/eager_kernels.adam_update,
installed as ember.frontend.dispatch.FUSED["adam"]) against torch.optim, and where it steps aside for numpy."""
import numpy as np
import pytest

import ember
from ember import optim
from ember.frontend import dispatch
from ember.runtime import eager_kernels

torch = pytest.importorskip("torch")


@pytest.fixture
def fused(monkeypatch):
    """The fused update installed, counting the parameters the kernel updated."""
    calls = []

    def counted(P, G, M, V, consts, mode):
        done = eager_kernels.adam_update(P, G, M, V, consts, mode)
        calls.append(done)
        return done
    monkeypatch.setitem(dispatch.FUSED, "adam", counted)
    return calls


def _compare(name, kwargs, shapes, dtype, steps=5, grad_of=None):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ep = [ember.tensor(a, requires_grad=True) for a in init]
    tp = [torch.tensor(a, requires_grad=True) for a in init]
    eo, to = getattr(optim, name)(ep, **kwargs), getattr(torch.optim, name)(tp, **kwargs)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    for step in range(steps):
        for a, b in zip(ep, tp):
            g = rng.standard_normal(a.shape).astype(dtype) * (step + 1)
            a.grad = grad_of(g) if grad_of else ember.tensor(g)
            b.grad = torch.tensor(g)
        eo.step()
        to.step()
        for a, b in zip(ep, tp):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"{name}{kwargs} {np.dtype(dtype).name} step {step}")
    for a, b in zip(ep, tp):       # the optimizer state too (exp_avg, exp_avg_sq, step)
        es, ts = eo.state[a], to.state[b]
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(es[key].numpy(), ts[key].numpy(), rtol=rtol, atol=atol)
        assert float(es["step"]) == float(ts["step"]) == steps


CASES = [("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.01, weight_decay=0.3, betas=(0.8, 0.95), eps=1e-6)),
         ("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.02, weight_decay=0.1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", CASES)
def test_fused_matches_torch(fused, name, kwargs, dtype):
    # sizes around the 16-wide vector loop and its tails, one big enough for several cache lines
    _compare(name, kwargs, [(37, 13), (16,), (3,), (1000, 70)], dtype)
    assert fused and all(fused)


def test_fused_steps_aside_where_it_does_not_apply(fused):
    # a single value (below the kernel's size symbol) and non-contiguous gradients take numpy
    _compare("AdamW", dict(lr=0.01), [(1,), (8, 6)], np.float32, steps=3,
             grad_of=lambda g: ember.tensor(np.asfortranarray(g)) if g.ndim > 1 else ember.tensor(g))
    assert fused.count(True) == 0 and len(fused) == 6


def test_amsgrad_and_maximize_keep_the_tensor_path(fused):
    _compare("Adam", dict(lr=0.01, amsgrad=True), [(20,)], np.float32, steps=3)
    _compare("AdamW", dict(lr=0.01, maximize=True), [(20,)], np.float32, steps=3)
    assert fused == []


def test_adam_update_refuses_mismatched_arrays():
    P = np.ones(32, np.float32)
    consts = (1.0, 0.0, 0.1, 0.999, 0.001, 1.0, 1e-8, -0.001)
    before = P.copy()
    assert not eager_kernels.adam_update(P, np.ones(32, np.float64), P.copy(), P.copy(), consts, "none")
    assert not eager_kernels.adam_update(P, np.ones(31, np.float32), P.copy(), P.copy(), consts, "none")
    assert not eager_kernels.adam_update(P.astype(np.float16), P, P, P, consts, "none")
    assert not eager_kernels.adam_update(P, P.copy(), P.copy(), P.copy(), consts, "nesterov")
    ro = P.copy()
    ro.flags.writeable = False
    assert not eager_kernels.adam_update(ro, P.copy(), P.copy(), P.copy(), consts, "none")
    np.testing.assert_array_equal(P, before)
    assert eager_kernels.adam_update(P, P.copy(), P.copy(), P.copy(), consts, "none")
    assert not np.array_equal(P, before)
