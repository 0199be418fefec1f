"""Define-by-run autograd: graph nodes, the backward engine (the grad-mode switches: grad_mode.py).

Every differentiable op output on a grad-requiring path gets a `Node` holding the op's VJP and what
it saved. `backward()` walks the nodes in reverse topological order (iteratively: a chain of 100 000
ops must not recurse) and accumulates into `.grad` of leaves. VJPs are written with ember ops, so
with create_graph=True the backward pass itself is recorded and can be differentiated again.
"""
from __future__ import annotations

import functools
import sys

__all__ = ["Node", "AccumulateGrad", "no_grad", "enable_grad", "inference_mode", "set_grad_enabled",
           "is_grad_enabled", "is_inference_mode_enabled", "backward", "grad", "Function", "FunctionCtx",
           "once_differentiable", "ANOMALY"]


from .grad_mode import (  # noqa: E402,F401  (the switches live there; re-exported)
    ANOMALY, _GradContext, _mode, enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled,
    no_grad, set_grad_enabled)


# --------------------------------------------------------------------------------- graph nodes
class Node:
    """The grad_fn of one op output. `next_functions[i]` is the node that receives the gradient
    of input i (None when that input needs none)."""

    __slots__ = ("vjp", "op", "attrs", "inputs", "out", "next_functions", "saved_versions",
                 "pre_hooks", "retain", "freed", "__weakref__")

    def __init__(self, op, vjp, attrs, inputs, out, next_functions, saved_versions):
        self.op = op
        self.vjp = vjp
        self.attrs = attrs
        self.inputs = inputs            # input Tensors (or Python scalars) the VJP may read
        self.out = out                  # the output Tensor, for VJPs written in terms of it
        self.next_functions = next_functions
        self.saved_versions = saved_versions
        self.pre_hooks = None           # tensor hooks registered on the output
        self.retain = None              # output tensor when retain_grad() was called
        self.freed = False

    def name(self) -> str:
        return f"{''.join(p.capitalize() for p in self.op.split('_'))}Backward0"

    def __repr__(self):
        return f"<{self.name()} object at {hex(id(self))}>"

    def apply(self, g):
        if self.freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved tensors "
                "after they have already been freed). Saved intermediate values of the graph are freed "
                "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
                "backward through the graph a second time or if you need to access saved tensors after "
                "calling backward.")
        for t, v in self.saved_versions:
            if t._vc[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{t.dtype.name} {list(t.shape)}], which is output 0 of {self.name()}, is at "
                    f"version {t._vc[0]}; expected version {v} instead. Hint: the backtrace further above can "
                    "point to the operation that failed to compute its gradient.")
        return self.vjp(g, self.out, *self.inputs, **self.attrs)

    def release(self):
        # saved_versions too: an output saved for its own gradient (exp, sqrt ...) points back to this node,
        # and the cycle would leave the step's tensors to the garbage collector (~0.3 ms a gen-0 pass here)
        self.inputs = ()
        self.out = None
        self.saved_versions = ()
        self.freed = True


class GradSlots:
    """Gradients for several outputs of one multi-output node (a compiled graph), keyed by output
    index; the engine accumulates them with + like tensors."""

    __slots__ = ("slots",)

    def __init__(self, slots):
        self.slots = slots

    def __add__(self, other):
        merged = dict(self.slots)
        for i, g in other.slots.items():
            merged[i] = merged[i] + g if i in merged else g
        return GradSlots(merged)

    __radd__ = __add__


class AccumulateGrad:
    """The sink of a leaf tensor: adds incoming gradients into `.grad`, then runs the tensor's
    post-accumulate-grad hooks (DistributedDataParallel starts its all-reduce from them)."""

    __slots__ = ("variable", "pre_hooks", "post_hooks", "__weakref__")
    next_functions = ()
    freed = False
    retain = None

    def __init__(self, variable):
        self.variable = variable
        self.pre_hooks = None
        self.post_hooks = None

    def name(self):
        return "AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {hex(id(self))}>"

    def release(self):
        pass


def _run_hooks(hooks, g):
    for h in hooks:
        r = h(g)
        if r is not None:
            g = r
    return g


def _toposort(roots):
    """Nodes reachable from roots, with the number of edges into each (iterative DFS)."""
    deps = {}
    stack = [r for r in roots if r is not None]
    seen = set(id(r) for r in stack)
    order = list(stack)
    while stack:
        n = stack.pop()
        for nxt in n.next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if id(nxt) not in seen:
                seen.add(id(nxt))
                order.append(nxt)
                stack.append(nxt)
    return deps


def _unshared(g, grads, node, handed) -> bool:
    """The gradient reaching a leaf is held by nothing but the engine (its local name and getrefcount's
    argument: the engine drops its other references before), owns its memory, and is no caller's
    gradient and no array another leaf took in this pass: the leaf may take it without a copy, as
    PyTorch's AccumulateGrad does (use_count check).  A hook may keep what it sees: then copy."""
    if node.pre_hooks or g._base is not None or sys.getrefcount(g) > 3:
        return False
    a = g._data
    return getattr(a, "base", 0) is None and id(a) not in handed and all(g is not x for x in grads)


def run_backward(roots, grads, retain_graph, create_graph, capture=None, accumulate=True):
    """The engine. roots: grad_fn nodes; grads: their incoming gradients. With `capture`
    (a dict node -> None) the gradients reaching those nodes are returned instead of accumulated."""
    from .tensor import Tensor  # noqa: circular at import time only

    from .tensor import _wrap  # noqa: circular at import time only

    deps = _toposort(roots)
    handed: set = set()         # ids of the arrays leaves took over in this pass (they stay alive)
    pending: dict = {}
    for r, g in zip(roots, grads):
        if r is None:
            continue
        pending[r] = pending[r] + g if r in pending else g
    ready = [r for r in dict.fromkeys(roots) if r is not None and deps.get(r, 0) == 0]
    prev_mode = _mode.enabled
    _mode.enabled = create_graph
    try:
        while ready:
            node = ready.pop()
            g = pending.pop(node, None)
            if g is not None and node.pre_hooks:
                g = _run_hooks(node.pre_hooks, g)
            if capture is not None and node in capture:
                capture[node] = g if capture[node] is None else capture[node] + g
            if isinstance(node, AccumulateGrad):
                if accumulate and g is not None:
                    v = node.variable
                    if v.grad is None and not create_graph and _unshared(g, grads, node, handed) and \
                            g._data.strides == v._data.strides:
                        # PyTorch's AccumulateGrad steals a gradient nothing else holds: no copy
                        handed.add(id(g._data))
                        v.grad = _wrap(g._data, g.device)
                        g = None
                        if node.post_hooks:
                            for h in tuple(node.post_hooks):
                                h(v)
                        continue
                    if not create_graph:
                        g = g.detach()
                    if v.grad is None:
                        # PyTorch hands over a fresh tensor, never the caller's gradient, laid out as the
                        # parameter (its gradient layout contract: a transposed weight gradient is copied,
                        # and the fused optimizer updates see one layout)
                        fresh = g._base is None and g is not grads[0]
                        v.grad = g if fresh and g._data.strides == v._data.strides else _like(v, g)
                    elif create_graph:
                        v.grad = v.grad + g
                    else:
                        v.grad._data += g._data
                        v.grad._vc[0] += 1
                    if node.post_hooks:
                        for h in tuple(node.post_hooks):
                            h(v)
                continue
            if node.retain is not None and g is not None:
                t = node.retain()
                if t is not None:
                    t.grad = g if create_graph else g.detach()
            if g is None:
                in_grads = (None,) * len(node.next_functions)
            else:
                in_grads = node.apply(g)
                if ANOMALY[0] and ANOMALY[1]:
                    _check_nan(node, in_grads)
                if not retain_graph:
                    node.release()
            for nxt, ig in zip(node.next_functions, in_grads):
                if nxt is None:
                    continue
                if ig is not None:
                    if not isinstance(ig, (Tensor, GradSlots)):
                        raise RuntimeError(f"internal: VJP of {node.op} returned {type(ig)}")
                    pending[nxt] = pending[nxt] + ig if nxt in pending else ig
                deps[nxt] -= 1
                if deps[nxt] == 0:
                    ready.append(nxt)
            in_grads = ig = g = None      # pending holds the gradients now: _unshared counts references
    finally:
        _mode.enabled = prev_mode


def _like(v, g):
    """A copy of gradient g laid out as tensor v (same strides where v is dense)."""
    from .tensor import _wrap
    out = g._xp.empty_like(v._data, dtype=g._data.dtype)
    out[...] = g._data
    return _wrap(out, g.device)


def _check_nan(node, in_grads) -> None:
    """Anomaly mode: a backward function that returned NaN is named, as PyTorch's engine does."""
    from .tensor import Tensor
    for i, ig in enumerate(in_grads):
        if isinstance(ig, Tensor) and ig.dtype.is_floating_point and bool(ig.isnan().any()):
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")


def _make_grads(outputs, grad_outputs, api):
    from .tensor import Tensor
    from . import creation
    grads = []
    for i, (o, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if o.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if not o.dtype.is_floating_point:
                raise RuntimeError(f"grad can be implicitly created only for real scalar outputs but got {o.dtype.name}")
            g = creation.ones_like(o)
        elif not isinstance(g, Tensor):
            g = creation.tensor(g, dtype=o.dtype, device=o.device)
        elif tuple(g.shape) != tuple(o.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {tuple(g.shape)} and "
                               f"output[{i}] has a shape of {tuple(o.shape)}.")
        grads.append(g)
    return grads


def _root(t, api):
    if not t.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    if t._base is not None and t.__dict__.get("_vseen", t._vc[0]) != t._vc[0]:
        from .shape_ops import refresh_view
        refresh_view(t)
    return t.grad_fn if t.grad_fn is not None else t._accumulator()


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """ember.autograd.backward / Tensor.backward."""
    from .tensor import Tensor
    from . import dispatch
    if dispatch.tracer is not None:      # inside ember.compile: the tracer differentiates its graph
        return dispatch.tracer.backward(tensors, grad_tensors, retain_graph, create_graph, inputs)
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    if retain_graph is None:
        retain_graph = create_graph
    roots = [_root(t, "backward") for t in tensors]
    grads = _make_grads(tensors, grad_tensors, "backward")
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        res = grad(tensors, inputs, grads, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True)
        for t, g in zip(inputs, res):
            if g is not None:
                t.grad = g if t.grad is None else t.grad + g
        return
    run_backward(roots, grads, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """ember.autograd.grad: gradients of outputs w.r.t. inputs, returned (not accumulated).
    only_inputs is accepted and ignored, as in PyTorch (WGAN-GP scripts still pass it)."""
    if not only_inputs:
        import warnings
        warnings.warn("only_inputs argument is deprecated and is ignored now (defaults to True). To accumulate "
                      "gradient for other parts of the graph, please use torch.autograd.backward.", stacklevel=2)
    from .tensor import Tensor
    from . import creation
    from . import dispatch
    if dispatch.tracer is not None:      # inside ember.compile: the tracer differentiates its graph
        return dispatch.tracer.grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
                                    materialize_grads)
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    inputs_t = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    if retain_graph is None:
        retain_graph = create_graph
    for t in inputs_t:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = [_root(t, "grad") for t in outputs]
    grads = _make_grads(outputs, grad_outputs, "grad")
    targets = [t.grad_fn if t.grad_fn is not None else t._accumulator() for t in inputs_t]
    capture = {n: None for n in targets}
    run_backward(roots, grads, retain_graph, create_graph, capture=capture, accumulate=False)
    res = []
    for t, n in zip(inputs_t, targets):
        g = capture[n]
        if g is None:
            if materialize_grads:
                g = creation.zeros_like(t)
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the "
                                   "graph. Set allow_unused=True if this is the desired behavior.")
        elif not create_graph:
            g = g.detach()
        res.append(g)
    return tuple(res)


class FunctionCtx:
    """The `ctx` of an ember.autograd.Function: what forward hands to backward."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()
        self.materialize_grads = True
        self._non_differentiable = set()

    def save_for_backward(self, *ts):
        self.saved_tensors = ts

    def mark_non_differentiable(self, *ts):
        self._non_differentiable.update(id(t) for t in ts)

    def mark_dirty(self, *ts):
        pass   # in-place outputs: accepted for compatibility (ember's outputs are fresh tensors)

    def set_materialize_grads(self, value: bool):
        """False: backward receives None (not zeros) for outputs that got no gradient."""
        self.materialize_grads = bool(value)


_FunctionCtx = FunctionCtx


class Function:
    """ember.autograd.Function: user-defined forward/backward, as torch.autograd.Function.

    `forward(ctx, *args)` (or `forward(*args)` plus `setup_context(ctx, inputs, output)`) runs without
    recording; `backward(ctx, *grad_outputs)` returns one gradient (or None) per forward argument. One
    output or a tuple of outputs; ctx.mark_non_differentiable excludes outputs from the gradient. It
    runs eagerly: while ember.compile traces, forward's ember ops are recorded and differentiated
    as usual (backward is not used)."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        from .tensor import Tensor
        from . import dispatch
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        if dispatch.tracer is not None and is_grad_enabled() and any(ctx.needs_input_grad):
            dispatch.tracer.graph_break("custom_function")      # its Python backward() cannot be traced
            from .tracing_hooks import eager_now                # (a call in pieces goes on eagerly)
            with eager_now():
                return cls.apply(*args, **kwargs)
        separate = cls.setup_context is not Function.setup_context
        with no_grad():
            out = cls.forward(*args, **kwargs) if separate else cls.forward(ctx, *args, **kwargs)
            if separate:
                cls.setup_context(ctx, args, out)
        if not (is_grad_enabled() and any(ctx.needs_input_grad)):
            return out
        outs = out if isinstance(out, tuple) else (out,)
        diff = [isinstance(o, Tensor) and o.dtype.is_floating_point and id(o) not in ctx._non_differentiable
                for o in outs]
        detached = tuple(o.detach() if d else o for o, d in zip(outs, diff))
        node = _FunctionBackward(cls, ctx, args, detached, diff)
        for i, (o, d) in enumerate(zip(detached, diff)):
            if d:
                o.grad_fn = _FunctionOutput(node, i)
                o.requires_grad = True
        # a saved output is the returned tensor, with its history (as PyTorch): double backward sees it
        returned = {id(o): r for o, r in zip(outs, detached)}
        ctx.saved_tensors = tuple(returned.get(id(t), t) for t in ctx.saved_tensors)
        return detached if isinstance(out, tuple) else detached[0]


class _FunctionBackward:
    """One node for all outputs of a Function call: gathers their gradients (GradSlots) and calls backward."""

    def __init__(self, cls, ctx, args, outs, diff):
        from .tensor import Tensor
        self.cls, self.ctx = cls, ctx
        self.op = cls.__name__.lower()
        self.arg_is_tensor = [isinstance(a, Tensor) for a in args]
        # per argument: False (not a tensor), its float dtype, or None (no dtype to restore)
        self.arg_dtypes = [(a.dtype if a.dtype.is_floating_point else None) if isinstance(a, Tensor) else False
                           for a in args]
        self.next_functions = tuple((a.grad_fn if a.grad_fn is not None else a._accumulator()) if
                                    isinstance(a, Tensor) and a.requires_grad else None
                                    for a in args if isinstance(a, Tensor))
        self.out_like = [(tuple(o.shape), o.dtype, o.device) if d else None for o, d in zip(outs, diff)]
        self.pre_hooks = None
        self.retain = None
        self.freed = False

    def name(self) -> str:
        return f"{self.cls.__name__}Backward"

    def __repr__(self):
        return f"<{self.name()} object at {hex(id(self))}>"

    def apply(self, slots):
        from . import creation
        from .tensor import Tensor
        if self.freed:
            raise RuntimeError("Trying to backward through the graph a second time (or directly access saved "
                               "tensors after they have already been freed). Specify retain_graph=True if you "
                               "need to backward through the graph a second time.")
        grads = []
        for i, like in enumerate(self.out_like):
            g = slots.slots.get(i) if slots is not None else None
            if g is None and like is not None and self.ctx.materialize_grads:
                g = creation.zeros(like[0], dtype=like[1], device=like[2])
            grads.append(g)
        res = self.cls.backward(self.ctx, *grads)
        if not isinstance(res, tuple):
            res = (res,)
        if len(res) < len(self.arg_is_tensor):
            raise RuntimeError(f"function {self.name()} returned an incorrect number of gradients (expected "
                               f"{len(self.arg_is_tensor)}, got {len(res)})")
        # PyTorch's validate_outputs: a gradient takes its input's dtype (custom_fwd's cast_inputs runs
        # forward in float32 for a bfloat16 input, say)
        return tuple(g.to(d) if isinstance(g, Tensor) and d is not None and g.dtype is not d else g
                     for g, d in zip(res, self.arg_dtypes) if d is not False)

    def release(self):
        self.ctx = None
        self.freed = True


class _FunctionOutput:
    """grad_fn of output i of a Function call: forwards its gradient into the shared node's slot i."""

    __slots__ = ("next_functions", "index", "pre_hooks", "retain", "freed", "op", "__weakref__")

    def __init__(self, node, index):
        self.next_functions = (node,)
        self.index = index
        self.pre_hooks = None
        self.retain = None
        self.freed = False
        self.op = node.op

    def name(self) -> str:
        return self.next_functions[0].name()

    def __repr__(self):
        return f"<{self.name()} object at {hex(id(self))}>"

    def apply(self, g):
        return (GradSlots({self.index: g}),)

    def release(self):
        pass


def once_differentiable(fn):
    """torch.autograd.function.once_differentiable: run backward without recording a graph."""
    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        with no_grad():
            return fn(ctx, *grads)
    return wrapper
