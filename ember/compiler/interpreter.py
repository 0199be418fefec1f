"""The reference backend: runs a graph node by node with the eager kernels.

Values are freed after their last use. A failing node is reported as
"while executing %12 = mul(%3, %7) at model.py:40".
"""
from __future__ import annotations

from ..frontend import dispatch
from ..ir.sizes import size_readers, substitute


def node_text(n) -> str:
    args = ", ".join(i.name for i in n._inputs)
    attrs = ", ".join(f"{k}={v}" for k, v in n.attrs.items())
    src = n.meta.get("source")
    return f"{n.name} = {n.op}({args}{', ' if args and attrs else ''}{attrs})" + (f" at {src}" if src else "")


class Interpreter:
    """Runs `graph`; `run(arrays)` returns the arrays of outputs followed by mutation values."""

    def __init__(self, graph, xp):
        self.graph = graph
        self.xp = xp
        order = graph.nodes()
        slot = {n: i for i, n in enumerate(order)}
        self.n_slots = len(order)
        self.input_slots = [slot[p] for p in graph.inputs]
        results = list(graph.outputs) + [v for _, v in graph.mutations]
        self.result_slots = [slot[n] for n in results]
        keep = set(self.result_slots)
        last = {}
        for n in order:
            for i in n._inputs:
                last[slot[i]] = slot[n]
        self.steps = []
        for n in order:
            if n.is_placeholder:
                continue
            s = slot[n]
            frees = tuple(slot[i] for i in dict.fromkeys(n._inputs) if last.get(slot[i]) == s and slot[i] not in keep)
            self.steps.append((s, dispatch.KERNELS[n.op], tuple(slot[i] for i in n._inputs), n.attrs, frees, n))
        # a dynamic graph (ember/ir/symbolic.py): its sizes are read from the inputs at each call
        self.symbols, self.readers = size_readers([p.shape for p in graph.inputs])

    def run_all(self, arrays) -> dict:
        """{node: value} of every node (nothing freed): for checking a graph value by value."""
        env = [None] * self.n_slots
        for s, a in zip(self.input_slots, arrays):
            env[s] = a
        for s, kernel, args, attrs, frees, node in self._steps_for(arrays):
            try:
                env[s] = kernel(self.xp, *[env[a] for a in args], **attrs)
            except Exception as e:
                raise type(e)(f"{e}\n  while executing {node_text(node)}") from e
        order = self.graph.nodes()
        return {n: env[i] for i, n in enumerate(order)}

    def _steps_for(self, arrays):
        """The steps with attributes evaluated for the call's sizes (a dynamic graph), else as built."""
        if not self.symbols:
            return self.steps
        values = dict(zip(self.symbols, (r(arrays) for r in self.readers)))
        return [(s, k, args, substitute(attrs, values), frees, node) for s, k, args, attrs, frees, node in self.steps]

    def run(self, arrays):
        env = [None] * self.n_slots
        for s, a in zip(self.input_slots, arrays):
            env[s] = a
        xp = self.xp
        for s, kernel, args, attrs, frees, node in self._steps_for(arrays):
            try:
                env[s] = kernel(xp, *[env[a] for a in args], **attrs)
            except Exception as e:
                raise type(e)(f"{e}\n  while executing {node_text(node)}") from e
            for f in frees:
                env[f] = None
        return [env[s] for s in self.result_slots]
