"""ember.amp.GradScaler against torch.amp.GradScaler("cpu"): a scripted run with inf and nan gradients
gives the same scales, skipped steps, growth trackers and weights; unscale_ before clipping; state_dict;
the error paths."""
import math

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")

# the gradient poison of each iteration: None, inf or nan (multiplied into the loss)
SCRIPT = [None, None, math.inf, None, None, None, math.nan, None, None, None, None, -math.inf, None, None]


def _run(lib, fn, script, clip=None, opt_name="SGD", **scaler_kw):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    x, y = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 2)).astype(np.float32)
    lin = lib.nn.Linear(3, 2, bias=False)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor(w))
    opt = getattr(lib.optim, opt_name)(lin.parameters(), lr=0.1)
    scaler = lib.amp.GradScaler("cpu", **scaler_kw)
    trace = []
    for poison in script:
        opt.zero_grad()
        loss = fn.mse_loss(lin(lib.tensor(x)), lib.tensor(y))
        if poison is not None:
            loss = loss * poison
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(opt)
            lib.nn.utils.clip_grad_norm_(lin.parameters(), clip)
        before = lin.weight.detach().clone()
        ret = scaler.step(opt)
        stepped = not bool((lin.weight.detach() == before).all())
        scaler.update()
        trace.append((scaler.get_scale(), scaler._get_growth_tracker(), stepped, ret))
    return trace, lin.weight.detach().numpy(), scaler


@pytest.mark.parametrize("kw", [dict(init_scale=2.0 ** 10, growth_interval=3),
                                dict(init_scale=1000.0, growth_factor=3.0, backoff_factor=0.3, growth_interval=2),
                                dict(init_scale=3.0e38, growth_interval=1)])   # growth would overflow float32
@pytest.mark.parametrize("opt_name", ("SGD", "Adam"))
def test_scripted_run_matches_torch(kw, opt_name):
    te, we, _ = _run(ember, F, SCRIPT, opt_name=opt_name, **kw)
    tt, wt, _ = _run(torch, torch.nn.functional, SCRIPT, opt_name=opt_name, **kw)
    assert [t[:3] for t in te] == [t[:3] for t in tt]
    assert [t[2] for t in te].count(False) == 3          # inf, nan, -inf: three skipped steps
    np.testing.assert_allclose(we, wt, rtol=1e-5, atol=1e-6)


def test_unscale_before_clip_matches_torch():
    te, we, _ = _run(ember, F, SCRIPT[:6], clip=0.05, init_scale=512.0, growth_interval=2)
    tt, wt, _ = _run(torch, torch.nn.functional, SCRIPT[:6], clip=0.05, init_scale=512.0, growth_interval=2)
    assert [t[:3] for t in te] == [t[:3] for t in tt]
    np.testing.assert_allclose(we, wt, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_matches_torch():
    _, _, se = _run(ember, F, SCRIPT[:5], init_scale=256.0, growth_interval=4)
    _, _, st = _run(torch, torch.nn.functional, SCRIPT[:5], init_scale=256.0, growth_interval=4)
    assert se.state_dict() == st.state_dict()
    fresh = ember.amp.GradScaler("cpu")
    fresh.load_state_dict(se.state_dict())
    assert fresh.state_dict() == se.state_dict() and fresh.get_scale() == se.get_scale()
    with pytest.raises(RuntimeError, match="empty"):
        fresh.load_state_dict({})


def test_bfloat16_loss_is_scaled_in_its_dtype():
    s = ember.amp.GradScaler("cpu", init_scale=4.0)
    loss = ember.tensor(1.5, dtype=ember.bfloat16)
    out = s.scale(loss)
    assert out.dtype is ember.bfloat16 and out.item() == 6.0
    assert s.scale([loss, (loss,)])[1][0].item() == 6.0


def test_error_paths_match_torch():
    m = nn.Linear(2, 1)
    opt = ember.optim.SGD(m.parameters(), lr=0.1)
    s = ember.amp.GradScaler("cpu")
    with pytest.raises(AssertionError, match="did not use scaler.scale"):
        s.step(opt)
    s.scale(m(ember.ones(1, 2)).sum()).backward()
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        s.unscale_(opt)
    s.update()
    with pytest.raises(AssertionError, match="No inf checks"):
        s.update()
    with pytest.raises(RuntimeError, match="Closure"):
        s.step(opt, closure=lambda: 0)
    half = nn.Linear(2, 1).half()
    opt2 = ember.optim.SGD(half.parameters(), lr=0.1)
    s.scale(half(ember.ones(1, 2, dtype=ember.float16)).float().sum()).backward()
    with pytest.raises(ValueError, match="FP16 gradients"):
        s.unscale_(opt2)


def test_disabled_scaler_is_a_pass_through():
    s = ember.amp.GradScaler("cpu", enabled=False)
    loss = ember.tensor(2.0)
    assert s.scale(loss) is loss and s.get_scale() == 1.0 and s.state_dict() == {}
    if not ember.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            assert not ember.amp.GradScaler().is_enabled()
    assert ember.cuda.amp.GradScaler is ember.amp.GradScaler
    assert ember.cpu.amp.GradScaler(init_scale=8.0).get_scale() == 8.0
