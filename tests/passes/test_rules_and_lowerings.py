"""Registries of the passes are complete and their drivers keep the documented semantics:
every op fusion may compute inside a kernel has a lowering, the rewrite driver lets the first
matching rule decide, the pass registry holds the built-in passes once ember.passes is imported."""
import pytest

from ember.ir import dtypes as dt
from ember.ir.graph import Graph
from ember.ir.kernel import BINARY_OPS, REDUCE_OPS, UNARY_OPS
from ember.ir.ops import OPS, TType
from ember.passes import PASSES, classify
from ember.passes.fusion import LOWERINGS, NodeClass
from ember.passes.fusion.classify import VIEW_OPS
from ember.passes.rewrite import Rules, replace_node, rewrite_to_fixpoint

F32 = dt.float32


def test_every_kernel_op_has_a_lowering():
    """A kernel-IR op without a lowering would only show up as a KeyError deep in fusion."""
    kernel_ops = {op for op, d in OPS.items() if d.kernel_op} | set(UNARY_OPS) | set(BINARY_OPS) | set(REDUCE_OPS)
    computed = kernel_ops | set(VIEW_OPS) | {"full", "arange", "stop_gradient", "take", "gather"}
    assert computed - set(LOWERINGS) == set()
    assert set(LOWERINGS) <= set(OPS), f"lowerings of unknown ops: {set(LOWERINGS) - set(OPS)}"


def _graph_with(op, ins, attrs=None):
    g = Graph("g")
    phs = [g.placeholder(f"x{i}", TType(s, d)) for i, (s, d) in enumerate(ins)]
    n = g.add(op, phs, attrs or {})
    g.set_outputs([n])
    return g, n


@pytest.mark.parametrize("op, ins, attrs, want", [
    ("exp", [((4,), F32)], {}, NodeClass.POINTWISE),
    ("neg", [((4,), dt.bool_)], {}, NodeClass.EAGER),
    ("sum", [((4, 3), F32)], {"dims": (1,), "keepdim": False}, NodeClass.REDUCE),
    ("sum", [((4, 3), dt.bool_)], {"dims": (1,), "keepdim": False}, NodeClass.EAGER),
    ("permute", [((4, 3), F32)], {"dims": (1, 0)}, NodeClass.MOVEMENT),
    ("matmul", [((4, 3), F32), ((3, 2), F32)], {}, NodeClass.EXTERN),
    ("cumsum", [((4, 3), F32)], {"dim": 0}, NodeClass.EAGER),
])
def test_classify(op, ins, attrs, want):
    g, n = _graph_with(op, ins, attrs)
    cls, reason = classify(n)
    assert cls is want
    assert (reason != "") == (want is NodeClass.EAGER)
    assert cls == want.value          # str-valued: older callers comparing strings keep working


def test_first_matching_rule_decides():
    """A rule returns None when its pattern does not match; the first match decides for the node
    in a sweep, even when it changes nothing (an if/elif ladder's semantics)."""
    calls = []
    rules = Rules()

    @rules("exp")
    def _no_match(g, n):
        calls.append("no_match")
        return None

    @rules("exp")
    def _matches_but_refuses(g, n):
        calls.append("refuses")
        return False

    @rules("exp")
    def _never_reached(g, n):
        calls.append("unreachable")
        return True

    g, n = _graph_with("exp", [((4,), F32)])
    assert rewrite_to_fixpoint(g, rules) is False
    assert calls == ["no_match", "refuses"]


def test_fixpoint_runs_until_nothing_changes_and_cleans_up():
    """neg(neg(neg(neg(x)))) needs two sweeps; the replaced nodes are gone afterwards (dce)."""
    rules = Rules()

    @rules("neg")
    def _double_neg(g, n):
        x = n.inputs[0]
        return replace_node(g, n, x.inputs[0]) if x.op == "neg" else None

    g = Graph("g")
    x = g.placeholder("x", TType((4,), F32))
    y = x
    for _ in range(4):
        y = g.add("neg", [y])
    z = g.add("exp", [y])
    g.set_outputs([z])
    assert rewrite_to_fixpoint(g, rules) is True
    assert [n.op for n in g.nodes() if not n.is_placeholder] == ["exp"]
    assert rewrite_to_fixpoint(g, rules) is False


def test_builtin_passes_are_registered():
    assert {"decompose", "canonicalize", "movement", "constant_fold", "cse", "dce"} <= set(PASSES)
