"""Hypothesis: random pointwise expression DAGs with random index maps; LLVM == kernel_eval."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from ember.ir import dtypes as dt
from ember.ir.kernel import Binary, Buf, Const, Kernel, Load, Store, Unary, Where, o

from codegen_helpers import check_kernel

F64 = dt.float64
UNARY = ["neg", "abs", "tanh", "sigmoid", "sin", "floor", "sqrt", "exp", "log1p", "erf"]
BINARY = ["add", "sub", "mul", "maximum", "minimum", "div"]


@st.composite
def dags(draw):
    n0, n1 = draw(st.integers(1, 6)), draw(st.integers(1, 9))
    x, z = Buf("x", (n0, n1), F64), Buf("z", (n1, n0), F64)
    # leaves: x direct / flipped, z transposed, a row broadcast of x, a constant
    nodes = [Load(x, (o(0), o(1))), Load(x, (n0 - 1 - o(0), o(1))), Load(z, (o(1), o(0))),
             Load(x, (0, o(1))), Const(draw(st.floats(-2, 2)), F64)]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["u", "b", "b", "w"]))
        pick = st.integers(0, len(nodes) - 1)
        a = nodes[draw(pick)]
        if kind == "u":
            op = draw(st.sampled_from(UNARY))
            if op in ("sqrt", "log1p"):
                a = Unary("abs", a)
            if op == "exp":
                a = Unary("tanh", a)      # keep magnitudes tame
            nodes.append(Unary(op, a))
        elif kind == "b":
            nodes.append(Binary(draw(st.sampled_from(BINARY)), a, nodes[draw(pick)]))
        else:
            nodes.append(Where(Binary("gt", a, nodes[draw(pick)]), nodes[draw(pick)], nodes[draw(pick)]))
    y1, y2 = Buf("y1", (n0, n1), F64), Buf("y2", (n0, n1), F64)
    k = Kernel([x, z], [y1, y2], (n0, n1), stores=[Store(y1, (o(0), o(1)), nodes[-1]),
                                                  Store(y2, (o(0), o(1)), nodes[draw(st.integers(0, len(nodes) - 1))])])
    seed = draw(st.integers(0, 2 ** 16))
    return k, seed


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_pointwise_dag(case):
    k, seed = case
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(b.shape) * 2 for b in k.inputs]
    with np.errstate(all="ignore"):
        check_kernel(k, xs, rtol=1e-9, atol=1e-9)
