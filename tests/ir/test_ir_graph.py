"""Graph/Node API: building, order, users, rewriting (replace_all_uses, erase, set_input), copy,
subgraph and DOT export."""
import networkx as nx
import pytest

from ember.ir import Graph, ShapeError, TType, dtypes as dt, parse, print_graph, to_dot, verify

f32, i64 = dt.float32, dt.int64


def small():
    """x, y -> a = add(x, y); b = mul(a, a); c = exp(b); out (c, a)."""
    g = Graph()
    x = g.placeholder("x", TType((2, 3), f32))
    y = g.placeholder("y", TType((3,), f32))
    a = g.add("add", [x, y], meta={"source": "m.py:1"})
    b = g.add("mul", [a, a])
    c = g.add("exp", [b])
    g.set_outputs([c, a])
    return g, (x, y, a, b, c)


def test_add_infers_type_device_and_records_edges():
    g, (x, y, a, b, c) = small()
    assert a.type == TType((2, 3), f32) and a.shape == (2, 3) and a.dtype is f32
    assert a.device == "cpu" and a.inputs == [x, y]
    assert [d["arg"] for _, _, d in g.nx.in_edges(b, data=True)] == [0, 1]
    assert g.nx.number_of_edges(a, b) == 2
    z = g.placeholder("z", TType((2,), f32), device="cuda")
    assert g.add("neg", [z]).device == "cuda"
    assert g.add("full", [], {"shape": [1], "value": 0.0, "dtype": f32}).device == "cpu"
    with pytest.raises(ShapeError):
        g.add("add", [x, z])
    with pytest.raises(ValueError, match="placeholder"):
        g.add("placeholder", [])
    other, _ = small()
    with pytest.raises(ValueError, match="not in graph"):
        g.add("neg", [other.inputs[0]])


def test_given_type_is_kept_and_shape_normalised():
    g = Graph()
    x = g.placeholder("x", TType([2, 3], f32))
    assert x.shape == (2, 3)
    n = g.add("neg", [x], type=TType([2, 3], f32))
    assert n.type.shape == (2, 3) and isinstance(n.type.shape, tuple)


def test_order_names_users_are_deterministic():
    g, (x, y, a, b, c) = small()
    # d is created last but feeds nothing earlier: it prints last; e is spliced before c.
    e = g.insert("neg", [b])
    g.set_input(c, 0, e)
    assert g.nodes() == [x, y, a, b, e, c]
    assert [n.name for n in g.nodes()] == ["%x", "%y", "%0", "%1", "%2", "%3"]
    assert g.users(a) == [b] and g.users(b) == [e] and a.users == [b]
    assert g.users(c) == []
    assert x < a and sorted([c, a, x]) == [x, a, c]
    assert print_graph(g) == print_graph(g.copy()[0])
    assert g.find("%2") is e and g.find("x") is x
    verify(g)


def test_replace_all_uses_covers_outputs_and_mutations():
    g, (x, y, a, b, c) = small()
    g.add_mutation(x, a)
    r = g.add("sigmoid", [a])
    g.replace_all_uses(a, r)  # r itself keeps using a: the splice pattern
    assert r.inputs == [a]
    assert b.inputs == [r, r]
    assert g.outputs == [c, r]
    assert g.mutations == [(x, r)]
    assert g.users(a) == [r]
    verify(g)
    g.replace_all_uses(x, g.placeholder("x2", TType((2, 3), f32)))
    assert g.mutations[0][0] is x  # mutation targets are storage, not uses
    assert g.users(x) == []


def test_erase():
    g, (x, y, a, b, c) = small()
    with pytest.raises(ValueError, match="still used by %1"):
        g.erase(a)
    with pytest.raises(ValueError, match="graph output"):
        g.erase(c)
    dead = g.add("neg", [b])
    g.erase(dead)
    assert dead not in g and len(g) == 5
    unused = g.placeholder("unused", TType((1,), f32))
    g.erase(unused)
    assert g.inputs == [x, y]
    g.placeholder("unused", TType((1,), f32))  # the name is free again
    assert g.inputs[-1].name == "%unused"
    w = g.placeholder("w", TType((2, 3), f32))
    g.add_mutation(w, c)  # w has no users, but its storage is written
    with pytest.raises(ValueError, match="part of a mutation"):
        g.erase(w)
    verify(g)


def test_copy_is_independent_and_equal():
    g, (x, y, a, b, c) = small()
    g.add_mutation(x, g.add("neg", [x]))
    h, m = g.copy()
    assert h == g and print_graph(h) == print_graph(g)
    assert all(m[n].id == n.id and m[n] is not n and m[n].graph is h for n in g.nodes())
    assert m[a].meta == a.meta and m[a].meta is not a.meta
    h.set_outputs([m[c]])
    assert g.outputs == [c, a]
    n = h.add("neg", [m[c]])
    assert n.id == g._next_id and n not in g
    verify(h)


def test_subgraph_extracts_with_inputs_and_outputs():
    g, (x, y, a, b, c) = small()
    d = g.add("neg", [b])
    g.set_outputs([c, d])
    sub, ins, outs = g.subgraph([b, c], name="k0", with_io=True)
    assert ins == [a] and outs == [b, c]  # b is used by d outside; c is a graph output
    assert print_graph(sub) == (
        "graph k0(%t0: f32[2,3]) {\n"
        "  %0 = mul(%t0, %t0) : f32[2,3]\n"
        "  %1 = exp(%0) : f32[2,3]\n"
        "  return (%0, %1)\n"
        "}\n")
    verify(sub)
    assert parse(print_graph(sub)) == sub
    # Placeholders in the selection stay inputs; outside inputs keep their names.
    sub2 = g.subgraph([x, a])
    assert [p.name for p in sub2.inputs] == ["%x", "%y"]
    assert [o.op for o in sub2.outputs] == ["add"]
    verify(sub2)


def test_equality_is_by_text():
    g1, _ = small()
    g2, _ = small()
    assert g1 == g2
    g2.set_outputs(g2.outputs[:1])
    assert g1 != g2
    with pytest.raises(TypeError):
        hash(g1)


def test_deep_chain_has_no_recursion_limit():
    g = Graph()
    v = g.placeholder("x", TType((4,), f32))
    for _ in range(5000):
        v = g.add("neg", [v])
    g.set_outputs([v])
    text = print_graph(g)
    assert parse(text) == g
    verify(g)
    assert len(g.subgraph(g.nodes()[1:]).nodes()) == 5001


def test_cycle_is_reported_not_hung():
    g, (x, y, a, b, c) = small()
    g.set_input(a, 0, c)  # a -> b -> c -> a
    with pytest.raises(nx.NetworkXUnfeasible):
        g.nodes()
    assert a.name.startswith("%")  # names still work (by id) for error messages


def test_to_dot():
    g, (x, y, a, b, c) = small()
    g.add_mutation(x, g.add("neg", [x]))
    dot = to_dot(g, groups={b: "k0", c: "k0", a: 7})
    assert dot.startswith('digraph "forward" {')
    assert 'label="%0 = add\\nf32[2,3]\\nm.py:1"' in dot
    assert 'shape=ellipse' in dot
    assert "subgraph cluster_0" in dot and 'label="group 7"' in dot and 'label="group k0"' in dot
    assert dot.count('fillcolor="#a6cee3"') == 1 and dot.count('fillcolor="#b2df8a"') == 2
    assert f"n{a.id} -> n{b.id} [label=\"0\"];" in dot and f"n{a.id} -> n{b.id} [label=\"1\"];" in dot
    assert "-> out [label=\"1\"]" in dot and "mutate" in dot
    assert to_dot(g) == to_dot(g.copy()[0])
    as_list = to_dot(g, groups=[[b, c], [a]])
    assert 'label="group 0"' in as_list and as_list.count('fillcolor="#a6cee3"') == 1  # a comes first
