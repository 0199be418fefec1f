"""Autograd inside a trace: `loss.backward()` and `ember.autograd.grad` while ember.compile records.

In:  the Tracer (its graph so far, which nodes require grad, the leaves it met) and the roots.
Out: gradient nodes recorded into the SAME graph, and, for backward(), symbolic `.grad`s on the
     leaves (parameters, arguments) accumulated as the eager engine does: a fresh `.grad` where it
     was None, an in-place add into the existing one otherwise (a mutation of that tensor).

The VJPs are the ones eager autograd uses (dispatch.VJPS), replayed over the traced nodes between
the roots and the leaves in reverse topological order, like ember/compiler/joint.py does for the
backward graph of a forward-only compile. Later traced code (an optimizer step, clip_grad_norm_)
reads the symbolic `.grad`s like any tensor, so forward, backward and update become one graph. The
tracer logs every `.grad` it assigns (GradEntry); ember/compiler/compiled.py turns the final ones into
graph outputs assigned after each call, and undoes them after the trace.

What cannot be captured is a graph break (B009): create_graph=True (the backward itself would have
to be differentiated), and gradients that must flow into a tensor computed outside the traced
function (it has a grad_fn the graph cannot call).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..frontend import autograd as ag
from ..frontend import dispatch
from ..frontend.device import canonical
from ..frontend.tensor import Tensor
from ..frontend.tracing_hooks import eager_now

_FREED = ("Trying to backward through the graph a second time (or directly access saved tensors after they "
          "have already been freed). Saved intermediate values of the graph are freed when you call "
          ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
          "graph a second time or if you need to access saved tensors after calling backward.")


@dataclass
class GradEntry:
    """A tensor whose `.grad` the trace assigned: its value when the trace first touched it, and
    whether that first touch read it (accumulated into it) rather than overwrote it (zero_grad)."""
    tensor: Tensor
    entry: object
    read: bool


def note_grad(tr, t: Tensor, read: bool = False) -> None:
    if id(t) not in tr.grad_log:
        tr.grad_log[id(t)] = GradEntry(t, t.grad, read)


def _current_node(tr, t: Tensor):
    if type(t._data).__name__ == "SymArray":
        return t._data.node
    o = tr.overrides.get(id(t))
    if o is not None:
        return o._data.node
    return tr.const_nodes.get(id(t))


def _leaves(tr):
    """({node: [leaf tensors]}, {node: what}) -- tensors that require grad and have no grad_fn,
    by the node holding their current value; and nodes standing for tensors with a history outside
    the trace (an argument or closed-over tensor computed with grad before the call)."""
    leaves: dict = {}
    outside: dict = {}
    for t in tr.consts:
        if t.requires_grad:
            n = _current_node(tr, t)
            if t.grad_fn is None:
                leaves.setdefault(n, []).append(t)
            else:
                outside[n] = t
    for ref in tr.made.values():
        t = ref()
        if t is not None and t.requires_grad and t.grad_fn is None and type(t._data).__name__ == "SymArray":
            n = t._data.node
            real = tr.arg_tensors.get(n)
            if real is not None and real.grad_fn is not None:
                outside[n] = real
            elif all(x is not t for x in leaves.get(n, ())):
                leaves.setdefault(n, []).append(t)
    return leaves, outside


def _accumulator_hooks(tr, t):
    """The AccumulateGrad of the real tensor behind leaf t (an argument's stand-in: the argument)."""
    real = tr.arg_tensors.get(t._data.node, t) if tr.is_symbolic(t) else t
    return real._accum


def _run(tr, roots, seeds, retain_graph, capture=None, only=None):
    """Propagate seeds from roots down to the leaves. capture: {node: None} to fill (autograd.grad,
    nothing accumulated); only: ids of the tensors backward(inputs=...) may accumulate into."""
    leaves, outside = _leaves(tr)
    grads: dict = {}
    for r, g in zip(roots, seeds):
        n = r._data.node
        grads[n] = grads[n] + g if n in grads else g
    wrapped: dict = {}

    def val(n):
        t = wrapped.get(n)
        if t is None:
            t = wrapped[n] = tr.symbolic(n, canonical(n.device))
            t.requires_grad = n in tr.grad_nodes or n in leaves or n in outside   # VJPs skip the rest
        return t

    prev_source = tr.source
    moved = len(tr.moved)
    try:
        for n in reversed(tr.graph.nodes()):
            if len(tr.moved) != moved:      # a replay diverged inside a VJP: its nodes were copied
                moved = len(tr.moved)
                m = tr.moved
                grads = {m.get(k, k): v for k, v in grads.items()}
                leaves = {m.get(k, k): v for k, v in leaves.items()}
                outside = {m.get(k, k): v for k, v in outside.items()}
                wrapped = {m.get(k, k): v for k, v in wrapped.items()}
                if capture is not None:
                    for k in [k for k in capture if k in m]:
                        capture[m[k]] = capture.pop(k)
            n = tr.moved.get(n, n)
            g = grads.pop(n, None)
            if g is None:
                continue
            fn = tr.grad_fns.get(n)
            if fn is not None and fn.pre_hooks:
                g = ag._run_hooks(fn.pre_hooks, g)
            if fn is not None and fn.retain is not None:
                kept = fn.retain()
                if kept is not None:
                    kept.grad = tr.symbolic(g._data.node, g.device)
            if capture is not None and n in capture:
                capture[n] = g
            if n in leaves:
                if capture is None:
                    for t in leaves[n]:
                        if only is None or id(t) in only:
                            _accumulate(tr, t, g)
                continue
            if n in outside:
                tr.graph_break("backward_outside", outside[n])
            if n not in tr.grad_nodes:
                continue
            if n in tr.freed:
                raise RuntimeError(_FREED)
            vjp = dispatch.VJPS[n.op][0]
            tr.source = n.meta.get("source")     # gradient nodes carry their forward node's line
            in_grads = vjp(g, val(n), *[val(i) for i in n._inputs], **n.attrs)
            for i, ig in zip(n._inputs, in_grads):
                if ig is None or not (i in tr.grad_nodes or i in leaves or i in outside):
                    continue
                grads[i] = grads[i] + ig if i in grads else ig
            if not retain_graph:
                tr.freed.add(n)
    finally:
        tr.source = prev_source


def _accumulate(tr, t, g):
    """The eager engine's AccumulateGrad on a traced leaf: hooks, then .grad = g or .grad += g."""
    acc = _accumulator_hooks(tr, t)
    if acc is not None and acc.pre_hooks:
        g = ag._run_hooks(acc.pre_hooks, g)
    if tuple(g.shape) != tuple(t.shape):
        raise RuntimeError(f"internal: gradient shape {tuple(g.shape)} != leaf shape {tuple(t.shape)}")
    note_grad(tr, t, read=True)
    if t.grad is None:
        t.grad = tr.symbolic(g._data.node, g.device)
    else:
        from ..frontend import math_ops
        t.grad._set_(math_ops.add(t.grad, g))
    if acc is not None and getattr(acc, "post_hooks", None):
        for h in tuple(acc.post_hooks):
            h(t)


def _capturable(tr, tensors, create_graph) -> bool:
    """Can this backward be recorded into the graph? Not with create_graph, nor when a root is a
    real tensor, nor (checked while recording; a replay meets the same graph) when the gradient
    would flow into a tensor with a history outside the traced piece. Otherwise graph_break: it
    raises, or -- a call running in pieces -- runs the graph so far and the caller goes on eagerly."""
    if create_graph:
        tr.graph_break("backward_create_graph", tensors[0] if tensors else None)
        return False
    if not all(tr.is_symbolic(t) for t in tensors) or _outside_cached(tr, tensors):
        tr.graph_break("backward_outside", tensors[0] if tensors else None)
        return False
    return True


def _outside_cached(tr, tensors) -> bool:
    """_reaches_outside, remembered by position in the piece: a replay meets the same graph, so it
    reuses the recording's answer instead of walking the graph again (split.py)."""
    if tr.split is None:
        return _reaches_outside(tr, tensors)
    return tr.split.decision("outside", lambda: _reaches_outside(tr, tensors))


def _reaches_outside(tr, tensors) -> bool:
    leaves, outside = _leaves(tr)
    if not outside:
        return False
    stack = [t._data.node for t in tensors]
    seen = set(stack)
    while stack:
        n = stack.pop()
        if n in outside:
            return True
        if n in leaves or n not in tr.grad_nodes:
            continue
        for i in n._inputs:
            if i not in seen:
                seen.add(i)
                stack.append(i)
    return False


def _roots(tensors):
    for t in tensors:
        if not t.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    return tensors


def backward(tr, tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None) -> None:
    """Tensor.backward / ember.autograd.backward inside a trace."""
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    if not _capturable(tr, tensors, create_graph):
        with eager_now():
            return ag.backward(tensors, grad_tensors, retain_graph, create_graph, inputs)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    if retain_graph is None:
        retain_graph = create_graph
    roots = _roots(tensors)
    with ag.no_grad():
        seeds = ag._make_grads(roots, grad_tensors, "backward")
        only = None
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            only = {id(t) for t in inputs}
        tr.backward_ran = True
        _run(tr, roots, seeds, retain_graph, only=only)


def grad(tr, outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         materialize_grads=False):
    """ember.autograd.grad inside a trace: the gradients are returned, nothing is accumulated."""
    from ..frontend import creation
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs_t = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not _capturable(tr, outputs, create_graph):
        with eager_now():
            return ag.grad(outputs, inputs, grad_outputs, retain_graph, create_graph, allow_unused,
                           materialize_grads=materialize_grads)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    if retain_graph is None:
        retain_graph = create_graph
    for t in inputs_t:
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = _roots(outputs)
    targets = []
    for t in inputs_t:
        n = _current_node(tr, t)
        if n is None:       # a concrete tensor the trace never used
            n = tr.node_of(t)
        targets.append(n)
    capture = {n: None for n in targets}
    with ag.no_grad():
        seeds = ag._make_grads(roots, grad_outputs, "grad")
        tr.backward_ran = True
        _run(tr, roots, seeds, retain_graph, capture=capture)
    res = []
    for t, n in zip(inputs_t, targets):
        g = capture[n]
        if g is None:
            if materialize_grads:
                with ag.no_grad():
                    g = creation.zeros_like(t)
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the "
                                   "graph. Set allow_unused=True if this is the desired behavior.")
        else:
            g = tr.symbolic(g._data.node, g.device)
        res.append(g)
    return tuple(res)
