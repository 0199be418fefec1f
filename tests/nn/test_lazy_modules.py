"""Lazy modules (LazyLinear, LazyConv*d, LazyConvTranspose*d, LazyBatchNorm*d, LazyInstanceNorm*d): shapes
inferred at the first call, parameters materialised in place, the class becoming the full module, state_dict
loading, deepcopy and pickling -- against torch.nn's."""
import copy
import pickle

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _script(lib):
    nn, F = lib.nn, lib.nn.functional
    lib.manual_seed(0)
    out = []
    net = nn.Sequential(nn.LazyConv2d(6, 5, padding=2), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.LazyLinear(10))
    out.append(str(net).replace("torch.", "").replace("ember.", ""))
    params = list(net.parameters())                      # an optimizer may hold the placeholders
    x = lib.ones(2, 1, 8, 8)
    net(x)
    out.append([type(m).__name__ for m in net])
    out.append([tuple(p.shape) for p in net.parameters()])
    out.append(all(a is b for a, b in zip(params, net.parameters())))
    out.append(str(net))
    opt = lib.optim.SGD(params, lr=0.1)
    F.cross_entropy(net(x), lib.tensor([1, 2])).backward()
    opt.step()
    net2 = nn.Sequential(nn.LazyConv2d(6, 5, padding=2), nn.LazyBatchNorm2d(), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.LazyLinear(10))
    net2.load_state_dict(net.state_dict())
    out.append([tuple(p.shape) for p in net2.parameters()])
    out.append(bool((net2(x) == net(x)).all()))
    out.append(str(nn.LazyLinear(4)))
    for m, inp in [(nn.LazyConvTranspose2d(3, 2, stride=2), lib.ones(1, 5, 4, 4)),
                   (nn.LazyConv1d(4, 3, groups=2), lib.ones(2, 6, 10)),
                   (nn.LazyInstanceNorm1d(), lib.ones(2, 3, 7)),
                   (nn.LazyBatchNorm1d(affine=False), lib.ones(4, 5))]:
        m(inp)
        out.append((type(m).__name__, [tuple(t.shape) for t in list(m.parameters()) + list(m.buffers())]))
    return out


def test_lazy_modules_match_torch():
    assert _script(ember) == _script(torch)


def test_lazy_module_copies_and_compiles():
    nn = ember.nn
    assert tuple(copy.deepcopy(nn.LazyLinear(3))(ember.ones(2, 4)).shape) == (2, 3)
    m = pickle.loads(pickle.dumps(nn.Sequential(nn.LazyLinear(3))))
    assert tuple(m(ember.ones(2, 5)).shape) == (2, 3) and type(m[0]) is nn.Linear
    ember.manual_seed(0)
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    cnet = ember.compile(net)
    x = ember.randn(4, 5)
    y = cnet(x)                                          # materialised while tracing
    np.testing.assert_allclose(y.detach().numpy(), net(x).detach().numpy(), rtol=1e-6)
    assert isinstance(net[0].weight, nn.Parameter) and not isinstance(net[0].weight, nn.UninitializedParameter)
