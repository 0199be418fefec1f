"""Rewrite rules and the one fixed-point driver the rule-based passes share.

In: a Graph and a `Rules` table (op -> rules).  Out: the same Graph, rewritten in place until no
rule fires (at most `max_rounds` sweeps), then cleaned by dce.  canonicalize.py and movement.py each
fill a table:

    RULES = Rules()

    @RULES("neg", "logical_not")
    def _double_negation(g, n):
        x = n.inputs[0]
        if x.op == n.op:                        # the pattern matches: rewrite
            return replace_node(g, n, x.inputs[0])
        return None                             # no match: the next rule for the op is tried

A rule returns None when its pattern does not match the node, else whether it changed the graph.
The first rule that matches decides for the node in that sweep (as an if/elif ladder would), so
the order rules are registered in is their priority.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Optional

from ember.ir.graph import Graph, Node

from .dce import dce

__all__ = ["Rule", "Rules", "rewrite_to_fixpoint", "replace_node"]

Rule = Callable[[Graph, Node], Optional[bool]]


class Rules:
    """An op -> [rule] table; calling it with op names gives the decorator that registers a rule."""

    def __init__(self):
        self.by_op: dict[str, list[Rule]] = defaultdict(list)

    def __call__(self, *ops: str):
        def deco(fn: Rule) -> Rule:
            for op in ops:
                self.by_op[op].append(fn)
            return fn
        return deco

    def apply(self, g: Graph, n: Node) -> bool:
        """Run the first rule for n.op whose pattern matches; whether the graph changed."""
        for rule in self.by_op.get(n.op, ()):
            changed = rule(g, n)
            if changed is not None:
                return changed
        return False


def rewrite_to_fixpoint(g: Graph, rules: Rules, max_rounds: int = 20) -> bool:
    """Sweep the graph's nodes in order applying rules until a sweep changes nothing; dce after
    every sweep that changed something (rules leave replaced nodes behind).  Whether g changed."""
    changed_any = False
    for _ in range(max_rounds):
        changed = False
        for n in g.nodes():
            if n.is_placeholder or n not in g:     # an earlier rewrite may have erased it
                continue
            if rules.apply(g, n):
                changed = True
        if not changed:
            break
        dce(g)
        changed_any = True
    return changed_any


def replace_node(g: Graph, old: Node, new: Node) -> bool:
    """replace_all_uses(old, new) unless that would make a graph output / mutation value a graph
    input (outputs handed to the user must not alias their inputs) or change its type.
    Returns whether the rewrite happened. `old` is left for DCE."""
    if old is new:
        return False
    if old.type != new.type or old.device != new.device:
        return False
    if new.is_placeholder and (any(o is old for o in g.outputs) or any(v is old for _, v in g.mutations)):
        return False
    g.replace_all_uses(old, new)
    return True
