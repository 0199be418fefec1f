"""Dynamic sizes: one compiled program for every batch size / sequence length (ember/compiler/dynamic.py).

Each test checks compiled == eager at several sizes AND counts compiles: a dynamic variant must serve
new sizes without tracing again.
"""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.ir import parse, sizes, symbolic as S


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a.detach().numpy()), np.asarray(b.detach().numpy()), rtol=tol, atol=tol)


def _mlp():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10))


# ------------------------------------------------------------------------------ symbolic ints
def test_symint_arithmetic_and_guards():
    env = S.ShapeEnv()
    s = env.new_symbol(64, (0, 0))
    x = s * 784 + 3
    assert str(x) == "784*s0 + 3" and x.hint == 64 * 784 + 3
    with S.active(env):
        assert (s * 784) // 784 is s or str((s * 784) // 784) == "s0"
        assert (s * 8) % 4 == 0
        assert not (s == 1) and s > 0           # sizes are >= 2: decided without a guard
        assert env.guards == []
        assert s < 100                          # decided by the trace's value: a guard
        assert [str(g) for g in env.guards] == ["s0 < 100"]
        assert int(s) == 64                     # int() pins the size
        assert env.check({"s0": 64}) is None and env.check({"s0": 65}) is not None
    with pytest.raises(TypeError, match="outside a compile"):
        int(s)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 500), st.integers(2, 50), st.integers(-20, 20), st.integers(1, 12), st.integers(1, 9))
def test_symint_evaluates_like_the_ints_it_stands_for(v0, v1, a, b, c):
    """Arithmetic on SymInts, evaluated at other values, equals the same arithmetic on ints; every
    decision the hint made is covered by a guard that holds exactly where the decision does."""
    env = S.ShapeEnv()
    s0, s1 = env.new_symbol(v0, (0, 0)), env.new_symbol(v1, (1, 0))
    with S.active(env):
        exprs = [s0 * b + a, (s0 * c * 4) // (2 * c), s0 * s1 - a * s1, (s0 * 6 + 4) % 2, -(s1 * b) + s0]
        decisions = [s0 * b + a > 100, s0 < s1, s0 * 3 == s1]
    for w0, w1 in ((v0, v1), (7, 3), (v0 + 5, v1), (100, 100)):
        ints = [w0 * b + a, (w0 * c * 4) // (2 * c), w0 * w1 - a * w1, (w0 * 6 + 4) % 2, -(w1 * b) + w0]
        assert [sizes.evaluate(e, {"s0": w0, "s1": w1}) for e in exprs] == ints
        same = [w0 * b + a > 100, w0 < w1, w0 * 3 == w1] == decisions
        assert same or env.check({"s0": w0, "s1": w1}) is not None


def test_symbolic_ir_text_round_trips():
    text = ("graph f(%x: f32[s0,784], %y: f32[(64*s0 + 3),s1**2]) {\n"
            "  %0 = reshape(%x, shape=[s0,28,28]) : f32[s0,28,28]\n"
            "  return (%0)\n}\n")
    g = parse(text)
    assert str(g) == text
    assert str(parse(str(g))) == text


# --------------------------------------------------------------------------------- policies
@pytest.mark.parametrize("backend", ["llvm", "eager"])
def test_dynamic_true_compiles_once_for_every_batch(backend):
    m = _mlp()
    cm = ember.compile(m, dynamic=True, backend=backend)
    for b in (8, 3, 17, 64, 2):
        x = ember.randn(b, 20)
        _close(cm(x), m(x))
    assert cm._compiled.stats["compiles"] == 1


def test_automatic_dynamic_after_one_size_change():
    m = _mlp()
    f = ember.compile(lambda x: m(x).relu().sum(dim=1))
    for b in (16, 9, 33, 5, 16, 100):
        x = ember.randn(b, 20)
        _close(f(x), m(x).relu().sum(dim=1))
    assert f.stats["compiles"] == 2          # the first size, then one dynamic program


def test_mark_dynamic_and_dynamic_false():
    m = _mlp()
    f = ember.compile(lambda x: m(x) * 2, dynamic=False)
    for b in (4, 6):
        x = ember.randn(b, 20)
        ember.mark_dynamic(x, 0)
        _close(f(x), m(x) * 2)
    assert f.stats["compiles"] == 1
    g = ember.compile(lambda x: m(x) * 2, dynamic=False)
    for b in (4, 6):
        g(ember.randn(b, 20))
    assert g.stats["compiles"] == 2          # dynamic=False: every size compiles


def test_sizes_zero_and_one_are_specialised():
    m = _mlp()
    f = ember.compile(lambda x: m(x), dynamic=True)
    for b in (1, 5, 1, 7):
        x = ember.randn(b, 20)
        _close(f(x), m(x))
    assert f.stats["compiles"] == 2


def test_backward_through_a_dynamic_program():
    m, m2 = _mlp(), None
    m2 = copy.deepcopy(m)
    f = ember.compile(lambda x: m(x).pow(2).mean(), dynamic=True)
    for b in (5, 12):
        x = ember.randn(b, 20)
        m.zero_grad()
        m2.zero_grad()
        f(x).backward()
        m2(x).pow(2).mean().backward()
        for p, q in zip(m.parameters(), m2.parameters()):
            _close(p.grad, q.grad)
    assert f.stats["compiles"] == 1


def _mnist_like():
    ember.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 5 * 5, 10))


def _training_step(m, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def test_whole_training_step_partial_last_batch():
    """A CNN training step (SGD momentum) over batches 16, 16, 16, 7 (a partial last batch), then
    other sizes: two compiles, parameters equal to eager's after every step."""
    m = _mnist_like()
    m2 = copy.deepcopy(m)
    opt = ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    opt2 = ember.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9)
    f, g = ember.compile(_training_step(m, opt)), _training_step(m2, opt2)
    for b in (16, 16, 16, 7, 16, 3, 25):
        x, y = ember.randn(b, 1, 12, 12), ember.randint(0, 10, (b,))
        np.testing.assert_allclose(float(f(x, y)), float(g(x, y)), rtol=1e-5)
        for p, q in zip(m.parameters(), m2.parameters()):
            _close(p, q, 1e-5)
    assert f.stats["compiles"] == 2


def test_sequence_lengths_with_a_causal_mask():
    """Attention over sequence lengths 2..24 with a sliced mask buffer: one dynamic program."""
    ember.manual_seed(2)
    mask = ember.tril(ember.ones(32, 32))
    proj = nn.Linear(8, 24)

    def attend(x):
        L = x.shape[1]
        q, k, v = proj(x).split(8, dim=2)
        att = (q @ k.transpose(-2, -1)) * 0.35
        att = att.masked_fill(mask[:L, :L] == 0, float("-inf"))
        return F.softmax(att, dim=-1) @ v

    f = ember.compile(attend)
    for L in (16, 9, 24, 2, 13):
        x = ember.randn(3, L, 8)
        _close(f(x), attend(x), 1e-5)
    assert f.stats["compiles"] == 2


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(2, 40), min_size=2, max_size=6))
def test_random_batch_sizes_never_recompile(sizes):
    m = _FIXED
    f = ember.compile(lambda x: F.log_softmax(m(x), dim=1).mean(dim=0), dynamic=True)
    for b in sizes:
        x = ember.randn(b, 20)
        _close(f(x), F.log_softmax(m(x), dim=1).mean(dim=0))
    assert f.stats["compiles"] == 1


_FIXED = _mlp()


def test_dynamic_programs_print_and_parse_back():
    """The graph IR and every kernel of a dynamic training step print symbolic sizes and read back."""
    from ember.ir.kernel import Kernel
    from ember.ir.kernel_text import parse_kernel
    m = _mnist_like()
    f = ember.compile(_training_step(m, ember.optim.SGD(m.parameters(), lr=0.05)), dynamic=True)
    f(ember.randn(6, 1, 12, 12), ember.randint(0, 10, (6,)))
    cg = f.variants[-1]
    text = str(cg.graph)
    assert "f32[s0,1,12,12]" in text and str(parse(text)) == text
    kernels = [s.kernel for s in cg.forward_exec.program.steps if isinstance(getattr(s, "kernel", None), Kernel)]
    assert any(k.symbols == ("s0",) for k in kernels)
    for k in kernels:
        assert str(parse_kernel(str(k))) == str(k)


_MODELS = {
    "batchnorm_train": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
                        lambda b: (ember.randn(b, 3, 6, 6),)),
    "var_std_cat": (lambda: (lambda x: ember.cat([x.var(dim=0, keepdim=True), x.std(dim=0, keepdim=True),
                                                  x * 2], dim=0).sum(dim=1)),
                    lambda b: (ember.randn(b, 5),)),
    "lstm_batch": (lambda: nn.LSTM(5, 6, batch_first=True), lambda b: (ember.randn(b, 3, 5),)),
    "transformer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                    lambda b: (ember.randn(b, 4, 8),)),
    "zeros_of_batch": (lambda: (lambda x: x + ember.zeros(x.shape[0], 1) + ember.arange(x.shape[0]).unsqueeze(1)),
                       lambda b: (ember.randn(b, 3),)),
}


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_models_over_batch_sizes(name):
    """Automatic dynamic over batch sizes 6, 4, 11, 6, 3: two compiles, results (and BatchNorm's
    running statistics) equal to eager's."""
    ember.manual_seed(3)
    make, inputs = _MODELS[name]
    mod = make()
    ref = copy.deepcopy(mod) if isinstance(mod, nn.Module) else mod
    f = ember.compile(mod)
    for b in (6, 4, 11, 6, 3):
        args = inputs(b)
        got, want = f(*args), ref(*args)
        got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
        _close(got, want, 1e-4)
    if isinstance(mod, nn.Module):
        for a, r in zip(mod.buffers(), ref.buffers()):
            _close(a, r, 1e-4)
    stats = f._compiled.stats if isinstance(mod, nn.Module) else f.stats
    assert stats["compiles"] == 2


def test_a_reshape_keeps_only_the_divisibility_it_needs():
    """x.view(-1, 2, C) on a dynamic batch: the program divides the batch by 2 at run time under the
    guard `s0 % 2 == 0` (no pin to the traced size); an odd batch fails as eagerly."""
    f = ember.compile(lambda x: x.view(-1, 2, x.shape[1]).sum(dim=1) * 3, dynamic=True)
    for b in (4, 6, 10, 8):
        x = ember.randn(b, 3)
        _close(f(x), x.view(-1, 2, 3).sum(dim=1) * 3)
    assert f.stats["compiles"] == 1
    cg = f.variants[-1]
    assert "f32[s0/2,2,s1]" in str(cg.graph) and str(parse(str(cg.graph))) == str(cg.graph)
    assert any("% 2 == 0" in g for g in cg.shape_guard.describe())
    with pytest.raises(RuntimeError, match="invalid for input of size 15"):
        f(ember.randn(5, 3))


def test_a_symbolic_program_the_backend_cannot_build_falls_back_to_fixed_sizes(monkeypatch):
    """If code generation fails on symbolic sizes (F002), the function compiles fixed sizes (R006)
    instead of running the reference interpreter from then on."""
    import ember.compiler.backends as B
    from ember import diagnostics
    real = B.Executor

    def executor(program, *a, **k):
        if any(not isinstance(n, int) for v in program.values.values() for n in v.shape):
            raise RuntimeError("simulated: no symbolic sizes here")
        return real(program, *a, **k)
    monkeypatch.setattr(B, "Executor", executor)
    m = _mlp()
    f = ember.compile(m)
    with diagnostics.collect() as recs:
        for b in (3, 5, 7, 5):
            x = ember.randn(b, 20)
            _close(f(x), m(x))
    codes = [r.code for r in recs]
    assert "R006" in codes
    from ember.compiler.interpreter import Interpreter
    assert not any(isinstance(v.forward_exec, Interpreter) for v in f._compiled.variants)


def test_torch_dynamo_spellings():
    m = _mlp()
    f = ember.compile(lambda x: m(x) + 1, dynamic=False)
    x = ember.randn(4, 20)
    ember._dynamo.mark_dynamic(x, 0)
    f(x)
    f(ember.randn(4, 20))          # unmarked, same size: its own (static) variant
    assert f.stats["compiles"] == 2 and len(f.variants) == 2
    ember._dynamo.reset()
    assert f.variants == [] and f.cache == {}
    _close(f(x), m(x) + 1)
    assert f.stats["compiles"] == 3
    assert ember._dynamo.config.recompile_limit == 8
