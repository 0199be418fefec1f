"""ember.utils.checkpoint: recomputing a block in the backward pass gives the values and gradients of
calling it directly (dropout included: the recomputation replays the random-number state)."""
import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.utils.checkpoint import checkpoint, checkpoint_sequential


def _block():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Dropout(0.3), nn.Linear(8, 6))


def _grads(model, x):
    return [x.grad.numpy().copy()] + [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_equals_a_direct_call(reentrant):
    block = _block()
    x0 = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    outs, grads = [], []
    for use_cp in (False, True):
        block.zero_grad()
        x = ember.tensor(x0, requires_grad=True)
        ember.manual_seed(5)
        y = checkpoint(block, x, use_reentrant=reentrant) if use_cp else block(x)
        (y * ember.arange(6.0)).sum().backward()
        outs.append(y.detach().numpy())
        grads.append(_grads(block, x))
    np.testing.assert_array_equal(outs[0], outs[1])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert y.grad_fn is not None


def test_checkpoint_passes_kwargs_and_non_tensor_args():
    lin = nn.Linear(3, 3)

    def f(x, scale, *, shift):
        return lin(x) * scale + shift
    x = ember.randn(2, 3, requires_grad=True)
    y = checkpoint(f, x, 2.0, shift=1.0, use_reentrant=False)
    y.sum().backward()
    g = x.grad.numpy().copy()
    x.grad = None
    f(x, 2.0, shift=1.0).sum().backward()
    np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-6)


def test_checkpoint_tuple_result_and_no_grad_inputs():
    lin = nn.Linear(3, 3)
    x = ember.randn(2, 3, requires_grad=True)
    a, b = checkpoint(lambda t: (lin(t), lin(t).sum()), x, use_reentrant=False)
    (a.sum() + b).backward()
    assert x.grad is not None and lin.weight.grad is not None
    lin.zero_grad()
    checkpoint(lin, ember.randn(2, 3), use_reentrant=False).sum().backward()     # only parameters need grad
    assert lin.weight.grad is not None
    with ember.no_grad():
        assert not checkpoint(lin, x, use_reentrant=False).requires_grad


def test_checkpoint_sequential_equals_the_sequential():
    ember.manual_seed(1)
    seq = nn.Sequential(*[nn.Sequential(nn.Linear(5, 5), nn.Tanh()) for _ in range(5)])
    x0 = ember.randn(3, 5)
    results = []
    for segments in (None, 2, 3):
        seq.zero_grad()
        x = x0.clone().requires_grad_(True)
        y = seq(x) if segments is None else checkpoint_sequential(seq, segments, x, use_reentrant=False)
        y.pow(2).sum().backward()
        results.append([y.detach().numpy()] + _grads(seq, x))
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="segments must be positive"):
        checkpoint_sequential(seq, 0, x0)


def test_checkpoint_matches_torch():
    torch = pytest.importorskip("torch")
    ember.manual_seed(2)
    em = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    tm = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in em.state_dict().items()})
    x0 = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    ex, tx = ember.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    ember.utils.checkpoint.checkpoint(em, ex, use_reentrant=False).pow(2).sum().backward()
    torch.utils.checkpoint.checkpoint(tm, tx, use_reentrant=False).pow(2).sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
    for (n, p), q in zip(em.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=n)
