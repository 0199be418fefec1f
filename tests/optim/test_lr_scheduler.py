"""lr schedulers against torch.optim.lr_scheduler: identical learning rates over many steps."""
import warnings

import pytest

import ember
from ember import optim
from ember.optim import lr_scheduler as S

torch = pytest.importorskip("torch")
T = torch.optim.lr_scheduler


def _pair(opt_name="SGD", groups=2, **opt_kw):
    opt_kw.setdefault("lr", 0.1)
    if opt_name == "SGD":
        opt_kw.setdefault("momentum", 0.9)
    ep = [ember.zeros(2, requires_grad=True) for _ in range(groups)]
    tp = [torch.zeros(2, requires_grad=True) for _ in range(groups)]
    eg = [{"params": [p], "lr": opt_kw["lr"] * (i + 1)} for i, p in enumerate(ep)]
    tg = [{"params": [p], "lr": opt_kw["lr"] * (i + 1)} for i, p in enumerate(tp)]
    return getattr(optim, opt_name)(eg, **opt_kw), getattr(torch.optim, opt_name)(tg, **opt_kw)


def _compare(make, steps=60, opt_name="SGD", metric=None, keys=("lr",)):
    eo, to = _pair(opt_name)
    es, ts = make(S, eo), make(T, to)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(steps):
            eo.step()
            to.step()
            if metric is None:
                es.step()
                ts.step()
            else:
                es.step(metric(step))
                ts.step(metric(step))
            assert es.get_last_lr() == ts.get_last_lr(), f"step {step}"
            for k in keys:
                assert [g[k] for g in eo.param_groups] == [g[k] for g in to.param_groups], f"{k} step {step}"
    return es, ts


CASES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[5, 10, 10, 30], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=17, eta_min=0.001),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 0.95 ** e + 0.01 * (e % 3)),
    "LambdaLR-list": lambda m, o: m.LambdaLR(o, lr_lambda=[lambda e: 1 / (e + 1), lambda e: 0.9 ** e]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.97),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=23),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=9),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=40, power=2.0),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=1e-3),
    "OneCycleLR-cos": lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=60),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=61, pct_start=0.25,
                                                        anneal_strategy="linear", three_phase=True),
    "OneCycleLR-epochs": lambda m, o: m.OneCycleLR(o, max_lr=0.5, epochs=6, steps_per_epoch=10,
                                                 cycle_momentum=False, div_factor=10.0),
    "SequentialLR": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=10),
                                                   m.ExponentialLR(o, gamma=0.9),
                                                   m.StepLR(o, step_size=5)], milestones=[10, 30]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler([m.ConstantLR(o, factor=0.5, total_iters=4),
                                                         m.ExponentialLR(o, gamma=0.95)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(name):
    keys = ("lr", "momentum") if name.startswith("OneCycle") else ("lr",)
    _compare(CASES[name], keys=keys)


def test_onecycle_cycles_adam_betas():
    def make(m, o):
        return m.OneCycleLR(o, max_lr=0.01, total_steps=50, base_momentum=0.8, max_momentum=0.9)
    eo, to = _pair("Adam")
    es, ts = make(S, eo), make(T, to)
    for _ in range(49):
        eo.step()
        to.step()
        es.step()
        ts.step()
        assert [g["betas"] for g in eo.param_groups] == [g["betas"] for g in to.param_groups]
        assert es.get_last_lr() == ts.get_last_lr()


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1, cooldown=3,
                                              min_lr=0.01), dict(threshold_mode="abs", patience=0, min_lr=[0.02, 0])])
def test_reduce_lr_on_plateau_matches_torch(kw):
    metric = lambda s: 1.0 / (1 + s % 7) + 0.001 * s   # noqa: E731
    _compare(lambda m, o: m.ReduceLROnPlateau(o, **kw), steps=80, metric=metric)


def test_state_dict_round_trip_resumes():
    eo, _ = _pair()
    s = S.CosineAnnealingLR(eo, T_max=10)
    for _ in range(4):
        eo.step()
        s.step()
    sd = s.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 4
    eo2, _ = _pair()
    s2 = S.CosineAnnealingLR(eo2, T_max=10)
    s2.load_state_dict(sd)
    eo2.load_state_dict(eo.state_dict())
    for _ in range(5):
        eo.step()
        s.step()
        eo2.step()
        s2.step()
    assert s.get_last_lr() == s2.get_last_lr()


def test_lambda_state_dict_skips_functions():
    eo, _ = _pair()
    s = S.LambdaLR(eo, lambda e: 1.0)
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [None, None]
    s.load_state_dict(sd)


def test_base_lrs_last_epoch_and_warning():
    eo, _ = _pair()
    s = S.StepLR(eo, step_size=2)
    assert s.base_lrs == [0.1, 0.2] and s.last_epoch == 0
    assert eo.param_groups[0]["initial_lr"] == 0.1
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        s.step()


def test_editable_lr_is_seen_by_optimizer():
    p = ember.ones(1, requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = ember.ones(1)
        opt.step()
        sched.step()
    assert p.item() == pytest.approx(1 - 1 - 0.5 - 0.25)


def test_errors():
    eo, _ = _pair()
    with pytest.raises(TypeError, match="is not an Optimizer"):
        S.StepLR(object(), 1)
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(optim.SGD([ember.zeros(1, requires_grad=True)], lr=0.1), 1, last_epoch=3)
    s = S.OneCycleLR(eo, max_lr=0.1, total_steps=2)
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(3):
                s.step()
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        S.ReduceLROnPlateau(eo, factor=1.0)
