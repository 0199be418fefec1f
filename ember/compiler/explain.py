"""ember.explain(fn, *args): compile fn for these arguments and report what happened."""
from __future__ import annotations

from .. import diagnostics
from .compiled import CompiledFunction, compile
from .guards import describe_guards
from .pytree import flatten


class ExplainReport:
    """What ember.compile did with a function: graphs, op counts, breaks, guards, recompiles."""

    def __init__(self, name, records, variants, guards):
        self.name = name
        self.records = records
        self.graphs = [v.graph for v in variants]
        # a function that breaks runs in pieces (ember/compiler/split.py): (piece number, where it ends)
        self.pieces = [getattr(v, "piece", None) for v in variants]
        self.backward_graphs = [v.backward.graph for v in variants if v.backward]
        by_kind = {k: [r for r in records if r.kind == k] for k in diagnostics.KINDS}
        self.breaks = by_kind["breaks"]
        self.recompiles = by_kind["recompiles"]
        self.fallbacks = by_kind["fallbacks"]
        self.specializations = by_kind["specializations"]
        self.fusions = by_kind["fusions"]      # fusions not taken
        self.guards = guards
        self.op_counts = []
        for g in self.graphs:
            counts = {}
            for n in g.nodes():
                if not n.is_placeholder:
                    counts[n.op] = counts.get(n.op, 0) + 1
            self.op_counts.append(dict(sorted(counts.items())))

    @property
    def graph_count(self):
        return len(self.graphs)

    @property
    def graph_break_count(self):
        return len(self.breaks)

    def __str__(self):
        lines = [f"ember.explain({self.name}): {len(self.graphs)} graph(s), {len(self.breaks)} graph break(s), "
                 f"{len(self.fallbacks)} fallback(s), {len(self.recompiles)} recompile(s)"]
        for i, (c, piece) in enumerate(zip(self.op_counts, self.pieces)):
            what = f" (piece {piece[0]}, up to {'the break at ' + piece[1] if piece[1] else 'the return'})" \
                if piece else ""
            lines.append(f"  graph {i}{what}: {sum(c.values())} ops: " + ", ".join(f"{k}×{v}" for k, v in c.items()))
        for r in self.breaks + self.fallbacks + self.recompiles + self.specializations + self.fusions:
            lines.append("  " + str(r).replace("\n", "\n  "))
        if self.guards:
            lines.append("  guards:")
            lines.extend(f"    {gd}" for gd in self.guards)
        return "\n".join(lines)

    __repr__ = __str__


def explain(fn, *args, **kwargs) -> ExplainReport:
    """Compile fn (a function or Module) for these arguments and report what happened."""
    cf = fn if isinstance(fn, CompiledFunction) else None
    if cf is None and isinstance(getattr(fn, "_compiled", None), CompiledFunction):
        cf = fn._compiled
    if cf is None:
        c = compile(fn)
        cf = c if isinstance(c, CompiledFunction) else c._compiled
    before = len(cf.variants)
    with diagnostics.collect() as recs:
        cf(*args, **kwargs)
    leaves = []
    spec = flatten((args, kwargs), leaves)
    guards = describe_guards(cf.guard_key(leaves, spec))
    variants = cf.variants[before:] or cf.variants[-1:]
    for v in variants:      # a dynamic variant: where each size symbol is read, and its shape guards
        sg = getattr(v, "shape_guard", None)
        guards += sg.describe() if sg is not None else []
    return ExplainReport(cf.name, recs, variants, guards)
