"""The eager core on device "cuda" (CuPy): moves, ops, autograd, printing, random. `pytest -m gpu`."""
import numpy as np
import pytest

import ember as E

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not E.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")]


def test_moves_and_factories():
    x = E.arange(6.0).view(2, 3)
    g = x.to("cuda")
    assert g.device.type == "cuda" and g.is_cuda and g.cpu().tolist() == x.tolist()
    assert E.zeros(2, device="cuda").device == g.device and E.ones(2, device="cuda").cpu().tolist() == [1.0, 1.0]
    assert x.cuda().to(E.float64).dtype is E.float64
    assert str(g) == "tensor([[0., 1., 2.],\n        [3., 4., 5.]], device='cuda:0')"
    with pytest.raises(RuntimeError, match="same device"):
        g + x
    with pytest.raises(TypeError, match="cpu"):
        g.numpy()


@pytest.mark.parametrize("fn", [
    lambda x, y: x + y * 2, lambda x, y: (x @ y.t()).exp(), lambda x, y: x.sum(1), lambda x, y: x.max(0)[0],
    lambda x, y: x[:, 1:] * y[:, :-1], lambda x, y: E.where(x > 0, x, y).logsumexp(1), lambda x, y: x.sigmoid().prod(),
    lambda x, y: x.gather(1, E.tensor([[0], [2]], device=x.device)), lambda x, y: E.cat([x, y], 0).softmax(1),
    lambda x, y: x.sort(1)[0], lambda x, y: x.var(1), lambda x, y: x.erf() + y.tanh(),
])
def test_ops_and_grads_match_cpu(fn):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    outs = []
    for dev in ("cpu", "cuda"):
        x = E.tensor(a, device=dev, requires_grad=True)
        y = E.tensor(b, device=dev, requires_grad=True)
        r = fn(x, y)
        r.sum().backward()
        outs.append([r.detach().cpu().numpy(), x.grad.cpu().numpy(), y.grad.cpu().numpy() if y.grad is not None else 0])
    for c, g in zip(*outs):
        np.testing.assert_allclose(g, c, rtol=1e-6, atol=1e-9)


def test_grad_flows_back_across_devices():
    x = E.ones(3, requires_grad=True)
    (x.to("cuda") * 2).sum().backward()
    assert x.grad.device.type == "cpu" and x.grad.tolist() == [2.0, 2.0, 2.0]


def test_random_same_on_both_devices():
    E.manual_seed(7)
    a = E.rand(5)
    E.manual_seed(7)
    b = E.rand(5, device="cuda")
    np.testing.assert_array_equal(a.numpy(), b.cpu().numpy())


def test_inplace_and_views_on_cuda():
    x = E.zeros(3, 4, device="cuda")
    x[1] = 2.0
    x[:, 0] += 1
    v = x[2]
    v.fill_(5.0)
    assert x.cpu().tolist() == [[1, 0, 0, 0], [3, 2, 2, 2], [5, 5, 5, 5]]
