"""The tracer: runs user code on value-less tensors and records every primitive into a Graph.

While a Tracer is installed as `dispatch.tracer`, `dispatch.apply` calls `Tracer.record` instead of
running kernels. Traced tensors are ordinary `Tensor` objects whose `_data` is a `SymArray` (shape and
dtype, no values), so shape-driven Python control flow works unchanged. Concrete tensors met during
tracing (parameters, buffers, closed-over tensors, constants built inside the function) become graph
inputs whose current values are read at every call; in-place writes to them become mutation outputs.

Traced tensors carry `requires_grad` as eager ones would (grad mode, no_grad blocks and detach() are
honoured); `loss.backward()` inside the trace differentiates the graph traced so far
(ember/compiler/grads.py) and assigns symbolic `.grad`s, which the compiled call replays as real ones.
Optimizers read the hyper-parameters schedulers change (lr, momentum, betas, weight_decay) as graph
inputs bound to their param_group (`group_scalar`), so a scheduler step never recompiles.

Reading a value (bool(), item(), numpy(), tolist(), print) raises GraphBreak with a stable code, the
reason and the user's file:line.
"""
from __future__ import annotations

import os
import sys
import weakref

import numpy as np

from ..diagnostics import BREAKS, CODES
from ..ir import dtypes as dt
from ..ir.graph import Graph
from ..ir.ops import OPS, TType
from ..frontend import autograd as ag
from ..frontend import dispatch
from ..frontend.tensor import Tensor, _wrap
from .reduced_numbers import needs_float32, record_in_float32
from .tracing import tracing  # noqa: F401  (re-exported: compiled, split, joint import it from here)

_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



class SymArray:
    """Stands in for an array while tracing: shape and dtype only."""

    __slots__ = ("shape", "dtype", "node")
    flags = type("flags", (), {"c_contiguous": True, "writeable": True})()

    def __init__(self, shape, np_dtype, node):
        self.shape = tuple(shape)
        self.dtype = np.dtype(np_dtype)
        self.node = node

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def strides(self):
        st, acc = [], self.dtype.itemsize
        for s in reversed(self.shape):
            st.append(acc)
            acc *= max(s, 1)
        return tuple(reversed(st))


class GraphBreak(Exception):
    """Raised inside tracing when the code needs a value; carries a BreakRecord."""

    def __init__(self, record):
        super().__init__(str(record))
        self.record = record


class BreakRecord:
    __slots__ = ("code", "reason", "source", "what")

    def __init__(self, code, reason, source, what):
        self.code, self.reason, self.source, self.what = code, reason, source, what

    def __str__(self):
        return f"[{self.code}] graph break at {self.source}: {self.reason}"

    __repr__ = __str__

    def as_dict(self):
        return {"code": self.code, "reason": self.reason, "source": self.source, "what": self.what}


def user_source(skip_ember=True) -> str:
    """file:line of the innermost frame outside the ember package (the user's code)."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_EMBER_DIR) or "/tests/" in fn or "/examples/" in fn:
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return "?"


def _user_frame_info():
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_EMBER_DIR):
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return "?"


class Tracer:
    """Records primitives into `graph`. `names` maps id(tensor) -> a name hint for inputs."""

    def __init__(self, graph: Graph, names=None, split=None):
        self.graph = graph
        self.names = names or {}
        self.split = split                # ember/compiler/split.py's SplitRun: breaks run the graph so
                                          # far and tracing goes on (None: a break raises GraphBreak)
        self.replaying = False            # graph is a ReplayGraph: nodes are checked, not built
        self.moved: dict = {}             # old node -> its copy, after a replay diverged (split.py)
        self.consts: list = []            # concrete tensors lifted to inputs, in placeholder order
                                          # (also keeps them alive: const_nodes/overrides key on id())
        self.const_nodes: dict = {}       # id(tensor) -> placeholder node
        self.overrides: dict = {}         # id(concrete tensor) -> symbolic tensor written in place
        self.mutated: dict = {}           # placeholder node -> latest value node
        self.mutated_by: dict = {}        # latest value node -> its placeholder (the reverse)
        self.override_nodes: set = set()  # nodes that hold a concrete tensor's in-place value
        self.rng_key = None               # placeholder for the generator state (seed, offset)
        self.rng_count = 0                # random numbers drawn in this trace
        self.source = None                # when set, the file:line given to every new node
        self.made: dict = {}              # id -> weakref of every symbolic tensor (escape check)
        self.stores: dict = {}            # (id(module), name) -> (module, name, where, old value)
        # autograd inside the trace (ember/compiler/grads.py)
        self.grad_nodes: set = set()      # nodes whose value requires grad (recorded in grad mode)
        self.grad_fns: dict = {}          # node -> TracedGradFn shared by the tensors of that node
        self.arg_tensors: dict = {}       # placeholder -> the real argument tensor it stands for
        self.stand_ins: dict = {}         # id(symbolic stand-in of an argument) -> its placeholder
        self.grad_log: dict = {}          # id(tensor) -> GradEntry: `.grad`s the trace assigned
        self.backward_ran = False         # loss.backward() / autograd.grad ran inside the trace
        self.freed: set = set()           # nodes a backward without retain_graph went through
        # optimizers stepped inside the trace and their hyper-parameter inputs
        self.optimizers: dict = {}        # id(optimizer) -> (optimizer, state epoch before its step)
        self.hyper_nodes: dict = {}       # (id(group), key, index, dtype) -> placeholder
        self.hyper_tensors: dict = {}     # the same key -> its tensor
        self.hypers: list = []            # (group, key, index) in placeholder order
        self.undo_log: list = []          # callables undoing what the trace did for real (state init)

    # ------------------------------------------------------------------ tensors and nodes
    def is_symbolic(self, t) -> bool:
        return isinstance(t, Tensor) and type(t._data) is SymArray

    def symbolic(self, node, device, requires_grad=False) -> Tensor:
        t = _wrap(SymArray(node.shape, node.dtype.np, node), device)
        if requires_grad:
            t.requires_grad = True
            if not node.is_placeholder:          # a traced non-leaf: give it a grad_fn, as eager would
                self.grad_nodes.add(node)
                t.grad_fn = self.grad_fn_of(node)
        self.made[id(t)] = weakref.ref(t)
        return t

    def grad_fn_of(self, node):
        fn = self.grad_fns.get(node)
        if fn is None:
            fn = self.grad_fns[node] = TracedGradFn(node)
        return fn

    def add_input(self, t: Tensor, name: str, kind: str = "input", shape: tuple | None = None) -> Tensor:
        """A graph input for a user argument; returns its symbolic stand-in (a leaf, which holds the
        argument's current .grad so that a backward inside the trace accumulates as eager does).
        `shape`: the argument's shape with SymInts for its dynamic dims (ember/compiler/dynamic.py)."""
        node = self.graph.placeholder(name, TType(tuple(shape or t.shape), t.dtype), str(t.device.type),
                                      meta={"kind": kind})
        s = self.symbolic(node, t.device, t.requires_grad)
        s.grad = t.grad
        self.arg_tensors[node] = t
        self.stand_ins[id(s)] = node
        return s

    def pending(self, t) -> bool:
        """True when t's values are not known while tracing: a traced tensor, or a concrete tensor
        the trace has written in place (its array still holds the value from before the call)."""
        return isinstance(t, Tensor) and (type(t._data) is SymArray or id(t) in self.overrides)

    def node_of(self, t, like_dtype=None):
        """The graph node for an op argument: symbolic tensors map to their node, concrete tensors
        become (cached) inputs, Python scalars become `full` constants."""
        if isinstance(t, Tensor):
            d = t._data
            if type(d) is SymArray:
                return d.node
            o = self.overrides.get(id(t))
            if o is not None:
                return o._data.node
            n = self.const_nodes.get(id(t))
            if n is None:
                name = self.names.get(id(t)) or ("const" if not t.requires_grad else "param")
                n = self.graph.placeholder(name, TType(tuple(t.shape), t.dtype), str(t.device.type),
                                           meta={"kind": "const", "requires_grad": t.requires_grad,
                                                 "leaf": t.grad_fn is None})
                self.const_nodes[id(t)] = n
                self.consts.append(t)
            return n
        dtype = like_dtype or (dt.bool_ if isinstance(t, bool) else dt.int64 if isinstance(t, int)
                               else dt.default_float)
        v = bool(t) if dtype is dt.bool_ else int(t) if dtype.is_integer else float(t)
        meta = {**(self._meta() or {}), "scalar": True}   # VJPs get the number itself (joint.py `_vjp_input`)
        return self.graph.add("full", [], {"shape": (), "value": v, "dtype": dtype}, meta=meta)

    def _meta(self):
        """A new node's meta: the user's file:line (not looked up while replaying: the node exists)."""
        return None if self.replaying else {"source": self.source or user_source()}

    # -------------------------------------------------------------------------- recording
    def record(self, op, inputs, attrs):
        if self.replaying:
            t = self._replay_op(op, inputs, attrs)
            if t is not None:
                return t
        dev_attr = attrs.pop("device", None)
        if op == "random":
            return self._record_random(inputs[0], attrs, dev_attr)
        like = None
        for t in inputs:
            if isinstance(t, Tensor):
                like = t.dtype
                break
        if op == "where":           # the dtype of the values, not of the condition
            like = next((t.dtype for t in inputs[1:] if isinstance(t, Tensor)), None)
        if like is not None and like.is_reduced_float and needs_float32(inputs, like):
            return record_in_float32(self.record, op, inputs, attrs, like)
        device = next((t.device for t in inputs if isinstance(t, Tensor)), None)
        if device is None:
            from ..frontend.device import canonical
            device = canonical(dev_attr)
        nodes = [self.node_of(t, like) for t in inputs]
        if self.moved:              # a replay diverged while these were looked up
            nodes = [self.moved.get(n, n) for n in nodes]
        node = self.graph.add(op, nodes, dict(attrs), device=device.type, meta=self._meta())
        rg = False
        if ag._mode.enabled and node.dtype.is_floating_point and OPS[op].differentiable and op in dispatch.VJPS:
            rg = any(isinstance(t, Tensor) and (t.requires_grad or id(t) in self.overrides and
                                                self.overrides[id(t)].requires_grad) for t in inputs)
        if self.replaying:
            node = self.graph.check_grad(node, rg)
        return self.symbolic(node, device, rg)

    def _replay_op(self, op, inputs, attrs):
        """The replay fast path (split.py): when the next recorded nodes are this op over exactly
        these tensors' nodes (and the `full` constants or scalar inputs of its Python numbers), with
        these attributes, return its tensor -- no graph, no type inference, no source lookup.
        None sends the call down the general path (new inputs, creation ops, a divergence)."""
        rgraph = self.graph
        piece = rgraph.piece
        i = rgraph.i
        events = piece.events
        if self.moved or op == "where":
            return None
        like = None
        k = 0                           # Python numbers: their nodes come first, in argument order
        for t in inputs:
            if isinstance(t, Tensor):
                if like is None:
                    like = t.dtype
            else:
                k += 1
        if i + k >= len(events):
            return None
        n = events[i + k]
        ins = n._inputs
        if n.op != op or len(ins) != len(inputs) or like is None or not same_attrs(n.attrs, attrs):
            return None
        grad = False
        device = None
        j = i
        scalars = None
        for t, want in zip(inputs, ins):
            if isinstance(t, Tensor):
                d = t._data
                if type(d) is SymArray:
                    node = d.node
                else:
                    o = self.overrides.get(id(t))
                    node = o._data.node if o is not None else self.const_nodes.get(id(t))
                if node is not want:
                    return None
                if device is None:
                    device = t.device
                if t.requires_grad:
                    grad = True
                continue
            if want is not events[j] or isinstance(t, Tensor):
                return None
            j += 1
            if want.op == "full":
                v = bool(t) if like is dt.bool_ else int(t) if like.is_integer else float(t)
                a = want.attrs
                if a["dtype"] is not like or type(a["value"]) is not type(v) or \
                        (a["value"] != v and not (v != v and a["value"] != a["value"])):    # (NaN == NaN here)
                    return None
            elif want.meta.get("kind") == "scalar" and want.dtype is like:
                scalars = (scalars or []) + [t]
            else:
                return None
        rg = grad and ag._mode.enabled and n in piece.differentiable
        if rg != (n in piece.grad_nodes):
            return None
        if scalars:
            self.scalars.extend(scalars)
        rgraph.i = i + k + 1
        t = _wrap(piece.sym[i + k], device)
        if rg:
            t.requires_grad = True
            self.grad_nodes.add(n)
            t.grad_fn = self.grad_fn_of(n)
        self.made[id(t)] = weakref.ref(t)
        return t

    def _record_random(self, key, attrs, dev_attr):
        """Random ops read the generator state as an input at call time: key = state + (0, k)."""
        from ..frontend.device import canonical
        device = key.device if isinstance(key, Tensor) else canonical(dev_attr)
        if self.rng_key is None:
            self.rng_key = self.graph.placeholder("rng_state", TType((2,), dt.int64), "cpu", meta={"kind": "rng"})
        n = 1
        for s in attrs["shape"]:
            n *= s
        key_node = self.rng_key
        if self.rng_count:
            # (0, count): built as arange(2) * count keeps it one primitive cheap to fold
            off = self.graph.add("arange", [], {"n": 2, "start": 0, "step": self.rng_count, "dtype": dt.int64})
            key_node = self.graph.add("add", [self.rng_key, off], {})
        self.rng_count += n
        node = self.graph.add("random", [key_node], dict(attrs), device=device.type, meta=self._meta())
        return self.symbolic(node, device)

    def inplace(self, dst, result):
        """dst.<op>_(...) while tracing: dst now stands for `result`; inputs record a mutation."""
        rnode = self.node_of(result)
        if self.moved:
            rnode = self.moved.get(rnode, rnode)
        if tuple(rnode.shape) != tuple(dst.shape) or rnode.dtype is not dst.dtype:
            raise RuntimeError("internal: in-place result must match the destination's shape and dtype")
        if self.is_symbolic(dst):
            target = dst._data.node
            dst._data = SymArray(rnode.shape, rnode.dtype.np, rnode)
            if ag._mode.enabled and (isinstance(result, Tensor) and result.requires_grad or
                                     dst.requires_grad and dst.grad_fn is not None):
                dst.requires_grad = True        # eager: dst takes result's history (or keeps one whose
                dst.grad_fn = self.grad_fn_of(rnode)    # gradient is now zero)
        else:
            if rnode.is_placeholder or rnode in self.override_nodes:
                # p.copy_(x): p's new value gets a node of its own, so that p's writes and
                # gradients stay apart from x's
                rnode = self.graph.add("stop_gradient", [rnode], {}, meta=self._meta())
            target = self.node_of(dst)   # a concrete tensor: make sure it is an input
            if self.moved:
                rnode = self.moved.get(rnode, rnode)
            fresh = dst.__dict__.get("_made_in_trace") == id(self)   # made by this trace: a value, not state
            rg = fresh and ag._mode.enabled and isinstance(result, Tensor) and result.requires_grad
            self.overrides[id(dst)] = self.symbolic(rnode, dst.device, rg)     # (carries result's gradient)
            self.override_nodes.add(rnode)
            if fresh:       # no write-back: torch.zeros(3).add_(x) had kept the last call's sums
                return dst
        ph = self._placeholder_behind(target)
        if ph is not None:
            old = self.mutated.get(ph)
            if old is not None:
                self.mutated_by.pop(old, None)
            self.mutated[ph] = rnode
            self.mutated_by[rnode] = ph
        return dst

    def _placeholder_behind(self, node):
        if node.is_placeholder:
            return node
        return self.mutated_by.get(node)

    def graph_break(self, what, t=None):
        """The traced code needs something a graph cannot give (a value, a Python side effect). While
        a call runs in pieces (self.split) the graph traced so far runs now, every traced tensor gets
        its value, and tracing goes on in a new piece: returns the BreakRecord. Otherwise raises
        GraphBreak (ember.compile then runs the function in pieces, or raises with fullgraph=True)."""
        code = BREAKS.get(what)
        reason = CODES[code][1] if code else what
        code = code or "B099"
        rec = BreakRecord(code, reason, _user_frame_info(), what)
        if self.split is not None:
            self.split.at_break(rec)
            return rec
        raise GraphBreak(rec)

    # ------------------------------------------------------------------ pieces (split.py)
    def reset_segment(self, graph) -> None:
        """Start a new piece: every tensor is concrete again (split.py has run the last one)."""
        self.graph = graph
        self.consts = []
        self.const_nodes = {}
        self.overrides = {}
        self.mutated = {}
        self.mutated_by = {}
        self.override_nodes = set()
        self.rng_key = None
        self.rng_count = 0
        self.made = {}
        self.grad_nodes = set()
        self.grad_fns = {}
        self.freed = set()
        self.hyper_nodes = {}
        self.hyper_tensors = {}
        self.hypers = []
        self.moved = {}
        self.scalars = []                 # values of scalar inputs, in the order met (split.py)

    def remap(self, mapping: dict) -> None:
        """Point every piece of tracer state at the nodes `mapping` gives for the old ones (the
        replayed piece diverged: its prefix was copied into a graph of its own)."""
        def m(n):
            return mapping.get(n, n)
        self.moved = {**{k: m(v) for k, v in self.moved.items()}, **mapping}
        for ref in self.made.values():
            t = ref()
            if t is not None and type(t._data) is SymArray and t._data.node in mapping:
                d = t._data          # (a new SymArray: replayed pieces share theirs between calls)
                t._data = SymArray(d.shape, d.dtype, mapping[d.node])
        self.const_nodes = {k: m(n) for k, n in self.const_nodes.items()}
        self.mutated = {m(ph): m(v) for ph, v in self.mutated.items()}
        self.mutated_by = {v: ph for ph, v in self.mutated.items()}
        self.override_nodes = {m(n) for n in self.override_nodes}
        self.rng_key = m(self.rng_key) if self.rng_key is not None else None
        self.grad_nodes = {m(n) for n in self.grad_nodes}
        self.freed = {m(n) for n in self.freed}
        self.hyper_nodes = {k: m(n) for k, n in self.hyper_nodes.items()}
        fns = {}
        for n, fn in self.grad_fns.items():
            fn.node = m(n)
            fns[fn.node] = fn
        self.grad_fns = fns

    # ------------------------------------------------------------------ autograd and optimizers
    def backward(self, tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
        from .grads import backward
        return backward(self, tensors, grad_tensors, retain_graph, create_graph, inputs)

    def grad(self, outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
             materialize_grads=False):
        from .grads import grad
        return grad(self, outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused, materialize_grads)

    def note_grad(self, t: Tensor, read: bool = False) -> None:
        """t.grad is about to be assigned (zero_grad, backward): remember what it held."""
        from .grads import note_grad
        note_grad(self, t, read)

    def note_optimizer(self, opt) -> None:
        """opt.step() runs inside the trace: its state and param_groups become guards."""
        if id(opt) not in self.optimizers:
            self.optimizers[id(opt)] = (opt, opt._state_epoch)

    def group_scalar(self, group: dict, key: str, index=None, like: Tensor | None = None) -> Tensor:
        """A 0-d graph input holding group[key] (or group[key][index]) at call time: the optimizer
        hyper-parameters schedulers change are inputs, so changing them never recompiles."""
        dtype = like.dtype if like is not None and like.dtype.is_floating_point else dt.default_float
        device = like.device if like is not None else None
        k = (id(group), key, index, dtype, device)
        t = self.hyper_tensors.get(k)
        if t is not None:               # (optimizers only read it: one tensor serves every parameter)
            return t
        node = self.hyper_nodes.get(k)
        if node is None:
            name = key if index is None else f"{key}{index}"
            node = self.graph.placeholder(name, TType((), dtype), str(device.type) if device else "cpu",
                                          meta={"kind": "hyper"})
            self.hyper_nodes[k] = node
            self.hypers.append((group, key, index))
        from ..frontend.device import CPU
        t = self.hyper_tensors[k] = self.symbolic(node, device or CPU)
        return t

    # ------------------------------------------------------------ stores on module attributes
    def module_store(self, module, name: str) -> None:
        """`module.name = ...` is about to run while tracing: remember what was there (first store)."""
        key = (id(module), name)
        if key not in self.stores:
            where, old = _module_slot(module, name)
            self.stores[key] = (module, name, where, old)

    def symbolic_stores(self) -> list:
        """[(module, name, symbolic tensor)]: attributes the trace left holding a traced tensor."""
        out = []
        for module, name, _, _ in self.stores.values():
            _, v = _module_slot(module, name)
            if self.is_symbolic(v):
                out.append((module, name, v))
        return out

    def undo_stores(self, only_symbolic: bool = False) -> None:
        """Put back what module attributes held before the trace (all of them after a graph break:
        the eager run redoes them; the traced-tensor ones after a capture: the compiled call replays
        them with real tensors)."""
        for module, name, where, old in self.stores.values():
            if only_symbolic and not self.is_symbolic(_module_slot(module, name)[1]):
                continue
            d = module.__dict__
            for reg in ("_parameters", "_buffers", "_modules"):
                if name in d.get(reg, ()):
                    del d[reg][name]
            d.pop(name, None)
            if where == "__dict__":
                d[name] = old
            elif where is not None:
                d[where][name] = old

    def on_undo(self, fn) -> None:
        """Run fn() if this trace is abandoned (a graph break): it undoes a real side effect."""
        self.undo_log.append(fn)

    def undo_effects(self) -> None:
        """After a graph break: put back module attributes, `.grad`s and whatever on_undo noted."""
        self.undo_stores()
        for e in reversed(list(self.grad_log.values())):
            if id(e.tensor) not in self.stand_ins:
                e.tensor.grad = e.entry
        for fn in reversed(self.undo_log):
            fn()
        self.undo_log.clear()

    def escaped(self, keep) -> list:
        """Symbolic tensors still alive after the trace that are not in `keep` (ids): stored in a
        global, a list or some other object the compiled graph cannot write."""
        keep = set(keep) | {id(t) for t in self.hyper_tensors.values()}     # held by the tracer itself
        alive = [r() for r in self.made.values()]
        return [t for t in alive if t is not None and id(t) not in keep and type(t._data) is SymArray]

    def finish_mutations(self):
        for ph, v in self.mutated.items():
            self.graph.add_mutation(ph, v)


def same_attrs(a: dict, b: dict) -> bool:
    """Attribute dicts equal, NaN values included (a `full` of NaN is the same node every call)."""
    if a == b:
        return True
    if a.keys() != b.keys():
        return False
    return all(x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y)
               for x, y in ((a[k], b[k]) for k in a))


def _module_slot(module, name) -> tuple:
    """(where, value) of attribute `name` of a Module: its registry name or "__dict__"; (None, None)."""
    d = module.__dict__
    for reg in ("_parameters", "_buffers", "_modules"):
        r = d.get(reg)
        if r is not None and name in r:
            return reg, r[name]
    if name in d:
        return "__dict__", d[name]
    return None, None


class TracedGradFn:
    """The grad_fn of a traced tensor that requires grad: enough of autograd's Node for user code
    (name(), hooks, retain_grad) while the gradient itself is computed by ember/compiler/grads.py."""

    __slots__ = ("node", "pre_hooks", "retain", "freed", "__weakref__")
    next_functions = ()

    def __init__(self, node):
        self.node = node
        self.pre_hooks = None
        self.retain = None
        self.freed = False

    def name(self) -> str:
        return f"{''.join(p.capitalize() for p in self.node.op.split('_'))}Backward0"

    def __repr__(self):
        return f"<{self.name()} object (traced)>"
