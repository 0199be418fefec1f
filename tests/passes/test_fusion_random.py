"""Hypothesis: random DAGs of pointwise / reduce / movement ops with broadcasting compile to
Programs that compute what the reference interpreter computes (numpy runner), whatever the
fusion decisions were; the programs verify, the graph passes keep the graph valid."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from ember.frontend import dispatch
from ember.compiler.interpreter import Interpreter
from ember.ir import Graph, TType, dtypes as dt, verify
from ember.passes import compile_graph
from ember.runtime.executor import Executor

from helpers import assert_same

F = dt.float64
SHAPES = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
UNARY = ["exp", "tanh", "neg", "abs", "sin", "sigmoid"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


@st.composite
def graphs(draw):
    g = Graph("forward")
    for i in range(draw(st.integers(1, 3))):
        g.placeholder(f"x{i}", TType(draw(SHAPES), F))
    for _ in range(draw(st.integers(1, 16))):
        nodes = [n for n in g.nodes() if n.dtype is F]
        x = draw(st.sampled_from(nodes[-3:] if draw(st.integers(0, 3)) else nodes))   # mostly chains
        nd = len(x.shape)
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "reduce", "reshape", "permute",
                                     "expand", "slice", "flip", "pad", "cat", "where", "const", "matmul"]))
        try:
            if kind == "unary":
                inner = g.add("tanh", [x]) if draw(st.booleans()) else x
                g.add(draw(st.sampled_from(UNARY)), [inner])
            elif kind == "binary":
                y = draw(st.sampled_from(nodes))
                g.add(draw(st.sampled_from(BINARY)), [x, y])        # may fail to broadcast: skipped
            elif kind == "reduce" and nd:
                dims = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
                g.add(draw(st.sampled_from(["sum", "max", "min"])), [x],
                      {"dims": tuple(dims), "keepdim": draw(st.booleans())})
            elif kind == "reshape":
                n = int(np.prod(x.shape))
                g.add("reshape", [x], {"shape": draw(st.sampled_from([(n,), x.shape + (1,), (1,) + x.shape]))})
            elif kind == "permute" and nd:
                g.add("permute", [x], {"dims": tuple(draw(st.permutations(range(nd))))})
            elif kind == "expand":
                g.add("expand", [x], {"shape": (draw(st.integers(1, 3)),) + tuple(
                    n if n != 1 else draw(st.integers(1, 3)) for n in x.shape)})
            elif kind == "slice" and nd:
                starts = [draw(st.integers(0, n - 1)) for n in x.shape]
                stops = [draw(st.integers(s + 1, n)) for s, n in zip(starts, x.shape)]
                g.add("slice", [x], {"starts": tuple(starts), "stops": tuple(stops),
                                     "steps": tuple(draw(st.integers(1, 2)) for _ in x.shape)})
            elif kind == "flip" and nd:
                g.add("flip", [x], {"dims": tuple(draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd)))})
            elif kind == "pad" and nd:
                g.add("pad", [x], {"pads": tuple((draw(st.integers(0, 2)), draw(st.integers(-1, 2)) if n > 1 else 0)
                                                 for n in x.shape), "value": draw(st.sampled_from([0.0, -1.5]))})
            elif kind == "cat" and nd:
                same = [y for y in nodes if y.shape == x.shape]
                g.add("cat", [x] + draw(st.lists(st.sampled_from(same), min_size=1, max_size=2)),
                      {"dim": draw(st.integers(0, nd - 1))})
            elif kind == "where":
                y = draw(st.sampled_from(nodes))
                c = g.add("gt", [x, y])
                g.add("where", [c, x, y])
            elif kind == "const":
                c = g.add("full", [], {"shape": (), "value": draw(st.sampled_from([0.0, 1.0, 2.5])), "dtype": F})
                g.add(draw(st.sampled_from(BINARY)), [x, c])
            elif kind == "matmul" and nd == 2:
                y = draw(st.sampled_from([n for n in nodes if len(n.shape) == 2 and n.shape[0] == x.shape[1]] or [x]))
                g.add("matmul", [x, g.add("permute", [y], {"dims": (1, 0)}) if y.shape[1] == x.shape[1] else y])
        except Exception:
            continue
    ops = [n for n in g.nodes() if not n.is_placeholder]
    outs = [g.nodes()[-1]] + draw(st.lists(st.sampled_from(ops or g.nodes()), max_size=3))
    g.set_outputs(outs)
    return g, draw(st.integers(0, 2 ** 16))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(graphs())
def test_random_graph_program_matches_interpreter(case):
    g, seed = case
    verify(g)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(p.shape) for p in g.inputs]
    prog = compile_graph(g, verify=True)
    ex = Executor(prog, eager_kernels=dispatch.KERNELS)
    with np.errstate(all="ignore"):
        got = ex.run([a.copy() for a in arrays])
        again = ex.run([a.copy() for a in arrays])
        want = Interpreter(g, np).run([a.copy() for a in arrays])
    assert_same(got, want, rtol=1e-9, atol=1e-9)
    assert_same(again, want, rtol=1e-9, atol=1e-9)
    # outputs are fresh arrays: never an input, never each other unless the same node
    for i, a in enumerate(got):
        for b in arrays:
            assert not np.shares_memory(a, b)
