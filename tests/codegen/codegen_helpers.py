"""Helpers shared by the codegen tests (a module of its own: several conftest.py files exist).

Shared fixtures for codegen/runtime tests: a private cache dir and the three-way `check` helper
(compiled LLVM result == kernel_eval result == plain numpy expectation)."""
import os
import tempfile

import numpy as np

# A fresh, private cache for the whole session (set before ember.runtime reads it).
_CACHE = tempfile.mkdtemp(prefix="ember-test-cache-")
os.environ["EMBER_CACHE_DIR"] = _CACHE
os.environ.setdefault("EMBER_NUM_THREADS", "2")

from ember.ir.kernel_eval import run_kernel  # noqa: E402
from ember.runtime.cpu import compile_kernels  # noqa: E402


def run_llvm(kernel, inputs, threads=1):
    mod = compile_kernels([kernel])
    outs = [np.zeros(b.shape, dtype=b.dtype.np) for b in kernel.outputs]
    mod.run(kernel.name, list(inputs) + outs, threads=threads)
    return outs


def _close(actual, expected, rtol, atol, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    assert actual.dtype == expected.dtype, f"{what}: {actual.dtype} != {expected.dtype}"
    if actual.dtype.kind == "f":
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def check_kernel(kernel, inputs, expected=None, rtol=2e-6, atol=1e-6, threads=1):
    """LLVM == kernel_eval (== expected, a list of numpy results, when given)."""
    ev = run_kernel(kernel, inputs)
    ll = run_llvm(kernel, inputs, threads)
    for i, (a, b) in enumerate(zip(ll, ev)):
        _close(a, b, rtol, atol, f"{kernel.name} output {i}: llvm vs kernel_eval")
    if expected is not None:
        for i, (a, b) in enumerate(zip(ev, expected)):
            _close(a, np.asarray(b).astype(a.dtype), rtol, atol, f"{kernel.name} output {i}: kernel_eval vs numpy")
    return ll


