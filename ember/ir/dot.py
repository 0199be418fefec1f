"""DOT (Graphviz) export of a Graph, for pictures of what the compiler captured or fused.

In:  a Graph and optionally groups (e.g. fusion groups): {Node: group id}, or a list of node
     collections (group id = position in the list).
Out: DOT source text (render with `dot -Tsvg`). Each node is a box labelled with its printed
     name and op, its type and its source line; inputs are ellipses, the outputs one "return" node,
     mutations dashed edges back to the input they write. Nodes of one group share a colour and
     sit in one cluster. The output is deterministic (nodes in topological order).
"""
from __future__ import annotations

from .graph import PLACEHOLDER, Graph, Node
from .text import format_type

__all__ = ["to_dot"]

# Light fills that keep black text readable; groups cycle through them in order of first appearance.
_PALETTE = ("#a6cee3", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#fccde5",
            "#d9d9d9", "#bebada", "#80b1d3", "#ccebc5")


def _q(s: str) -> str:
    """A DOT double-quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(n: Node) -> str:
    parts = [f"{n.name} = {n.op}" if n.op != PLACEHOLDER else f"{n.name} (input)",
             format_type(n.type, n.device)]
    if n.meta.get("source"):
        parts.append(str(n.meta["source"]))
    return "\n".join(parts)


def to_dot(graph: Graph, groups=None) -> str:
    """DOT text for `graph`; `groups` ({Node: group id} or [nodes, ...]) colours and clusters nodes."""
    if groups is None:
        groups = {}
    elif not isinstance(groups, dict):
        groups = {n: gid for gid, members in enumerate(groups) for n in members}
    ids = {n: f"n{n.id}" for n in graph.nodes()}
    colours: dict = {}
    for n in graph.nodes():  # colours by first appearance, so the same graph draws the same
        if n in groups and groups[n] not in colours:
            colours[groups[n]] = _PALETTE[len(colours) % len(_PALETTE)]

    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="monospace"];']

    def node_line(n: Node, indent: str) -> str:
        attrs = [f"label={_q(_label(n))}"]
        if n.op == PLACEHOLDER:
            attrs.append("shape=ellipse")
        if n in groups:
            attrs.append(f"fillcolor={_q(colours[groups[n]])}")
        return f"{indent}{ids[n]} [{', '.join(attrs)}];"

    # Grouped nodes go into one cluster per group (in colour order), the rest at top level.
    members: dict = {g: [] for g in colours}
    for n in graph.nodes():
        if n in groups:
            members[groups[n]].append(n)
        else:
            lines.append(node_line(n, "  "))
    for k, (gid, nodes) in enumerate(members.items()):
        lines.append(f"  subgraph cluster_{k} {{")
        lines.append(f"    label={_q(f'group {gid}')}; style=dashed;")
        lines.extend(node_line(n, "    ") for n in nodes)
        lines.append("  }")

    for n in graph.nodes():
        several = len(n._inputs) > 1  # argument numbers only where order is not obvious
        for i, x in enumerate(n._inputs):
            label = f" [label={_q(str(i))}]" if several else ""
            lines.append(f"  {ids[x]} -> {ids[n]}{label};")

    if graph.outputs:
        lines.append('  out [label="return", shape=doubleoctagon];')
        for i, x in enumerate(graph.outputs):
            lines.append(f"  {ids[x]} -> out [label={_q(str(i))}];")
    for ph, v in graph.mutations:
        lines.append(f'  {ids[v]} -> {ids[ph]} [style=dashed, constraint=false, label="mutate"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
