"""Patterns from real training scripts, compiled and compared with eager: bias-free layers feeding
fused ops, Python-level randomness and clocks in a forward, tensors cached on module attributes."""
import random
import time

import numpy as np
import pytest

import ember
from ember import diagnostics as records
from ember import nn


def _np(t):
    return t.detach().numpy()


def _train_step_matches(make, x, tol=1e-4):
    """Forward and backward of a compiled copy equal eager (same initial weights)."""
    ember.manual_seed(0)
    ref = make()
    ember.manual_seed(0)
    m = make()
    cm = ember.compile(m)
    for _ in range(2):            # the second call runs the cached variant
        y0, y1 = ref(x), cm(x)
        np.testing.assert_allclose(_np(y1), _np(y0), rtol=tol, atol=tol)
        (y0 * y0).sum().backward()
        (y1 * y1).sum().backward()
        for (name, p0), p1 in zip(ref.named_parameters(), m.parameters()):
            np.testing.assert_allclose(_np(p1.grad), _np(p0.grad), rtol=tol, atol=tol, err_msg=name)
    return cm


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Linear(8, 16, bias=False), nn.GELU()), (2, 3, 8)),
    (lambda: nn.Sequential(nn.Linear(8, 16, bias=False), nn.GELU(approximate="tanh"), nn.Linear(16, 4, bias=False)),
     (2, 5, 8)),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU()), (2, 3, 6, 6)),
])
def test_bias_free_layer_feeding_a_fused_op_trains(make, shape):
    # the matmul result is saved for backward as a view: it must stay a real buffer, not the
    # private scratch of a fused epilogue (was: NameError: name 'bufN' is not defined)
    _train_step_matches(make, ember.randn(*shape))


class _RandomDepth(nn.Module):
    def __init__(self, draw):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.draw = draw

    def forward(self, x):
        for _ in range(self.draw()):
            x = self.lin(x).tanh()
        return x


@pytest.mark.parametrize("draw, seeded", [
    (lambda: random.randint(1, 4), True),
    (lambda: int(np.random.randint(1, 5)), True),
    (lambda: 1 + int(random.random() * 4), True),
    (lambda: 1 + int(time.perf_counter_ns()) % 4, False),
    (lambda: 1 + int(np.random.default_rng().integers(0, 4)), False),
], ids=["random.randint", "numpy.random.randint", "random.random", "time.perf_counter_ns", "numpy Generator"])
def test_python_randomness_breaks_the_graph(draw, seeded):
    m = _RandomDepth(draw)
    cm = ember.compile(m, backend="eager")
    x = ember.randn(2, 4)
    with records.collect() as recs:
        cm(x)
    (r,) = [r for r in recs if r.kind == "breaks"]
    assert r.code == "B010" and "test_real_scripts.py:" in r.source, str(r)
    # eager from now on: each call draws again, as the uncompiled module does
    depth_seen = set()
    for seed in range(12):
        random.seed(seed)
        np.random.seed(seed)
        y = cm(x)
        random.seed(seed)
        np.random.seed(seed)
        if seeded:
            np.testing.assert_allclose(_np(y), _np(m(x)), rtol=1e-6)
        depth_seen.add(round(float(_np(y).sum()), 5))
    assert len(depth_seen) > 1
    with pytest.raises(ember.compiler.GraphBreakError, match="B010"):
        ember.compile(m, backend="eager", fullgraph=True)(x)


class _CachesMask(nn.Module):
    def __init__(self, as_buffer=False):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        if as_buffer:
            self.register_buffer("mask", None, persistent=False)
        else:
            self.mask = None

    def forward(self, x):
        mask = (x > 0).float()
        self.mask = mask                     # the common "cache it on self" pattern
        self.scale = self.lin(x).sum()       # a differentiable value cached too
        return self.lin(x) * self.mask


@pytest.mark.parametrize("as_buffer", [False, True])
@pytest.mark.parametrize("backend", ["eager", "llvm"])
def test_tensor_stored_on_module_is_materialised(as_buffer, backend):
    ember.manual_seed(0)
    m = _CachesMask(as_buffer)
    cm = ember.compile(m, backend=backend)
    for i in range(3):
        x = ember.randn(3, 4)
        y = cm(x)
        assert isinstance(m.mask._data, np.ndarray)
        np.testing.assert_array_equal(_np(m.mask), _np((x > 0).float()))
        np.testing.assert_allclose(float(m.scale), float(m.lin(x).sum()), rtol=1e-5)
        assert ("mask" in m._buffers) == as_buffer
        y.sum().backward()
        g_compiled = _np(m.lin.weight.grad)
        m.lin.weight.grad = None
        y_eager = m(x)                       # plain eager calls keep working after compiled ones
        y_eager.sum().backward()
        np.testing.assert_allclose(_np(y), _np(y_eager), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g_compiled, _np(m.lin.weight.grad), rtol=1e-5, atol=1e-6)
        m.lin.weight.grad = None
    assert cm._compiled.stats["compiles"] == 1 and cm._compiled.stats["breaks"] == 0


def test_tensor_escaping_elsewhere_breaks_and_leaves_no_traced_state():
    cache = []
    m = _CachesMask()

    def f(x):
        t = m(x) * 2
        cache.append(t)
        return t + 1

    cf = ember.compile(f, backend="eager")
    x = ember.randn(3, 4)
    with records.collect() as recs:
        y = cf(x)
    assert [r.code for r in recs if r.kind == "breaks"] == ["B011"]
    np.testing.assert_allclose(_np(y), _np(f(x)), rtol=1e-6)
    assert isinstance(m.mask._data, np.ndarray)          # the trace's store on m was undone
    assert isinstance(cache[-1]._data, np.ndarray)


def test_graph_break_undoes_stores_made_while_tracing():
    class Lazy(nn.Module):
        def __init__(self):
            super().__init__()
            self.pe = None
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.pe is None:
                self.pe = ember.arange(x.shape[-1]).float()
            if x.sum() > 0:                  # a graph break after the stores
                return x + self.pe
            return x - self.pe

    m = Lazy()
    cm = ember.compile(m, backend="eager")
    x = ember.ones(2, 3)
    np.testing.assert_allclose(_np(cm(x)), _np(x) + np.arange(3))
    assert m.calls == 1 and isinstance(m.pe._data, np.ndarray)
