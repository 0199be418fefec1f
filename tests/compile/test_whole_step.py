"""Whole training steps in one compiled graph: zero_grad, forward, backward, clip_grad_norm_ and
optimizer.step() captured together; parameters, .grads and optimizer state equal eager's over 20
steps, and lr schedulers never recompile."""
import numpy as np
import pytest

import ember
import ember.nn as nn
from ember import diagnostics as records
from ember.compiler import GraphBreakError

F = nn.functional

OPTIMIZERS = {
    "sgd": lambda ps: ember.optim.SGD(ps, lr=0.1),
    "sgd_momentum_wd": lambda ps: ember.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda ps: ember.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
    "sgd_dampening": lambda ps: ember.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.3),
    "adam": lambda ps: ember.optim.Adam(ps, lr=1e-2),
    "adam_wd_amsgrad": lambda ps: ember.optim.Adam(ps, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda ps: ember.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda ps: ember.optim.RMSprop(ps, lr=1e-2),
    "rmsprop_momentum_centered": lambda ps: ember.optim.RMSprop(ps, lr=1e-2, momentum=0.5, centered=True,
                                                                weight_decay=1e-3),
    "adagrad": lambda ps: ember.optim.Adagrad(ps, lr=0.1, lr_decay=1e-3, weight_decay=1e-3),
}


def _setup(make_opt, seed=0):
    ember.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = make_opt(model.parameters())
    sched = ember.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
    return model, opt, sched


def _step_fn(model, opt, clip):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        return loss
    return step


def _np(t):
    return np.asarray(t.detach().numpy(), np.float64)


def _same_state(a, b, tol):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for name, v in sa["state"][k].items():
            np.testing.assert_allclose(_np(v), _np(sb["state"][k][name]), rtol=tol, atol=tol, err_msg=name)


def _run_both(name, clip, backend="eager", steps=20, tol=2e-5):
    m1, o1, s1 = _setup(OPTIMIZERS[name])
    m2, o2, s2 = _setup(OPTIMIZERS[name])
    eager = _step_fn(m1, o1, clip)
    compiled = ember.compile(_step_fn(m2, o2, clip), backend=backend)
    rng = np.random.default_rng(1)
    for i in range(steps):
        x = ember.tensor(rng.standard_normal((16, 6)).astype(np.float32))
        y = ember.tensor(rng.integers(0, 3, 16))
        l1, l2 = eager(x, y), compiled(x, y)
        np.testing.assert_allclose(float(l1), float(l2), rtol=tol, atol=tol, err_msg=f"loss at step {i}")
        s1.step()
        s2.step()
        if i == 2:       # compiled once (twice with SGD's dampening: its first step differs)
            first = compiled.stats["compiles"]
    for (n, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        np.testing.assert_allclose(_np(p1), _np(p2), rtol=tol, atol=tol, err_msg=n)
        np.testing.assert_allclose(_np(p1.grad), _np(p2.grad), rtol=tol, atol=tol, err_msg=n + ".grad")
        assert p2.grad.grad_fn is None and not p2.grad.requires_grad
    _same_state(o1, o2, tol)
    assert o2.param_groups[0]["lr"] == o1.param_groups[0]["lr"] < o1.defaults["lr"]    # the schedule moved
    assert compiled.stats["compiles"] == first, "an lr scheduler step recompiled"
    assert compiled.stats["eager_calls"] == 0 and compiled.stats["breaks"] == 0
    return compiled


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_whole_step_matches_eager_with_scheduler_and_clipping(name):
    cf = _run_both(name, clip=True)
    assert cf.stats["compiles"] == (2 if name == "sgd_dampening" else 1)


@pytest.mark.parametrize("name", ["sgd_momentum_wd", "adamw"])
def test_whole_step_generated_code_matches_eager(name):
    cf = _run_both(name, clip=False, backend="auto", steps=8, tol=1e-4)
    assert cf.variants[-1].backend == "llvm"


def test_grads_and_state_are_written_in_place_and_loss_is_spent():
    model, opt, _ = _setup(OPTIMIZERS["adam"])
    step = ember.compile(_step_fn(model, opt, False), backend="eager")
    x, y = ember.randn(16, 6), ember.randint(0, 3, (16,))
    w = model[0].weight
    loss = step(x, y)
    exp_avg = opt.state[w]["exp_avg"]
    step(x, y)
    assert opt.state[w]["exp_avg"] is exp_avg and model[0].weight is w     # same objects, new values
    assert float(opt.state[w]["step"]) == 2.0
    assert loss.requires_grad
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_gradient_accumulation_across_calls_recompiles_once():
    """No zero_grad inside: the .grad the graph accumulates into is a guard (None, then that tensor)."""
    ember.manual_seed(0)
    m1 = nn.Linear(4, 2)
    m2 = nn.Linear(4, 2)
    m2.load_state_dict(m1.state_dict())

    def acc(m):
        def f(x):
            loss = m(x).pow(2).sum()
            loss.backward()
            return loss
        return f
    cf = ember.compile(acc(m2), backend="eager")
    for i in range(4):
        x = ember.randn(3, 4)
        acc(m1)(x)
        cf(x)
        np.testing.assert_allclose(_np(m1.weight.grad), _np(m2.weight.grad), rtol=1e-5, atol=1e-6)
    assert cf.stats["compiles"] == 2
    m1.zero_grad()
    m2.zero_grad()
    x = ember.randn(3, 4)
    acc(m1)(x)
    cf(x)           # .grad is None again: the first variant fits
    np.testing.assert_allclose(_np(m1.weight.grad), _np(m2.weight.grad), rtol=1e-5, atol=1e-6)


def test_argument_grads_and_autograd_grad_inside():
    w = ember.randn(5, requires_grad=True)

    def f(x):
        y = (x * w).tanh().sum()
        (gx,) = ember.autograd.grad(y, x, retain_graph=True)
        y.backward()
        return gx * 2
    x1 = ember.randn(5, requires_grad=True)
    x2 = ember.tensor(x1.detach().numpy().copy(), requires_grad=True)
    out1 = f(x1)
    w_grad = w.grad.clone()
    w.grad = None
    cf = ember.compile(f, backend="eager")
    out2 = cf(x2)
    np.testing.assert_allclose(_np(out1), _np(out2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(x1.grad), _np(x2.grad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(w_grad), _np(w.grad), rtol=1e-5, atol=1e-6)
    w.grad = None
    cf(x2)
    np.testing.assert_allclose(_np(x1.grad) * 2, _np(x2.grad), rtol=1e-5, atol=1e-6)   # accumulated
    np.testing.assert_allclose(_np(w_grad), _np(w.grad), rtol=1e-5, atol=1e-6)


def test_no_grad_and_detach_inside_the_trace_cut_gradients():
    w = ember.randn(4, requires_grad=True)
    v = ember.randn(4, requires_grad=True)

    def f(x):
        with ember.no_grad():
            a = x * w
        b = (x * v).detach()
        loss = (a * v + b * w).sum()
        loss.backward()
        return loss
    x = ember.randn(4)
    f(x)
    gw, gv = w.grad.clone(), v.grad.clone()
    w.grad = v.grad = None
    ember.compile(f, backend="eager")(x)
    np.testing.assert_allclose(_np(gw), _np(w.grad), rtol=1e-6)
    np.testing.assert_allclose(_np(gv), _np(v.grad), rtol=1e-6)


def test_what_cannot_be_captured_breaks_with_a_clear_record():
    model, opt, sched = _setup(OPTIMIZERS["sgd"])
    x, y = ember.randn(16, 6), ember.randint(0, 3, (16,))

    def with_closure(x, y):
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        return opt.step(closure)

    def with_scheduler(x, y):
        _step_fn(model, opt, False)(x, y)
        sched.step()

    for fn, code in ((with_closure, "B012"), (with_scheduler, "B013")):
        with records.collect() as recs:
            ember.compile(fn, backend="eager")(x, y)
        br = [r for r in recs if r.kind == "breaks"]
        assert br and br[0].code == code and br[0].hint and "test_whole_step.py" in br[0].source
        with pytest.raises(GraphBreakError, match=code):
            ember.compile(fn, backend="eager", fullgraph=True)(x, y)


def test_an_abandoned_trace_leaves_grads_and_state_as_they_were():
    model, opt, _ = _setup(OPTIMIZERS["adam"])
    x, y = ember.randn(16, 6), ember.randint(0, 3, (16,))

    def step(x, y):
        _step_fn(model, opt, False)(x, y)
        print(model[0].weight)      # reads a value the graph wrote: a break
    with pytest.raises(GraphBreakError):
        ember.compile(step, backend="eager", fullgraph=True)(x, y)
    assert all(p.grad is None for p in model.parameters()) and len(opt.state) == 0


def test_load_state_dict_and_lr_changes_are_seen():
    model, opt, _ = _setup(OPTIMIZERS["adam"])
    step = ember.compile(_step_fn(model, opt, False), backend="eager")
    x, y = ember.randn(16, 6), ember.randint(0, 3, (16,))
    step(x, y)
    saved = {k: v for k, v in opt.state_dict().items()}
    before = model[0].weight.detach().clone()
    opt.param_groups[0]["lr"] = 0.0          # a graph input: no recompile, no update
    step(x, y)
    np.testing.assert_array_equal(_np(before), _np(model[0].weight))
    assert step.stats["compiles"] == 1
    opt.load_state_dict(saved)               # new state tensors: the guard notices
    with records.collect() as recs:
        step(x, y)
    assert step.stats["compiles"] == 2 and any("state" in r.reason for r in recs if r.kind == "recompiles")
    opt.param_groups[0]["eps"] = 1e-6         # a specialised option: compiles again
    step(x, y)
    assert step.stats["compiles"] == 3


def test_adam_step_kernels_counter_updates_merge_and_mutations_are_in_place():
    """The program of a compiled Adam step: every parameter, moment and step count is written by the
    kernel that computes it into its own storage, and the four `step += 1` share one kernel."""
    model, opt, _ = _setup(OPTIMIZERS["adam"])
    cf = ember.compile(_step_fn(model, opt, False))
    cf(ember.randn(16, 6), ember.randint(0, 3, (16,)))
    cg = cf.variants[0]
    prog = cg.forward_exec.program
    assert len(prog.memory.inplace) == len(cg.graph.mutations) == 4 * 4
    steps = [id(t) for s in opt.state.values() for k, t in s.items() if k == "step"]
    names = {ph.name.lstrip("%") for ph, b in zip(cg.graph.inputs, cg.bindings)
             if getattr(b, "tensor", None) is not None and id(b.tensor) in steps}
    writers = {step for step, _, inp in prog.memory.inplace if inp in names}
    assert len(names) == 4 and len(writers) == 1
    assert len(prog.steps) <= 14


def test_whole_step_passes_the_float64_check():
    """The fp64 check compares against inputs copied before the call: the program writes parameters
    and state in place."""
    model, opt, _ = _setup(OPTIMIZERS["adamw"])
    cf = ember.compile(_step_fn(model, opt, True), options={"check": "fp64"})
    for _ in range(3):
        cf(ember.randn(16, 6), ember.randint(0, 3, (16,)))
    assert cf.stats["compiles"] == 1


def test_whole_step_with_dropout_equals_eager_with_the_same_seed():
    def setup():
        ember.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        return model, ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    m1, o1 = setup()
    m2, o2 = setup()
    eager, compiled = _step_fn(m1, o1, False), ember.compile(_step_fn(m2, o2, False))
    x, y = ember.randn(16, 6), ember.randint(0, 3, (16,))
    for i in range(5):
        ember.manual_seed(10 + i)
        l1 = eager(x, y)
        ember.manual_seed(10 + i)
        l2 = compiled(x, y)
        np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(_np(p1), _np(p2), rtol=1e-5, atol=1e-6)


def test_one_cycle_changes_lr_and_betas_without_recompiling():
    m1, o1, _ = _setup(OPTIMIZERS["adamw"])
    m2, o2, _ = _setup(OPTIMIZERS["adamw"])
    s1 = ember.optim.lr_scheduler.OneCycleLR(o1, max_lr=0.05, total_steps=12)
    s2 = ember.optim.lr_scheduler.OneCycleLR(o2, max_lr=0.05, total_steps=12)
    eager, compiled = _step_fn(m1, o1, False), ember.compile(_step_fn(m2, o2, False), backend="eager")
    x, y = ember.randn(16, 6), ember.randint(0, 3, (16,))
    betas = set()
    for _ in range(10):
        eager(x, y)
        compiled(x, y)
        s1.step()
        s2.step()
        betas.add(o2.param_groups[0]["betas"][0])
    assert len(betas) > 5 and compiled.stats["compiles"] == 1
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(_np(p1), _np(p2), rtol=2e-5, atol=2e-5)
