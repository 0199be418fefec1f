"""Verifier: each broken invariant is reported, naming the node by its printed line."""
import pytest

from ember.ir import Graph, TType, VerifyError, dtypes as dt, verify

f32, f64, i64 = dt.float32, dt.float64, dt.int64


def base():
    g = Graph()
    x = g.placeholder("x", TType((2, 3), f32))
    a = g.add("exp", [x], meta={"source": "m.py:4"})
    g.set_outputs([a])
    return g, x, a


def fails(g, *fragments):
    """verify(g) raises; every fragment appears in the message. Returns the error."""
    with pytest.raises(VerifyError) as info:
        verify(g)
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return info.value


def test_valid_graph_passes():
    g, x, a = base()
    verify(g)


def test_unknown_op_names_the_line():
    g, x, a = base()
    bad = g.add("frobnicate", [a], type=a.type)
    g.set_outputs([bad])
    e = fails(g, "%1 = frobnicate(%0) : f32[2,3]", "unknown op 'frobnicate'")
    assert e.node is bad


def test_wrong_arity():
    g, x, a = base()
    g.add("add", [a], type=a.type)
    fails(g, "%1 = add(%0) : f32[2,3]", "add takes 2 argument(s), got 1")


def test_missing_and_unexpected_attrs():
    g, x, a = base()
    g.add("sum", [a], {"dims": None}, type=TType((), f32))
    g.add("neg", [a], {"alpha": 2}, type=a.type)
    fails(g, "sum is missing attribute(s) keepdim", "neg has no attribute(s) alpha", "2 problem(s)")


def test_unprintable_attribute_value():
    g, x, a = base()
    g.add("sum", [a], {"dims": {0: 1}, "keepdim": False}, type=TType((3,), f32))
    fails(g, "attribute dims", "has no text form")


def test_type_mismatch_vs_infer():
    g, x, a = base()
    g.add("mul", [a, a], type=TType((2, 3), f64), meta={"source": "m.py:9"})
    fails(g, "%1 = mul(%0, %0) : f64[2,3]   # m.py:9", "node says f64[2,3] but mul infers f32[2,3]")


def test_shape_rule_rejects_arguments():
    g, x, a = base()
    y = g.placeholder("y", TType((4,), f32))
    g.add("add", [a, y], type=a.type)
    fails(g, "shape rule rejects the arguments", "must match the size")


def test_bad_type_objects():
    g, x, a = base()
    n = g.add("neg", [a])
    n.type = TType((2, -3), f32)
    fails(g, "must hold non-negative ints")
    n.type = ("f32", (2, 3))
    fails(g, "is not a TType")


def test_cycle():
    g, x, a = base()
    b = g.add("neg", [a])
    c = g.add("neg", [b])
    g.set_input(b, 0, c)
    fails(g, "is on a cycle:", "%1 -> %2 -> %1")


def test_dangling_input_after_erase_behind_the_graphs_back():
    g, x, a = base()
    b = g.add("neg", [a])
    g.nx.remove_node(a)  # bypasses Graph.erase on purpose
    g._changed()
    fails(g, f"argument 0 (%?{a.id}) is not in the graph", "output 0")


def test_edges_out_of_step_with_arguments():
    g, x, a = base()
    b = g.add("mul", [a, a])
    g.nx.remove_edge(a, b, key=1)
    fails(g, "graph edges do not match the argument list")


def test_outputs_and_mutations_must_be_in_graph():
    g, x, a = base()
    other, ox, oa = base()
    g._outputs.append(oa)
    g._mutations.append((ox, oa))
    fails(g, "output 1 (%0) is not in the graph", "mutate %x <- %0: not in the graph")


def test_mutation_target_and_type():
    g, x, a = base()
    g._mutations.append((a, a))  # add_mutation refuses this; build it behind its back
    fails(g, "the target is not a graph input")
    g, x, a = base()
    s = g.add("sum", [a], {"dims": [0], "keepdim": False})
    g.add_mutation(x, s)
    fails(g, "mutate %x <- %1: value type f32[3] does not match the input's f32[2,3]")
    g, x, a = base()
    g.add_mutation(x, g.add("neg", [x], device="cuda"))
    fails(g, "value type f32[2,3] @cuda does not match")


def test_input_written_twice():
    g, x, a = base()
    g.add_mutation(x, a)
    g.add_mutation(x, a)
    fails(g, "written more than once")


def test_placeholder_not_listed_as_input():
    g, x, a = base()
    g._inputs.remove(x)
    fails(g, "is a placeholder but not among the graph inputs")


def test_error_lists_all_problems():
    g, x, a = base()
    g.add("frob", [a], type=a.type)
    g.add("add", [a], type=a.type)
    e = fails(g, "graph forward: 2 problem(s)")
    assert [n.op for n, _ in e.problems] == ["frob", "add"]


def test_package_exports_the_function():
    import ember.ir
    from ember.ir.verify import VerifyError as E  # importing the submodule must not shadow the function
    assert callable(ember.ir.verify) and E is VerifyError
