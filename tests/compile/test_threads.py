"""One compiled function called from several Python threads at once gives every caller its own right
answer (scratch buffers, output pools and extern scratch are per thread), and one thread's trace
never captures another thread's eager ops."""
import threading

import numpy as np

import ember
from ember import nn

N_THREADS = 4
ROUNDS = 12


def _hammer(work, n_threads=N_THREADS):
    """Run work(thread index) on n threads started together; re-raise the first failure."""
    errors = []
    start = threading.Barrier(n_threads)

    def body(i):
        try:
            start.wait()
            work(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_compiled_module_forward_backward_from_four_threads():
    ember.manual_seed(0)
    # a matmul with a fused epilogue (Linear+GELU), internal buffers between kernels, a reduction
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 64), nn.LayerNorm(64), nn.Linear(64, 8))
    params = list(model.parameters())
    cm = ember.compile(model)
    inputs = [ember.randn(16, 32) for _ in range(N_THREADS * 2)]
    expect = []
    for x in inputs:                        # eager results, computed up front
        y = model(x)
        grads = ember.autograd.grad((y * y).sum(), params)
        expect.append((y.detach().numpy(), [g.numpy() for g in grads]))
    y = cm(inputs[0])                       # compile once before the threads start
    ember.autograd.grad((y * y).sum(), params)

    def work(i):
        for r in range(ROUNDS):
            k = (i + r) % len(inputs)       # threads run different inputs at the same time
            y = cm(inputs[k])
            grads = ember.autograd.grad((y * y).sum(), params)
            y_ref, g_ref = expect[k]
            np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=1e-4, atol=1e-5)
            for g, gr in zip(grads, g_ref):
                np.testing.assert_allclose(g.numpy(), gr, rtol=1e-4, atol=1e-4)

    _hammer(work)
    assert cm._compiled.stats["compiles"] == 1


def test_first_calls_from_several_threads_compile_once_and_agree():
    w = ember.randn(8, 8)

    @ember.compile
    def f(x):
        return (x @ w).relu() * 2 + x

    inputs = [ember.randn(4, 8) for _ in range(N_THREADS)]

    def work(i):
        x = inputs[i]
        for _ in range(4):
            np.testing.assert_allclose(f(x).numpy(), (((x @ w).relu() * 2) + x).numpy(), rtol=1e-5, atol=1e-6)

    _hammer(work)
    assert f.stats["compiles"] == 1


def test_a_trace_does_not_capture_eager_ops_of_other_threads():
    traced = threading.Event()
    release = threading.Event()

    def slow(x):
        traced.set()
        release.wait(5)          # hold the trace open while the other thread computes eagerly
        return x * 2

    cf = ember.compile(slow, backend="eager")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("y", cf(ember.ones(3))))
    t.start()
    traced.wait(5)
    try:
        z = ember.ones(2) + 1            # eager, on this thread, while the other one traces
        assert isinstance(z._data, np.ndarray) and z.tolist() == [2.0, 2.0]
        assert not ember.compiler.is_compiling()
    finally:
        release.set()
        t.join()
    assert out["y"].tolist() == [2.0, 2.0, 2.0]
    assert [n.op for n in cf.variants[0].graph.nodes() if not n.is_placeholder] == ["full", "mul"]
