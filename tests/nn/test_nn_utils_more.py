"""nn.utils.weight_norm / spectral_norm (hook API), nn.utils.parametrize and nn.utils.parametrizations
against torch: parameter names, state_dict keys, forward values, gradients, power-iteration buffers, removal."""
import numpy as np
import pytest

import ember
import ember.nn as nn

torch = pytest.importorskip("torch")
tnn = torch.nn


def _copy_into(e_mod, t_mod):
    """Give the ember module the torch module's state (same keys)."""
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in t_mod.state_dict().items()}
    e_mod.load_state_dict(sd)


def _run_both(e_mod, t_mod, x, rtol=1e-5, atol=1e-6):
    ex, tx = ember.tensor(x), torch.tensor(x)
    eo, to = e_mod(ex), t_mod(tx)
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=rtol, atol=atol)
    w = np.random.default_rng(1).standard_normal(tuple(to.shape)).astype(np.float32)
    (eo * ember.tensor(w)).sum().backward()
    (to * torch.tensor(w)).sum().backward()
    tp = dict(t_mod.named_parameters())
    for name, p in e_mod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


X = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)


# ------------------------------------------------------------------------------ weight_norm
@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_hook_api(dim):
    torch.manual_seed(0)
    t = tnn.utils.weight_norm(tnn.Linear(6, 4), dim=dim)
    e = nn.utils.weight_norm(nn.Linear(6, 4), dim=dim)
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(e.state_dict()) == list(t.state_dict())
    assert tuple(e.weight_g.shape) == tuple(t.weight_g.shape)
    _copy_into(e, t)
    _run_both(e, t, X)
    nn.utils.remove_weight_norm(e)
    tnn.utils.remove_weight_norm(t)
    assert list(e.state_dict()) == list(t.state_dict()) == ["bias", "weight"]
    np.testing.assert_allclose(e.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-6)


def test_weight_norm_errors():
    m = nn.utils.weight_norm(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="Cannot register two weight_norm hooks on the same parameter weight"):
        nn.utils.weight_norm(m)
    with pytest.raises(ValueError, match="weight_norm of 'bias' not found"):
        nn.utils.remove_weight_norm(m, "bias")


def test_weight_norm_conv_compiles_to_the_eager_values():
    ember.manual_seed(0)
    m = nn.utils.weight_norm(nn.Conv2d(2, 3, 3))
    x = ember.randn(2, 2, 6, 6)
    eager = m(x)
    out = ember.compile(m)(x)
    np.testing.assert_allclose(out.detach().numpy(), eager.detach().numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- spectral_norm
@pytest.mark.parametrize("layer", ["linear", "conv_transpose"])
def test_spectral_norm_hook_api(layer):
    torch.manual_seed(0)
    if layer == "linear":
        t, e, x = tnn.Linear(6, 4), nn.Linear(6, 4), X
    else:
        t, e = tnn.ConvTranspose2d(3, 2, 3), nn.ConvTranspose2d(3, 2, 3)
        x = np.random.default_rng(2).standard_normal((2, 3, 4, 4)).astype(np.float32)
    t, e = tnn.utils.spectral_norm(t), nn.utils.spectral_norm(e)
    assert list(e.state_dict()) == list(t.state_dict())
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    _copy_into(e, t)
    for _ in range(2):     # training: one power-iteration step per forward, the buffers update in place
        e.zero_grad()
        t.zero_grad()
        _run_both(e, t, x, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(e.weight_u.numpy(), t.weight_u.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e.weight_v.numpy(), t.weight_v.numpy(), rtol=1e-5, atol=1e-6)
    e.eval()
    t.eval()
    u = e.weight_u.numpy().copy()
    with ember.no_grad(), torch.no_grad():
        np.testing.assert_allclose(e(ember.tensor(x)).numpy(), t(torch.tensor(x)).numpy(), rtol=1e-4, atol=1e-5)
    assert np.array_equal(u, e.weight_u.numpy())
    nn.utils.remove_spectral_norm(e)
    tnn.utils.remove_spectral_norm(t)
    assert list(e.state_dict()) == list(t.state_dict())
    np.testing.assert_allclose(e.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_spectral_norm_estimates_the_largest_singular_value():
    ember.manual_seed(0)
    m = nn.utils.spectral_norm(nn.Linear(8, 5), n_power_iterations=30)
    m(ember.randn(1, 8))
    w = m.weight.detach().numpy()
    assert np.linalg.norm(w, 2) == pytest.approx(1.0, rel=1e-3)


# ------------------------------------------------------------------------------ parametrize
class _Symmetric(nn.Module):
    def forward(self, X):
        return X.triu() + X.triu(1).transpose(0, 1)


class _TSymmetric(tnn.Module):
    def forward(self, X):
        return X.triu() + X.triu(1).transpose(0, 1)


def test_register_parametrization_values_grads_state_dict_and_removal():
    torch.manual_seed(0)
    t = tnn.Linear(4, 4)
    e = nn.Linear(4, 4)
    tnn.utils.parametrize.register_parametrization(t, "weight", _TSymmetric())
    nn.utils.parametrize.register_parametrization(e, "weight", _Symmetric())
    assert type(e).__name__ == "ParametrizedLinear" and isinstance(e, nn.Linear)
    assert list(e.state_dict()) == list(t.state_dict())
    assert [n for n, _ in e.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert nn.utils.parametrize.is_parametrized(e) and nn.utils.parametrize.is_parametrized(e, "weight")
    assert not nn.utils.parametrize.is_parametrized(e, "bias")
    assert not nn.utils.parametrize.is_parametrized(nn.Linear(4, 4))   # other instances untouched
    _copy_into(e, t)
    w = e.weight.detach().numpy()
    assert np.allclose(w, w.T)
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    _run_both(e, t, x)
    with nn.utils.parametrize.cached():
        assert e.weight is e.weight
    assert e.weight is not e.weight
    nn.utils.parametrize.remove_parametrizations(e, "weight")
    tnn.utils.parametrize.remove_parametrizations(t, "weight")
    assert type(e) is nn.Linear and list(e.state_dict()) == list(t.state_dict())
    np.testing.assert_allclose(e.weight.detach().numpy(), t.weight.detach().numpy())


def test_right_inverse_assignment_chaining_and_leave_unparametrized():
    class Scale(nn.Module):
        def forward(self, x):
            return x * 2

        def right_inverse(self, y):
            return y / 2
    m = nn.Linear(3, 3)
    w0 = m.weight.detach().numpy().copy()
    nn.utils.parametrize.register_parametrization(m, "weight", Scale())
    np.testing.assert_allclose(m.parametrizations.weight.original.detach().numpy(), w0 / 2, rtol=1e-6)
    np.testing.assert_allclose(m.weight.detach().numpy(), w0, rtol=1e-6)      # unchanged value
    m.weight = ember.ones(3, 3)
    np.testing.assert_allclose(m.parametrizations.weight.original.detach().numpy(), 0.5)
    nn.utils.parametrize.register_parametrization(m, "weight", Scale())         # chained: original * 4
    np.testing.assert_allclose(m.weight.detach().numpy(), 2.0)
    nn.utils.parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    np.testing.assert_allclose(m.weight.detach().numpy(), 0.5)
    assert isinstance(m.weight, nn.Parameter)


def test_parametrize_errors():
    class Shrink(nn.Module):
        def forward(self, x):
            return x[:1]
    with pytest.raises(ValueError, match="may not change the shape or dtype"):
        nn.utils.parametrize.register_parametrization(nn.Linear(3, 3), "weight", Shrink())
    with pytest.raises(ValueError, match="does not have a parameter, a buffer, or a parametrized element"):
        nn.utils.parametrize.register_parametrization(nn.Linear(3, 3), "nope", _Symmetric())
    with pytest.raises(ValueError, match="does not have a parametrization on weight"):
        nn.utils.parametrize.remove_parametrizations(nn.Linear(3, 3), "weight")


def test_parametrized_model_trains_with_an_optimizer():
    ember.manual_seed(0)
    m = nn.Linear(4, 4)
    nn.utils.parametrize.register_parametrization(m, "weight", _Symmetric())
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    x, y = ember.randn(16, 4), ember.randn(16, 4)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((m(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8
    w = m.weight.detach().numpy()
    assert np.allclose(w, w.T)


# ------------------------------------------------------------------------- parametrizations
@pytest.mark.parametrize("dim", [0, 1])
def test_parametrizations_weight_norm(dim):
    torch.manual_seed(0)
    t = tnn.utils.parametrizations.weight_norm(tnn.Linear(6, 4), dim=dim)
    e = nn.utils.parametrizations.weight_norm(nn.Linear(6, 4), dim=dim)
    assert list(e.state_dict()) == list(t.state_dict())
    _copy_into(e, t)
    _run_both(e, t, X)


def test_parametrizations_spectral_norm():
    torch.manual_seed(0)
    t = tnn.utils.parametrizations.spectral_norm(tnn.Conv2d(3, 4, 3))
    e = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 4, 3))
    assert list(e.state_dict()) == list(t.state_dict())
    _copy_into(e, t)
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 5)).astype(np.float32)
    _run_both(e, t, x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e.parametrizations.weight[0]._u.numpy(), t.parametrizations.weight[0]._u.numpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Expected n_power_iterations to be positive"):
        nn.utils.parametrizations.spectral_norm(nn.Linear(2, 2), n_power_iterations=0)
