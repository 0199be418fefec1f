"""Graphs that split at graph breaks: the code before a break runs compiled, the break runs eagerly,
capture resumes after it.

torch.compile splits a function at the bytecode level: the bytecode before a break becomes a graph,
the break runs in Python, a "resume function" compiles the rest. ember splits at run time instead,
as lazy-tensor systems do: the function always runs as Python, with ember's tracer installed, so
tensor ops only record; at a break (a value read, a print, a data-dependent `if`, a call that must
run eagerly) the piece recorded so far is compiled and run, every traced tensor Python still holds
becomes a real tensor in place (same object), and recording goes on into the next piece, whose
inputs are those tensors. Python side effects -- `p.grad = ...`, `self.x = y`, an lr scheduler's
counters, prints -- simply happen, every call, as in eager mode.

Replaying without re-tracing. Recording a piece costs what tracing costs (tens of microseconds per
op: graph building, type inference, source lines). A later call runs the same Python again, but
the tracer's graph is a ReplayGraph: each node the tracer asks for is compared with the recorded
piece's next node (op, attributes, input nodes, type; inputs met as parameters or earlier pieces'
results, by shape/dtype/device/requires_grad) and the recorded node is returned -- no graph is
built, nothing is compiled. At the break the piece's compiled code runs on this call's tensors
(bound by position: the k-th tensor the piece met), so a replayed call costs a few microseconds
per op plus the pieces' kernels, instead of an eager call's per-op dispatch and kernels.

Divergence. Python may take another path than the recorded one (the `if` after an `.item()`).
The first mismatching node ends the replay of that piece: another recorded alternative with the
same prefix takes over if one matches, else the prefix is copied into a new graph and recording
goes on from there; the new piece becomes an alternative for later calls. Pieces form a tree: each
piece lists the pieces that followed it. Past `recompile_limit` pieces the function runs eagerly.

Gradients flow across pieces: a piece whose results require grad gets a backward graph, and its
results take the piece's autograd node as grad_fn (ember/compiler/compiled.py's
CompiledBackwardNode), so a later piece's backward -- or an eager `loss.backward()` at a break --
runs through it. A `loss.backward()` inside a piece differentiates that piece (grads.py); one that
must reach into an earlier piece runs eagerly at a break.
"""
from __future__ import annotations

import time

import numpy as np

from .. import diagnostics as records
from ..diagnostics import Record
from ..frontend import autograd as ag
from ..frontend import dispatch, rng
from ..frontend.device import CPU, canonical
from ..frontend.tensor import Tensor, _wrap
from ..ir.graph import Graph, Node
from ..ir.ops import OPS
from ..passes.dce import dce
from . import backends
from .capture import SymArray, Tracer, same_attrs, tracing, user_source
from .compiled import (_SPENT, Backward, CompiledBackwardNode, CompiledGraph, _OutputSelect, _graph_device,
                       _saved_aliases)
from .joint import build_backward, no_path
from .training import FromHyper

__all__ = ["SplitFunction"]


# ==================================================================================== pieces
class Piece:
    """One recorded piece: its graph, the nodes a replay must meet in order, what it returns, its
    compiled code, how it ended, and the pieces recorded after it."""

    def __init__(self, graph: Graph, grad_nodes: set, freed: set, outputs: list, brk, decisions: dict):
        self.graph = graph
        self.decisions = decisions              # (what, node count) -> answer the recording computed
        self.events = sorted(graph.nx.nodes, key=lambda n: n.id)      # creation order
        pos = {n: i for i, n in enumerate(self.events)}
        self.keys = [_key(n, pos) for n in self.events]
        # for the tracer's replay fast path: each node's SymArray, and which nodes may need grad
        self.sym = [SymArray(n.shape, n.dtype.np, n) for n in self.events]
        self.differentiable = frozenset(n for n in self.events if not n.is_placeholder and _may_need_grad(n))
        self.grad_nodes = frozenset(grad_nodes)
        self.freed = frozenset(freed)
        self.outputs = outputs                   # nodes the compiled piece returns, in order
        self.out_pos = {n: i for i, n in enumerate(outputs)}
        self.mutations = dict(graph.mutations)
        self.brk = brk                           # (code, source, what) of the break ending it; None: return
        self.cg: CompiledGraph | None = None     # None: nothing to run (no op before the break)
        self.next: list = []                     # pieces recorded after this one (alternatives)

    def __repr__(self):
        return f"<Piece {len(self.events)} nodes, ends at {self.brk[1] if self.brk else 'the return'}>"


def _may_need_grad(n: Node) -> bool:
    """The tracer's rule (capture.py record): a float result of a differentiable op with a VJP."""
    return n.dtype.is_floating_point and OPS[n.op].differentiable and n.op in dispatch.VJPS


def _key(n: Node, pos: dict) -> tuple:
    if n.is_placeholder:
        return _input_key(n.type, n.device, n.meta)
    return (n.op, repr(sorted(n.attrs.items())), tuple(pos[i] for i in n._inputs), n.type, n.device)


def _input_key(type, device, meta) -> tuple:
    meta = meta or {}
    return ("in", type, device, meta.get("kind"), meta.get("requires_grad"), meta.get("leaf"))


class _Mismatch(Exception):
    pass


class ReplayGraph:
    """Stands in for the tracer's Graph while a recorded piece replays: add()/placeholder() return
    the recorded node when it matches, else the run diverges (see the module docstring)."""

    def __init__(self, run, piece: Piece, alternatives: list):
        self.run = run
        self.piece = piece
        self.alternatives = alternatives
        self.i = 0

    def placeholder(self, name, type, device="cpu", meta=None):
        ev = self.piece.events
        if self.i < len(ev) and self.piece.keys[self.i] == _input_key(type, device, meta):
            self.i += 1
            return ev[self.i - 1]
        return self.run.diverge(self, lambda g, m: g.placeholder(name, type, device, meta))

    def add(self, op, inputs, attrs=None, type=None, device=None, meta=None):
        ev = self.piece.events
        attrs = attrs or {}
        if self.i < len(ev):
            n = ev[self.i]
            if _matches(n, op, inputs, attrs, device, self.run.tracer):
                self.i += 1
                return n
        return self.run.diverge(self, lambda g, m: self.run.new_node(g, op, [m.get(x, x) for x in inputs], attrs,
                                                                      type, device, meta, ev, self.i))

    insert = add

    def check_grad(self, node, rg: bool):
        """The node just met requires grad in this call exactly when it did in the recording."""
        if (node in self.piece.grad_nodes) == rg:
            return node
        self.i -= 1          # the node takes part in the divergence: copy the prefix before it, redo it
        return self.run.diverge(self, lambda g, m: _copy_node(g, node, m), grad_flag=rg)

    def nodes(self):
        return self.piece.events[:self.i]     # creation order is a topological order


class _Probe:
    """Accepts one add()/placeholder() when it matches a given recorded node (trying alternatives)."""

    def __init__(self, node, key, tracer):
        self.node, self.key, self.tracer = node, key, tracer

    def placeholder(self, name, type, device="cpu", meta=None):
        if self.key != _input_key(type, device, meta):
            raise _Mismatch()
        return self.node

    def add(self, op, inputs, attrs=None, type=None, device=None, meta=None):
        if not _matches(self.node, op, list(inputs), attrs or {}, device, self.tracer):
            raise _Mismatch()
        return self.node


def _is_scalar(op, attrs) -> bool:
    return op == "full" and attrs.get("shape") == ()


def _matches(n: Node, op, inputs, attrs, device, tr) -> bool:
    """Does recorded node n stand for op(inputs, **attrs)? A Python number that changed between calls
    was recorded as a scalar input: it takes this call's value (appended to tr.scalars)."""
    if n.op == op:
        return n._inputs == inputs and same_attrs(n.attrs, attrs) and (device is None or n.device == device)
    if n.is_placeholder and n.meta.get("kind") == "scalar" and _is_scalar(op, attrs) and \
            n.dtype is attrs["dtype"] and (device is None or n.device == device):
        tr.scalars.append(attrs["value"])
        return True
    return False


def _copy_node(g: Graph, n: Node, m: dict) -> Node:
    if n.is_placeholder:
        return g.placeholder(n.meta.get("name", "in"), n.type, n.device, dict(n.meta))
    return g.add(n.op, [m.get(x, x) for x in n._inputs], dict(n.attrs), type=n.type, device=n.device,
                 meta=dict(n.meta))


# ============================================================================= one call in pieces
class SplitRun:
    """One call of a split function: replays or records its pieces (installed as tracer.split)."""

    def __init__(self, sf: "SplitFunction"):
        self.sf = sf
        self.cf = sf.cf
        self.candidates = sf.first
        self.tracer = Tracer(None, sf.names, split=self)
        self.n_pieces = 0
        self._start()

    def decision(self, what: str, compute):
        """A yes/no the tracer derives from the graph so far (does a backward reach an earlier
        piece?): computed while recording, looked up while replaying."""
        tr = self.tracer
        if tr.replaying:
            rg = tr.graph
            got = rg.piece.decisions.get((what, rg.i))
            if got is not None:
                return got
        key = (what, rg.i if tr.replaying else len(tr.graph.nx))
        got = self.decisions[key] = compute()
        return got

    def _start(self):
        tr = self.tracer
        self.decisions = {}
        g = rng.default_generator       # traced random ops draw nothing: the piece draws when it runs
        self.rng_state = (g._seed, g._offset)
        if self.candidates:
            tr.reset_segment(ReplayGraph(self, self.candidates[0], self.candidates))
            tr.replaying = True
        else:
            tr.reset_segment(Graph(f"piece{self.n_pieces}"))
            tr.replaying = False

    # ------------------------------------------------------------------------ divergence
    def diverge(self, rg: ReplayGraph, make, grad_flag=None):
        """The replayed piece does not match the node asked for (make(graph, mapping) builds it;
        grad_flag: whether that node requires grad): switch to a recorded alternative with the same
        prefix that matches, else record from here."""
        tr = self.tracer
        i = rg.i
        prefix = rg.piece.keys[:i]
        flag = grad_flag
        for alt in rg.alternatives:
            if alt is rg.piece or i >= len(alt.events) or alt.keys[:i] != prefix:
                continue
            mapping = dict(zip(rg.piece.events[:i], alt.events[:i]))
            nxt = alt.events[i]
            if flag is not None and (nxt in alt.grad_nodes) != flag:
                continue
            n_scalars = len(tr.scalars)
            try:
                node = make(_Probe(nxt, alt.keys[i], tr), mapping)
            except _Mismatch:
                del tr.scalars[n_scalars:]
                continue
            tr.remap(mapping)
            rg.piece, rg.i = alt, i + 1
            return node
        g, mapping = self._copy_prefix(rg)
        return make(g, mapping)

    def new_node(self, g, op, inputs, attrs, type, device, meta, events, i):
        """The node a diverged replay records first. A Python number where the recording had another
        number becomes a scalar input (automatic dynamic: the next call with a third value replays)."""
        if _is_scalar(op, attrs) and i < len(events) and _is_scalar(events[i].op, events[i].attrs) and \
                events[i].attrs["dtype"] is attrs["dtype"]:
            from ..ir.ops import TType
            node = g.placeholder("scalar", TType((), attrs["dtype"]), device or "cpu", {"kind": "scalar"})
            self.tracer.scalars.append(attrs["value"])
            return node
        return g.add(op, inputs, attrs, type=type, device=device, meta=meta)

    def _copy_prefix(self, rg: ReplayGraph):
        """Leave replay: the nodes met so far go into a graph of their own; recording goes on."""
        tr = self.tracer
        g = Graph(f"piece{self.n_pieces}")
        mapping: dict = {}
        for n in rg.piece.events[:rg.i]:
            mapping[n] = _copy_node(g, n, mapping)
        tr.remap(mapping)
        tr.graph = g
        tr.replaying = False
        self.sf.divergences += 1
        records.emit(Record("recompiles", "R003", f"piece {self.n_pieces} took another path than recorded "
                            f"after {rg.i} nodes: recording it as an alternative", user_source(), fn=self.cf.name))
        return g, mapping

    # ------------------------------------------------------------------------ piece ends
    def at_break(self, rec) -> None:
        """A break: run the piece recorded so far and make every traced tensor real."""
        self.sf.note_break(rec)
        self._finish((rec.code, rec.source, rec.what))
        self._start()

    def finish(self) -> None:
        """The function returned: run the last piece."""
        self._finish(None)
        self.tracer.reset_segment(None)

    def _finish(self, brk) -> None:
        tr = self.tracer
        internal = {id(o) for o in tr.overrides.values()}    # stand for mutated tensors: written back
        live = [t for t in (r() for r in list(tr.made.values()))
                if t is not None and type(t._data) is SymArray and id(t) not in internal]
        need = list(dict.fromkeys(t._data.node for t in live))
        piece = None
        if tr.replaying:
            rg = tr.graph
            piece = rg.piece
            if rg.i != len(piece.events) or piece.brk != brk or dict(tr.mutated) != piece.mutations or \
                    any(n not in piece.out_pos and not n.is_placeholder for n in need):
                self._copy_prefix(rg)          # it ended differently: record it as an alternative
                need = list(dict.fromkeys(t._data.node for t in live))
                piece = None
        if piece is None:
            piece = self._record(brk, need)
        g = rng.default_generator       # (creation ops advanced it while tracing; eager did not yet)
        g._seed, g._offset = self.rng_state
        self._run(piece, live)
        self.n_pieces += 1
        self.candidates = piece.next

    def _record(self, brk, need) -> Piece:
        """File the piece the tracer just recorded as a candidate and compile it."""
        tr = self.tracer
        t0 = time.perf_counter()
        g = tr.graph
        tr.finish_mutations()
        outputs = sorted((n for n in need if not n.is_placeholder), key=lambda n: n.id)
        g.set_outputs(outputs)
        piece = Piece(g, tr.grad_nodes, tr.freed, outputs, brk, self.decisions)
        if outputs or g.mutations:
            piece.cg = self._compile(piece)
        self.candidates.append(piece)
        self.sf.pieces.append(piece)
        self.cf.stats["compile_time_s"] += time.perf_counter() - t0
        return piece

    def _compile(self, piece: Piece) -> CompiledGraph:
        """Executors for a recorded piece (a copy of its graph: the recording stays as it was).
        Inputs keep their positions (dead-code elimination keeps inputs)."""
        tr = self.tracer
        g, mapping = piece.graph.copy()
        outputs = g.outputs
        dce(g)
        tensors = _bound(tr, g.inputs)
        traced = {mapping[n] for n in tr.grad_nodes if n in mapping}
        freed = {mapping[n] for n in tr.freed if n in mapping}
        flags = {ph: bool(isinstance(t, Tensor) and t.requires_grad) for ph, t in zip(g.inputs, tensors)}
        backward = None
        if ag._mode.enabled and any(flags.values()) and any(o in traced and o not in freed for o in outputs):
            devices = {ph.device: t.device for ph, t in zip(g.inputs, tensors) if isinstance(t, Tensor)}
            devices.setdefault("cpu", CPU)
            bwd, saved, grad_out_index, grad_inputs, plan = build_backward(g, flags, devices, traced)
            if grad_out_index:
                g.set_outputs(outputs + saved)
                backward = Backward(bwd, tuple(saved), tuple(grad_out_index), tuple(grad_inputs), len(outputs),
                                    tuple(plan), _saved_aliases(g, saved, outputs), no_path(bwd))
        device = _graph_device([t for t in tensors if isinstance(t, Tensor)], tr)
        k = len(self.sf.pieces)
        cg = CompiledGraph(f"{self.cf.name}[piece {k}]", g, [None] * len(g.inputs), None, [], tr.rng_count,
                           backward, device)
        cg.forward_exec, cg.backward_exec, cg.backend = backends.build(cg, self.cf.backend, cg.fn_name, None)
        cg.input_pos = {ph: j for j, ph in enumerate(g.inputs)}
        cg.piece = (k, piece.brk[1] if piece.brk else None)
        self.cf.stats["compiles"] += 1
        self.cf.variants.append(cg)
        where = f"the break at {piece.brk[1]}" if piece.brk else "the return"
        records.emit(Record("graphs", "G001", f"captured piece {k}: {sum(1 for n in g.nodes() if not n.is_placeholder)}"
                            f" ops ({'with' if backward else 'no'} backward) up to {where}", user_source(),
                            fn=self.cf.name, extra={"piece": k, "break": piece.brk[1] if piece.brk else None}))
        return cg

    # ------------------------------------------------------------------------------ run
    def _run(self, piece: Piece, live: list) -> None:
        """Run a piece on this call's tensors, write its mutations back, give traced tensors values."""
        tr = self.tracer
        inputs = _bound(tr, piece.graph.inputs)
        arrays = []
        for t in inputs:
            if isinstance(t, Tensor):
                arrays.append(t._data)
            elif isinstance(t, (FromHyper, _ScalarValue)):
                arrays.append(t.array())
            else:
                seed, off = rng.default_generator.take(tr.rng_count)
                arrays.append(np.array([seed & 0x7FFFFFFFFFFFFFFF, off], dtype=np.int64))
        values = dict(zip(piece.graph.inputs, arrays))
        cg = piece.cg
        if cg is not None:
            results = cg.forward_exec.run(arrays)
            n_all = len(cg.graph.outputs)
            n_out = n_all - (len(cg.backward.saved) if cg.backward else 0)
            for (ph, _), val in zip(cg.graph.mutations, results[n_all:]):
                t = inputs[cg.input_pos[ph]]
                if val is not t._data:
                    t._data[...] = val
                t._vc[0] += 1
            out_tensors = [_wrap(a, cg.device) for a in results[:n_out]]
            if cg.backward is not None and ag.is_grad_enabled():
                _attach(cg, out_tensors, results[n_out:n_all], inputs)
            values.update(zip(piece.outputs, out_tensors))
        for t in live:
            n = t._data.node
            v = values[n]
            leaf = t.grad_fn is None and t.requires_grad
            src = v if isinstance(v, Tensor) else _wrap(v, t.device)
            t._data = src._data
            t._vc = src._vc
            if leaf or n.is_placeholder:
                continue                    # a leaf made inside the function stays a leaf
            t.requires_grad = src.requires_grad
            t.grad_fn = src.grad_fn
            if n in piece.freed:            # a backward inside the piece went through it
                t.requires_grad = True
                t.grad_fn = _SPENT


def _bound(tr, placeholders) -> list:
    """Per piece input: the tensor this call met (const), the FromHyper of this call's group (hyper),
    or None (the generator key) -- by position, in the order the tracer met them."""
    consts = iter(tr.consts)
    hypers = iter(tr.hypers)
    scalars = iter(tr.scalars)
    out = []
    for ph in placeholders:
        kind = ph.meta.get("kind")
        if kind == "const":
            out.append(next(consts))
        elif kind == "scalar":
            out.append(_ScalarValue(next(scalars), ph))
        elif kind == "hyper":
            group, key, index = next(hypers)
            xp = np if ph.device == "cpu" else canonical(ph.device).xp
            out.append(FromHyper(group, key, index, ph.dtype, xp))
        else:
            out.append(None)
    return out


class _ScalarValue:
    """This call's value of a scalar input."""

    def __init__(self, value, ph):
        self.value, self.ph = value, ph

    def array(self):
        xp = np if self.ph.device == "cpu" else canonical(self.ph.device).xp
        return xp.asarray(np.asarray(self.value, dtype=self.ph.dtype.np))


def _attach(cg, out_tensors, saved, inputs) -> None:
    """The piece's autograd node on its results, fed by this call's input tensors."""
    bw = cg.backward

    def tensor_of(ph):
        return inputs[cg.input_pos[ph]]
    sources = [tensor_of(ph) for ph in bw.grad_inputs]
    nexts = tuple((t.grad_fn if t.grad_fn is not None else t._accumulator()) if t.requires_grad else None
                  for t in sources)
    versions = []
    for kind, i in bw.watch:
        t = out_tensors[i] if kind == "output" else tensor_of(cg.graph.inputs[i])
        if isinstance(t, Tensor):           # (a scalar or hyper-parameter input has no versions)
            versions.append((t, t._vc[0], kind, i))
    node = CompiledBackwardNode(cg, saved, nexts, out_tensors, versions)
    for i in bw.grad_out_index:
        o = out_tensors[i]
        o.grad_fn = _OutputSelect(node, i)
        o.requires_grad = True


# ============================================================================ the cache entry
class SplitFunction:
    """The cache entry of a function that breaks: its calls run in pieces (see the module docstring)."""

    def __init__(self, cf, record):
        self.cf = cf
        self.names = cf._names()
        self.first: list = []        # candidates for the first piece
        self.pieces: list = []       # every piece recorded
        self.breaks: list = [record]  # the BreakRecords met, one per (code, file:line)
        self.divergences = 0
        self.exhausted = False       # too many alternatives, or code that cannot be captured: eager

    def guard_failure(self, leaves=()):
        return None          # a replay checks every node it meets instead

    def note_break(self, rec) -> None:
        if all((r.code, r.source) != (rec.code, rec.source) for r in self.breaks):
            self.breaks.append(rec)
            self.cf.stats["breaks"] += 1
            records.emit(Record("breaks", rec.code, rec.reason, rec.source, fn=self.cf.name))

    def __call__(self, args, kwargs):
        cf = self.cf
        if not self.exhausted and self.divergences > cf.recompile_limit:
            self.exhausted = True
            cf._warn_limit(cf.last_key, ("pieces (the path through the breaks)", "recorded", "another"))
        if self.exhausted:
            cf.stats["eager_calls"] += 1
            return cf.fn(*args, **kwargs)
        run = SplitRun(self)
        try:
            with tracing(run.tracer):
                out = cf.fn(*args, **kwargs)
                run.finish()
        except BaseException as e:
            _settle(run)
            if _internal(e):      # code ember cannot capture: run this function eagerly from now on
                self.exhausted = True
            raise
        return out


def _settle(run: SplitRun) -> None:
    """The function raised: run what was recorded before the error (eager would have), if it can."""
    try:
        with tracing(run.tracer):
            run.finish()
    except Exception:
        pass


def _internal(e: BaseException) -> bool:
    """An error from ember's side of the trace (a value-less array reached code that needs values)."""
    return "SymArray" in str(e) or "SymArray" in type(e).__name__
