"""Backward graphs: differentiate a captured forward graph by tracing the primitives' VJPs.

Given the forward graph and which inputs need gradients, `build_backward` replays each node's VJP
(the same functions eager autograd uses, from dispatch.VJPS) on symbolic tensors, in reverse
topological order, recording into a new graph. Forward values a VJP reads become backward inputs
("saved values"); the forward graph gains them as extra outputs. Both graphs are then compiled
and run as one autograd node.

A saved value that is one cheap pointwise op of other saved values, inputs or constants, and that
neither graph needs in memory for its own sake, is recomputed in the backward instead
(`_recompute_cheap`): a layer norm's normalised x is (x - mean) * rstd, both saved anyway; exact
GELU's x / sqrt(2) is a scaling of the saved x.  The forward then writes it nowhere (it stays inside
its fused kernel) and the backward computes it inside the kernel that reads it: a GPT step writes and
reads ~17 MB less.  A saved widening cast of a value nothing saves (autocast's float32 copy of a bf16
activation for a float32 op's backward) saves the narrow value instead and casts it again in the backward:
half the bytes written and read.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..passes.dce import dce
from ..passes.fusion.classify import VIEW_OPS, NodeClass, classify
from ..ir.ops import OPS
from ..frontend import dispatch
from .capture import Tracer, tracing


_RECOMPUTE = ("cast", "permute", "reshape", "expand")


def _recomputable(n, depth: int = 4) -> bool:
    """n is a short chain of views and casts over graph inputs (cheap to recompute in the backward)."""
    if n.op not in _RECOMPUTE or depth == 0:
        return False
    return all(i.is_placeholder or _recomputable(i, depth - 1) for i in n._inputs)


_WINDOW_VIEWS = ("permute", "reshape", "windows", "cat", "full")


def _im2col(n, depth: int = 8) -> bool:
    """n is a convolution's columns: window views of one forward value (and the bias row of ones: a cat
    with a constant).  The backward rebuilds them from that value -- saved instead (conv2's input is
    0.4 MB, its columns 4 MB), or an input -- and its weight-gradient product then reads them in place
    (ember/passes/implicit_gemm.py), so neither pass writes the columns to memory."""
    found, bases, stack = False, set(), [(n, depth)]
    while stack:
        m, d = stack.pop()
        if m.op not in _WINDOW_VIEWS or d == 0:
            bases.add(m)
            continue
        if m.op == "full":
            continue
        found |= m.op == "windows"
        stack.extend((i, d - 1) for i in m._inputs)
    return found and len(bases) == 1 and n not in bases


_CHEAP_KINDS = ("unary", "binary", "ternary", "cast")
_BUFFER_CLASSES = (NodeClass.EXTERN, NodeClass.EAGER)      # consumers that read a value from memory


def _read_from_memory(g: Graph, n) -> bool:
    """Some consumer of n in g reads it as a buffer (a product's operand, an eager op's input, a graph
    output), also through views of it."""
    outs = set(g.outputs) | {v for _, v in g.mutations}
    stack = [n]
    while stack:
        m = stack.pop()
        if m in outs:
            return True
        for u in g.users(m):
            if u.op in VIEW_OPS:
                stack.append(u)
            elif classify(u)[0] in _BUFFER_CLASSES:
                return True
    return False


def _recompute_cheap(fwd: Graph, bwd: Graph, in_bwd: dict) -> dict:
    """Replace saved placeholders of cheap pointwise values by their recomputation in bwd (see the
    module docstring).  in_bwd: forward node -> its bwd node (a saved value the backward reads, or a
    recomputed view): what a recomputation may read, besides constants (rebuilt for free).  Returns the
    forward values newly saved (a widening cast's input): node -> its bwd placeholder."""
    added = {}
    for n in fwd.nodes():
        ph = in_bwd.get(n)
        if ph is None or not ph.is_placeholder or n.is_placeholder:
            continue
        d = OPS.get(n.op)
        if d is None or d.kind not in _CHEAP_KINDS or d.cost > 1 or "random" in d.flags:
            continue
        if _read_from_memory(fwd, n) or _read_from_memory(bwd, ph):
            continue       # written to memory anyway (or read from it): saving it costs nothing extra
        if n.op == "cast" and _narrower(n._inputs[0], n) and n._inputs[0] not in in_bwd:
            i = n._inputs[0]
            in_bwd[i] = added[i] = bwd.placeholder(f"saved_{i.name.lstrip('%')}", i.type, i.device,
                                                   meta={"kind": "saved"})
        if not all(i in in_bwd or i.op in ("full", "arange") for i in n._inputs):
            continue
        args = []
        for i in n._inputs:
            if i not in in_bwd:         # a constant: rebuilt in the backward
                in_bwd[i] = bwd.add(i.op, [], dict(i.attrs), type=i.type, device=i.device, meta=dict(i.meta))
            args.append(in_bwd[i])
        c = bwd.add(n.op, args, dict(n.attrs), type=n.type, device=n.device, meta=dict(n.meta))
        bwd.replace_all_uses(ph, c)
        bwd.erase(ph)
        in_bwd[n] = c
    return added


def _narrower(x, y) -> bool:
    """x is a float value of fewer bytes per element than y (bf16 -> float32)."""
    return (x.dtype.is_floating_point and y.dtype.is_floating_point and not x.is_placeholder
            and x.dtype.itemsize < y.dtype.itemsize)


def requires_grad_nodes(fwd: Graph, input_flags: dict, traced: set | None = None) -> set:
    """Forward nodes whose value depends differentiably on an input that requires grad; with
    `traced` (the nodes the tracer saw requiring grad) only those: no_grad blocks cut the graph."""
    req = {n for n, f in input_flags.items() if f}
    for n in fwd.nodes():
        if n.is_placeholder:
            continue
        if traced is not None and n not in traced:
            continue
        if OPS[n.op].differentiable and n.op in dispatch.VJPS and any(i in req for i in n._inputs):
            req.add(n)
    return req


def _vjp_input(n):
    """A Python number the trace turned into a 0-d `full` (capture.py `node_of`), as the number: eager's VJPs
    get the number, and arithmetic on it (pow's `y - 1`) runs in Python, not in the tensor's dtype -- a bf16
    0-d tensor rounded pow's exponent and 15% of the gradient's elements differed.  None for anything else."""
    if n.op == "full" and (n.meta or {}).get("scalar"):
        return n.attrs["value"]
    return None


def no_path(bwd: Graph) -> frozenset:
    """Positions of the backward outputs whose forward input no output depends on: their gradient is not
    a zero but none at all (an unused argument's .grad stays None, as in PyTorch)."""
    return frozenset(k for k, o in enumerate(bwd.outputs) if (o.meta or {}).get("no_path"))


def build_backward(fwd: Graph, input_flags: dict, devices: dict, traced: set | None = None):
    """Returns (bwd graph, saved forward nodes in bwd-input order, grad output flags, grad inputs).

    bwd inputs: saved values (one placeholder per forward node read), then one gradient per
    differentiable forward output. bwd outputs: one gradient per forward input that requires grad.
    """
    req = requires_grad_nodes(fwd, input_flags, traced)
    bwd = Graph("backward")
    tr = Tracer(bwd)
    saved: dict = {}            # forward node -> symbolic tensor in bwd

    def val(n):
        t = saved.get(n)
        if t is None and n.op in ("full", "arange"):
            # constants are rebuilt in the backward graph, never saved
            c = bwd.add(n.op, [], dict(n.attrs), type=n.type, device=n.device, meta=dict(n.meta))
            return tr.symbolic(c, devices[n.device])
        if t is None and (_recomputable(n) or _im2col(n)):
            # a view or cast of an input (W.T, W cast to bf16 under autocast): the backward recomputes
            # it from the input, which it can read anyway, instead of the forward writing a copy to save
            c = bwd.add(n.op, [tr.node_of(val(i)) for i in n._inputs], dict(n.attrs), type=n.type,
                        device=n.device, meta=dict(n.meta))
            # (requires_grad as the forward value: VJPs only differentiate what requires grad)
            t = saved[n] = tr.symbolic(c, devices[n.device], requires_grad=n in req)
            return t
        if t is None:
            ph = bwd.placeholder(f"saved_{n.name.lstrip('%')}", n.type, n.device, meta={"kind": "saved"})
            t = tr.symbolic(ph, devices[n.device], requires_grad=n in req)
            saved[n] = t
        return t

    outs = fwd.outputs
    grad_out_nodes = []
    grads: dict = {}
    with tracing(tr, grad=False):
        for i, o in enumerate(outs):
            if o in req and o.dtype.is_floating_point:
                ph = bwd.placeholder(f"grad_out{i}", o.type, o.device, meta={"kind": "grad"})
                g = tr.symbolic(ph, devices[o.device])
                grads[o] = grads[o] + g if o in grads else g
                grad_out_nodes.append(i)
        for n in reversed(fwd.nodes()):
            if n.is_placeholder or n not in req or n not in grads:
                continue
            g = grads.pop(n)
            vjp, _ = dispatch.VJPS[n.op]
            tr.source = n.meta.get("source")   # backward nodes carry their forward node's line
            ins = [val(i) if (s := _vjp_input(i)) is None else s for i in n._inputs]
            in_grads = vjp(g, val(n), *ins, **n.attrs)
            for i, ig in zip(n._inputs, in_grads):
                if ig is None or i not in req:
                    continue
                grads[i] = grads[i] + ig if i in grads else ig
        grad_inputs = [ph for ph in fwd.inputs if input_flags.get(ph)]
        result = []
        for ph in grad_inputs:
            g = grads.get(ph)
            if g is None:       # no path from the outputs: PyTorch leaves its .grad alone (`no_path`)
                result.append(bwd.add("full", [], {"shape": tuple(ph.shape), "value": 0.0, "dtype": ph.dtype},
                                      device=ph.device, meta={"no_path": True}))
            else:
                if tuple(g.shape) != tuple(ph.shape):
                    raise RuntimeError(f"internal: gradient shape {tuple(g.shape)} != input shape {tuple(ph.shape)}")
                result.append(tr.node_of(g))
    if tr.consts:
        raise RuntimeError("internal: a VJP captured a concrete tensor while building the backward graph")
    bwd.set_outputs(result)
    dce(bwd, drop_input=lambda ph: ph.meta.get("kind") == "saved")
    in_bwd = {n: tr.node_of(t) for n, t in saved.items()}
    added = _recompute_cheap(fwd, bwd, {n: m for n, m in in_bwd.items() if m in bwd})
    dce(bwd, drop_input=lambda ph: ph.meta.get("kind") == "saved")
    # saved values in bwd-input order (placeholders that survived DCE)
    order = {t._data.node: n for n, t in saved.items()}
    order.update({ph: n for n, ph in added.items()})
    saved_fwd = [order[ph] for ph in bwd.inputs if ph in order]
    # how to feed each backward input: ("saved", j) or ("grad", k) (k indexes grad_out_nodes)
    plan, j, k = [], 0, 0
    for ph in bwd.inputs:
        if ph in order:
            plan.append(("saved", j))
            j += 1
        else:
            plan.append(("grad", k))
            k += 1
    return bwd, saved_fwd, grad_out_nodes, grad_inputs, plan
