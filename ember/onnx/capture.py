"""Capturing a model's forward graph for export: the one module that reaches into the compiler.

In:  a Module or function, example arguments, name hints for parameters and buffers.
Out: `Capture`: the graph IR that `ember.compile` traces (the same Tracer, dead code removed), its
     user-input placeholders in argument order, the concrete tensor behind every other placeholder
     (parameters, buffers, constants built in forward), and the structure of the outputs.

Everything ember.onnx needs from the compiler's internals is imported here, so when those modules
move (ember/frontend -> ember/compiler) this is the only file to update.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import ember
from ember import Tensor

# the compiler internals export needs (the tracer is ember.compile's own: when these move, update them here)
from ..frontend.dispatch import KERNELS                  # eager kernels, for constant folding
from ..compiler.capture import GraphBreak, Tracer, tracing
from ..ir.graph import Graph
from ..passes.dce import dce

__all__ = ["Capture", "capture", "evaluate"]


class CaptureError(RuntimeError):
    """The model could not be traced into one graph."""


@dataclass
class Capture:
    graph: Graph
    inputs: list            # placeholder per user tensor argument, in flattened argument order
    consts: dict            # placeholder -> concrete Tensor (parameters, buffers, other constants)
    rng: list               # placeholders of random-generator state (a sign of random ops)
    n_outputs: int


def _flatten(obj, out: list):
    """Tensors (and other leaves) of nested tuples/lists/dicts, in order."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, (list, tuple)) and not isinstance(o, Tensor):
            stack.extend(reversed(o))
        elif isinstance(o, dict):
            stack.extend(reversed(list(o.values())))
        else:
            out.append(o)
    return out


def _replace(obj, it):
    """obj with each Tensor leaf replaced by next(it) (the same nesting)."""
    if isinstance(obj, (list, tuple)) and not isinstance(obj, Tensor):
        vals = [_replace(o, it) for o in obj]
        return type(obj)(*vals) if hasattr(obj, "_fields") else type(obj)(vals)
    if isinstance(obj, dict):
        return type(obj)((k, _replace(v, it)) for k, v in obj.items())
    return next(it) if isinstance(obj, Tensor) else obj


def capture(fn, args: tuple, kwargs: dict, names: dict, input_names: list) -> Capture:
    """Trace fn(*args, **kwargs) once. `names`: id(tensor) -> name hint; `input_names` name the
    tensor arguments in flattened order."""
    graph = Graph("forward")
    tr = Tracer(graph, names)
    leaves = [x for x in _flatten((args, kwargs), []) if isinstance(x, Tensor)]
    syms = [tr.add_input(t, input_names[i] if i < len(input_names) else f"input_{i}") for i, t in enumerate(leaves)]
    sargs, skwargs = _replace((args, kwargs), iter(syms))
    try:
        with ember.no_grad(), tracing(tr):
            out = fn(*sargs, **skwargs)
    except GraphBreak as gb:
        r = gb.record
        raise CaptureError(f"ember.onnx.export: the model cannot be captured as one graph: [{r.code}] "
                           f"{r.reason} at {r.source}") from None
    outs = _flatten(out, [])
    if not outs or any(not isinstance(o, Tensor) for o in outs):
        bad = next((o for o in outs if not isinstance(o, Tensor)), None)
        raise CaptureError("ember.onnx.export: the model must return tensors (or tuples/lists/dicts of tensors); "
                           f"it returned {type(bad).__name__ if outs else 'nothing'}")
    out_nodes = [tr.node_of(o) for o in outs]
    graph.set_outputs(out_nodes)
    tr.finish_mutations()
    if graph.mutations:
        ph = graph.mutations[0][0]
        raise CaptureError(f"ember.onnx.export: the model writes {ph.name[1:]!r} in place while running "
                           "(ONNX graphs hold no state); export in eval mode (training=TrainingMode.EVAL) "
                           "or remove the in-place update")
    inputs = [p for p in graph.inputs if p.meta.get("kind") == "input"]
    consts, rng, k = {}, [], 0
    for p in graph.inputs:
        kind = p.meta.get("kind")
        if kind == "const":
            consts[p] = tr.consts[k]
            k += 1
        elif kind == "rng":
            rng.append(p)
    dce(graph)
    consts = {p: t for p, t in consts.items() if p in graph}
    return Capture(graph, inputs, consts, [p for p in rng if p in graph], len(out_nodes))


def evaluate(node, arrays: list) -> np.ndarray:
    """Run one graph node on host arrays with the eager kernel (constant folding)."""
    return np.asarray(KERNELS[node.op](np, *arrays, **node.attrs))
