"""fold (the adjoint of windows) lowered to movement ops + a sum: equal to the eager kernel."""
import numpy as np
import pytest

from ember.frontend import dispatch
from ember.ir import dtypes as dt
from ember.ir.graph import Graph
from ember.ir.ops import TType, window_out
from ember.passes import compile_graph
from ember.runtime.executor import Executor

CASES = [(12, 12, (5, 5), (1, 1), (1, 1), (4, 3)), (9, 7, (3, 2), (2, 1), (1, 2), (2,)),
         (10, 10, (3, 3), (2, 2), (2, 1), (1, 2)), (8, 8, (2, 2), (2, 2), (1, 1), (3,)),
         (11, 11, (2, 2), (2, 2), (1, 1), (1,))]


@pytest.mark.parametrize("runner", ["numpy", "llvm"])
@pytest.mark.parametrize("H,W,k,s,d,B", CASES)
def test_fold_lowering_matches_eager(H, W, k, s, d, B, runner):
    import ember  # noqa: F401  (registers the eager kernels)
    rng = np.random.default_rng(0)
    oh, ow = window_out(H, k[0], s[0], d[0]), window_out(W, k[1], s[1], d[1])
    shape = tuple(B) + (oh, ow) + k
    g = Graph("t")
    x = g.placeholder("x", TType(shape, dt.float32))
    g.set_outputs([g.add("fold", [x], dict(size=(H, W), kernel=k, stride=s, dilation=d))])
    a = rng.standard_normal(shape).astype(np.float32)
    ref = dispatch.KERNELS["fold"](np, a, (H, W), k, s, d)
    prog = compile_graph(g)
    assert not any(type(st).__name__ == "EagerStep" for st in prog.steps)
    out = Executor(prog, runner=runner).run([a])[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
