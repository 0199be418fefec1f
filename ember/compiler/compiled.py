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

import contextlib

import functools
import os
import threading
import time
import warnings
import weakref
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
from ..ir import symbolic
from ..ir.graph import Graph
from ..ir.symbolic import ShapeEnv
from ..ir.sizes import evaluate as size_at
from ..ir.text import format_node
from ..nn import Module
from ..nn.modules.module import state_version
from ..passes.attention import fuse_attention
from ..passes.dce import dce
from . import backends, modes
from .capture import _EMBER_DIR, BreakRecord, GraphBreak, Tracer, tracing, user_source
from .check import CheckedExecutor, check_mode
from .dynamic import DynamicDims, ShapeGuard, pin_symbols, symbolic_shapes
from .guards import changed_guard, describe_guards, guard_key, state_guard
from .interpreter import Interpreter
from .joint import build_backward, no_path
from .pytree import flat_spec, flatten, unflatten
from .training import FromHyper, GradGuard, GradReplay, OptimizerGuard, collect_grads, grad_snapshot
from .watch import TraceWatch

__all__ = ["compile", "CompileError", "GraphBreakError", "CompiledFunction", "CompiledGraph"]

DEFAULT_RECOMPILE_LIMIT = 8
LIVE: "weakref.WeakSet[CompiledFunction]" = weakref.WeakSet()    # for ember.compiler.reset()


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


Binding = Union[FromArg, FromConst, FromRng, FromHyper]


@dataclass(frozen=True)
class Backward:
    """The backward half of a variant: its graph and how the forward feeds it."""
    graph: Graph
    saved: tuple                 # forward nodes returned as extra outputs for backward
    grad_out_index: tuple        # which user outputs receive a gradient
    grad_inputs: tuple           # forward placeholders that get a gradient, in backward output order
    n_user: int                  # user outputs (the forward returns n_user + len(saved) values)
    plan: tuple                  # backward inputs: ("saved", i) | ("grad", i)
    watch: tuple = ()            # ("input", k) | ("output", i): tensors whose memory holds a saved
                                 # value (or a view of it); their versions are checked at backward
    no_path: frozenset = frozenset()  # grad_inputs positions no output depends on (joint.no_path)


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
    state: object = None         # guards.StateGuard: identity of the objects the trace read
    stores: tuple = ()           # (module, attribute) the function assigns a traced tensor to, in
                                 # output order: the forward returns them after the user outputs
    grads: GradReplay | None = None     # .grads the function assigned (a training step): replayed
                                        # after each call; their values are the last outputs
    grad_guard: GradGuard | None = None
    opt_guards: tuple = ()       # OptimizerGuard per optimizer stepped in the trace
    spent: tuple = ()            # user outputs a backward inside the function went through
    shape_guard: ShapeGuard | None = None   # a dynamic variant's symbols and shape guards (dynamic.py)

    def __post_init__(self):
        # optimizer state is guarded by its optimizer's state epoch (training.py): its tensors change
        # only by replacement (load_state_dict), never in shape or dtype, so they need no guard of their own
        owned = {id(v) for g in self.opt_guards for st in g.state.values() for v in st.values()}
        self.const_guards = [(b.tensor, (b.tensor._data.shape, b.tensor.dtype, b.tensor.device, b.tensor.requires_grad),
                              ph.name.lstrip("%")) for ph, b in zip(self.graph.inputs, self.bindings)
                             if isinstance(b, FromConst) and id(b.tensor) not in owned]
        # the per-call plan, computed once: how to fetch each input, where each mutation goes
        pos = {ph: k for k, ph in enumerate(self.graph.inputs)}
        self._fetch = [(_ARG, b.index) if isinstance(b, FromArg) else (_CONST, b.tensor) if isinstance(b, FromConst)
                       else (_HYPER, b) if isinstance(b, FromHyper) else (_RNG, None) for b in self.bindings]
        self._mutated = [(pos[ph], self.bindings[pos[ph]]) for ph, _ in self.graph.mutations]
        self._mutated_set = {k for k, _ in self._mutated}
        # written-back tensors: the constant itself, or None and the argument's leaf index
        self._write_back = [(b.tensor, 0) if isinstance(b, FromConst) else (None, getattr(b, "index", 0))
                            for _, b in self._mutated]
        self._roots = None           # (state version, {id(memory root): input position}) of constants

    def static_inputs(self) -> tuple:
        """Positions of graph inputs bound to tensors the trace met (parameters, buffers): their
        storage stays put between calls, so a CUDA graph reads them in place."""
        return tuple(i for i, b in enumerate(self.bindings) if isinstance(b, FromConst))

    def immutable_inputs(self) -> tuple:
        """Positions of optimizer hyper-parameter inputs: a new value comes as a new array, an
        array is never written (so the same array as last call holds the same value)."""
        return tuple(i for i, b in enumerate(self.bindings) if isinstance(b, FromHyper))

    def overlapping_inputs(self, leaves):
        """(written input name, other input name) when an input the graph writes in place shares
        memory with another input (x and y both views of one tensor): the graph treats them as
        independent, so the call must run eagerly. None otherwise (and always without mutations).

        Two numpy arrays can overlap only if they view one owner (`.base`): the owners of the
        constants are indexed once (again when module state changes), so a call compares the few
        arguments' owners against them instead of every pair of inputs."""
        if not self._mutated:
            return None
        if self.device.xp is not np:
            return self._overlap_pairs(leaves, range(len(self.bindings)))
        roots = self._roots
        if roots is None or roots[0] != state_version():
            owners, clash = {}, None
            for k, (kind, x) in enumerate(self._fetch):
                if kind is _CONST:
                    r = _owner(x._data)
                    if id(r) in owners and clash is None:
                        clash = (owners[id(r)], k)
                    owners.setdefault(id(r), k)
            roots = self._roots = (state_version(), owners, clash)
        _, owners, clash = roots
        mutated = self._mutated_set
        if clash is not None:
            hit = self._overlap_pairs(leaves, clash)
            if hit is not None:
                return hit
        seen = {}
        for k, (kind, x) in enumerate(self._fetch):
            if kind is not _ARG:
                continue
            rid = id(_owner(leaves[x]._data))
            other = owners.get(rid, seen.get(rid))
            seen.setdefault(rid, k)
            if other is not None and (k in mutated or other in mutated):
                hit = self._overlap_pairs(leaves, (k, other))
                if hit is not None:
                    return hit
        return None

    def _overlap_pairs(self, leaves, candidates):
        """The first (written, other) pair among input positions `candidates` whose memory overlaps."""
        tensors = [_bound_tensor(b, leaves) for b in self.bindings]
        share = getattr(self.device.xp, "may_share_memory", None)
        if share is None:
            return None
        cand = set(candidates)
        names = [ph.name.lstrip("%") for ph in self.graph.inputs]
        for k, _ in self._mutated:
            if k not in cand:
                continue
            a = tensors[k]._data
            for j in cand:
                t = tensors[j]
                if j != k and t is not None and share(a, t._data):
                    return names[k], names[j]
        return None

    def guard_failure(self, leaves=()):
        """None when this variant may run now, else (guard name, old, new) of the first failing
        guard on what the trace read besides the arguments (constants' metadata, object identity,
        the .grads and optimizers of a training step)."""
        if self.shape_guard is not None:
            failed = self.shape_guard.check(leaves)
            if failed is not None:
                return failed
        for t, meta, name in self.const_guards:
            shape, dtype, device, rg = meta
            if t._data.shape != shape or t.dtype is not dtype or t.requires_grad is not rg or \
                    (t.device is not device and t.device != device):
                now = (t._data.shape, t.dtype, t.device, t.requires_grad)
                i = next(i for i, (a, b) in enumerate(zip(now, meta)) if a != b)
                return f"{name} {('shape', 'dtype', 'device', 'requires_grad')[i]}", meta[i], now[i]
        for g in self.opt_guards:
            failed = g.check()
            if failed is not None:
                return failed
        if self.grad_guard is not None:
            failed = self.grad_guard.check(leaves)
            if failed is not None:
                return failed
        return self.state.check() if self.state is not None else None

    def input_arrays(self, leaves) -> list:
        arrays = []
        for kind, x in self._fetch:
            if kind is _CONST:
                arrays.append(x._data)
            elif kind is _ARG:
                arrays.append(leaves[x]._data)
            elif kind is _HYPER:
                arrays.append(x.array())
            else:
                n = self.rng_count
                if type(n) is not int:      # a dynamic variant draws a count that follows the sizes
                    n = size_at(n, self.shape_guard.sizes(leaves))
                seed, off = rng.default_generator.take(n)
                arrays.append(np.array([seed & 0x7FFFFFFFFFFFFFFF, off], dtype=np.int64))
        return arrays

    def run(self, leaves):
        arrays = self.input_arrays(leaves)
        results = self.forward_exec.run(arrays)
        g = self.graph
        n_all = len(g.outputs)
        n_out = n_all - (len(self.backward.saved) if self.backward else 0)
        outs = results[:n_out]
        # mutation values are written back into the inputs' storage (compiled programs store most
        # of them there already, and return the input itself)
        for (t, i), val in zip(self._write_back, results[n_all:]):
            if t is None:
                t = leaves[i]
            if val is not t._data:
                t._data[...] = val
            t._vc[0] += 1
        dev = self.device
        out_tensors = [_wrap(a, dev) for a in outs]
        if self.backward is not None and ag.is_grad_enabled():
            saved = results[n_out:n_all]
            self._attach_backward(out_tensors, saved, leaves)
        n_grad = self.grads.n_outputs if self.grads is not None else 0
        if self.stores:
            self._replay_stores(out_tensors[n_out - n_grad - len(self.stores):n_out - n_grad])
        if self.grads is not None:
            self.grads.apply(leaves, out_tensors[n_out - n_grad:])
        for i in self.spent:         # eager: the loss a backward went through keeps a freed grad_fn
            out_tensors[i].requires_grad = True
            out_tensors[i].grad_fn = _SPENT
        it = iter(out_tensors)
        final = [c if c is not _GRAPH_OUT else next(it) for c in self.out_consts]
        return unflatten(self.out_spec, iter(final))

    def _replay_stores(self, tensors) -> None:
        """`self.mask = mask` in the traced function: assign this call's value, as eager would."""
        before = state_version()
        for (module, name), t in zip(self.stores, tensors):
            setattr(module, name, t)
        if self.state is not None:
            self.state.resync(before)

    def _tensor_of(self, ph, leaves):
        b = self.bindings[self.graph.inputs.index(ph)]
        return leaves[b.index] if isinstance(b, FromArg) else b.tensor

    def _attach_backward(self, out_tensors, saved, leaves):
        bw = self.backward
        sources = [self._tensor_of(ph, leaves) for ph in bw.grad_inputs]
        nexts = tuple((t.grad_fn if t.grad_fn is not None else t._accumulator())
                      if t.requires_grad and k not in bw.no_path else None for k, t in enumerate(sources))
        versions = []       # PyTorch's check: a saved value modified in place fails backward
        for kind, i in bw.watch:
            t = out_tensors[i] if kind == "output" else self._tensor_of(self.graph.inputs[i], leaves)
            versions.append((t, t._vc[0], kind, i))
        node = CompiledBackwardNode(self, saved, nexts, out_tensors, versions)
        for i in bw.grad_out_index:
            o = out_tensors[i]
            o.grad_fn = _OutputSelect(node, i)
            o.requires_grad = True


_GRAPH_OUT = object()
# Breaks after which the call runs eagerly rather than in pieces: code that left the dispatch (B008)
# would fail again while recording the pieces; higher-order gradients cannot go through compiled
# pieces' backward.
_NO_SPLIT = ("B008", "backward_create_graph")
_ARG, _CONST, _HYPER, _RNG = "arg", "const", "hyper", "rng"     # how CompiledGraph fetches an input


def _owner(a):
    """The object owning an array's memory (numpy keeps views' .base pointing at it)."""
    b = a.base
    return a if b is None else b


class _SpentNode:
    """grad_fn of an output that a backward inside the compiled function already went through."""

    next_functions = ()
    pre_hooks = None
    retain = None
    freed = True
    op = "compiled_function"

    def name(self):
        return "CompiledFunctionBackward"

    def apply(self, g):
        raise RuntimeError("Trying to backward through the graph a second time (or directly access saved "
                           "tensors after they have already been freed): the compiled function already ran "
                           "backward through this output.")

    def release(self):
        pass


_SPENT = _SpentNode()


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
        for t, v, kind, i in self.versions:
            if t._vc[0] != v:
                which = f", which is output {i} of CompiledFunctionBackward," if kind == "output" else ""
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{t.dtype.name} {list(t.shape)}]{which} is at version {t._vc[0]}; expected "
                    f"version {v} instead. Hint: the compiled function saved it for backward; modify a clone, "
                    "or call backward() before the in-place change.")
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

    def __init__(self, fn, *, fullgraph=False, dynamic=None, backend="auto", mode=None, options=None,
                 recompile_limit=DEFAULT_RECOMPILE_LIMIT, dump=None, module=None, name=None):
        self.fn = fn
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self.backend = backend
        self.mode = mode
        self.options = dict(options or {})
        self.cuda_graphs = modes.cuda_graphs(mode, options)   # validates mode as torch.compile does
        self.check = check_mode(self.options)      # "fp64": every graph also runs in float64 (check.py)
        self.recompile_limit = recompile_limit
        self.dump = dump or os.environ.get("EMBER_DUMP") or None
        self.module = module
        self.name = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", type(fn).__name__)
        self.cache: dict = {}
        self.state_recompiles = 0   # variants replaced because an object they read changed
        self.dyn = DynamicDims(dynamic, cuda=backend == "cuda")
        self.alternates: dict = {}  # key -> dynamic variants that guard different sizes
        self._lock = threading.RLock()
        self.last_key = None
        self.limit_warned = False
        self.stats = {"calls": 0, "compiles": 0, "eager_calls": 0, "breaks": 0, "compile_time_s": 0.0}
        self.variants: list = []   # CompiledGraph objects, in compile order (for tools)
        functools.update_wrapper(self, fn, updated=())
        LIVE.add(self)

    def reset(self) -> None:
        """Forget every compiled variant and what automatic dynamic learned (the next call traces)."""
        with self._lock:
            self.cache.clear()
            self.alternates.clear()
            self.variants.clear()
            self.last_key, self.limit_warned, self.state_recompiles = None, False, 0
            self.dyn = DynamicDims(self.dyn.dynamic, cuda=self.dyn.cuda)

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
        return guard_key(leaves, spec, self._guard_modules(), self.dyn.of)

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
        if entry is None or (not isinstance(entry, _Eager) and entry.guard_failure(leaves) is not None):
            with self._lock:        # one thread compiles; the others wait for its variant
                entry, key = self._lookup_or_compile(leaves, spec, args, kwargs)
            if entry is None:
                self.stats["eager_calls"] += 1
                return self.fn(*args, **kwargs)
        self.last_key = key
        if isinstance(entry, _Eager):
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        if not isinstance(entry, CompiledGraph):      # a function that breaks: it runs in pieces
            return entry(args, kwargs)
        if entry.graph.mutations:
            overlap = entry.overlapping_inputs(leaves)
            if overlap is not None:
                self._aliased_call(overlap)
                return self.fn(*args, **kwargs)
        return entry.run(leaves)

    def _aliased_call(self, overlap):
        self.stats["eager_calls"] += 1
        written, other = overlap
        records.emit(Record("fallbacks", "F003", f"inputs {written} and {other} share memory and the graph "
                            f"writes {written} in place: this call runs eagerly", user_source(), fn=self.name,
                            extra={"written": written, "other": other}))

    def _lookup_or_compile(self, leaves, spec, args, kwargs):
        """(variant, key) for a call whose cached variant is missing or stale; (None, key) past the
        recompile limit (the call then runs eagerly). Called under self._lock."""
        key = self.guard_key(leaves, spec)
        entry = self.cache.get(key)
        failed = None
        if entry is not None and not isinstance(entry, _Eager):
            failed = entry.guard_failure(leaves)
            if failed is None:
                return entry, key                 # another thread compiled it meanwhile
            if failed[0].startswith(("shape guard", "size symbol")):
                return self._other_sizes(entry, key, failed, leaves, spec, args, kwargs)
            # what the trace read changed (a module swapped, a global rebound): modules whose
            # training flags are guards may have changed too
            self.__dict__.pop("_guard_mods", None)
            key = self.guard_key(leaves, spec)
            self.cache.pop(key, None)
            entry = None
            self.state_recompiles += 1
        elif entry is not None:
            return entry, key
        went_dynamic = entry is None and self.last_key is not None and self._automatic_dynamic(key, leaves)
        if went_dynamic:                    # (R004 says why this call compiles: no R001)
            key = self.guard_key(leaves, spec)
            entry = self.cache.get(key)
            if entry is not None and (isinstance(entry, _Eager) or entry.guard_failure(leaves) is None):
                return entry, key
        if self._n_variants() >= self.recompile_limit:   # variants built so far
            self._warn_limit(key, failed)
            return None, key
        if failed is not None or (self.last_key is not None and self.cache and not went_dynamic):
            guard, old, new = failed or changed_guard(self.last_key, key)
            hint = ("the compiled code read an object that was replaced since (a module, parameter, buffer or "
                    "global); to keep the compiled code, update values in place (p.data.copy_(...))"
                    if failed is not None else "")
            records.emit(Record("recompiles", "R001", f"guard changed: {guard}: {old!r} -> {new!r}",
                                user_source(), fn=self.name, hint=hint,
                                extra={"guard": guard, "old": repr(old), "new": repr(new)}))
        entry = self._compile(leaves, spec, args, kwargs)
        key = self.guard_key(leaves, spec)      # (a dynamic build that failed compiled static sizes)
        self.cache[key] = entry
        return entry, key

    def _n_variants(self) -> int:
        return len(self.cache) + self.state_recompiles + sum(len(v) - 1 for v in self.alternates.values())

    def _automatic_dynamic(self, key, leaves) -> bool:
        """dynamic=None: tensor arguments whose sizes differ from the last call's get those dims
        marked symbolic (R004). True when a dimension became symbolic."""
        old, new = self.last_key, key
        if old[:3] != new[:3] or old[4] != new[4] or len(old[3]) != len(new[3]):
            return False
        added = []
        for i, (a, b) in enumerate(zip(old[3], new[3])):
            if a[0] == "T" and b[0] == "T" and a[2:] == b[2:] and a[1] != b[1]:
                if self.dyn.note_change(i, a[1], b[1]):
                    added.append((i, sorted(self.dyn.auto[i]), a[1], b[1]))
        for i, dims, a, b in added:
            records.emit(Record("recompiles", "R004", f"argument {i} changed shape {tuple(a)} -> {tuple(b)}: "
                                f"dims {dims} are compiled as symbolic sizes from now on", user_source(),
                                fn=self.name, extra={"argument": i, "dims": dims}))
        return bool(added)

    def _other_sizes(self, entry, key, failed, leaves, spec, args, kwargs):
        """A dynamic variant's shape guard failed: another variant under the same key may fit these
        sizes; else compile one (R005) and keep both."""
        group = self.alternates.setdefault(key, [entry])
        for v in group:
            if v.guard_failure(leaves) is None:
                self.cache[key] = v
                return v, key
        if self._n_variants() >= self.recompile_limit:
            self._warn_limit(key, failed)
            return None, key
        guard, old, new = failed
        records.emit(Record("recompiles", "R005", f"{guard}: {old!r} -> {new!r}", user_source(), fn=self.name,
                            extra={"guard": guard}))
        v = self._compile(leaves, spec, args, kwargs)
        new_key = self.guard_key(leaves, spec)
        if new_key != key:                      # (a dynamic build that failed compiled static sizes)
            self.cache[new_key] = v
            return v, new_key
        if isinstance(v, CompiledGraph):
            group.append(v)
        self.cache[key] = v
        return v, key

    def _warn_limit(self, key, failed=None):
        if self.limit_warned:
            return
        self.limit_warned = True
        guard, old, new = failed or (changed_guard(self.last_key, key) if self.last_key else ("?", None, None))
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
        env = ShapeEnv()
        shapes = symbolic_shapes(env, leaves, self.dyn.of)
        with symbolic.active(env if shapes else None):
            cg = self._compile_in(leaves, spec, args, kwargs, env if shapes else None, shapes)
        if shapes and isinstance(cg, CompiledGraph) and self.backend != "eager" and \
                any(isinstance(ex, Interpreter) for ex in (cg.forward_exec, cg.backward_exec)):
            # the backend could not build the symbolic program (F002 says why): sizes stay fixed
            self.dyn.disabled = True
            self.variants.remove(cg)
            records.emit(Record("recompiles", "R006", "the program with symbolic sizes could not be built "
                                "(see the F002 record): this function compiles fixed sizes from now on",
                                user_source(), fn=self.name))
            return self._compile(leaves, spec, args, kwargs)
        return cg

    def _compile_in(self, leaves, spec, args, kwargs, env, shapes):
        t0 = time.perf_counter()
        dump = self._open_dump()
        graph = Graph("forward")
        tr = Tracer(graph, self._names())
        watch = TraceWatch()
        snapshot = grad_snapshot(self._guard_modules(), [o for _, o in self._roots()])
        try:
            out, tensor_index, sym_leaves = self._trace(tr, watch, leaves, spec, len(args), shapes)
            out_spec, outputs, out_consts = _collect_outputs(out, tr)
            grad_replay, grad_guard, grad_tensors = collect_grads(tr, snapshot, tensor_index)
            stores = _check_trace(tr, watch, out, sym_leaves + grad_tensors)
        except GraphBreak as gb:
            tr.undo_effects()       # the eager run that follows redoes the function's stores and .grads
            return self._break(gb.record, graph, dump, leaves, spec)
        except Exception as e:  # code that escaped the dispatch (raw array access, ...)
            tr.undo_effects()
            rec = BreakRecord("B008", f"tracing failed: {type(e).__name__}: {e}", _tb_source(e), "escape")
            return self._break(rec, graph, dump, leaves, spec)
        tr.undo_stores(only_symbolic=True)    # no traced tensor stays on a module: run() assigns real ones
        spent = tuple(i for i, o in enumerate(outputs) if tr.backward_ran and o in tr.grad_nodes)
        del out, sym_leaves
        if dump is not None:
            dump.time("trace", time.perf_counter() - t0)
        self._specialisations(leaves)
        outputs += [t._data.node for _, _, t in stores]
        outputs += [t._data.node for t in grad_tensors]
        del grad_tensors
        graph.set_outputs(outputs)
        tr.finish_mutations()
        if env is not None:
            pin_symbols(graph, env)
        bindings = _bindings(graph, tr, tensor_index)
        dce(graph)
        # before the backward graph: the fused op's gradient is one fused op too
        # (options={"fuse_attention": False} keeps the ops: the form other devices and dtypes compile)
        before = set(graph.nodes())
        for old, new in (fuse_attention(graph) if self.options.get("fuse_attention", True) else {}).items():
            outputs = [new if o is old else o for o in outputs]
            if old in tr.grad_nodes:    # the nodes the match added (autocast's casts too) carry the gradient
                tr.grad_nodes.update(_added_above(new, before))
        backward = None if tr.backward_ran else self._backward(graph, bindings, leaves, outputs, tr.grad_nodes)
        state = state_guard(self.fn, watch.frames if watch.active else None, self.module,
                            skip={(id(m), name) for m, name, _ in stores})
        if grad_guard is not None:
            grad_guard.names = tr.names
        cg = CompiledGraph(self.name, graph, bindings, out_spec, out_consts, tr.rng_count, backward,
                           _graph_device(leaves, tr), state=state, stores=tuple((m, n) for m, n, _ in stores),
                           grads=grad_replay, grad_guard=grad_guard, spent=spent,
                           opt_guards=tuple(OptimizerGuard(o, e) for o, e in tr.optimizers.values()),
                           shape_guard=ShapeGuard(env) if env is not None else None)
        if dump is not None:
            dump.captured(cg)               # before the backend: passes may rewrite cg.graph
            t_build = time.perf_counter()
        if env is not None:
            env.structural = True
        try:
            cg.forward_exec, cg.backward_exec, cg.backend = backends.build(
                cg, self.backend, self.name, dump, cuda_graphs=self.cuda_graphs, stats=self.stats)
        except Exception as e:
            if dump is not None:     # the dump keeps what was written before the failure, and why
                dump.missing("build", f"{type(e).__name__}: {e}")
                dump.finish(cg, self, status="failed")
            raise
        _program_records(cg, self.name)
        if dump is not None:        # ember.profiler writes its rows for these executors into the dump
            for ex in (cg.forward_exec, cg.backward_exec):
                with contextlib.suppress(AttributeError):
                    if ex is not None:
                        ex.dump_folder = str(dump.path)
        if self.check == "fp64":
            repro = getattr(dump, "path", None) if dump is not None else None
            cg.forward_exec = CheckedExecutor(cg.graph, cg.forward_exec, "forward", self.name, repro)
            if cg.backward_exec is not None:
                cg.backward_exec = CheckedExecutor(cg.backward.graph, cg.backward_exec, "backward", self.name, repro)
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
            dump.finish(cg, self, guards=describe_guards(self.guard_key(leaves, spec)) + state.describe()
                        + (cg.shape_guard.describe() if cg.shape_guard is not None else []))
        return cg

    def _trace(self, tr, watch, leaves, spec, n_args, shapes=None):
        """Run the function on symbolic inputs (under `watch`); returns its result, {placeholder:
        leaf index} and the symbolic leaves."""
        sym_leaves = []
        arg_names = _arg_names(self.fn, n_args)
        tensor_index = {}
        for i, x in enumerate(leaves):
            if isinstance(x, Tensor):
                s = tr.add_input(x, arg_names[i] if i < len(arg_names) else f"arg{i}", shape=(shapes or {}).get(i))
                tensor_index[s._data.node] = i
                sym_leaves.append(s)
            else:
                sym_leaves.append(x)
        sargs, skw = unflatten(spec, iter(sym_leaves))
        state = (rng.default_generator._seed, rng.default_generator._offset)
        try:
            with tracing(tr), watch:
                return self.fn(*sargs, **skw), tensor_index, sym_leaves
        finally:    # tracing draws no random numbers: the generator is advanced by each compiled call
            rng.default_generator._seed, rng.default_generator._offset = state

    def _backward(self, graph, bindings, leaves, outputs, grad_nodes=None) -> Backward | None:
        """The backward graph when grad mode is on and an input requires grad; the forward graph
        then also returns the values backward saves. `grad_nodes`: the nodes the trace recorded as
        requiring grad (no_grad blocks and detach() cut them)."""
        if not ag._mode.enabled or not outputs:
            return None
        sources = {ph: _bound_tensor(b, leaves) for ph, b in zip(graph.inputs, bindings)}
        flags = {ph: bool(t is not None and t.requires_grad) for ph, t in sources.items()}
        if not any(flags.values()):
            return None
        devices = {ph.device: t.device for ph, t in sources.items() if t is not None}
        devices.setdefault("cpu", CPU)
        bwd, saved, grad_out_index, grad_inputs, plan = build_backward(graph, flags, devices, grad_nodes)
        graph.set_outputs(outputs + saved)
        return Backward(bwd, tuple(saved), tuple(grad_out_index), tuple(grad_inputs), len(outputs), tuple(plan),
                        _saved_aliases(graph, saved, outputs), no_path(bwd))

    def _break(self, rec, graph=None, dump=None, leaves=None, spec=None):
        self.stats["breaks"] += 1
        r = records.emit(Record("breaks", rec.code, rec.reason, rec.source, fn=self.name,
                                node=_break_node(graph, rec)))
        if dump is not None:
            guards = describe_guards(self.guard_key(leaves, spec)) if leaves is not None else None
            dump.finish(None, self, guards=guards, status="break", record=r, partial=graph)
        if self.fullgraph:
            raise GraphBreakError(rec)
        if rec.code in _NO_SPLIT or rec.what in _NO_SPLIT:
            return _Eager(rec)
        from .split import SplitFunction      # (split.py builds on this module)
        return SplitFunction(self, rec)

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


def _added_above(node, before: set) -> set:
    """node and the nodes it reads, transitively, that a pass added (not in `before`)."""
    found, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n in before or n in found:
            continue
        found.add(n)
        todo.extend(n.inputs)
    return found


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


# Ops whose eager result is a view of their input (PyTorch views share the version counter).
_VIEW_OPS = ("reshape", "permute", "expand", "slice", "flip", "windows")


def _saved_aliases(graph, saved, outputs) -> tuple:
    """The tensors whose in-place modification eager autograd would catch for these saved values:
    ("input", k) for graph input k and ("output", i) for output i that is (a view of) the value a
    saved node views. An input written in place inside the graph counts as its mutation value."""
    def base(n):
        while n.op in _VIEW_OPS and n._inputs:
            n = n._inputs[0]
        return n

    written = {v: ph for ph, v in graph.mutations}
    bases = set()
    for s in saved:
        b = base(s)
        bases.add(written.get(b, b))
    # (the generator key a call draws with is no tensor anyone can modify: an attention step's dropout saves it)
    watch = [("input", k) for k, ph in enumerate(graph.inputs) if ph in bases and ph.meta.get("kind") != "rng"]
    watch += [("output", i) for i, o in enumerate(outputs) if base(o) in bases or written.get(base(o)) in bases]
    return tuple(watch)


def _check_trace(tr, watch, out, sym_leaves) -> list:
    """After a trace: break on what a graph cannot replay; returns [(module, name, traced tensor)],
    the module attributes the function assigned a traced tensor to (replayed after each call)."""
    if watch.unreplayable is not None:
        what, src = watch.unreplayable
        raise GraphBreak(BreakRecord("B010", f"{what} while tracing: its value would be frozen into the graph",
                                     src, "unreplayable"))
    stores = tr.symbolic_stores()
    keep = {id(t) for t in sym_leaves} | {id(t) for t in tr.overrides.values()} | {id(t) for _, _, t in stores}
    leaves: list = []
    flatten(out, leaves)
    keep |= {id(t) for t in leaves}
    escaped = tr.escaped(keep)
    if escaped:
        import gc
        gc.collect()        # a reference cycle may hold a dead one
        escaped = tr.escaped(keep)
    if escaped:
        t = escaped[0]
        raise GraphBreak(BreakRecord("B011", f"a traced tensor {t.dtype.name}{list(t.shape)} (computed at "
                                     f"{t._data.node.meta.get('source', '?')}) escapes the function: it is kept "
                                     "somewhere other than its result or a module attribute",
                                     t._data.node.meta.get("source", "?"), "escape"))
    return stores


def _bindings(graph, tr, tensor_index) -> list:
    consts = iter(tr.consts)
    hypers = iter(tr.hypers)
    out = []
    for ph in graph.inputs:
        kind = ph.meta.get("kind")
        if kind == "input":
            out.append(FromArg(tensor_index[ph]))
        elif kind == "const":
            out.append(FromConst(next(consts)))
        elif kind == "hyper":
            group, key, index = next(hypers)
            xp = tr_device_xp(ph, tr)
            out.append(FromHyper(group, key, index, ph.dtype, xp))
        else:
            out.append(FromRng())
    return out


def tr_device_xp(ph, tr):
    """The array module of a placeholder's device (numpy for "cpu")."""
    if ph.device == "cpu":
        return np
    from ..frontend.device import canonical
    return canonical(ph.device).xp


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
# torch.compile's other backend names: aot_eager runs the traced graphs without generated code (ember's
# eager interpreter), cudagraphs replays CUDA graphs (ember's default on CUDA for whole steps)
BACKEND_ALIASES = {"aot_eager": "eager", "cudagraphs": "auto"}


def compile(model=None, *, fullgraph=False, dynamic=None, backend="auto", mode=None, options=None,
            disable=False, recompile_limit=DEFAULT_RECOMPILE_LIMIT, dump=None):
    """Compile a function or Module (also usable as @ember.compile or @ember.compile(...))."""
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable, recompile_limit=recompile_limit, dump=dump)
    backend = BACKEND_ALIASES.get(backend, backend)
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
