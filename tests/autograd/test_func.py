"""ember.func (functional_call, grad, grad_and_value, vmap) and nn.utils.stateless against torch.func."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _script(lib, func, nn):
    out = []
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    with lib.no_grad():
        for i, p in enumerate(m.parameters()):
            p.copy_(lib.tensor(np.sin(np.arange(p.numel()) + i).reshape(tuple(p.shape)).astype(np.float32)))
    x = lib.tensor(np.cos(np.arange(6)).reshape(2, 3).astype(np.float32))
    params = {k: (v.detach() * 2).requires_grad_() for k, v in m.named_parameters()}
    y = func.functional_call(m, params, (x,))
    y.sum().backward()
    out += [y, params["0.weight"].grad, m(x)]
    assert m[0].weight.grad is None                     # the module's own weights were not used
    fast = dict(m.named_parameters())                   # a MAML step: the meta-gradient flows through
    gs = lib.autograd.grad(func.functional_call(m, fast, x).pow(2).mean(), list(fast.values()), create_graph=True)
    fast = {k: v - 0.1 * g for (k, v), g in zip(fast.items(), gs)}
    func.functional_call(m, fast, (x,)).pow(2).mean().backward()
    out.append(m[0].weight.grad)
    w = lib.tensor(np.arange(6.0).reshape(3, 2).astype(np.float32) / 10)

    def f(w, x):
        return (lib.tanh(x @ w) ** 2).sum()
    out += [func.grad(f)(w, x), func.grad(f, argnums=1)(w, x), *func.grad_and_value(f)(w, x)]
    out.append(func.grad(lambda w: func.grad(lambda u: (u ** 3).sum())(w).sum())(w))
    out += [func.vmap(lambda a: a @ w)(x), func.vmap(lib.dot)(x, x + 1),
            func.vmap(lambda a, b: a * b, in_dims=(0, None))(x, x[0])]
    return [o.detach().numpy() for o in out]


def test_func_matches_torch():
    import torch.func as tfunc
    import ember.func as efunc
    for e, t in zip(_script(ember, efunc, ember.nn), _script(torch, tfunc, torch.nn)):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


def test_functional_call_tied_weights_strict_and_stateless_alias():
    from ember.nn.utils.stateless import functional_call
    lin = ember.nn.Linear(2, 2, bias=False)
    tied = ember.nn.Sequential(lin, lin)
    w = ember.eye(2) * 3
    assert functional_call(tied, {"0.weight": w}, (ember.ones(1, 2),)).tolist() == [[9.0, 9.0]]
    with pytest.raises(RuntimeError, match="Missing key"):
        functional_call(tied, {"0.weight": w}, (ember.ones(1, 2),), strict=True, tie_weights=False)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        functional_call(tied, {"nope": w}, (ember.ones(1, 2),))
    assert tied[0].weight is lin.weight and isinstance(lin.weight, ember.nn.Parameter)


def _script2(lib, func, nn):
    m = nn.Linear(3, 2)
    with lib.no_grad():
        m.weight.copy_(lib.tensor(np.sin(np.arange(6.0)).reshape(2, 3).astype(np.float32)))
        m.bias.fill_(0.1)
    params = {k: v.detach() for k, v in m.named_parameters()}

    def loss(p, x, y):
        return ((func.functional_call(m, p, (x.unsqueeze(0),)) - y) ** 2).sum()
    X = lib.tensor(np.cos(np.arange(12.0)).reshape(4, 3).astype(np.float32))
    Y = lib.tensor(np.arange(8.0).reshape(4, 2).astype(np.float32))
    per_sample = func.vmap(func.grad(loss), in_dims=(None, 0, 0))(params, X, Y)      # the per-sample-grads recipe
    out = [per_sample["weight"], per_sample["bias"], func.vmap(lambda x: {"a": x * 2, "b": [x.sum()]})(X)["b"][0]]

    def f(x):
        return lib.sin(x) * x.sum()
    x = lib.tensor([0.3, 0.7, 1.1])
    out += [func.jacrev(f)(x), func.jacfwd(f)(x), func.hessian(lambda x: (x ** 3).sum() * x[0])(x)]
    out += list(func.jvp(f, (x,), (lib.ones(3),)))
    out.append(func.vjp(f, x)[1](lib.ones(3))[0])
    return [o.detach().numpy() for o in out]


def test_func_transforms_match_torch():
    import torch.func as tfunc
    import ember.func as efunc
    for e, t in zip(_script2(ember, efunc, ember.nn), _script2(torch, tfunc, torch.nn)):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)
