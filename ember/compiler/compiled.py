"""ember.compile: capture a function or Module into graphs, guard, cache, and run compiled code.

    cmodel = ember.compile(model)          # or @ember.compile on a function
    y = cmodel(x)                          # traced on first call, then compiled code

A call flattens its arguments, computes a guard key (shapes, dtypes, devices, requires_grad, grad
mode, training flags, specialised Python scalars, argument structure) and looks up a compiled
variant. A new key traces again; past `recompile_limit` variants the function runs eagerly, with
one warning naming the guard that kept changing. A graph break (a value read while tracing) runs
the call eagerly and records why; with fullgraph=True it raises instead.

When grads are needed, the forward graph's VJPs are traced into a backward graph; both run as ONE
autograd node, so loss.backward() runs compiled code too.
"""
from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from .. import diagnostics as records
from ..diagnostics import Record
from ..frontend import autograd as ag
from ..frontend import dispatch
from ..frontend import rng
from ..frontend.device import CPU
from ..frontend.tensor import Tensor, _wrap
from ..ir.graph import Graph
from ..ir.text import format_node
from ..nn import Module
from ..passes.dce import dce
from . import backends, modes
from .capture import _EMBER_DIR, BreakRecord, GraphBreak, Tracer, tracing, user_source
from .guards import changed_guard, describe_guards, guard_key
from .joint import build_backward
from .pytree import flat_spec, flatten, unflatten

__all__ = ["compile", "CompileError", "GraphBreakError", "CompiledFunction", "CompiledGraph"]

DEFAULT_RECOMPILE_LIMIT = 8


class CompileError(RuntimeError):
    pass


class GraphBreakError(CompileError):
    """fullgraph=True and the code needs a value while tracing."""

    def __init__(self, record):
        super().__init__(f"ember.compile(fullgraph=True): graph break [{record.code}] at {record.source}: "
                         f"{record.reason}")
        self.record = record


# ------------------------------------------------------------------------ compiled variants
class _Eager:
    """A cache entry that runs the function eagerly (after a graph break)."""

    def __init__(self, record):
        self.record = record


@dataclass(frozen=True)
class FromArg:
    """A graph input bound to the call's leaf `index`."""
    index: int


@dataclass(frozen=True)
class FromConst:
    """A graph input bound to a tensor the trace met (parameter, buffer, closed-over tensor)."""
    tensor: Tensor


@dataclass(frozen=True)
class FromRng:
    """The generator key (seed, offset) of the call's random numbers."""


Binding = Union[FromArg, FromConst, FromRng]


@dataclass(frozen=True)
class Backward:
    """The backward half of a variant: its graph and how the forward feeds it."""
    graph: Graph
    saved: tuple                 # forward nodes returned as extra outputs for backward
    grad_out_index: tuple        # which user outputs receive a gradient
    grad_inputs: tuple           # forward placeholders that get a gradient, in backward output order
    n_user: int                  # user outputs (the forward returns n_user + len(saved) values)
    plan: tuple                  # backward inputs: ("saved", i) | ("grad", i)


@dataclass
class CompiledGraph:
    """One traced variant: forward (and backward) graphs, how their inputs are bound, and the
    executors the backend built for them."""
    fn_name: str
    graph: Graph
    bindings: list               # one Binding per graph input
    out_spec: tuple              # pytree spec of the function's result
    out_consts: list             # per output leaf: _GRAPH_OUT (a graph output) or a constant value
    rng_count: int
    backward: Backward | None
    device: object
    forward_exec: object = None
    backward_exec: object = None
    backend: str = ""
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        self.const_guards = [(b.tensor, b.tensor._data.shape, b.tensor.dtype, b.tensor.requires_grad)
                             for b in self.bindings if isinstance(b, FromConst)]

    def static_inputs(self) -> tuple:
        """Positions of graph inputs bound to tensors the trace met (parameters, buffers): their
        storage stays put between calls, so a CUDA graph reads them in place."""
        return tuple(i for i, b in enumerate(self.bindings) if isinstance(b, FromConst))

    def consts_ok(self) -> bool:
        for t, shape, dtype, rg in self.const_guards:
            if t._data.shape != shape or t.dtype is not dtype or t.requires_grad != rg:
                return False
        return True

    def input_arrays(self, leaves) -> list:
        arrays = []
        for b in self.bindings:
            if isinstance(b, FromArg):
                arrays.append(leaves[b.index]._data)
            elif isinstance(b, FromConst):
                arrays.append(b.tensor._data)
            else:
                seed, off = rng.default_generator.take(self.rng_count)
                arrays.append(np.array([seed & 0x7FFFFFFFFFFFFFFF, off], dtype=np.int64))
        return arrays

    def run(self, leaves):
        arrays = self.input_arrays(leaves)
        results = self.forward_exec.run(arrays)
        g = self.graph
        n_out = len(g.outputs) - (len(self.backward.saved) if self.backward else 0)
        n_mut = len(g.mutations)
        outs = results[:n_out]
        # mutation values are written back into the inputs' storage
        for (ph, _), val in zip(g.mutations, results[len(g.outputs):len(g.outputs) + n_mut]):
            t = self._tensor_of(ph, leaves)
            t._data[...] = val
            t._vc[0] += 1
        dev = self.device
        out_tensors = [_wrap(a, dev) for a in outs]
        if self.backward is not None and ag.is_grad_enabled():
            saved = results[n_out:len(g.outputs)]
            self._attach_backward(out_tensors, saved, leaves)
        it = iter(out_tensors)
        final = [c if c is not _GRAPH_OUT else next(it) for c in self.out_consts]
        return unflatten(self.out_spec, iter(final))

    def _tensor_of(self, ph, leaves):
        b = self.bindings[self.graph.inputs.index(ph)]
        return leaves[b.index] if isinstance(b, FromArg) else b.tensor

    def _attach_backward(self, out_tensors, saved, leaves):
        bw = self.backward
        sources = [self._tensor_of(ph, leaves) for ph in bw.grad_inputs]
        nexts = tuple((t.grad_fn if t.grad_fn is not None else t._accumulator()) if t.requires_grad else None
                      for t in sources)
        node = CompiledBackwardNode(self, saved, nexts, out_tensors, [(t, t._vc[0]) for t in sources])
        for i in bw.grad_out_index:
            o = out_tensors[i]
            o.grad_fn = _OutputSelect(node, i)
            o.requires_grad = True


_GRAPH_OUT = object()


class _OutputSelect:
    """grad_fn of output i of a compiled graph: passes its gradient into the shared node's slot i."""

    __slots__ = ("next_functions", "index", "pre_hooks", "retain", "freed", "__weakref__")

    def __init__(self, node, index):
        self.next_functions = (node,)
        self.index = index
        self.pre_hooks = None
        self.retain = None
        self.freed = False

    op = "compiled_output"

    def name(self):
        return "CompiledFunctionBackward"

    def apply(self, g):
        return (ag.GradSlots({self.index: g}),)

    def release(self):
        pass


class CompiledBackwardNode:
    """One autograd node for a whole compiled forward graph; runs the compiled backward graph."""

    op = "compiled_function"

    def __init__(self, cg, saved, nexts, outs, versions):
        self.cg = cg
        self.saved = saved
        self.next_functions = nexts
        self.bw = cg.backward
        self.pre_hooks = None
        self.retain = None
        self.freed = False
        self.out_shapes = [(tuple(o.shape), o.dtype) for o in outs]
        self.versions = versions

    def name(self):
        return "CompiledFunctionBackward"

    def apply(self, slots):
        if self.freed:
            raise RuntimeError("Trying to backward through the graph a second time (or directly access saved "
                               "tensors after they have already been freed). Specify retain_graph=True if you "
                               "need to backward through the graph a second time.")
        xp = self.cg.device.xp
        grads = []
        for i in self.bw.grad_out_index:
            g = slots.slots.get(i) if slots is not None else None
            if g is None:
                shape, d = self.out_shapes[i]
                grads.append(xp.zeros(shape, dtype=d.np))
            else:
                grads.append(g._data)
        if ag.is_grad_enabled():
            raise RuntimeError("ember.compile: create_graph=True (double backward) through a compiled graph is "
                               "not supported; call the function uncompiled for higher-order gradients")
        feed = [self.saved[i] if kind == "saved" else grads[i] for kind, i in self.bw.plan]
        res = self.cg.backward_exec.run(feed)
        return tuple(_wrap(r, self.cg.device) for r in res)

    def release(self):
        self.saved = None
        self.freed = True


# ------------------------------------------------------------------------------- compile()
class CompiledFunction:
    """The callable ember.compile returns for a function."""

    def __init__(self, fn, *, fullgraph=False, dynamic=False, backend="auto", mode=None, options=None,
                 recompile_limit=DEFAULT_RECOMPILE_LIMIT, dump=None, module=None, name=None):
        self.fn = fn
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self.backend = backend
        self.mode = mode
        self.options = dict(options or {})
        self.cuda_graphs = modes.cuda_graphs(mode, options)   # validates mode as torch.compile does
        self.recompile_limit = recompile_limit
        self.dump = dump or os.environ.get("EMBER_DUMP") or None
        self.module = module
        self.name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", type(fn).__name__)
        self.cache: dict = {}
        self.last_key = None
        self.limit_warned = False
        self.stats = {"calls": 0, "compiles": 0, "eager_calls": 0, "breaks": 0, "compile_time_s": 0.0}
        self.variants: list = []   # CompiledGraph objects, in compile order (for tools)
        functools.update_wrapper(self, fn, updated=())

    # ------------------------------------------------------------------------------ guards
    def _guard_modules(self):
        """Modules whose training flags are guards: the compiled Module's, or those a plain function
        reaches through its globals and closure (dropout/BatchNorm read the flag while tracing)."""
        mods = self.__dict__.get("_guard_mods")
        if mods is None:
            mods = []
            if self.module is not None:
                mods = list(self.module.modules())
            else:
                for _, obj in self._roots():
                    if isinstance(obj, Module):
                        mods += [m for m in obj.modules() if all(m is not x for x in mods)]
            self._guard_mods = mods
        return mods

    def _roots(self):
        """(name, object) pairs the function reaches by name: its globals and closure cells."""
        code = getattr(self.fn, "__code__", None)
        if code is None:
            return []
        g = getattr(self.fn, "__globals__", {})
        roots = [(k, g[k]) for k in code.co_names if k in g]
        cells = getattr(self.fn, "__closure__", None) or ()
        roots += [(k, c.cell_contents) for k, c in zip(code.co_freevars, cells) if _cell_ok(c)]
        return roots

    def guard_key(self, leaves, spec) -> tuple:
        return guard_key(leaves, spec, self._guard_modules())

    # -------------------------------------------------------------------------------- call
    def __call__(self, *args, **kwargs):
        if dispatch.tracer is not None:        # nested compile inside a trace: inline it
            return self.fn(*args, **kwargs)
        self.stats["calls"] += 1
        if not kwargs and all(isinstance(a, Tensor) for a in args):
            leaves = list(args)                 # the common call: tensors only, no structure
            spec = flat_spec(len(args))
        else:
            leaves = []
            spec = flatten((args, kwargs), leaves)
        key = self.guard_key(leaves, spec)
        entry = self.cache.get(key)
        if entry is not None and not isinstance(entry, _Eager) and not entry.consts_ok():
            entry = None
        if entry is None:
            if len(self.cache) >= self.recompile_limit:
                self._warn_limit(key)
                self.stats["eager_calls"] += 1
                return self.fn(*args, **kwargs)
            if self.last_key is not None and self.cache:
                guard, old, new = changed_guard(self.last_key, key)
                records.emit(Record("recompiles", "R001", f"guard changed: {guard}: {old!r} -> {new!r}",
                                    user_source(), fn=self.name, extra={"guard": guard, "old": repr(old), "new": repr(new)}))
            entry = self._compile(leaves, spec, args, kwargs)
            self.cache[key] = entry
        self.last_key = key
        if isinstance(entry, _Eager):
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        return entry.run(leaves)

    def _warn_limit(self, key):
        if self.limit_warned:
            return
        self.limit_warned = True
        guard, old, new = changed_guard(self.last_key, key) if self.last_key else ("?", None, None)
        msg = (f"ember.compile: {self.name} reached the recompile limit ({self.recompile_limit}); "
               f"running eagerly from now on. The guard that kept changing: {guard} "
               f"(last {old!r} -> {new!r}). Hint: mark varying sizes dynamic or keep them fixed.")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        records.emit(Record("recompiles", "R002", msg, user_source(), fn=self.name,
                            hint="keep the changing guard fixed between calls"))

    def _names(self):
        """Name hints for graph inputs: parameters and buffers by their module paths, also for modules
        and tensors a plain function reaches through its globals or closure (`model.0.weight`)."""
        names = {}
        roots = [("", self.module)] if self.module is not None else self._roots()
        for prefix, obj in roots:
            if isinstance(obj, Tensor):
                names.setdefault(id(obj), prefix)
            elif isinstance(obj, Module):
                p = prefix + "." if prefix else ""
                for n, t in obj.named_parameters():
                    names.setdefault(id(t), p + n)
                for n, t in obj.named_buffers():
                    names.setdefault(id(t), p + n)
        return names

    # ----------------------------------------------------------------------------- compile
    def _compile(self, leaves, spec, args, kwargs):
        """Trace -> outputs and bindings -> backward graph -> backend executors: one variant."""
        t0 = time.perf_counter()
        dump = self._open_dump()
        graph = Graph("forward")
        tr = Tracer(graph, self._names())
        try:
            out, tensor_index = self._trace(tr, leaves, spec, len(args))
        except GraphBreak as gb:
            return self._break(gb.record, graph, dump, leaves, spec)
        except Exception as e:  # code that escaped the dispatch (raw array access, ...)
            rec = BreakRecord("B008", f"tracing failed: {type(e).__name__}: {e}", _tb_source(e), "escape")
            return self._break(rec, graph, dump, leaves, spec)
        if dump is not None:
            dump.time("trace", time.perf_counter() - t0)
        self._specialisations(leaves)
        out_spec, outputs, out_consts = _collect_outputs(out, tr)
        graph.set_outputs(outputs)
        tr.finish_mutations()
        bindings = _bindings(graph, tr, tensor_index)
        dce(graph)
        backward = self._backward(graph, bindings, leaves, outputs)
        cg = CompiledGraph(self.name, graph, bindings, out_spec, out_consts, tr.rng_count, backward,
                           _graph_device(leaves, tr))
        if dump is not None:
            dump.captured(cg)               # before the backend: passes may rewrite cg.graph
            t_build = time.perf_counter()
        try:
            cg.forward_exec, cg.backward_exec, cg.backend = backends.build(
                cg, self.backend, self.name, dump, cuda_graphs=self.cuda_graphs, stats=self.stats)
        except Exception as e:
            if dump is not None:     # the dump keeps what was written before the failure, and why
                dump.missing("build", f"{type(e).__name__}: {e}")
                dump.finish(cg, self, status="failed")
            raise
        _program_records(cg, self.name)
        dt_s = time.perf_counter() - t0
        if dump is not None:
            dump.time("build", time.perf_counter() - t_build)
        self.stats["compiles"] += 1
        self.stats["compile_time_s"] += dt_s
        cg.stats["compile_time_s"] = dt_s
        self.variants.append(cg)
        records.emit(Record("graphs", "G001", f"captured {sum(1 for n in graph.nodes() if not n.is_placeholder)} "
                            f"ops ({'with' if backward else 'no'} backward) in {dt_s * 1000:.1f} ms",
                            user_source(), fn=self.name))
        if dump is not None:
            dump.finish(cg, self, guards=describe_guards(self.guard_key(leaves, spec)))
        return cg

    def _trace(self, tr, leaves, spec, n_args):
        """Run the function on symbolic inputs; returns its result and {placeholder: leaf index}."""
        sym_leaves = []
        arg_names = _arg_names(self.fn, n_args)
        tensor_index = {}
        for i, x in enumerate(leaves):
            if isinstance(x, Tensor):
                s = tr.add_input(x, arg_names[i] if i < len(arg_names) else f"arg{i}")
                tensor_index[s._data.node] = i
                sym_leaves.append(s)
            else:
                sym_leaves.append(x)
        sargs, skw = unflatten(spec, iter(sym_leaves))
        state = (rng.default_generator._seed, rng.default_generator._offset)
        try:
            with tracing(tr):
                return self.fn(*sargs, **skw), tensor_index
        finally:    # tracing draws no random numbers: the generator is advanced by each compiled call
            rng.default_generator._seed, rng.default_generator._offset = state

    def _backward(self, graph, bindings, leaves, outputs) -> Backward | None:
        """The backward graph when grad mode is on and an input requires grad; the forward graph
        then also returns the values backward saves."""
        if not ag._mode.enabled or not outputs:
            return None
        sources = {ph: _bound_tensor(b, leaves) for ph, b in zip(graph.inputs, bindings)}
        flags = {ph: bool(t is not None and t.requires_grad) for ph, t in sources.items()}
        if not any(flags.values()):
            return None
        devices = {ph.device: t.device for ph, t in sources.items() if t is not None}
        devices.setdefault("cpu", CPU)
        bwd, saved, grad_out_index, grad_inputs, plan = build_backward(graph, flags, devices)
        graph.set_outputs(outputs + saved)
        return Backward(bwd, tuple(saved), tuple(grad_out_index), tuple(grad_inputs), len(outputs), tuple(plan))

    def _break(self, rec, graph=None, dump=None, leaves=None, spec=None):
        self.stats["breaks"] += 1
        r = records.emit(Record("breaks", rec.code, rec.reason, rec.source, fn=self.name,
                                node=_break_node(graph, rec)))
        if dump is not None:
            guards = describe_guards(self.guard_key(leaves, spec)) if leaves is not None else None
            dump.finish(None, self, guards=guards, status="break", record=r, partial=graph)
        if self.fullgraph:
            raise GraphBreakError(rec)
        return _Eager(rec)

    def _open_dump(self):
        """The DumpSession for this trace (ember/compiler/dump) when dumping is on, else None."""
        if not self.dump:
            return None
        try:
            from .dump import open_session      # only when dumping: keeps the html/svg code unloaded
            return open_session(self.dump, self.name)
        except Exception as e:  # e.g. a directory we cannot write: say so, keep compiling
            warnings.warn(f"ember.compile: cannot dump {self.name} into {self.dump!r}: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=4)
            return None

    def _specialisations(self, leaves):
        """S001 records: Python scalars the trace specialised on (they are guards: a new value retraces)."""
        for i, x in enumerate(leaves):
            if isinstance(x, (bool, int, float)) and not isinstance(x, Tensor):
                records.emit(Record("specializations", "S001",
                                    f"specialised on argument {i} == {x!r} ({type(x).__name__}): "
                                    f"another value compiles again", user_source(), fn=self.name,
                                    extra={"argument": i, "value": repr(x)}))


def _collect_outputs(out, tr):
    """The function's result as (pytree spec, graph output nodes, per-leaf _GRAPH_OUT or constant)."""
    out_leaves = []
    out_spec = flatten(out, out_leaves)
    outputs, out_consts = [], []
    for o in out_leaves:
        if isinstance(o, Tensor) and tr.is_symbolic(o):
            outputs.append(o._data.node)
            out_consts.append(_GRAPH_OUT)
        elif isinstance(o, Tensor) and tr.overrides.get(id(o)) is not None:
            # a concrete tensor the trace replaced in place
            outputs.append(tr.overrides[id(o)]._data.node)
            out_consts.append(_GRAPH_OUT)
        else:
            out_consts.append(o)   # a constant (or a concrete tensor returned as is)
    return out_spec, outputs, out_consts


def _bindings(graph, tr, tensor_index) -> list:
    consts = iter(tr.consts)
    out = []
    for ph in graph.inputs:
        kind = ph.meta.get("kind")
        if kind == "input":
            out.append(FromArg(tensor_index[ph]))
        elif kind == "const":
            out.append(FromConst(next(consts)))
        else:
            out.append(FromRng())
    return out


def _bound_tensor(b, leaves):
    if isinstance(b, FromArg):
        return leaves[b.index]
    return b.tensor if isinstance(b, FromConst) else None


def _program_records(cg, fn):
    """Fusions not taken (U001/U002) and eager fallbacks (F001) of the fused programs the backend
    built (executors that carry a .program), as explain records."""
    for which, ex in (("forward", cg.forward_exec), ("backward", cg.backward_exec)):
        prog = getattr(ex, "program", None)
        if prog is not None:
            records.emit_program_records(prog, fn=fn, which=which)


def _break_node(graph, rec) -> str:
    """The IR line of the value the break read: the last node traced on the break's line
    (`if x.sum() > 0` -> the gt node). Empty when no node was traced there."""
    if graph is None:
        return ""
    try:
        for n in reversed(graph.nodes()):
            if not n.is_placeholder and n.meta.get("source") == rec.source:
                return format_node(n)
    except Exception:
        return ""
    return ""


def _cell_ok(cell):
    try:
        cell.cell_contents
        return True
    except ValueError:   # an empty cell
        return False


def _tb_source(e):
    import traceback
    for fr in reversed(traceback.extract_tb(e.__traceback__)):
        if not fr.filename.startswith(_EMBER_DIR):
            return f"{os.path.basename(fr.filename)}:{fr.lineno}"
    return "?"


def _graph_device(leaves, tr):
    for x in leaves:
        if isinstance(x, Tensor):
            return x.device
    for t in tr.consts:
        return t.device
    return CPU


def _arg_names(fn, n):
    import inspect
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


BACKENDS = ("auto", "eager", "llvm", "cuda", "inductor", "interpreter")


def compile(model=None, *, fullgraph=False, dynamic=False, backend="auto", mode=None, options=None,
            disable=False, recompile_limit=DEFAULT_RECOMPILE_LIMIT, dump=None):
    """Compile a function or Module (also usable as @ember.compile or @ember.compile(...))."""
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable, recompile_limit=recompile_limit, dump=dump)
    if backend not in BACKENDS:
        raise ValueError(f"ember.compile: unknown backend {backend!r} (expected auto, eager, llvm or cuda)")
    if disable:
        return model
    kw = dict(fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode, options=options,
              recompile_limit=recompile_limit, dump=dump)
    if isinstance(model, Module):
        return make_optimized_module(model, **kw)
    return CompiledFunction(model, **kw)


def make_optimized_module(mod, **kw):
    """A Module that shares mod's parameters, buffers and submodules (state_dict keys unchanged)
    and whose forward runs compiled."""

    class OptimizedModule(type(mod)):
        def __init__(self):  # noqa: D401 - state is shared, not constructed
            pass

    OptimizedModule.__name__ = type(mod).__name__
    OptimizedModule.__qualname__ = type(mod).__qualname__
    om = object.__new__(OptimizedModule)
    om.__dict__ = mod.__dict__          # one state: parameters, buffers, submodules, training flag
    cf = CompiledFunction(lambda *a, **k: Module.__call__(mod, *a, **k), module=mod,
                          name=type(mod).__name__, **kw)
    OptimizedModule.__call__ = lambda self, *a, **k: cf(*a, **k)
    OptimizedModule._orig_mod = property(lambda self: mod)
    OptimizedModule._compiled = property(lambda self: cf)
    return om
