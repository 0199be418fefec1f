"""Compiled code never reads stale objects: replacing a module, a parameter, a buffer or a global the
trace read recompiles (R001 names the guard), as torch.compile's identity guards do."""
import numpy as np
import pytest

import ember
from ember import diagnostics as records
from ember import nn


def _np(t):
    return t.detach().numpy()


def _model():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    m.register_buffer("shift", ember.zeros(3))
    return m


class _Shifted(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) + self.inner.shift


def _replace_module(m):
    m[2] = nn.Linear(6, 3)


def _replace_parameter(m):
    m[0].weight = nn.Parameter(ember.randn(6, 4))


def _remove_bias(m):
    m[2].bias = None


def _tie_weights(m):
    m[2].weight = nn.Parameter(m[0].weight[:3, :].detach().clone().repeat(1, 2)[:, :6])


def _replace_buffer(m):
    m.shift = ember.ones(3)


def _replace_activation(m):
    m[1] = nn.Tanh()


def _load_state_dict_assign(m):
    sd = {k: v + 1 for k, v in m.state_dict().items()}
    m.load_state_dict(sd, assign=True)


@pytest.mark.parametrize("change, guard", [
    (_replace_module, "self.inner.2"), (_replace_parameter, "self.inner.0.weight"), (_remove_bias, "self.inner.2.bias"),
    (_tie_weights, "self.inner.2.weight"), (_replace_buffer, "self.inner.shift"), (_replace_activation, "self.inner.1"),
    (_load_state_dict_assign, "self.inner.shift")])
def test_module_state_change_recompiles(change, guard):
    m = _Shifted(_model())
    cm = ember.compile(m, backend="eager")
    x = ember.randn(5, 4)
    np.testing.assert_allclose(_np(cm(x)), _np(m(x)), rtol=1e-6, atol=1e-6)
    change(m.inner)
    with records.collect() as recs:
        y = cm(x)
    np.testing.assert_allclose(_np(y), _np(m(x)), rtol=1e-6, atol=1e-6)
    (r,) = [r for r in recs if r.code == "R001"]
    assert r.extra["guard"].startswith(f"identity of {guard}"), r.reason
    with records.collect() as recs:         # the new variant is kept: no further recompiles
        cm(x)
    assert not [r for r in recs if r.code == "R001"]


def test_in_place_updates_do_not_recompile():
    m = _model()
    cm = ember.compile(m, backend="eager")
    x = ember.randn(5, 4)
    cm(x)
    with ember.no_grad():
        m[0].weight.mul_(2)
        m[2].bias.data = m[2].bias.data + 1
    m.train(True)
    with records.collect() as recs:
        y = cm(x)
    np.testing.assert_allclose(_np(y), _np(m(x)), rtol=1e-6, atol=1e-6)
    assert cm._compiled.stats["compiles"] == 1 and not [r for r in recs if r.code == "R001"]


W = ember.randn(4, 3)
SCALE = 2.0
NET = nn.Linear(3, 2)


def _uses_globals(x):
    return NET(x @ W) * SCALE


@pytest.mark.parametrize("name, value", [("W", lambda: ember.randn(4, 3)), ("SCALE", lambda: 3.0),
                                         ("NET", lambda: nn.Linear(3, 2))])
def test_rebinding_a_global_recompiles(name, value):
    cf = ember.compile(_uses_globals, backend="eager")
    x = ember.randn(2, 4)
    cf(x)
    old = globals()[name]
    globals()[name] = value()
    try:
        with records.collect() as recs:
            y = cf(x)
        np.testing.assert_allclose(_np(y), _np(_uses_globals(x)), rtol=1e-6, atol=1e-6)
        (r,) = [r for r in recs if r.code == "R001"]
        assert r.extra["guard"] == f"global {name!r}"
    finally:
        globals()[name] = old


def test_global_module_tree_and_closure_tensor_are_guarded():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    bias = ember.randn(1)

    def f(x):
        return helper(x) + bias

    def helper(x):       # reached through a call: its globals and the module tree are guards too
        return net(x)

    cf = ember.compile(f, backend="eager")
    x = ember.randn(2, 3)
    cf(x)
    net[1] = nn.Linear(3, 1)
    np.testing.assert_allclose(_np(cf(x)), _np(f(x)), rtol=1e-6)
    bias = ember.randn(1)  # noqa: F841 - rebinding the closure cell is the point
    np.testing.assert_allclose(_np(cf(x)), _np(f(x)), rtol=1e-6)
    assert cf.stats["compiles"] == 3


def test_compiled_llvm_model_follows_replaced_layer_with_gradients():
    m = _model()
    cm = ember.compile(m)
    x = ember.randn(5, 4)
    cm(x).sum().backward()
    m[2] = nn.Linear(6, 3)
    y = cm(x)
    y.sum().backward()
    ref = _model()
    ref.load_state_dict(m.state_dict())
    ref(x).sum().backward()
    np.testing.assert_allclose(_np(y), _np(ref(x)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(m[2].weight.grad), _np(ref[2].weight.grad), rtol=1e-5, atol=1e-6)


def test_state_recompiles_count_toward_the_limit():
    m = _model()
    cm = ember.compile(m, backend="eager", recompile_limit=3)
    x = ember.randn(2, 4)
    with pytest.warns(RuntimeWarning, match="recompile limit"):
        for _ in range(6):
            m[2] = nn.Linear(6, 3)
            np.testing.assert_allclose(_np(cm(x)), _np(m(x)), rtol=1e-6, atol=1e-6)
    assert cm._compiled.stats["compiles"] == 3


def test_module_number_attributes_are_guarded_by_value():
    """Dropout.p, LeakyReLU.negative_slope, a custom self.temperature: the trace specialised on them, so a
    new value recompiles (it had kept answering with the old one); an unchanged value costs nothing."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(0.5), nn.Dropout(0.0))
            self.temperature = 1.0

        def forward(self, x):
            return self.body(x) / self.temperature

    ember.manual_seed(0)
    m = Net()
    cm = ember.compile(m, backend="eager")
    x = ember.randn(8, 4)
    cm(x)
    m.temperature = 1.0                     # the same value: no recompile
    cm(x)
    assert cm._compiled.stats["compiles"] == 1
    for change, guard in [(lambda: setattr(m.body[1], "negative_slope", 0.0), "value of self.body.1.negative_slope"),
                          (lambda: setattr(m, "temperature", 0.5), "value of self.temperature"),
                          (lambda: setattr(m.body[2], "p", 1.0), "value of self.body.2.p")]:
        change()
        with records.collect() as recs:
            y = cm(x)
        np.testing.assert_allclose(_np(y), _np(m(x)), rtol=1e-6, atol=1e-6)
        (r,) = [r for r in recs if r.code == "R001"]
        assert r.extra["guard"] == guard, r.extra


CFG = {"beta": 0.0, "name": "run"}


class _Options:
    def __init__(self):
        self.temp = 1.0


OPTS = _Options()


def _reads_config(x):
    return (x * 3).sum() + CFG["beta"] * (x * x).sum() + OPTS.temp


def test_global_dict_and_object_numbers_are_guarded():
    """cfg["beta"] annealed between calls, args.temp changed: the compiled function reads the new value
    (torch.compile guards the entries it read; ember guards the numbers of a small dict / plain object)."""
    cf = ember.compile(_reads_config, backend="eager")
    x = ember.ones(3)
    try:
        for beta, temp in [(0.0, 1.0), (1.0, 1.0), (2.0, 0.5)]:
            CFG["beta"], OPTS.temp = beta, temp
            assert cf(x).item() == pytest.approx(9 + 3 * beta + temp)
        assert cf.stats["compiles"] == 3
    finally:
        CFG["beta"], OPTS.temp = 0.0, 1.0


def test_rebinding_a_global_optimizer_or_function_recompiles():
    """Any object a global or closure name held is guarded by identity: a new optimizer for a fine-tuning
    phase (the old one had kept stepping), a helper function swapped."""
    w = nn.Parameter(ember.ones(2))
    opt = ember.optim.SGD([w], lr=0.1)
    act = ember.relu

    def step():
        opt.zero_grad()
        loss = act(w * w).sum()
        loss.backward()
        opt.step()
        return loss

    cstep = ember.compile(step, backend="eager")
    cstep()
    cstep()
    opt = ember.optim.SGD([w], lr=0.0)  # noqa: F841 - rebinding the closure cell is the point
    cstep()
    cstep()
    np.testing.assert_allclose(_np(w), [0.64, 0.64], rtol=1e-6)
    act = ember.neg  # noqa: F841
    assert cstep().item() == pytest.approx(-2 * 0.64 ** 2, rel=1e-6)


@pytest.mark.parametrize("backend", ["aot_eager", "cudagraphs", "inductor"])
def test_torch_backend_names_are_accepted(backend):
    m = _model()
    x = ember.randn(5, 4)
    np.testing.assert_allclose(_np(ember.compile(m, backend=backend)(x)), _np(m(x)), rtol=1e-5, atol=1e-6)
    ember.compiler.cudagraph_mark_step_begin()      # a no-op here: replays never overwrite held outputs


def test_tensors_made_inside_a_compiled_function_are_fresh_every_call():
    """torch.zeros(3).add_(x), index_add_ into zeros, full(...).fill_(): a tensor the traced code creates is a
    value of the graph, not state -- the compiled function had written the in-place result back into it and
    answered with the running sum from the second call on."""
    f = ember.compile(lambda x: ember.zeros(3).add_(x))
    assert [f(ember.ones(3)).tolist() for _ in range(3)] == [[1.0, 1.0, 1.0]] * 3

    def scatter(x):
        out = ember.zeros(2, 3)
        out.index_add_(0, ember.tensor([0, 1, 0]), x)
        return out
    g = ember.compile(scatter)
    assert [g(ember.ones(3, 3)).sum().item() for _ in range(3)] == [9.0] * 3

    def refill(x):
        label = ember.full((4,), 1.0)
        a = (x * label).sum()
        label.fill_(0.0)
        return a + (x * label).sum() + label.sum()
    h = ember.compile(refill)
    assert [h(ember.ones(4)).item() for _ in range(3)] == [4.0] * 3


def test_writes_into_a_fresh_tensor_carry_the_gradient():
    """out = zeros(...); out[0] = w * 3 (a decoder loop filling an outputs tensor), h = zeros(2); h += w:
    the gradient flows to w as in eager (it had been lost: no grad_fn, or zeros)."""
    w = ember.tensor([1.0, 2.0], requires_grad=True)

    def fill(w):
        out = ember.zeros(2, 2)
        out[0] = w * 3
        h = ember.zeros(2)
        h += w
        y = ember.zeros(3, 2)
        y[:, 0] = w[0]
        return out.sum() + h.sum() * 2 + y.sum()
    cf = ember.compile(fill)
    for _ in range(2):
        w.grad = None
        loss = cf(w)
        loss.backward()
        assert loss.item() == 9.0 + 6.0 + 3.0 and w.grad.tolist() == [8.0, 5.0]
