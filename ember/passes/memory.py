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

Mutations in place: a mutation value (a parameter an optimizer step updates, a running statistic)
that a kernel stores is written straight into the input's own storage -- no fresh output, no copy
back after the call -- when nothing after that step reads the input's old value, no saved view
points into it, and inside the kernel every load of the input uses the store's index and feeds the
stored value (so it is read before it is overwritten). The program then returns the input itself
as the mutation's result.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ember.ir.index import index_gathers, key_of
from ember.ir.kernel import Load, topo_order
from ember.ir.program import ExternStep, KernelStep, Program, ValueKind
from ember.ir.sizes import hint, is_static, nonneg

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


def _fits(nbytes, slot) -> bool:
    """A free slot of `slot` bytes takes a value of `nbytes`: at least its size, at most twice it (the
    size class).  Symbolic sizes (a dynamic program) fit only where that holds for every size."""
    if is_static(nbytes) and is_static(slot):
        return nbytes <= slot <= max(2 * nbytes, 64)
    return nonneg(slot - nbytes) and nonneg(2 * nbytes - slot)


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


def _kernel_writing(step, name):
    """The kernel IR that stores value `name` in this step (a kernel, or an extern's epilogue)."""
    if isinstance(step, KernelStep):
        return step.kernel
    if isinstance(step, ExternStep) and step.kernel.epilogue is not None and name != step.scratch:
        return step.kernel.epilogue
    return None


def _overwrite_ok(kernel, out_name: str, in_name: str) -> bool:
    """Inside `kernel`, may the store to out_name go to in_name's storage? One store to it, and every
    load of in_name at the store's index, unmasked, not a gather index, and an operand of the stored
    value (so it happens before the store in the same iteration, in any loop order or vector width)."""
    stores = [st for st in kernel.stores if st.buf.name == out_name]
    in_buf = next((b for b in kernel.inputs if b.name == in_name), None)
    if len(stores) != 1:
        return False
    if in_buf is None:
        return True
    store = stores[0]
    skey = key_of(store.index)
    feeding = {id(n) for n in topo_order([store.value])}
    for n in kernel.nodes:
        if not isinstance(n, Load):
            continue
        if n.buf is in_buf and (n.fill is not None or key_of(n.index) != skey or id(n) not in feeding):
            return False
        if any(g.buf is in_buf for e in n.index for g in index_gathers(e)):
            return False
    return True


def write_mutations_in_place(program: Program) -> list:
    """Let kernels store mutation values into their inputs' storage (see the module docstring).
    Returns [(step name, value, input)] for the mutations it rewrote."""
    g = program.graph
    muts = g.mutations
    if not muts:
        return []
    values, steps = program.values, program.steps
    n_out = program.n_outputs
    results = program.results
    writer = {}
    for i, st in enumerate(steps):
        for w in st.writes:
            writer[w] = i
    viewed = {v.base for v in values.values() if v.kind is ValueKind.VIEW}
    done = []
    for j, (ph, _) in enumerate(muts):
        vname, iname = results[n_out + j], program.inputs[g.inputs.index(ph)]
        v = values.get(vname)
        if v is None or v.kind is not ValueKind.OUTPUT or results.count(vname) != 1 or iname in viewed \
                or iname in results[:n_out] or vname not in writer:
            continue
        i = writer[vname]
        step = steps[i]
        kernel = _kernel_writing(step, vname)
        if kernel is None or (isinstance(step, ExternStep) and iname in step.args[:len(step.kernel.inputs)]):
            continue
        if any(iname in later.reads or iname in later.writes for later in steps[i + 1:]):
            continue
        if not _overwrite_ok(kernel, vname, iname):
            continue
        step.args[step.args.index(vname)] = iname
        for later in steps[i + 1:]:
            if vname in later.reads:
                later_args = later.args
                for k, a in enumerate(later_args):
                    if a == vname:
                        later_args[k] = iname
        results[n_out + j] = iname
        del values[vname]
        done.append((step.name, vname, iname))
    return done


def plan_memory(program: Program, inplace: bool = True) -> MemoryPlan:
    """Assign every internal value a reusable slot; sets and returns program.memory."""
    mutations = write_mutations_in_place(program) if inplace else []
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
                fits = [j for j in free if _fits(nbytes, plan.slots[j])]
                if fits:
                    slot = min(fits, key=lambda j: (hint(plan.slots[j]), j))    # best fit: a speed choice
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
    plan.inplace.extend(mutations)
    program.memory = plan
    return plan
