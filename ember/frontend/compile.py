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

import numpy as np

from ..ir import dtypes as dt
from ..ir.graph import Graph
from . import autograd as ag
from . import autocast
from . import dispatch
from . import records
from .records import Record
from .tensor import Tensor, _wrap
from .tracer import Tracer, tracing, GraphBreak, BreakRecord, user_source
from .joint import build_backward
from ..passes.dce import dce
from . import rng

__all__ = ["compile", "explain", "CompileError", "GraphBreakError"]

DEFAULT_RECOMPILE_LIMIT = 8


class CompileError(RuntimeError):
    pass


class GraphBreakError(CompileError):
    """fullgraph=True and the code needs a value while tracing."""

    def __init__(self, record):
        super().__init__(f"ember.compile(fullgraph=True): graph break [{record.code}] at {record.source}: "
                         f"{record.reason}")
        self.record = record


# --------------------------------------------------------------------------------- pytrees
def flatten(obj, leaves):
    """Flatten nested tuples/lists/dicts into `leaves`; returns a spec to rebuild the structure."""
    if isinstance(obj, (list, tuple)) and not isinstance(obj, Tensor):
        specs = [flatten(o, leaves) for o in obj]
        kind = type(obj)
        return ("seq", kind, specs)
    if isinstance(obj, dict):
        keys = list(obj.keys())
        return ("dict", type(obj), keys, [flatten(obj[k], leaves) for k in keys])
    leaves.append(obj)
    return ("leaf",)


def unflatten(spec, it):
    tag = spec[0]
    if tag == "leaf":
        return next(it)
    if tag == "seq":
        items = [unflatten(s, it) for s in spec[2]]
        kind = spec[1]
        if kind in (list, tuple):
            return kind(items)
        try:
            return kind(*items)     # namedtuples
        except TypeError:
            return kind(items)
    keys, specs = spec[2], spec[3]
    d = spec[1]()
    for k, s in zip(keys, specs):
        d[k] = unflatten(s, it)
    return d


_FLAT_SPECS: dict = {}
_SPEC_KEYS: dict = {}


def _flat_spec(n):
    """flatten()'s spec of ((t0, ..., tn-1), {}) with n tensor leaves, built once per n."""
    spec = _FLAT_SPECS.get(n)
    if spec is None:
        spec = _FLAT_SPECS[n] = flatten((tuple(range(n)), {}), [])
    return spec


def _spec_key(spec):
    tag = spec[0]
    if tag == "leaf":
        return "L"
    if tag == "seq":
        return (spec[1].__name__, tuple(_spec_key(s) for s in spec[2]))
    return ("dict", tuple(spec[2]), tuple(_spec_key(s) for s in spec[3]))


def _leaf_key(x):
    if isinstance(x, Tensor):
        return ("T", x._data.shape, x.dtype.name, str(x.device), x.requires_grad)
    if x is None or isinstance(x, (bool, int, float, str)):
        return (type(x).__name__, x)
    if isinstance(x, dt.DType):
        return ("dtype", x.name)
    return ("obj", type(x).__name__, id(x))


GUARD_NAMES = ("grad mode", "training flags", "argument structure", "arguments", "autocast")


# ------------------------------------------------------------------------ compiled variants
class _Eager:
    """A cache entry that runs the function eagerly (after a graph break)."""

    def __init__(self, record):
        self.record = record


class CompiledGraph:
    """One traced variant: forward (and backward) graphs with their executors and bindings."""

    def __init__(self, fn_name, graph, bindings, out_spec, out_consts, rng_count, backward=None):
        self.fn_name = fn_name
        self.graph = graph
        self.bindings = bindings          # per placeholder: ("arg", i) | ("const", tensor) | ("rng",)
        self.out_spec = out_spec
        self.out_consts = out_consts      # per output leaf: None (graph output) or a constant value
        self.rng_count = rng_count
        self.backward = backward          # dict with bwd graph/executor data, or None
        self.const_guards = [(t, t._data.shape, t.dtype, t.requires_grad) for kind, *r in bindings
                             if kind == "const" for t in r]
        self.forward_exec = None
        self.backward_exec = None
        self.device = None
        self.stats = {}

    def consts_ok(self) -> bool:
        for t, shape, dtype, rg in self.const_guards:
            if t._data.shape != shape or t.dtype is not dtype or t.requires_grad != rg:
                return False
        return True

    def run(self, leaves):
        arrays = []
        gen = None
        for b in self.bindings:
            k = b[0]
            if k == "arg":
                arrays.append(leaves[b[1]]._data)
            elif k == "const":
                arrays.append(b[1]._data)
            else:
                gen = rng.default_generator
                seed, off = gen.take(self.rng_count)
                arrays.append(np.array([seed & 0x7FFFFFFFFFFFFFFF, off], dtype=np.int64))
        results = self.forward_exec.run(arrays)
        g = self.graph
        n_out = len(g.outputs) - (len(self.backward["saved"]) if self.backward else 0)
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
            self._attach_backward(out_tensors, saved, leaves, arrays)
        it = iter(out_tensors)
        final = [c if c is not _GRAPH_OUT else next(it) for c in self.out_consts]
        return unflatten(self.out_spec, iter(final))

    def _tensor_of(self, ph, leaves):
        b = self.bindings[self.graph.inputs.index(ph)]
        return leaves[b[1]] if b[0] == "arg" else b[1]

    def _attach_backward(self, out_tensors, saved, leaves, arrays):
        bw = self.backward
        sources = []
        for ph in bw["grad_inputs"]:
            sources.append(self._tensor_of(ph, leaves))
        nexts = tuple((t.grad_fn if t.grad_fn is not None else t._accumulator()) if t.requires_grad else None
                      for t in sources)
        node = CompiledBackwardNode(self, saved, nexts, [o for o in out_tensors], bw,
                                    [(t, t._vc[0]) for t in sources])
        for i in bw["grad_out_index"]:
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

    def __init__(self, cg, saved, nexts, outs, bw, versions):
        self.cg = cg
        self.saved = saved
        self.next_functions = nexts
        self.bw = bw
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
        for i in self.bw["grad_out_index"]:
            g = slots.slots.get(i) if slots is not None else None
            if g is None:
                shape, d = self.out_shapes[i]
                grads.append(xp.zeros(shape, dtype=d.np))
            else:
                grads.append(g._data)
        if ag.is_grad_enabled():
            raise RuntimeError("ember.compile: create_graph=True (double backward) through a compiled graph is "
                               "not supported; call the function uncompiled for higher-order gradients")
        feed = [self.saved[i] if kind == "saved" else grads[i] for kind, i in self.bw["plan"]]
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

    # guards
    def _guard_modules(self):
        """Modules whose training flags are guards: the compiled Module's, or those a plain function
        reaches through its globals and closure (dropout/BatchNorm read the flag while tracing)."""
        mods = self.__dict__.get("_guard_mods")
        if mods is None:
            try:
                from ..nn import Module
            except ImportError:
                Module = None
            mods = []
            if self.module is not None:
                mods = list(self.module.modules())
            elif Module is not None:
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

    def _key(self, leaves, spec):
        training = tuple(m.training for m in self._guard_modules())
        skey = _SPEC_KEYS.get(id(spec)) if spec is _FLAT_SPECS.get(len(leaves)) else None
        if skey is None:
            skey = _spec_key(spec)
            if spec is _FLAT_SPECS.get(len(leaves)):
                _SPEC_KEYS[id(spec)] = skey
        return (ag._mode.enabled, training, skey, tuple(_leaf_key(x) for x in leaves), autocast.state_key())

    def _changed_guard(self, old, new):
        for name, a, b in zip(GUARD_NAMES, old, new):
            if a != b:
                if name == "arguments":
                    for i, (x, y) in enumerate(zip(a, b)):
                        if x != y:
                            what = {1: "shape", 2: "dtype", 3: "device", 4: "requires_grad"}
                            if x[0] == "T" and y[0] == "T":
                                for j in range(1, 5):
                                    if x[j] != y[j]:
                                        return f"argument {i} {what[j]}", x[j], y[j]
                            return f"argument {i} (specialised value)", x[-1], y[-1]
                return name, a, b
        return "none", None, None

    def __call__(self, *args, **kwargs):
        if dispatch.tracer is not None:        # nested compile inside a trace: inline it
            return self.fn(*args, **kwargs)
        self.stats["calls"] += 1
        if not kwargs and all(isinstance(a, Tensor) for a in args):
            leaves = list(args)                 # the common call: tensors only, no structure
            spec = _flat_spec(len(args))
        else:
            leaves = []
            spec = flatten((args, kwargs), leaves)
        key = self._key(leaves, spec)
        entry = self.cache.get(key)
        if entry is not None and not isinstance(entry, _Eager) and not entry.consts_ok():
            entry = None
        if entry is None:
            if len(self.cache) >= self.recompile_limit:
                if not self.limit_warned:
                    self.limit_warned = True
                    guard, old, new = self._changed_guard(self.last_key, key) if self.last_key else ("?", None, None)
                    msg = (f"ember.compile: {self.name} reached the recompile limit ({self.recompile_limit}); "
                           f"running eagerly from now on. The guard that kept changing: {guard} "
                           f"(last {old!r} -> {new!r}). Hint: mark varying sizes dynamic or keep them fixed.")
                    warnings.warn(msg, RuntimeWarning, stacklevel=2)
                    records.emit(Record("recompiles", "R002", msg, user_source(), fn=self.name,
                                        hint="keep the changing guard fixed between calls"))
                self.stats["eager_calls"] += 1
                return self.fn(*args, **kwargs)
            if self.last_key is not None and self.cache:
                guard, old, new = self._changed_guard(self.last_key, key)
                records.emit(Record("recompiles", "R001", f"guard changed: {guard}: {old!r} -> {new!r}",
                                    user_source(), fn=self.name, extra={"guard": guard, "old": repr(old), "new": repr(new)}))
            entry = self._compile(leaves, spec, args, kwargs)
            self.cache[key] = entry
        self.last_key = key
        if isinstance(entry, _Eager):
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        return entry.run(leaves)

    def _names(self):
        """Name hints for graph inputs: parameters and buffers by their module paths, also for modules
        and tensors a plain function reaches through its globals or closure (`model.0.weight`)."""
        names = {}
        roots = []
        if self.module is not None:
            roots.append(("", self.module))
        else:
            roots += self._roots()
        try:
            from ..nn import Module
        except ImportError:
            Module = None
        for prefix, obj in roots:
            if isinstance(obj, Tensor):
                names.setdefault(id(obj), prefix)
            elif Module is not None and isinstance(obj, Module):
                p = prefix + "." if prefix else ""
                for n, t in obj.named_parameters():
                    names.setdefault(id(t), p + n)
                for n, t in obj.named_buffers():
                    names.setdefault(id(t), p + n)
        return names

    def _compile(self, leaves, spec, args, kwargs):
        t0 = time.perf_counter()
        dump = self._open_dump()
        graph = Graph("forward")
        tr = Tracer(graph, self._names())
        sym_leaves = []
        arg_names = _arg_names(self.fn, len(args))
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
                out = self.fn(*sargs, **skw)
        except GraphBreak as gb:
            return self._break(gb.record, graph, dump, leaves, spec)
        except Exception as e:  # code that escaped the dispatch (raw array access, ...)
            rec = BreakRecord("B008", f"tracing failed: {type(e).__name__}: {e}", _tb_source(e), "escape")
            return self._break(rec, graph, dump, leaves, spec)
        finally:
            rng.default_generator._seed, rng.default_generator._offset = state
        if dump is not None:
            dump.time("trace", time.perf_counter() - t0)
        self._specialisations(leaves)
        out_leaves = []
        out_spec = flatten(out, out_leaves)
        outputs, out_consts = [], []
        for o in out_leaves:
            if isinstance(o, Tensor) and tr.is_symbolic(o):
                outputs.append(o._data.node)
                out_consts.append(_GRAPH_OUT)
            elif isinstance(o, Tensor):
                # a concrete tensor returned as is (or one the trace replaced in place)
                ov = tr.overrides.get(id(o))
                if ov is not None:
                    outputs.append(ov._data.node)
                    out_consts.append(_GRAPH_OUT)
                else:
                    out_consts.append(o)
            else:
                out_consts.append(o)
        graph.set_outputs(outputs)
        tr.finish_mutations()
        bindings = []
        const_i = 0
        for ph in graph.inputs:
            kind = ph.meta.get("kind")
            if kind == "input":
                bindings.append(("arg", tensor_index[ph]))
            elif kind == "const":
                bindings.append(("const", tr.consts[const_i]))
                const_i += 1
            else:
                bindings.append(("rng",))
        dce(graph)
        # which inputs need gradients
        backward = None
        if ag._mode.enabled:
            flags = {}
            for ph, b in zip(graph.inputs, bindings):
                t = leaves[b[1]] if b[0] == "arg" else b[1] if b[0] == "const" else None
                flags[ph] = bool(t is not None and t.requires_grad)
            if any(flags.values()) and outputs:
                devices = {ph.device: (leaves[b[1]] if b[0] == "arg" else b[1]).device
                           for ph, b in zip(graph.inputs, bindings) if b[0] != "rng"}
                devices.setdefault("cpu", _cpu())
                bwd, saved, grad_out_index, grad_inputs, plan = build_backward(graph, flags, devices)
                n_user = len(outputs)
                graph.set_outputs(outputs + saved)
                backward = {"graph": bwd, "saved": saved, "grad_out_index": grad_out_index,
                            "grad_inputs": grad_inputs, "n_user": n_user, "plan": plan}
        device = _graph_device(leaves, tr)
        cg = CompiledGraph(self.name, graph, bindings, out_spec, out_consts, tr.rng_count, backward)
        cg.device = device
        from . import backends
        if dump is not None:
            dump.captured(cg)               # before the backend: passes may rewrite cg.graph
            cg.dump = dump                  # the backend hands it to the pass manager and codegen
            t_build = time.perf_counter()
        try:
            backends.build(cg, self.backend, self)
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
            dump.finish(cg, self, guards=describe_guards(self._key(leaves, spec)))
        return cg

    def _break(self, rec, graph=None, dump=None, leaves=None, spec=None):
        self.stats["breaks"] += 1
        r = records.emit(Record("breaks", rec.code, rec.reason, rec.source, fn=self.name,
                                node=_break_node(graph, rec)))
        if dump is not None:
            guards = describe_guards(self._key(leaves, spec)) if leaves is not None else None
            dump.finish(None, self, guards=guards, status="break", record=r, partial=graph)
        if self.fullgraph:
            raise GraphBreakError(rec)
        return _Eager(rec)

    def _open_dump(self):
        """The DumpSession for this trace (ember/tools/dump.py) when dumping is on, else None."""
        if not self.dump:
            return None
        try:
            from ..tools.dump import open_session
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
    from ..ir.text import format_node
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
    from .tracer import _EMBER_DIR
    tb = traceback.extract_tb(e.__traceback__)
    for fr in reversed(tb):
        if not fr.filename.startswith(_EMBER_DIR):
            return f"{os.path.basename(fr.filename)}:{fr.lineno}"
    return "?"


def _cpu():
    from .device import CPU
    return CPU


def _graph_device(leaves, tr):
    for x in leaves:
        if isinstance(x, Tensor):
            return x.device
    for t in tr.consts:
        return t.device
    return _cpu()


def _arg_names(fn, n):
    import inspect
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


def compile(model=None, *, fullgraph=False, dynamic=False, backend="auto", mode=None, options=None,
            disable=False, recompile_limit=DEFAULT_RECOMPILE_LIMIT, dump=None):
    """Compile a function or Module (also usable as @ember.compile or @ember.compile(...))."""
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable, recompile_limit=recompile_limit, dump=dump)
    if backend not in ("auto", "eager", "llvm", "cuda", "inductor", "interpreter"):
        raise ValueError(f"ember.compile: unknown backend {backend!r} (expected auto, eager, llvm or cuda)")
    if disable:
        return model
    try:
        from ..nn import Module
    except ImportError:
        Module = ()
    if Module and isinstance(model, Module):
        return make_optimized_module(model, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                     options=options, recompile_limit=recompile_limit, dump=dump)
    return CompiledFunction(model, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                            options=options, recompile_limit=recompile_limit, dump=dump)


def make_optimized_module(mod, **kw):
    """A Module that shares mod's parameters, buffers and submodules (state_dict keys unchanged)
    and whose forward runs compiled."""
    from ..nn import Module

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


# ------------------------------------------------------------------------------- explain()
class ExplainReport:
    """What ember.compile did with a function: graphs, op counts, breaks, guards, recompiles."""

    def __init__(self, name, records_, variants, guards):
        self.name = name
        self.records = records_
        self.graphs = [v.graph for v in variants]
        self.backward_graphs = [v.backward["graph"] for v in variants if v.backward]
        self.breaks = [r for r in records_ if r.kind == "breaks"]
        self.recompiles = [r for r in records_ if r.kind == "recompiles"]
        self.fallbacks = [r for r in records_ if r.kind == "fallbacks"]
        self.specializations = [r for r in records_ if r.kind == "specializations"]
        self.fusions = [r for r in records_ if r.kind == "fusions"]     # fusions not taken
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
        for i, (g, c) in enumerate(zip(self.graphs, self.op_counts)):
            total = sum(c.values())
            lines.append(f"  graph {i}: {total} ops: " + ", ".join(f"{k}×{v}" for k, v in c.items()))
        for r in self.breaks + self.fallbacks + self.recompiles + self.specializations + self.fusions:
            lines.append("  " + str(r).replace("\n", "\n  "))
        if self.guards:
            lines.append("  guards:")
            for gd in self.guards:
                lines.append(f"    {gd}")
        return "\n".join(lines)

    __repr__ = __str__


def describe_guards(key):
    grad, training, structure, args, amp = key
    out = [f"grad mode == {grad}"]
    if amp:
        out.append(f"autocast == {amp}")
    if training:
        out.append(f"training flags == {training}")
    for i, a in enumerate(args):
        if a[0] == "T":
            out.append(f"arg{i}: shape {tuple(a[1])}, dtype {a[2]}, device {a[3]}, requires_grad {a[4]}")
        else:
            out.append(f"arg{i}: {a[0]} == {a[-1]!r}")
    return out


def explain(fn, *args, **kwargs):
    """Compile fn (a function or Module) for these arguments and report what happened."""
    cf = fn if isinstance(fn, CompiledFunction) else None
    if cf is None and hasattr(fn, "_compiled") and isinstance(getattr(fn, "_compiled", None), CompiledFunction):
        cf = fn._compiled
    if cf is None:
        c = compile(fn)
        cf = c if isinstance(c, CompiledFunction) else c._compiled
    before = len(cf.variants)
    with records.collect() as recs:
        if cf.module is not None:
            cf(*args, **kwargs)
        else:
            cf(*args, **kwargs)
    leaves = []
    spec = flatten((args, kwargs), leaves)
    guards = describe_guards(cf._key(leaves, spec))
    return ExplainReport(cf.name, recs, cf.variants[before:] or cf.variants[-1:], guards)
