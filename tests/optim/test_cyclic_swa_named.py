"""CyclicLR, torch.optim.swa_utils (AveragedModel, SWALR, update_bn, EMA) and optimizers built from
named_parameters(), against torch.optim."""
import numpy as np
import pytest

import ember
from ember import nn

torch = pytest.importorskip("torch")


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    e, t = nn.Linear(4, 3), torch.nn.Linear(4, 3)
    with ember.no_grad():
        e.weight.copy_(ember.tensor(w))
        e.bias.copy_(ember.tensor(b))
    with torch.no_grad():
        t.weight.copy_(torch.tensor(w))
        t.bias.copy_(torch.tensor(b))
    return e, t


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("mode, kw", [("triangular", {}), ("triangular2", {}), ("exp_range", {"gamma": 0.97}),
                                      ("custom", {"scale_fn": lambda x: 0.5 ** x, "scale_mode": "iterations"})])
def test_cyclic_lr_matches_torch(opt_name, mode, kw):
    lrs = []
    for lib, m in zip((ember, torch), _pair()):
        opt = getattr(lib.optim, opt_name)(m.parameters(), lr=0.1, **({"momentum": 0.9} if opt_name == "SGD" else {}))
        args = dict(step_size_up=3, step_size_down=5) if mode == "custom" else dict(step_size_up=4, mode=mode)
        sched = lib.optim.lr_scheduler.CyclicLR(opt, 0.001, [0.01], **args, **kw)
        seen = []
        for _ in range(25):
            opt.step()
            sched.step()
            g = opt.param_groups[0]
            seen.append((sched.get_last_lr()[0], g["momentum"] if opt_name == "SGD" else g["betas"][0]))
        lrs.append(seen)
    np.testing.assert_allclose(np.array(lrs[0]), np.array(lrs[1]), rtol=1e-12)


def test_cyclic_lr_state_dict_round_trip_and_errors():
    m, _ = _pair()
    opt = ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    s = ember.optim.lr_scheduler.CyclicLR(opt, 0.001, 0.01, step_size_up=2)
    for _ in range(3):
        s.step()
    sd = s.state_dict()
    s2 = ember.optim.lr_scheduler.CyclicLR(ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), 0.001, 0.01)
    s2.load_state_dict(sd)
    assert s2.last_epoch == s.last_epoch and s2.total_size == s.total_size
    with pytest.raises(ValueError, match="scale_fn is None"):
        ember.optim.lr_scheduler.CyclicLR(opt, 0.001, 0.01, mode="sawtooth")
    with pytest.raises(ValueError, match="momentum"):
        ember.optim.lr_scheduler.CyclicLR(ember.optim.Adagrad(m.parameters()), 0.001, 0.01)


def _swa_run(lib, swa_utils, data, ema=False):
    rng = np.random.default_rng(1)
    m = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.BatchNorm1d(8), lib.nn.ReLU(), lib.nn.Linear(8, 1))
    with lib.no_grad():
        for p in m.parameters():
            p.copy_(lib.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.3))
    opt = lib.optim.SGD(m.parameters(), lr=0.1)
    avg = swa_utils.AveragedModel(m, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9) if ema else None)
    sched = swa_utils.SWALR(opt, swa_lr=0.05, anneal_epochs=3)
    X, Y = (lib.tensor(a) for a in data)
    lrs = []
    for _ in range(5):
        for i in range(0, 64, 16):
            opt.zero_grad()
            ((m(X[i:i + 16]) - Y[i:i + 16]) ** 2).mean().backward()
            opt.step()
        avg.update_parameters(m)
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    loader = [(X[i:i + 16], Y[i:i + 16]) for i in range(0, 64, 16)]
    swa_utils.update_bn(loader, avg)
    return (lrs, int(avg.n_averaged), [p.detach().numpy().copy() for p in avg.parameters()],
            avg.module[1].running_mean.numpy().copy(), avg(X).detach().numpy())


@pytest.mark.parametrize("ema", [False, True], ids=["swa", "ema"])
def test_swa_utils_match_torch(ema):
    import torch.optim.swa_utils as tsu
    from ember.optim import swa_utils as esu
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((64, 4)).astype(np.float32), rng.standard_normal((64, 1)).astype(np.float32))
    e, t = _swa_run(ember, esu, data, ema), _swa_run(torch, tsu, data, ema)
    np.testing.assert_allclose(e[0], t[0], rtol=1e-12)
    assert e[1] == t[1] == 5
    for a, b in zip(e[2], t[2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e[3], t[3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e[4], t[4], rtol=1e-4, atol=1e-5)


def test_optimizer_takes_named_parameters_as_torch():
    e, t = _pair()
    eo, to = ember.optim.AdamW(e.named_parameters(), lr=1e-2), torch.optim.AdamW(t.named_parameters(), lr=1e-2)
    assert eo.param_groups[0]["param_names"] == to.param_groups[0]["param_names"] == ["weight", "bias"]
    for m, o, lib in ((e, eo, ember), (t, to, torch)):
        m(lib.ones(2, 4)).sum().backward()
        o.step()
    np.testing.assert_allclose(e.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-6)
    assert eo.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]
    with pytest.raises(ValueError, match="with/without names"):
        ember.optim.SGD([("w", e.weight), e.bias], lr=0.1)
