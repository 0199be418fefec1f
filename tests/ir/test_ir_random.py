"""Property tests: random valid graphs (DAGs of unary/binary/reduce/movement/const ops) verify,
round-trip through the text form, copy, and split into subgraphs that verify too."""
import math

from hypothesis import HealthCheck, given, settings, strategies as st

from ember.ir import Graph, ShapeError, TType, dtypes as dt, ops, parse, print_graph, verify

DTYPES = [dt.float32, dt.float64, dt.float16, dt.int64, dt.int32, dt.bool_]
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.1, -0.0, 5e-324, 1e16, math.nan])
NAMES = st.sampled_from(["x", "w", "fc1.weight", "bias", "0in", "a b", "x"]) | st.text(max_size=6)
SHAPES = st.lists(st.integers(1, 4), max_size=3).map(tuple)
PERMS = st.permutations


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


@st.composite
def random_graphs(draw):
    """A Graph built through the public API, every node checked by ops.infer as it is added."""
    g = Graph(draw(st.sampled_from(["forward", "backward", "step"])))
    for _ in range(draw(st.integers(1, 3))):
        g.placeholder(draw(NAMES), TType(draw(SHAPES), draw(st.sampled_from(DTYPES))),
                      device=draw(st.sampled_from(["cpu", "cpu", "cuda"])))

    for step in range(draw(st.integers(0, 14))):
        nodes = g.nodes()
        x = draw(st.sampled_from(nodes))
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "reshape", "permute", "cast",
                                     "cat", "expand", "slice", "pad", "full", "where"]))
        nd = len(x.shape)
        attrs: dict = {}
        inputs = [x]
        if kind == "unary":
            op = draw(st.sampled_from(ops.FLOAT_UNARY if x.dtype.is_floating_point else ("neg", "abs", "isnan")))
        elif kind == "binary":
            # A partner with the same dtype and device; x itself is always one (x*x: two edges).
            partners = [y for y in nodes if y.dtype is x.dtype and y.device == x.device]
            inputs = [x, draw(st.sampled_from(partners))]
            op = draw(st.sampled_from(ops.ARITH_BINARY + ops.CMP_BINARY))
        elif kind == "reduce":
            op = draw(st.sampled_from(["sum", "max", "argmax", "prod"]))
            dims = draw(st.none() | st.lists(st.integers(-nd, nd - 1), unique_by=lambda d: d % nd, max_size=nd)
                        if nd else st.none())
            attrs = {"dims": dims, "keepdim": draw(st.booleans())}
        elif kind == "reshape":
            op = "reshape"
            choices = [(_numel(x.shape),), x.shape + (1,), (1,) + x.shape]
            if _numel(x.shape) == 1:
                choices.append(())
            attrs = {"shape": draw(st.sampled_from(choices))}
        elif kind == "permute":
            op = "permute"
            attrs = {"dims": draw(PERMS(list(range(nd))))}
        elif kind == "cast":
            op = "cast"
            attrs = {"dtype": draw(st.sampled_from(DTYPES))}
        elif kind == "cat":
            op = "cat"
            same = [y for y in nodes if y.type == x.type and y.device == x.device]
            inputs = [x] + draw(st.lists(st.sampled_from(same), max_size=3))
            attrs = {"dim": draw(st.integers(-nd, nd - 1)) if nd else 0}
        elif kind == "expand":
            op = "expand"
            attrs = {"shape": [draw(st.integers(1, 3))] + [n if n != 1 else draw(st.integers(1, 3)) for n in x.shape]}
        elif kind == "slice":
            op = "slice"
            starts = [draw(st.integers(0, n)) for n in x.shape]
            stops = [draw(st.integers(s, n)) for s, n in zip(starts, x.shape)]
            attrs = {"starts": starts, "stops": stops, "steps": [draw(st.integers(1, 3)) for _ in x.shape]}
        elif kind == "pad":
            op = "pad"
            attrs = {"pads": [(draw(st.integers(0, 2)), draw(st.integers(-1, 2))) for _ in x.shape],
                     "value": draw(FLOATS)}
        elif kind == "full":
            op = "full"
            inputs = []
            attrs = {"shape": draw(SHAPES), "value": draw(FLOATS | st.integers(-5, 5) | st.booleans()),
                     "dtype": draw(st.sampled_from(DTYPES))}
        else:  # where(cond, x, x): cond from a comparison
            op = "where"
            cond = g.add("gt", [x, x]) if x.dtype is not dt.bool_ else x
            inputs = [cond, x, x]
        meta = {"source": f"model.py:{step + 1}"} if draw(st.booleans()) else None
        try:
            g.add(op, inputs, attrs, meta=meta)
        except (ShapeError, IndexError, RuntimeError):
            pass  # a combination the op rejects (dtype rules, negative pads ...): just skip it

    nodes = g.nodes()
    g.set_outputs(draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=4)))
    for ph in g.inputs:  # write some inputs back from a value of the same type
        same = [n for n in nodes if n.type == ph.type and n.device == ph.device and not n.is_placeholder]
        if same and draw(st.booleans()):
            g.add_mutation(ph, draw(st.sampled_from(same)))
    return g


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(random_graphs())
def test_random_graphs_verify_and_roundtrip(g):
    verify(g)
    text = print_graph(g)
    g2 = parse(text)
    assert print_graph(g2) == text
    assert g2 == g
    verify(g2)
    # The parsed graph has the same structure, edge for edge.
    assert g2.nx.number_of_edges() == g.nx.number_of_edges()
    assert [n.op for n in g2.nodes()] == [n.op for n in g.nodes()]


@SETTINGS
@given(random_graphs())
def test_random_graphs_copy(g):
    h, mapping = g.copy()
    assert h == g
    assert set(mapping) == set(g.nodes())
    verify(h)


@SETTINGS
@given(random_graphs(), st.data())
def test_random_subgraphs_verify_and_roundtrip(g, data):
    chosen = data.draw(st.lists(st.sampled_from(g.nodes()), unique=True))
    sub, ins, outs = g.subgraph(chosen, with_io=True)
    verify(sub)
    assert [p.type for p in sub.inputs] == [x.type for x in ins]
    assert [o.type for o in sub.outputs] == [x.type for x in outs]
    assert parse(print_graph(sub)) == sub
