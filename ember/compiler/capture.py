"""The tracer: runs user code on value-less tensors and records every primitive into a Graph.

While a Tracer is installed as `dispatch.tracer`, `dispatch.apply` calls `Tracer.record` instead of
running kernels. Traced tensors are ordinary `Tensor` objects whose `_data` is a `SymArray` (shape and
dtype, no values), so shape-driven Python control flow works unchanged. Concrete tensors met during
tracing (parameters, buffers, closed-over tensors, constants built inside the function) become graph
inputs whose current values are read at every call; in-place writes to them become mutation outputs.

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
from ..frontend import dispatch
from ..frontend.tensor import Tensor, _wrap

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

    def __init__(self, graph: Graph, names=None):
        self.graph = graph
        self.names = names or {}
        self.consts: list = []            # concrete tensors lifted to inputs, in placeholder order
                                          # (also keeps them alive: const_nodes/overrides key on id())
        self.const_nodes: dict = {}       # id(tensor) -> placeholder node
        self.overrides: dict = {}         # id(concrete tensor) -> symbolic tensor written in place
        self.mutated: dict = {}           # placeholder node -> latest value node
        self.rng_key = None               # placeholder for the generator state (seed, offset)
        self.rng_count = 0                # random numbers drawn in this trace
        self.source = None                # when set, the file:line given to every new node
        self.made: dict = {}              # id -> weakref of every symbolic tensor (escape check)
        self.stores: dict = {}            # (id(module), name) -> (module, name, where, old value)

    # ------------------------------------------------------------------ tensors and nodes
    def is_symbolic(self, t) -> bool:
        return isinstance(t, Tensor) and type(t._data) is SymArray

    def symbolic(self, node, device, requires_grad=False) -> Tensor:
        t = _wrap(SymArray(node.shape, node.dtype.np, node), device)
        t.requires_grad = requires_grad
        self.made[id(t)] = weakref.ref(t)
        return t

    def add_input(self, t: Tensor, name: str, kind: str = "input") -> Tensor:
        """A graph input for a user argument; returns its symbolic stand-in."""
        node = self.graph.placeholder(name, TType(tuple(t.shape), t.dtype), str(t.device.type),
                                      meta={"kind": kind})
        s = self.symbolic(node, t.device, t.requires_grad)
        return s

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
                                           meta={"kind": "const"})
                self.const_nodes[id(t)] = n
                self.consts.append(t)
            return n
        dtype = like_dtype or (dt.bool_ if isinstance(t, bool) else dt.int64 if isinstance(t, int) else dt.default_float)
        v = bool(t) if dtype is dt.bool_ else int(t) if dtype.is_integer else float(t)
        return self.graph.add("full", [], {"shape": (), "value": v, "dtype": dtype},
                              meta={"source": self.source or user_source()})

    # -------------------------------------------------------------------------- recording
    def record(self, op, inputs, attrs):
        dev_attr = attrs.pop("device", None)
        if op == "random":
            return self._record_random(inputs[0], attrs, dev_attr)
        like = None
        for t in inputs:
            if isinstance(t, Tensor):
                like = t.dtype
                if op == "where" and t.dtype is dt.bool_ and t is inputs[0]:
                    like = None
                    continue
                break
        if op == "where":
            like = next((t.dtype for t in inputs[1:] if isinstance(t, Tensor)), None)
        device = next((t.device for t in inputs if isinstance(t, Tensor)), None)
        if device is None:
            from ..frontend.device import canonical
            device = canonical(dev_attr)
        nodes = [self.node_of(t, like) for t in inputs]
        node = self.graph.add(op, nodes, dict(attrs), device=device.type,
                              meta={"source": self.source or user_source()})
        return self.symbolic(node, device)

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
        node = self.graph.add("random", [key_node], dict(attrs), device=device.type, meta={"source": user_source()})
        return self.symbolic(node, device)

    def inplace(self, dst, result):
        """dst.<op>_(...) while tracing: dst now stands for `result`; inputs record a mutation."""
        rnode = self.node_of(result)
        if tuple(rnode.shape) != tuple(dst.shape) or rnode.dtype is not dst.dtype:
            raise RuntimeError("internal: in-place result must match the destination's shape and dtype")
        if self.is_symbolic(dst):
            target = dst._data.node
            dst._data = SymArray(rnode.shape, rnode.dtype.np, rnode)
        else:
            target = self.node_of(dst)   # a concrete tensor: make sure it is an input
            self.overrides[id(dst)] = self.symbolic(rnode, dst.device)
        ph = self._placeholder_behind(target)
        if ph is not None:
            self.mutated[ph] = rnode
        return dst

    def _placeholder_behind(self, node):
        if node.is_placeholder:
            return node
        for ph, v in self.mutated.items():
            if v is node:
                return ph
        return None

    def graph_break(self, what, t=None):
        code = BREAKS.get(what)
        reason = CODES[code][1] if code else what
        code = code or "B099"
        raise GraphBreak(BreakRecord(code, reason, _user_frame_info(), what))

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

    def escaped(self, keep) -> list:
        """Symbolic tensors still alive after the trace that are not in `keep` (ids): stored in a
        global, a list or some other object the compiled graph cannot write."""
        alive = [r() for r in self.made.values()]
        return [t for t in alive if t is not None and id(t) not in keep and type(t._data) is SymArray]

    def finish_mutations(self):
        for ph, v in self.mutated.items():
            self.graph.add_mutation(ph, v)


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


class tracing:
    """Context manager installing a tracer (no autograd recording while tracing)."""

    def __init__(self, tracer):
        self.tracer = tracer

    def __enter__(self):
        from ..frontend import autograd as ag
        self._prev = dispatch.tracer
        self._grad = ag._mode.enabled
        dispatch.tracer = self.tracer
        ag._mode.enabled = False
        return self.tracer

    def __exit__(self, *exc):
        from ..frontend import autograd as ag
        dispatch.tracer = self._prev
        ag._mode.enabled = self._grad
        return False
