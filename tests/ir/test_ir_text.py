"""Text form: hand-written round trips, every attribute kind, example .ir files, parse errors."""
import math
import pathlib
import textwrap

import pytest

from ember.ir import (Graph, ParseError, TType, dtypes as dt, format_attr, parse, parse_module, print_graph,
                      print_module, verify)

EXAMPLES = pathlib.Path(__file__).parent / "examples"
f32, f16, i64 = dt.float32, dt.float16, dt.int64


def roundtrip(g: Graph) -> str:
    """Print, parse, print again: both texts equal, both graphs equal and valid. Returns the text."""
    text = print_graph(g)
    g2 = parse(text)
    assert print_graph(g2) == text
    assert g2 == g
    verify(g)
    verify(g2)
    return text


def canonical(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def test_contract_example():
    g = Graph()
    x = g.placeholder("x", TType((64, 1, 28, 28), f32))
    w = g.placeholder("w", TType((10, 1, 5, 5), f32))
    g.placeholder("b", TType((10,), f32))
    win = g.add("windows", [x], {"kernel": (5, 5), "stride": [1, 1], "dilation": (1, 1)},
                meta={"source": "mnist.py:21"})
    sq = g.add("mul", [win, win])
    half = g.add("cast", [sq], {"dtype": f16})
    g.set_outputs([sq, half])
    g.add_mutation(w, g.add("neg", [w]))
    assert roundtrip(g) == canonical("""
        graph forward(%x: f32[64,1,28,28], %w: f32[10,1,5,5], %b: f32[10]) {
          %0 = windows(%x, kernel=[5,5], stride=[1,1], dilation=[1,1]) : f32[64,1,24,24,5,5]   # mnist.py:21
          %1 = mul(%0, %0) : f32[64,1,24,24,5,5]
          %2 = cast(%1, dtype=f16) : f16[64,1,24,24,5,5]
          %3 = neg(%w) : f32[10,1,5,5]
          return (%1, %2)
          mutate %w <- %3
        }
        """)


def test_multi_edge_survives():
    g = Graph()
    x = g.placeholder("x", TType((3,), f32))
    y = g.add("mul", [x, x])
    g.set_outputs([y])
    g2 = parse(roundtrip(g))
    (y2,) = g2.outputs
    assert y2.inputs == [g2.inputs[0]] * 2
    assert g2.nx.number_of_edges(g2.inputs[0], y2) == 2
    assert sorted(d["arg"] for _, _, d in g2.nx.in_edges(y2, data=True)) == [0, 1]


def test_variadic_cat_and_devices():
    g = Graph("step")
    a = g.placeholder("a", TType((2, 3), f32), device="cuda")
    b = g.placeholder("b", TType((4, 3), f32), device="cuda")
    c = g.add("cat", [a, b, a], {"dim": 0})
    d = g.add("sum", [c], {"dims": [0, 1], "keepdim": False}, device="cuda:1")
    g.set_outputs([c, d, c])
    text = roundtrip(g)
    assert "%0 = cat(%a, %b, %a, dim=0) : f32[8,3] @cuda\n" in text
    assert "%a: f32[2,3] @cuda, %b: f32[4,3] @cuda" in text
    assert ": f32[] @cuda:1\n" in text
    assert "return (%0, %1, %0)" in text


@pytest.mark.parametrize("value, spelling", [
    (3, "3"), (-1, "-1"), (True, "true"), (False, "false"), (None, "none"),
    (1.0, "1.0"), (0.1, "0.1"), (-0.0, "-0.0"), (1e-300, "1e-300"), (5e-324, "5e-324"),
    (1e16, "1e+16"), (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"),
    ("normal", '"normal"'), ('a"b\\c\n', '"a\\"b\\\\c\\n"'), ("é", '"\\u00e9"'),
    (f16, "f16"), (dt.bool_, "b8"), ((1, 2), "[1,2]"), ([], "[]"), (((0, 1), [2, -3]), "[[0,1],[2,-3]]"),
    ([1.5, None, "s", dt.int8, [True]], '[1.5,none,"s",i8,[true]]'),
])
def test_attribute_spelling_roundtrips(value, spelling):
    assert format_attr(value) == spelling
    # An op outside the vocabulary (check=False) carries any attribute; read it back and compare.
    text = f"graph g(%x: f32[1]) {{\n  %0 = custom(%x, v={spelling}) : f32[1]\n  return (%0)\n}}\n"
    g = parse(text, check=False)
    assert print_graph(g) == text
    back = g.outputs[0].attrs["v"]
    assert _same(back, value)


def _same(a, b) -> bool:
    """Equality where lists read back as tuples, nan equals nan and 1 is not True or 1.0."""
    if isinstance(b, (list, tuple)):
        return isinstance(a, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(b, float):
        return isinstance(a, float) and (a == b or (math.isnan(a) and math.isnan(b))) and \
            math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b if not isinstance(b, dt.DType) else a is b


def test_numpy_scalars_print_as_python_values():
    np = pytest.importorskip("numpy")
    assert format_attr(np.float32(0.5)) == "0.5"
    assert format_attr(np.int64(-2)) == "-2"
    assert format_attr(np.bool_(True)) == "true"
    with pytest.raises(TypeError):
        format_attr({"a": 1})


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ir")), ids=lambda p: p.name)
def test_example_files_are_canonical(path):
    text = path.read_text()
    graphs = parse_module(text)
    assert print_module(graphs) == text
    for g in graphs:
        verify(g)


def test_module_with_forward_and_backward():
    graphs = parse_module((EXAMPLES / "mnist_train.ir").read_text())
    assert [g.name for g in graphs] == ["forward", "backward"]
    fwd, bwd = graphs
    assert fwd.outputs[0].shape == () and fwd.nodes()[3].meta["source"] == "mnist.py:21"
    assert [(p.name, v.name) for p, v in bwd.mutations] == [("%conv.weight", "%6"), ("%conv.bias", "%8")]
    with pytest.raises(ParseError, match="exactly one graph"):
        parse((EXAMPLES / "mnist_train.ir").read_text())


def test_noncanonical_text_is_accepted_and_canonicalised():
    text = """
    # leading comment
    graph  f ( %a : f32[2] ,%b:f32[2] )
    {   %sum = add( %a,%b ) :f32[2]# model.py:3
        %t=  mul(%sum, %sum) : f32[2]
      # a comment line between nodes is not a source
        return(%t,%sum)  mutate %a <- %t
    }
    """
    g = parse(text)
    assert print_graph(g) == canonical("""
        graph f(%a: f32[2], %b: f32[2]) {
          %0 = add(%a, %b) : f32[2]   # model.py:3
          %1 = mul(%0, %0) : f32[2]
          return (%1, %0)
          mutate %a <- %1
        }
        """)


def test_long_lines_keep_comments_close_and_header_splits():
    g = Graph()
    xs = [g.placeholder(f"input_number_{i}", TType((2,), f32)) for i in range(6)]
    long = g.add("cat", xs * 3, {"dim": 0}, meta={"source": "long.py:1"})
    short = g.add("neg", [xs[0]], meta={"source": "short.py:2"})
    g.set_outputs([long, short])
    text = roundtrip(g)
    lines = text.splitlines()
    assert lines[0] == "graph forward("
    assert lines[1] == "    %input_number_0: f32[2],"
    assert [line for line in lines if "long.py" in line][0].endswith("f32[36]   # long.py:1")
    assert "  %1 = neg(%input_number_0) : f32[2]   # short.py:2" in lines


def test_source_with_newline_stays_on_one_line():
    g = Graph()
    x = g.placeholder("x", TType((1,), f32))
    g.set_outputs([g.add("neg", [x], meta={"source": "a.py:1\n  weird"})])
    text = print_graph(g)
    assert "# a.py:1 weird\n" in text
    assert print_graph(parse(text)) == text


def test_placeholder_names_are_sanitized_and_unique():
    g = Graph("my graph")
    names = [g.placeholder(n, TType((1,), f32)).name for n in ["x", "x", "fc1.weight", "0", "a b", "", "x_1"]]
    assert names == ["%x", "%x_1", "%fc1.weight", "%_0", "%a_b", "%_", "%x_1_1"]
    assert g.name == "my_graph"
    g.set_outputs(g.inputs)
    roundtrip(g)
    assert g.inputs[0].meta["name"] == "x"  # the hint as given is kept in meta


# ----------------------------------------------------------------------------- parse errors
BASE = "graph g(%x: f32[3], %y: f32[4]) {\n"


@pytest.mark.parametrize("body, line, col, message", [
    ("  %0 = foo(%x) : f32[3]\n  return (%0)\n}\n", 2, 8, "unknown op 'foo'"),
    ("  %0 = neg(%z) : f32[3]\n  return (%0)\n}\n", 2, 12, "%z is not defined"),
    ("  %0 = neg(%x) : f32[4]\n  return (%0)\n}\n", 2, 18, "text says f32[4] but neg infers f32[3]"),
    ("  %0 = add(%x, %y) : f32[3]\n  return (%0)\n}\n", 2, 8, "must match the size"),
    ("  %0 = add(%x) : f32[3]\n  return (%0)\n}\n", 2, 8, "add takes 2 value argument(s), got 1"),
    ("  %0 = sum(%x, dims=none) : f32[]\n  return (%0)\n}\n", 2, 8, "missing attribute(s) keepdim"),
    ("  %0 = neg(%x, alpha=1) : f32[3]\n  return (%0)\n}\n", 2, 16, "neg has no attribute 'alpha'"),
    ("  %0 = cast(%x, dtype=q8) : f32[3]\n  return (%0)\n}\n", 2, 23, "unknown name 'q8'"),
    ("  %0 = neg(%x) : q8[3]\n  return (%0)\n}\n", 2, 18, "unknown dtype 'q8'"),
    ("  %0 = permute(%x, dims=[0,]) : f32[3]\n  return (%0)\n}\n", 2, 28, "expected an attribute value, got ']'"),
    ("  %0 = neg(%x) : f32[3]\n  %0 = neg(%x) : f32[3]\n  return (%0)\n}\n", 3, 3, "%0 is defined twice"),
    ("  %0 = neg(%x) : f32[3]\n  return (%0)\n  mutate %0 <- %x\n}\n", 4, 10, "not a graph input"),
    ("  %0 = neg(%x) : f32[3] $\n  return (%0)\n}\n", 2, 25, "unexpected character '$'"),
    ("  %0 = neg(%x) : f32[3]\n}\n", 3, 1, "has no 'return'"),
    ("  %0 = neg(%x) : f32[3]\n  return (%0)\n  return (%0)\n}\n", 4, 3, "second 'return'"),
    ("  %0 = cat(dim=0, %x) : f32[3]\n  return (%0)\n}\n", 2, 19, "must come before attributes"),
    ("  %0 = neg(%x) : f32[3]\n  return (%0)\n", 4, 1, "expected a node, 'return', 'mutate' or '}', got end of input"),
    ('  %0 = neg(%x, s="abc) : f32[3]\n  return (%0)\n}\n', 2, 18, "unexpected character '\"'"),
])
def test_parse_errors_point_at_the_problem(body, line, col, message):
    with pytest.raises(ParseError) as info:
        parse(BASE + body)
    e = info.value
    assert message in e.msg
    assert (e.line, e.col) == (line, col), str(e)
    assert str(e).startswith(f"{line}:{col}: ")
    assert isinstance(e, ValueError)


def test_parse_error_in_header_and_caret():
    with pytest.raises(ParseError) as info:
        parse("graph g(%x: f32[3], %x: f32[3]) {\n  return ()\n}\n")
    assert (info.value.line, info.value.col) == (1, 21)
    assert str(info.value).endswith("  graph g(%x: f32[3], %x: f32[3]) {\n" + " " * 22 + "^")
    with pytest.raises(ParseError, match="1:7: expected a graph name"):
        parse("graph (")
    with pytest.raises(ParseError, match="negative dimension"):
        parse("graph g(%x: f32[-1]) {\n return ()\n}\n")


def test_check_false_trusts_types_and_admits_unknown_ops():
    text = "graph g(%x: f32[3]) {\n  %0 = fused_kernel(%x, %x, name=\"k0\") : f32[7]\n  return (%0)\n}\n"
    with pytest.raises(ParseError, match="unknown op"):
        parse(text)
    g = parse(text, check=False)
    assert print_graph(g) == text
    assert g.outputs[0].shape == (7,)
