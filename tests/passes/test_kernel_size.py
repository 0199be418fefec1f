"""Fusion caps a kernel's code size: a long pointwise chain becomes several kernels of bounded size
(LLVM's optimiser is superlinear in one loop body's length), and the split chain computes the same
values. Compile time itself is measured by benchmarks/compile_chain.py, not here."""
import numpy as np
import pytest

import ember
from ember.passes import compile_graph
from ember.passes.fusion.classify import classify, code_size
from ember.passes.fusion.decide import MAX_KERNEL_SIZE
from ember.runtime.executor import Executor


def _chain(n_steps, math):
    def f(x):
        for i in range(n_steps):
            x = ((x * 0.01).exp() if math else x * 1.0001 + 0.001) if i % 2 else x - 0.5
        return x
    return f


@pytest.mark.parametrize("math", [False, True], ids=["arith", "exp"])
def test_long_chain_is_split_into_bounded_kernels(math):
    f = _chain(1400 if not math else 300, math)
    cf = ember.compile(f, backend="eager")
    x = ember.randn(64)
    want = cf(x).numpy()
    prog = compile_graph(cf.variants[0].graph)
    sizes = [sum(code_size(n, classify(n)[0]) for n in s.nodes) for s in prog.kernels]
    total = sum(sizes)
    assert max(sizes) <= MAX_KERNEL_SIZE and len(prog.kernels) >= -(-total // MAX_KERNEL_SIZE), sizes
    assert any("size limit" in r.message for r in prog.records)
    got = Executor(prog, runner="numpy").run([x.numpy()])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_small_kernels_are_not_split():
    cf = ember.compile(_chain(40, True), backend="eager")
    cf(ember.randn(8))
    assert len(compile_graph(cf.variants[0].graph).kernels) == 1
