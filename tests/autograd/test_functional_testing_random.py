"""ember.autograd.functional (jacobian, hessian, vjp, jvp, hvp, vhp), ember.testing (assert_close,
make_tensor) and ember.random (fork_rng) against torch."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _f(lib):
    def f(x, y):
        return (x.sin() * y[:3]).sum(0, keepdim=True) * 2 + y.pow(2)[:1], x.exp().prod().reshape(1)
    return f


def _scalar(lib):
    return lambda x, y: (x.sin() * y[:3]).sum() + (x * x * y[1:4]).sum() * y[0]


X, Y = np.array([0.3, -1.2, 0.7]), np.array([1.5, -0.4, 0.2, 0.9])


def _eq(a, b):
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b)
        for p, q in zip(a, b):
            _eq(p, q)
        return
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_jacobian_and_hessian_nesting_and_values():
    e_in, t_in = (ember.tensor(X), ember.tensor(Y)), (torch.tensor(X), torch.tensor(Y))
    _eq(ember.autograd.functional.jacobian(_f(ember), e_in), torch.autograd.functional.jacobian(_f(torch), t_in))
    _eq(ember.autograd.functional.jacobian(lambda x: x.exp() * x.sum(), e_in[0]),
        torch.autograd.functional.jacobian(lambda x: x.exp() * x.sum(), t_in[0]))
    _eq(ember.autograd.functional.hessian(_scalar(ember), e_in), torch.autograd.functional.hessian(_scalar(torch), t_in))
    _eq(ember.autograd.functional.hessian(lambda x: x.pow(3).sum(), e_in[0]),
        torch.autograd.functional.hessian(lambda x: x.pow(3).sum(), t_in[0]))


def test_vjp_jvp_hvp_vhp():
    e_in, t_in = (ember.tensor(X), ember.tensor(Y)), (torch.tensor(X), torch.tensor(Y))
    v_out = (np.array([0.5]), np.array([-2.0]))
    for name, v in (("vjp", v_out), ("jvp", (np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3, 0.4])))):
        e = getattr(ember.autograd.functional, name)(_f(ember), e_in, tuple(ember.tensor(a) for a in v))
        t = getattr(torch.autograd.functional, name)(_f(torch), t_in, tuple(torch.tensor(a) for a in v))
        _eq(e, t)
    v_in = (np.array([1.0, -1.0, 0.5]), np.array([0.3, 0.0, -0.2, 1.0]))
    for name in ("hvp", "vhp"):
        e = getattr(ember.autograd.functional, name)(_scalar(ember), e_in, tuple(ember.tensor(a) for a in v_in))
        t = getattr(torch.autograd.functional, name)(_scalar(torch), t_in, tuple(torch.tensor(a) for a in v_in))
        _eq(e, t)


def test_assert_close_passes_fails_and_messages_like_torch():
    ember.testing.assert_close(ember.tensor([1.0, 2.0]), ember.tensor([1.0, 2.000001]))
    ember.testing.assert_close({"a": [ember.ones(2)], "b": 3}, {"a": [ember.ones(2)], "b": 3})
    ember.testing.assert_close(ember.tensor([float("nan")]), ember.tensor([float("nan")]), equal_nan=True)
    for a, b in ((ember.tensor([1.0, 2.0, 3.0]), ember.tensor([1.0, 2.5, 3.0])), (1.0, 1.5)):
        with pytest.raises(AssertionError) as e:
            ember.testing.assert_close(a, b)
        ta = torch.tensor(a.numpy()) if isinstance(a, ember.Tensor) else a
        tb = torch.tensor(b.numpy()) if isinstance(b, ember.Tensor) else b
        with pytest.raises(AssertionError) as t:
            torch.testing.assert_close(ta, tb)
        assert str(e.value).splitlines()[:3] == str(t.value).splitlines()[:3]
    with pytest.raises(AssertionError, match="The values for attribute 'dtype' do not match"):
        ember.testing.assert_close(ember.ones(1), ember.ones(1, dtype=ember.float64))
    with pytest.raises(AssertionError, match="The values for attribute 'shape' do not match"):
        ember.testing.assert_close(ember.ones(2), ember.ones(3))
    ember.testing.assert_close(ember.ones(1), ember.ones(1, dtype=ember.float64), check_dtype=False)


def test_make_tensor_and_fork_rng():
    ember.manual_seed(0)
    a = ember.testing.make_tensor(3, 4, dtype=ember.float32, low=-1, high=1)
    assert a.shape == (3, 4) and a.dtype is ember.float32 and a.abs().max().item() <= 1
    b = ember.testing.make_tensor((5,), dtype=ember.int64, low=0, high=3)
    assert b.dtype is ember.int64 and set(b.tolist()) <= {0, 1, 2}
    ember.manual_seed(1)
    with ember.random.fork_rng():
        ember.rand(10)
    x = ember.rand(3)
    ember.manual_seed(1)
    assert ember.rand(3).tolist() == x.tolist()
