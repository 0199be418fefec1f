"""dce: dead-code elimination.

In: a Graph.  Out: the same Graph (in place) keeping only nodes that a graph output or a mutation
(its target and its value) needs.  Graph inputs always stay (they are the call signature).  No
primitive has a side effect besides the mutations the graph lists, and `random` is a pure function
of its key input, so an unused random node goes like any other.
"""
from __future__ import annotations

from ember.ir.graph import Graph

from .registry import register_pass


@register_pass("dce")
def dce(g: Graph, drop_input=None) -> bool:
    """Erase nodes no output or mutation needs. Inputs stay, except unused ones for which
    `drop_input(placeholder)` is true (the backward graph drops saved values it never reads)."""
    live = set(g.outputs)
    for ph, v in g.mutations:
        live.add(ph)
        live.add(v)
    stack = list(live)
    while stack:
        n = stack.pop()
        for i in n.inputs:
            if i not in live:
                live.add(i)
                stack.append(i)
    changed = False
    for n in reversed(g.nodes()):
        if n not in live and (not n.is_placeholder or (drop_input is not None and drop_input(n))):
            g.erase(n)
            changed = True
    return changed
