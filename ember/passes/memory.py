"""Memory planning: which internal values share storage, and which kernels write in place.

In: a Program (ember/ir/program.py).  Out: a `MemoryPlan` stored on `program.memory`:
a fixed list of byte slots, allocated once by the executor and kept across calls, and the slot
of every internal value.  Liveness is by step: a value is live from the step that writes it to
the last step that reads it; after that its slot is free for a later value of a fitting size
(best fit among free slots of at least its size and at most twice it -- the size class -- else a
new slot).  Graph inputs belong to the caller, graph outputs are allocated fresh on every call
(the caller keeps them), extern scratch results belong to the extern call, eager results to the
eager kernel that returns them: none of those are planned.

In place: a kernel may write an output into the slot of an input that dies at that step when
the output has the input's shape and dtype and element i of the input is read only for element
i of the output -- the kernel has no inner (reduction) axes, one store, and every load of that
input uses the store's index (so no element is overwritten before it is read, in any loop order
or vector width).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ember.ir.index import index_gathers, key_of
from ember.ir.kernel import Load
from ember.ir.program import KernelStep, Program, ValueKind

__all__ = ["MemoryPlan", "plan_memory"]


@dataclass
class MemoryPlan:
    slots: list = field(default_factory=list)       # slot sizes in bytes
    assign: dict = field(default_factory=dict)      # internal value name -> slot index
    inplace: list = field(default_factory=list)     # (step name, output value, input value)

    @property
    def total_bytes(self) -> int:
        return sum(self.slots)

    def __str__(self) -> str:
        lines = [f"# memory: {len(self.slots)} slots, {self.total_bytes} bytes for {len(self.assign)} internal values"]
        by_slot: dict = {}
        for v, s in self.assign.items():
            by_slot.setdefault(s, []).append(v)
        for s, size in enumerate(self.slots):
            lines.append(f"#   slot{s} ({size} B): {', '.join(by_slot.get(s, []))}")
        for step, out, inp in self.inplace:
            lines.append(f"#   in place: {step} writes {out} over {inp}")
        return "\n".join(lines)


def _inplace_ok(step: KernelStep, out_name: str, in_name: str, program: Program) -> bool:
    k = step.kernel
    if k.inner or len(k.stores) != 1:
        return False
    vo, vi = program.values[out_name], program.values[in_name]
    if vo.shape != vi.shape or vo.dtype is not vi.dtype:
        return False
    store = k.stores[0]
    skey = key_of(store.index)
    in_buf = next((b for b in k.inputs if b.name == in_name), None)
    if in_buf is None:
        return False
    loads = [n for n in k.nodes if isinstance(n, Load) and n.buf is in_buf]
    if not loads or any(ld.fill is not None or key_of(ld.index) != skey for ld in loads):
        return False
    # the input must not also be used as a gather index
    for n in k.nodes:
        if isinstance(n, Load):
            for e in n.index:
                if any(g.buf is in_buf for g in index_gathers(e)):
                    return False
    return True


def plan_memory(program: Program, inplace: bool = True) -> MemoryPlan:
    """Assign every internal value a reusable slot; sets and returns program.memory."""
    values = program.values
    internal = {name for name, v in values.items() if v.kind is ValueKind.INTERNAL}
    first, last = {}, {}
    for i, s in enumerate(program.steps):
        for name in s.writes:
            if name in internal:
                first.setdefault(name, i)
                last.setdefault(name, i)
        for name in s.reads:
            if name in internal:
                last[name] = max(last.get(name, i), i)
    plan = MemoryPlan()
    free: list = []          # free slot indices
    for i, s in enumerate(program.steps):
        dying = [n for n in dict.fromkeys(s.reads) if n in internal and last[n] == i and n in plan.assign]
        taken_inplace = set()
        for name in s.writes:
            if name not in internal or name in plan.assign:
                continue
            nbytes = values[name].nbytes
            slot = None
            if inplace and isinstance(s, KernelStep):
                for d in dying:
                    if d not in taken_inplace and _inplace_ok(s, name, d, program):
                        slot = plan.assign[d]
                        taken_inplace.add(d)
                        plan.inplace.append((s.name, name, d))
                        break
            if slot is None:
                fits = [j for j in free if nbytes <= plan.slots[j] <= max(2 * nbytes, 64)]
                if fits:
                    slot = min(fits, key=lambda j: (plan.slots[j], j))
                    free.remove(slot)
                else:
                    plan.slots.append(nbytes)
                    slot = len(plan.slots) - 1
            plan.assign[name] = slot
        for d in dying:
            if d not in taken_inplace:
                free.append(plan.assign[d])
        for name in s.writes:       # written and never read again (dead outputs of a kernel)
            if name in internal and last[name] == i and plan.assign[name] not in free:
                if not any(plan.assign.get(o) == plan.assign[name] and last.get(o, -1) > i
                           for o in plan.assign if o != name):
                    free.append(plan.assign[name])
    program.memory = plan
    return plan
