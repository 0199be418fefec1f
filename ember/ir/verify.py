"""The IR verifier: checks a Graph's invariants, re-running every op's shape/dtype rule.

In:  a Graph (typically after a pass, in debug mode).
Out: None when the graph is well formed; otherwise VerifyError listing every problem found, each
     with the offending node's printed line ("%3 = mul(%1, %2) : f32[4]   # model.py:40").

Checked: known op, arity, attributes (missing, undeclared, unprintable values), the recorded type
against ops.infer, arguments that are not (or no longer) in the graph, edges out of step with the
argument lists, cycles, placeholders vs graph inputs, outputs and mutations in the graph,
mutation targets being inputs with the value's type and device, and no input written twice.
"""
from __future__ import annotations

import networkx as nx

from . import ops
from .dtypes import DType
from .graph import PLACEHOLDER, Graph, Node
from .ops import TType
from .text import format_attr, format_node, format_type

__all__ = ["verify", "VerifyError"]


class VerifyError(ValueError):
    """A malformed graph. .problems is [(node or None, message)]; .node the first bad node."""

    def __init__(self, graph_name: str, problems: list[tuple[Node | None, str]]):
        self.problems = problems
        self.node = next((n for n, _ in problems if n is not None), None)
        lines = [f"graph {graph_name}: {len(problems)} problem(s)"]
        for node, msg in problems:
            lines.append(f"  {_describe(node)}\n      {msg}" if node is not None else f"  {msg}")
        super().__init__("\n".join(lines))


def _describe(node: Node) -> str:
    try:
        return format_node(node)
    except Exception:  # a node too broken to print (bad attribute value, bad type) still gets named
        return f"{node.name} = {node.op}(...)"


def _type_problem(t) -> str | None:
    if not isinstance(t, TType) or not isinstance(t.shape, tuple) or not isinstance(t.dtype, DType):
        return f"type {t!r} is not a TType(shape tuple, DType)"
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in t.shape):
        return f"shape {t.shape!r} must hold non-negative ints"
    return None


def verify(graph: Graph) -> None:
    """Raise VerifyError if `graph` breaks an invariant (see module docstring); else return None."""
    problems: list[tuple[Node | None, str]] = []
    add = problems.append

    # Structure first: a cycle or dangling argument makes the per-node checks below unreliable.
    if not nx.is_directed_acyclic_graph(graph.nx):
        cycle = [u for u, _, _ in nx.find_cycle(graph.nx)]
        add((cycle[0], "is on a cycle: " + " -> ".join(n.name for n in cycle + cycle[:1])))
        nodes = sorted(graph.nx.nodes, key=lambda n: n.id)
    else:
        nodes = graph.nodes()

    inputs = graph.inputs
    input_set = set(inputs)
    for n in nodes:
        if n.graph is not graph:
            add((n, "belongs to another graph"))
        if n.op == PLACEHOLDER:
            if n not in input_set:
                add((n, "is a placeholder but not among the graph inputs"))
            if n._inputs:
                add((n, "placeholder with arguments"))
            problem = _type_problem(n.type)
            if problem:
                add((n, problem))
            continue
        _check_node(graph, n, add)

    for i, p in enumerate(inputs):
        if p not in graph:
            add((None, f"graph input {i} ({p.name}) is not in the graph"))
        elif p.op != PLACEHOLDER:
            add((p, f"graph input {i} is not a placeholder"))

    for i, x in enumerate(graph.outputs):
        if x not in graph:
            add((None, f"output {i} ({x.name}) is not in the graph"))

    written: set[Node] = set()
    for ph, v in graph.mutations:
        where = f"mutate {ph.name} <- {v.name}"
        if ph not in graph or v not in graph:
            add((None, f"{where}: not in the graph"))
            continue
        if ph.op != PLACEHOLDER:
            add((ph, f"{where}: the target is not a graph input"))
        if ph in written:
            add((ph, f"{where}: this input is written more than once"))
        written.add(ph)
        if (tuple(ph.type.shape), ph.type.dtype) != (tuple(v.type.shape), v.type.dtype) or ph.device != v.device:
            add((v, f"{where}: value type {format_type(v.type, v.device)} does not match the input's "
                    f"{format_type(ph.type, ph.device)}"))

    if problems:
        raise VerifyError(graph.name, problems)


def _check_node(graph: Graph, n: Node, add) -> None:
    """Per-node checks for an op node (everything but placeholders)."""
    # Arguments: in this graph, and mirrored exactly by the edges (key = argument index).
    dangling = [i for i, x in enumerate(n._inputs) if x not in graph]
    for i in dangling:
        add((n, f"argument {i} ({n._inputs[i].name}) is not in the graph"))
    edges = sorted((k, u.id) for u, _, k in graph.nx.in_edges(n, keys=True))
    if not dangling and edges != [(i, x.id) for i, x in enumerate(n._inputs)]:
        add((n, "graph edges do not match the argument list"))

    problem = _type_problem(n.type)
    if problem:
        add((n, problem))
    if not isinstance(n.device, str):
        add((n, f"device {n.device!r} is not a string"))

    opdef = ops.OPS.get(n.op)
    if opdef is None:
        add((n, f"unknown op {n.op!r}"))
        return
    if opdef.arity is not None and len(n._inputs) != opdef.arity:
        add((n, f"{n.op} takes {opdef.arity} argument(s), got {len(n._inputs)}"))
        return
    missing = [a for a in opdef.attrs if a not in n.attrs]
    if missing:
        add((n, f"{n.op} is missing attribute(s) {', '.join(missing)}"))
        return
    extra = [a for a in n.attrs if a not in opdef.attrs]
    if extra:
        add((n, f"{n.op} has no attribute(s) {', '.join(extra)} (it takes: {', '.join(opdef.attrs) or 'none'})"))
    for k, v in n.attrs.items():
        try:
            format_attr(v)
        except TypeError as e:
            add((n, f"attribute {k}: {e}"))
    if dangling or problem:
        return

    try:
        inferred = ops.infer(n.op, [x.type for x in n._inputs], n.attrs)
    except Exception as e:  # the rules raise ShapeError, IndexError, RuntimeError, KeyError ...
        add((n, f"shape rule rejects the arguments: {e}"))
        return
    inferred = TType(tuple(inferred.shape), inferred.dtype)
    if inferred != n.type:
        add((n, f"type mismatch: node says {format_type(n.type)} but {n.op} infers {format_type(inferred)}"))
