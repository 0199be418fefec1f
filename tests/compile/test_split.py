"""Graphs that split at breaks: the part before a break runs compiled, the break eagerly, capture
resumes after it. Results and gradients equal eager's; later calls replay the recorded pieces
without compiling again; another path through a data-dependent `if` is recorded once."""
import numpy as np
import pytest

import ember
import ember.nn as nn
from ember import diagnostics as records
from ember.compiler import GraphBreakError

F = nn.functional


def _np(t):
    return np.asarray(t.detach().numpy(), np.float64)


def _check(f, make_inputs, params, calls=4, backend="eager", tol=1e-5):
    """f compiled ≡ f eager on `calls` inputs: outputs and the gradients of params (and of inputs
    that require grad) after backward through a weighted sum of the output."""
    cf = ember.compile(f, backend=backend)
    with records.collect() as recs:
        _calls(cf, f, make_inputs, params, calls, tol)
    assert not [r for r in recs if r.kind == "fallbacks"], [str(r) for r in recs if r.kind == "fallbacks"]
    return cf


def _calls(cf, f, make_inputs, params, calls, tol):
    for i in range(calls):
        ember.manual_seed(100 + i)
        args = make_inputs(i)
        clones = [ember.tensor(a.detach().numpy().copy(), requires_grad=a.requires_grad) for a in args]
        for p in params:
            p.grad = None
        ref = f(*args)
        wgt = ember.randn(*ref.shape)
        (ref * wgt).sum().backward()
        want = [p.grad.clone() for p in params] + [a.grad.clone() for a in args if a.requires_grad]
        for p in params:
            p.grad = None
        out = cf(*clones)
        np.testing.assert_allclose(_np(ref), _np(out), rtol=tol, atol=tol, err_msg=f"call {i}")
        (out * wgt).sum().backward()
        got = [p.grad for p in params] + [a.grad for a in clones if a.requires_grad]
        for k, (a, b) in enumerate(zip(want, got)):
            assert b is not None, f"call {i}: gradient {k} missing"
            np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol, err_msg=f"call {i} grad {k}")


def _mlp():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 5))


@pytest.mark.parametrize("backend", ["eager", "auto"])
def test_break_in_the_middle_runs_in_two_pieces_with_gradients(backend):
    m = _mlp()
    seen = []

    def f(x):
        h = m[0](x).tanh()
        seen.append(h.abs().max().item())          # .item(): the break
        return m[2](h * 2)
    cf = _check(f, lambda i: [ember.randn(3, 5, requires_grad=True)], list(m.parameters()), backend=backend)
    assert cf.stats["compiles"] == 2 and cf.stats["breaks"] == 1 and cf.stats["eager_calls"] == 0
    assert len(seen) == 8 and all(isinstance(v, float) for v in seen)


def test_break_at_the_start_and_at_the_end():
    m = _mlp()
    log = []

    def start(x):
        log.append(float(x.sum()))                 # an argument: it already has its value
        if (x.mean() > 10).item():
            x = x * 0
        return m(x)

    def end(x):
        y = m(x)
        print("loss", y.sum().item())
        return y
    for f in (start, end):
        cf = _check(f, lambda i: [ember.randn(2, 5)], list(m.parameters()))
        assert cf.stats["eager_calls"] == 0 and cf.stats["compiles"] == (3 if f is start else 1)


def test_data_dependent_if_records_each_path_once():
    w = ember.randn(4, 4, requires_grad=True)

    def f(x):
        y = x @ w
        if y.mean() > 0:                           # bool(): the break; the branch depends on data
            z = y.exp()
        else:
            z = (y * y).neg()
        return z.sum(1)
    sign = [1, -1, 1, -1, 1, 1, -1]
    with records.collect() as recs:
        cf = _check(f, lambda i: [ember.ones(3, 4) * sign[i] + ember.randn(3, 4) * 0.01], [w], calls=len(sign))
    assert cf.stats["compiles"] == 3           # the piece before the `if`, then each branch once
    assert len([r for r in recs if r.code == "R003"]) == 1


def test_break_inside_a_loop_and_inside_a_submodule():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 5)

        def forward(self, x):
            h = self.lin(x)
            scale = 1.0 if h.norm().item() < 100 else 0.5     # a break inside the submodule
            return h * scale

    ember.manual_seed(0)
    model = nn.ModuleList([Gate(), Gate()])

    def f(x):
        for blk in model:
            x = blk(x).relu()
        total = 0.0
        for k in range(3):
            total = total + x[k].sum().item()      # a break on every iteration
        return x * total

    cf = _check(f, lambda i: [ember.randn(3, 5, requires_grad=True)], list(model.parameters()))
    assert cf.stats["breaks"] >= 2 and cf.stats["eager_calls"] == 0
    calls, compiles = cf.stats["calls"], cf.stats["compiles"]
    cf(ember.randn(3, 5, requires_grad=True))      # replays: nothing new to compile
    assert cf.stats["compiles"] == compiles and cf.stats["calls"] == calls + 1


def test_replay_does_not_recompile_and_explain_lists_the_pieces():
    m = _mlp()

    def f(x):
        h = m[0](x)
        print(h.shape, float(h.sum()))
        return m[2](h.relu())
    cf = ember.compile(f)
    x = ember.randn(2, 5)
    cf(x)
    first = cf.stats["compiles"]
    for _ in range(3):
        cf(ember.randn(2, 5))
    assert cf.stats["compiles"] == first == 2
    rep = ember.explain(f, ember.randn(2, 5))
    assert rep.graph_count == 2 and rep.graph_break_count == 1
    assert "test_split.py:" in rep.breaks[0].source and rep.breaks[0].code == "B002"
    text = str(rep)
    assert "piece 0" in text and "piece 1" in text and "test_split.py:" in text
    assert not rep.fallbacks, [str(r) for r in rep.fallbacks]


def test_fullgraph_still_raises():
    w = ember.randn(3)

    def f(x):
        y = x * w
        return y * y.sum().item()
    with pytest.raises(GraphBreakError, match="B002"):
        ember.compile(f, fullgraph=True)(ember.randn(3))


def test_training_step_with_a_print_splits_and_matches_eager():
    """A whole training step whose loss is printed: forward, backward and Adam stay compiled."""
    def setup():
        ember.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        return model, ember.optim.Adam(model.parameters(), lr=1e-2)

    def make_step(model, opt, log):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            log.append(loss.item())                # the break: the rest is a second piece
            loss.backward()
            opt.step()
            return loss
        return step
    m1, o1 = setup()
    m2, o2 = setup()
    l1, l2 = [], []
    eager, compiled = make_step(m1, o1, l1), ember.compile(make_step(m2, o2, l2))
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = ember.tensor(rng.standard_normal((16, 6)).astype(np.float32))
        y = ember.tensor(rng.integers(0, 3, 16))
        eager(x, y)
        compiled(x, y)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(_np(p1), _np(p2), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(p1.grad), _np(p2.grad), rtol=1e-5, atol=1e-6)
    assert compiled.stats["compiles"] <= 3 and compiled.stats["eager_calls"] == 0


def test_backward_across_pieces_runs_eagerly_at_a_break():
    w = ember.randn(4, requires_grad=True)

    def f(x):
        h = (x * w).tanh()
        k = h.sum().item()                         # a break: h is real now, with a grad_fn
        loss = (h * k).pow(2).sum()                # this piece reads h: its backward reaches piece 0
        loss.backward()
        return loss
    x = ember.randn(4)
    f(x)
    want = w.grad.clone()
    w.grad = None
    cf = ember.compile(f, backend="eager")
    cf(x)
    np.testing.assert_allclose(_np(want), _np(w.grad), rtol=1e-5)
    w.grad = None
    cf(x)
    np.testing.assert_allclose(_np(want), _np(w.grad), rtol=1e-5)


def test_random_numbers_across_a_break_equal_eager_with_the_same_seed():
    drop = nn.Dropout(0.5)
    log = []

    def f(x):
        y = drop(x)
        log.append(y.sum().item())                 # a break after the draw
        return drop(y) + ember.rand(3, 8)          # and draws in the next piece
    cf = ember.compile(f)
    for seed in (1, 2, 3):
        ember.manual_seed(seed)
        want = f(ember.ones(3, 8))
        ember.manual_seed(seed)
        got = cf(ember.ones(3, 8))
        np.testing.assert_array_equal(_np(want), _np(got))
    assert cf.stats["compiles"] == 2
