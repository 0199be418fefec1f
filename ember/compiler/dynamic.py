"""Dynamic sizes: which argument dimensions a compiled variant leaves symbolic, and its shape guards.

    f = ember.compile(model, dynamic=True)     # every argument dimension symbolic from the first call
    ember.mark_dynamic(x, 0)                   # this tensor's dim 0 symbolic wherever it is passed
    f = ember.compile(model)                   # dynamic=None: "automatic dynamic" -- after a size
                                               # changes once, that dimension becomes symbolic

A symbolic dimension is traced as a `SymInt` (ember/ir/symbolic.py) instead of its value: the graph
IR, kernel IR and generated code carry it, so one program serves every size.  Sizes 0 and 1 are
never symbolic (as in PyTorch): they change broadcasting, so they key a variant of their own.
The same dimension of different arguments with equal sizes shares one symbol ("duck sizing").

The trace and the backend record a guard whenever they decide something from a symbolic size (a
reshape's divisibility, a broadcast, `int()` of a size, which pins it); `ShapeGuard.check` evaluates
them for a call's sizes, and a call that breaks one compiles another variant.  Symbols pinned to a
value by an equality guard are replaced by that value in the graph before the passes run.
"""
from __future__ import annotations

from ..frontend.tensor import Tensor
from ..ir.graph import Graph
from ..ir.ops import TType
from ..ir.symbolic import MIN_DYNAMIC, ShapeEnv, SymInt
from ..ir.sizes import substitute

__all__ = ["mark_dynamic", "maybe_mark_dynamic", "mark_static", "DynamicDims", "ShapeGuard", "symbolic_shapes",
           "pin_symbols"]


# ==================================================================================== marking
def _dims(t, dim) -> list:
    if not isinstance(t, Tensor):
        raise TypeError(f"mark_dynamic: expected a Tensor, got {type(t).__name__}")
    dims = [dim] if isinstance(dim, int) else list(dim)
    out = []
    for d in dims:
        if not -t.ndim <= d < max(t.ndim, 1):
            raise IndexError(f"mark_dynamic: dimension {d} out of range for a tensor with {t.ndim} dims")
        out.append(d % t.ndim)
    return out


def mark_dynamic(t: Tensor, dim, min=None, max=None) -> None:
    """Compile `t`'s dimension(s) `dim` as a symbolic size (torch._dynamo.mark_dynamic)."""
    t._dynamic_dims = frozenset(getattr(t, "_dynamic_dims", frozenset()) | set(_dims(t, dim)))
    t._static_dims = frozenset(getattr(t, "_static_dims", frozenset()) - set(_dims(t, dim)))


maybe_mark_dynamic = mark_dynamic


def mark_static(t: Tensor, dim=None) -> None:
    """Keep `t`'s dimension(s) fixed even under dynamic=True (torch._dynamo.mark_static)."""
    dims = range(t.ndim) if dim is None else _dims(t, dim)
    t._static_dims = frozenset(getattr(t, "_static_dims", frozenset()) | set(dims))
    t._dynamic_dims = frozenset(getattr(t, "_dynamic_dims", frozenset()) - set(dims))


_NONE = frozenset()


# ============================================================================ which dimensions
class DynamicDims:
    """The dynamic-size policy of one compiled function: `dynamic` is ember.compile's argument."""

    def __init__(self, dynamic, cuda: bool = False):
        if dynamic not in (None, True, False):
            raise ValueError(f"ember.compile: dynamic must be None, True or False, got {dynamic!r}")
        self.dynamic = dynamic
        self.cuda = cuda            # the CUDA backend builds for fixed sizes (its launch geometry)
        self.disabled = False       # set when a symbolic program could not be built (R006)
        self.auto: dict[int, frozenset] = {}     # leaf index -> dims that changed size (automatic)
        self._memo: dict = {}

    def of(self, i: int, t: Tensor) -> frozenset:
        """The symbolic dimensions of leaf i for this call (sizes 0 and 1 never are).  On every call's
        hot path: without marks the answer depends on (i, shape) only and is memoised."""
        if self.cuda or self.disabled:
            return _NONE
        extra = t.__dict__
        shape = t._data.shape
        if not extra:
            key = (i, shape)
            dims = self._memo.get(key)
            if dims is None:
                if t.device.type == "cuda" or self.dynamic is False:
                    dims = _NONE
                else:
                    want = range(len(shape)) if self.dynamic is True else self.auto.get(i, ())
                    dims = frozenset(d for d in want if d < len(shape) and shape[d] >= MIN_DYNAMIC)
                if len(self._memo) > 256:
                    self._memo.clear()
                self._memo[key] = dims
            return dims
        if t.device.type == "cuda":
            return _NONE
        marked = extra.get("_dynamic_dims")
        if self.dynamic is False and not marked:
            return _NONE
        dims = set(range(len(shape))) if self.dynamic is True else set(self.auto.get(i, ()))
        dims |= marked or set()
        dims -= extra.get("_static_dims") or set()
        return frozenset(d for d in dims if d < len(shape) and shape[d] >= MIN_DYNAMIC)

    def note_change(self, i: int, old_shape: tuple, new_shape: tuple) -> bool:
        """Automatic dynamic: leaf i came with another size; its changed dims become symbolic.
        True when that adds a dimension (the next compile is dynamic)."""
        if self.dynamic is not None or len(old_shape) != len(new_shape):
            return False
        changed = {d for d, (a, b) in enumerate(zip(old_shape, new_shape)) if a != b and a != "*"}
        if not changed:
            return False
        before = self.auto.get(i, frozenset())
        self.auto[i] = before | changed
        self._memo.clear()
        return not changed <= before


# ============================================================================ tracing symbols
def symbolic_shapes(env: ShapeEnv, leaves, dims_of) -> dict:
    """{leaf index: shape with SymInts} for the leaves with dynamic dims.  Equal sizes at the same
    dim of different arguments share a symbol (duck sizing: x's and y's batch; the trace's equality
    checks then need no guard); dims at other positions get their own, so a batch that happens to
    equal a feature size is not pinned with it."""
    by_value: dict = {}
    out = {}
    for i, x in enumerate(leaves):
        if not isinstance(x, Tensor):
            continue
        dims = dims_of(i, x)
        if not dims:
            continue
        shape = list(x._data.shape)
        for d in sorted(dims):
            n = int(shape[d])
            s = by_value.get((d, n))
            if s is None:
                s = by_value[(d, n)] = env.new_symbol(n, (i, d))
            shape[d] = s
        out[i] = tuple(shape)
    return out


def pin_symbols(graph: Graph, env: ShapeEnv) -> None:
    """Replace symbols an equality guard fixed (`s1 == 784`) by their value in every type and
    attribute of the graph, so the passes see plain sizes where nothing varies."""
    pinned = {}
    for g in env.guards:
        if g.op != "==":
            continue
        syms = {s for m in g.poly for s in m}
        if len(syms) != 1:
            continue
        (s,) = syms
        if set(g.poly) <= {(s,), ()} and g.poly.get((s,)) in (1, -1):
            pinned[s] = env.hints[s]
    if not pinned:
        return
    for n in graph.nodes():
        t = n.type
        if any(isinstance(s, SymInt) for s in t.shape):
            n.type = TType(substitute(t.shape, pinned), t.dtype)
        if n.attrs:
            n.attrs = substitute(n.attrs, pinned)


# ================================================================================ call guards
class ShapeGuard:
    """A variant's shape guards: where each symbol is read from the call's leaves, and the guards."""

    def __init__(self, env: ShapeEnv):
        self.env = env              # its guards: those of the trace and of the backend that built it
        self.sources = dict(env.sources)
        self._reads = tuple((s, i, d) for s, (i, d) in self.sources.items())

    def sizes(self, leaves) -> dict:
        return {s: leaves[i]._data.shape[d] for s, i, d in self._reads}

    def check(self, leaves):
        """None when every guard holds for these leaves, else (guard text, trace value, call value)."""
        values = {}
        for s, i, d in self._reads:
            v = values[s] = leaves[i]._data.shape[d]
            if v < MIN_DYNAMIC:
                return f"size symbol {s} >= {MIN_DYNAMIC}", self.env.hints[s], v
        if not self.env.guards:
            return None
        g = self.env.check(values)
        if g is None:
            return None
        return f"shape guard {g}", "held", "broken"

    def describe(self) -> list[str]:
        srcs = [f"{s} = arg{i}.shape[{d}]" for s, (i, d) in self.sources.items()]
        return srcs + [f"shape guard: {g}" for g in self.env.guards]
