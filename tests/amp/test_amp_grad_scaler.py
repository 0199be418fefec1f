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


def test_scaled_dtypes_match_torch():
    """The scale is a float32 0-d tensor (as PyTorch's): a 0-d bfloat16 loss scales to float32, a
    bfloat16 tensor with dimensions stays bfloat16 (PyTorch's promotion)."""
    s = ember.amp.GradScaler("cpu", init_scale=4.0)
    ts = torch.amp.GradScaler("cpu", init_scale=4.0)
    for shape in ((), (3,)):
        loss = ember.full(shape, 1.5, dtype=ember.bfloat16)
        out, want = s.scale(loss), ts.scale(torch.full(shape, 1.5, dtype=torch.bfloat16))
        assert out.dtype.name == str(want.dtype).split(".")[1] and (out.float().numpy() == 6.0).all()
    loss = ember.tensor(1.5, dtype=ember.bfloat16)
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


# ------------------------------------------------------------------------------- whole-step capture
STEP_SCRIPT = [None, None, math.inf, None, None, math.nan, None, None, None]


def _scaled_steps(compiled, opt_name, script=STEP_SCRIPT, clip=None, bf16=False, **opt_kw):
    """A training step with scale(loss).backward(); step(opt); update() inside (compiled as one
    function), over a script of poisoned losses; returns the scales, losses, weights and the function."""
    ember.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    opt = getattr(ember.optim, opt_name)(model.parameters(), lr=0.05, **opt_kw)
    scaler = ember.amp.GradScaler("cpu", init_scale=2.0 ** 8, growth_interval=2, backoff_factor=0.3)

    def step(x, y, poison):
        opt.zero_grad()
        with ember.autocast("cpu", enabled=bf16):
            loss = F.mse_loss(model(x), y) * poison
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(opt)
        scaler.update()
        return loss
    fn = ember.compile(step) if compiled else step
    rng = np.random.default_rng(1)
    scales, losses = [], []
    for poison in script:
        x, y = (ember.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((5, 6), (5, 3)))
        losses.append(fn(x, y, ember.tensor(np.float32(1.0 if poison is None else poison))).item())
        scales.append((scaler.get_scale(), scaler._get_growth_tracker()))
    return scales, losses, [p.detach().numpy().copy() for p in model.parameters()], fn


@pytest.mark.parametrize("opt_name,kw", [("SGD", dict(momentum=0.9)), ("Adam", {}), ("AdamW", dict(weight_decay=0.1))])
def test_compiled_scaler_step_equals_eager_and_skips_inf_steps(opt_name, kw):
    se, le, we, _ = _scaled_steps(False, opt_name, **kw)
    sc, lc, wc, fn = _scaled_steps(True, opt_name, **kw)
    assert sc == se                                   # the same scales and growth trackers, step by step
    assert se[2][0] == _f32(2.0 ** 9 * 0.3)           # grew after two clean steps, backed off at the inf
    np.testing.assert_allclose(lc, le, rtol=1e-5, equal_nan=True)
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert fn.stats["compiles"] == 1                  # one graph for every step, skipped or not


def _f32(v):
    return float(np.float32(v))


@pytest.mark.parametrize("opt_name,bf16,tol", [("AdamW", False, 1e-6), ("SGD", True, 1e-3)])
def test_compiled_scaler_step_with_unscale_and_clipping_equals_eager(opt_name, bf16, tol):
    """unscale_ then clip_grad_norm_ (the documented recipe), also under bf16 autocast: one graph, the
    same scales as eager, the same weights (bf16: compiled and eager products sum in other orders, and
    Adam's normalised step would magnify that near zero gradients, so SGD there)."""
    kw = dict(script=STEP_SCRIPT[:6], clip=0.5, bf16=bf16, **(dict(momentum=0.9) if opt_name == "SGD" else {}))
    se, le, we, _ = _scaled_steps(False, opt_name, **kw)
    sc, lc, wc, fn = _scaled_steps(True, opt_name, **kw)
    assert sc == se and fn.stats["compiles"] == 1
    np.testing.assert_allclose(lc, le, rtol=2e-2 if bf16 else 1e-5, equal_nan=True)
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_compiled_scaler_step_is_one_graph_with_the_checks_fused_into_the_update():
    """No graph break (no value read back): the unscale and the skip fuse into the optimizer's kernels
    -- every kernel that writes a parameter also applies the inf mask; no kernel of its own selects."""
    _, _, _, fn = _scaled_steps(True, "SGD", script=[None], momentum=0.9)
    rep = ember.explain(fn, ember.randn(5, 6), ember.randn(5, 3), ember.tensor(np.float32(1.0)))
    assert rep.graph_count == 1 and rep.graph_break_count == 0 and not rep.fallbacks
    cg = fn.variants[0]
    prog = cg.forward_exec.program
    ops = [[n.op for n in st.nodes] for st in prog.kernels]
    assert all(o != ["where"] and o != ["mul"] for o in ops)
    updates = [o for o in ops if "sub" in o and "where" in o]          # p - lr * buf, masked
    assert len(updates) == 4
    unscale = [o for o in ops if "reciprocal" in o and "where" in o]    # buf = m * buf + g / scale, masked
    assert len(unscale) == 4


def test_skipped_first_step_leaves_fresh_state_like_eager():
    """An inf on the very first (state-creating) step: Adam's step count and moments stay as fresh state."""
    se, _, we, _ = _scaled_steps(False, "Adam", script=[math.inf, None, None])
    sc, _, wc, _ = _scaled_steps(True, "Adam", script=[math.inf, None, None])
    assert sc == se
    for a, b in zip(wc, we):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
