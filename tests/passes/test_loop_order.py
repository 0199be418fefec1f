"""loop_order: a pointwise kernel's outer axes are reordered so that the axis most accesses walk
contiguously is innermost; the values do not change (numpy evaluator and LLVM)."""
import numpy as np
import pytest

from ember.ir import dtypes as dt
from ember.ir.graph import Graph
from ember.ir.ops import TType
from ember.passes import compile_graph
from ember.passes.loop_order import axis_scores, reorder_kernel
from ember.runtime.executor import Executor


def _transposing_graph():
    """x laid out batch-last ([C, H, W, N], viewed as NCHW), y = relu(x) stored batch-last too, and
    the NCHW bool mask relu's backward keeps: fusion gives the kernel the mask's NCHW domain, whose
    innermost loop would walk x and y with a stride of N."""
    g = Graph("t")
    xt = g.placeholder("xt", TType((3, 5, 7, 16), dt.float32))
    x = g.add("permute", [xt], dict(dims=(3, 0, 1, 2)))
    pos = g.add("gt", [x, g.add("full", [], dict(shape=(), value=0.0, dtype=dt.float32))])
    y = g.add("where", [pos, x, g.add("full", [], dict(shape=(), value=0.0, dtype=dt.float32))])
    g.set_outputs([pos, g.add("permute", [y], dict(dims=(1, 2, 3, 0)))])
    return g


@pytest.mark.parametrize("runner", ["numpy", "llvm"])
def test_reordered_kernel_computes_the_same(runner):
    prog = compile_graph(_transposing_graph())
    ks = [s.kernel for s in prog.steps if type(s).__name__ == "KernelStep"]
    assert len(ks) == 1
    k = ks[0]
    # the batch axis (unit stride for the load of x and the store of y) beats the mask's last axis
    assert k.outer[-1] == 16, k
    assert axis_scores(k)[-1] == max(axis_scores(k))
    xt = np.random.default_rng(0).standard_normal((3, 5, 7, 16)).astype(np.float32)
    pos, y = Executor(prog, runner=runner).run([xt])
    np.testing.assert_array_equal(pos, xt.transpose(3, 0, 1, 2) > 0)
    np.testing.assert_array_equal(y, np.maximum(xt, 0))


def test_kernels_with_reductions_or_already_contiguous_are_kept():
    prog = compile_graph(_transposing_graph())
    k = next(s.kernel for s in prog.steps if type(s).__name__ == "KernelStep")
    assert reorder_kernel(k) is k          # already best: the same object back
