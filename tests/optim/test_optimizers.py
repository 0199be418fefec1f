"""Optimizers against torch.optim: same parameters, same gradients, several steps, rtol 1e-5."""
import numpy as np
import pytest

import ember
from ember import optim

torch = pytest.importorskip("torch")


def _run(name, kwargs, steps=6, groups=None, closure_loss=False, ember_only=None):
    """Run `steps` updates of ember's and torch's optimizer `name` on identical params and grads
    (grads are functions of the current params, so any divergence compounds) and compare."""
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    targets = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ep = [ember.tensor(a, requires_grad=True) for a in init]
    tp = [torch.tensor(a, requires_grad=True) for a in init]

    def make(mod, ps, kw):
        if groups is None:
            return getattr(mod, name)(ps, **kw)
        return getattr(mod, name)([dict(params=ps[:1], **groups[0]), dict(params=ps[1:], **groups[1])], **kw)
    eo, to = make(optim, ep, {**kwargs, **(ember_only or {})}), make(torch.optim, tp, kwargs)
    for step in range(steps):
        for i, (a, b) in enumerate(zip(ep, tp)):
            t = targets[i] * (step + 1)
            # loss = sum((p - t)^3 / 3 + p^2): a non-trivial gradient from the current value
            a.grad = ember.tensor((a.detach().numpy() - t) ** 2 + 2 * a.detach().numpy())
            b.grad = torch.tensor((b.detach().numpy() - t) ** 2 + 2 * b.detach().numpy())
        if closure_loss:
            assert eo.step(lambda: 3.5) == 3.5
            to.step(lambda: 3.5)
        else:
            eo.step()
            to.step()
        for a, b in zip(ep, tp):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}{kwargs} step {step}")
    return eo, to


CASES = [
    ("SGD", dict(lr=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD", dict(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.8, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, centered=True, maximize=True, eps=1e-4)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, maximize=True, eps=1e-6)),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch(name, kwargs):
    _run(name, kwargs)


def test_adam_tensor_valued_step_matches_torch():
    # capturable=True (the path a traced step takes) computes bias corrections as tensor ops;
    # torch allows it only on accelerators, so compare against torch's eager path
    _run("Adam", dict(lr=0.01, amsgrad=True), ember_only=dict(capturable=True))
    _run("AdamW", dict(lr=0.01), ember_only=dict(capturable=True))


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_param_groups_match_torch(name):
    kw = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    _run(name, kw, groups=[dict(lr=0.05), dict(weight_decay=0.1)])


def test_closure_returns_loss():
    _run("SGD", dict(lr=0.1), steps=2, closure_loss=True)


def test_state_dict_format_matches_torch():
    for name, kw in [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1, amsgrad=True)),
                     ("RMSprop", dict(lr=0.1, centered=True, momentum=0.1)), ("Adagrad", dict(lr=0.1))]:
        eo, to = _run(name, kw, steps=2, groups=[dict(lr=0.2), dict()])
        es, ts = eo.state_dict(), to.state_dict()
        assert es["param_groups"] == ts["param_groups"]
        assert sorted(es["state"]) == sorted(ts["state"])
        for k in ts["state"]:
            assert sorted(es["state"][k]) == sorted(ts["state"][k])
            for name_, v in ts["state"][k].items():
                np.testing.assert_allclose(es["state"][k][name_].numpy(), v.numpy(), rtol=1e-5, atol=1e-6)


def test_load_state_dict_resumes_identically():
    rng = np.random.default_rng(1)
    a0 = rng.standard_normal((5,)).astype(np.float32)

    def train(p, opt, n):
        for _ in range(n):
            opt.zero_grad()
            ((p - 1.0) ** 2).sum().backward()
            opt.step()
    p = ember.tensor(a0, requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    train(p, opt, 3)
    sd = opt.state_dict()
    q = ember.tensor(p.detach().numpy().copy(), requires_grad=True)
    opt2 = optim.Adam([q], lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["params"][0] is q
    train(p, opt, 4)
    train(q, opt2, 4)
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_load_state_dict_checks_sizes():
    p, q = ember.zeros(2, requires_grad=True), ember.zeros(2, requires_grad=True)
    sd = optim.SGD([p, q], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.SGD([p], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="number of parameter groups"):
        optim.SGD([{"params": [p]}, {"params": [q]}], lr=0.1).load_state_dict(sd)


def test_zero_grad_and_editable_lr():
    p = ember.ones(3, requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    p.sum().backward()
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), [0.5, 0.5, 0.5])
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), [0, 0, 0])
    opt.zero_grad()
    assert p.grad is None


def test_add_param_group_and_errors():
    p, q = ember.ones(2, requires_grad=True), ember.ones(2, requires_grad=True)
    opt = optim.Adam([p])
    opt.add_param_group({"params": q, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam([p], lr=-1)
    with pytest.raises(TypeError, match="sets"):
        optim.SGD({p}, lr=0.1)


def test_params_without_grad_are_skipped():
    p, q = ember.ones(2, requires_grad=True), ember.ones(2, requires_grad=True)
    opt = optim.Adam([p, q], lr=0.1)
    p.sum().backward()
    opt.step()
    assert q in [] or len(opt.state) == 1
    np.testing.assert_array_equal(q.detach().numpy(), [1, 1])


def test_step_hooks():
    p = ember.ones(2, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    opt.step()
    h1.remove()
    opt.step()
    assert calls == ["pre", "post", "post"]


def test_state_dict_round_trips_through_save(tmp_path):
    p = ember.ones(3, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()
    ember.save(opt.state_dict(), tmp_path / "opt.pt")
    sd = ember.load(tmp_path / "opt.pt")
    assert sd["param_groups"] == opt.state_dict()["param_groups"]
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"].numpy(), opt.state[p]["exp_avg"].numpy())
    assert sd["state"][0]["step"].dtype is ember.float32
