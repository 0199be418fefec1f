"""cse: common-subexpression elimination.

In: a Graph.  Out: the same Graph (in place) where two nodes with the same op, the same inputs (in
order), the same attributes, type and device are one node.  Random nodes are never merged (two
draws with the same key expression are still meant to be the values the user asked for twice;
keeping them apart is what eager mode does).
"""
from __future__ import annotations

from ember.ir.graph import Graph
from ember.ir.text import format_attr

from .dce import dce
from .registry import register_pass
from .rewrite import replace_node


def node_key(n):
    """Hashable identity of a node's computation (None: never merge)."""
    if n.is_placeholder or n.op == "random":
        return None
    attrs = tuple(sorted((k, format_attr(v)) for k, v in n.attrs.items()))
    return (n.op, tuple(i.id for i in n.inputs), attrs, n.type, n.device)


@register_pass("cse")
def cse(g: Graph) -> bool:
    """Merge nodes computing the same op on the same inputs with the same attributes."""
    seen: dict = {}
    changed = False
    for n in g.nodes():
        key = node_key(n)
        if key is None:
            continue
        first = seen.get(key)
        if first is None:
            seen[key] = n
        elif replace_node(g, n, first):
            changed = True
    if changed:
        dce(g)
    return changed
