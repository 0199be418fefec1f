"""ember.onnx.export: the captured graph IR written as an ONNX model.

In:  a Module (or function), example arguments, PyTorch's export options.
Out: an ONNX ModelProto, checked with onnx.checker, written to a path or a binary file object.

Steps: capture the forward graph as ember.compile traces it (capture.py; in eval mode unless told
otherwise, as PyTorch); with dynamic_axes, capture again at other sizes and fit every number that
moves (dynamic.py); fold what depends only on parameters (do_constant_folding); emit one or a few
ONNX nodes per primitive (ops.py); parameters and buffers become initializers named by their
state_dict keys.
"""
from __future__ import annotations

import enum
import inspect
import os

import numpy as np
import onnx
from onnx import helper

import ember
from .builder import Builder, value_info
from .capture import CaptureError, capture, evaluate
from .dynamic import Sym, Unfit, fit_tree, uses_unfit
from .errors import OnnxExporterError
from .ops import Ctx, tensor_attr, emit

DEFAULT_OPSET = 17
MIN_OPSET = 13
FOLD_LIMIT = 1 << 16        # folded constants may grow past their inputs only up to this many elements


class TrainingMode(enum.IntEnum):
    """torch.onnx.TrainingMode: the mode the model is exported in."""
    EVAL = 0
    PRESERVE = 1
    TRAINING = 2


_exporting = False


def is_in_onnx_export() -> bool:
    """True while ember.onnx.export is tracing the model (torch.onnx.is_in_onnx_export)."""
    return _exporting


def export(model, args, f, export_params: bool = True, verbose: bool = False,
           training: TrainingMode = TrainingMode.EVAL, input_names=None, output_names=None,
           operator_export_type=None, opset_version: int | None = None, do_constant_folding: bool = True,
           dynamic_axes=None, keep_initializers_as_inputs: bool | None = None, custom_opsets=None,
           export_modules_as_functions: bool = False, autograd_inlining: bool = True, dynamo: bool = False,
           **kwargs) -> None:
    """Export `model(*args)` to ONNX at `f` (a path or a binary file object), as torch.onnx.export.

    args: a tensor, or a tuple of arguments whose last element may be a dict of keyword arguments.
    dynamic_axes: {name: {axis: "dim_name"}} or {name: [axis, ...]} for inputs and outputs.
    Unsupported ops raise UnsupportedOperatorError naming the op and where the model used it."""
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"ember.onnx.export: opset_version {opset} is not supported (use {MIN_OPSET} to "
                         f"{onnx.defs.onnx_opset_version()})")
    if custom_opsets:
        raise OnnxExporterError("ember.onnx.export: custom_opsets are not supported (ember emits standard ops only)")
    pos, kw = _split_args(args)
    fn = model
    names = _state_names(model)
    tensors = [x for x in _leaves((pos, kw)) if isinstance(x, ember.Tensor)]
    in_names = _input_names(model, pos, kw, tensors, input_names)
    dyn = _dynamic_axes(dynamic_axes, in_names, output_names)
    global _exporting
    restore = _set_mode(model, training)
    _exporting = True
    try:
        traces, sizes, changed = _traces(fn, pos, kw, names, in_names, tensors, dyn)
    finally:
        _exporting = False
        restore()
    proto = _to_onnx(traces, sizes, changed, names, in_names, output_names, dyn, opset, export_params,
                     do_constant_folding, keep_initializers_as_inputs, model)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as out:
            out.write(data)
    else:
        f.write(data)
    if verbose:
        print(helper.printable_graph(proto.graph))   # verbose=True asks for this print, as in PyTorch


# ------------------------------------------------------------------------------ arguments
def _split_args(args):
    if isinstance(args, ember.Tensor):
        return (args,), {}
    if not isinstance(args, tuple):
        args = (args,)
    if args and isinstance(args[-1], dict):
        return args[:-1], dict(args[-1])
    return args, {}


def _leaves(obj):
    from .capture import _flatten
    return _flatten(obj, [])


def _state_names(model) -> dict:
    """id(tensor) -> its state_dict name, for parameters and buffers."""
    names = {}
    if hasattr(model, "named_parameters"):
        for n, t in model.named_parameters():
            names.setdefault(id(t), n)
        for n, t in model.named_buffers():
            names.setdefault(id(t), n)
    return names


def _input_names(model, pos, kw, tensors, given):
    if given is not None:
        given = list(given)
        if len(given) > len(tensors):
            raise ValueError(f"ember.onnx.export: {len(given)} input_names for {len(tensors)} tensor inputs")
        return given + [f"input_{i}" for i in range(len(given), len(tensors))]
    try:
        params = list(inspect.signature(getattr(model, "forward", model)).parameters)
    except (TypeError, ValueError):
        params = []
    out = []
    for i, a in enumerate(pos):
        if isinstance(a, ember.Tensor):
            out.append(params[i] if i < len(params) else f"input_{i}")
        else:
            out += [f"{params[i] if i < len(params) else f'input_{i}'}_{j}"
                    for j, x in enumerate(_leaves(a)) if isinstance(x, ember.Tensor)]
    for k, v in kw.items():
        ts = [x for x in _leaves(v) if isinstance(x, ember.Tensor)]
        out += [k] if len(ts) == 1 and isinstance(v, ember.Tensor) else [f"{k}_{j}" for j in range(len(ts))]
    return out


def _dynamic_axes(dynamic_axes, in_names, output_names):
    """-> {name: {axis: dim_name}} for inputs and outputs."""
    out = {}
    for name, axes in (dynamic_axes or {}).items():
        if name not in in_names and name not in (output_names or ["output"]):
            raise ValueError(f"ember.onnx.export: dynamic_axes names {name!r}, which is neither an input "
                             f"({in_names}) nor an output ({list(output_names or [])}) name")
        if isinstance(axes, dict):
            out[name] = {int(a): str(d) for a, d in axes.items()}
        else:
            out[name] = {int(a): f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(axes)}
    return out


def _set_mode(model, training):
    mods = list(model.modules()) if hasattr(model, "modules") else []
    before = [m.training for m in mods]
    if training == TrainingMode.EVAL:
        for m in mods:
            m.training = False
    elif training == TrainingMode.TRAINING:
        for m in mods:
            m.training = True

    def restore():
        for m, t in zip(mods, before):
            m.training = t
    return restore


# ------------------------------------------------------------------------------ traces
def _traces(fn, pos, kw, names, in_names, tensors, dyn):
    """Capture at the example sizes, then once per dynamic size changed alone, then all changed."""
    symbols = {}                                  # dim name -> [(tensor index, axis)]
    for i, name in enumerate(in_names):
        for axis, d in dyn.get(name, {}).items():
            if not -tensors[i].ndim <= axis < tensors[i].ndim:
                raise ValueError(f"ember.onnx.export: dynamic axis {axis} of input {name!r}, which has "
                                 f"{tensors[i].ndim} dims")
            symbols.setdefault(d, []).append((i, axis % tensors[i].ndim))
    base = {}
    for d, uses in symbols.items():
        vals = {tensors[i].shape[a] for i, a in uses}
        if len(vals) != 1:
            raise ValueError(f"ember.onnx.export: dynamic axis {d!r} names dims of sizes {sorted(vals)}; "
                             "one name must mean one size")
        base[d] = vals.pop()
    plans = [(dict(base), None)]
    for d in symbols:
        plans.append(({**base, d: base[d] + 3}, d))
    if symbols:
        plans.append(({d: s + 5 for d, s in base.items()}, None))
    traces = []
    for sizes, alone in plans:
        ts = [_resized(t, i, symbols, sizes) for i, t in enumerate(tensors)]
        it = iter(ts)
        p, k = _swap((pos, kw), it)
        try:
            traces.append(capture(fn, p, k, names, in_names))
        except CaptureError as e:
            raise OnnxExporterError(str(e)) from None
        except Exception as e:
            if alone is None and not traces:
                raise
            raise OnnxExporterError(f"ember.onnx.export: the model fails when dynamic axis {alone or 'all'!r} "
                                    f"changes size ({type(e).__name__}: {e}); if several inputs share a "
                                    "dimension, give their axes the same name in dynamic_axes") from e
    return traces, [s for s, _ in plans], [a for _, a in plans]


def _resized(t, i, symbols, sizes):
    for d, uses in symbols.items():
        for j, axis in uses:
            if j == i and t.shape[axis] != sizes[d]:
                n = t.shape[axis]
                # the example's own values, repeated (token ids stay valid ids)
                t = ember.index_select(t, axis, ember.tensor(np.arange(sizes[d]) % n)) if n else ember.zeros(
                    *[sizes[d] if a == axis else s for a, s in enumerate(t.shape)], dtype=t.dtype)
    return t


def _swap(obj, it):
    from .capture import _replace
    return _replace(obj, it)


# ------------------------------------------------------------------------------ emission
def _to_onnx(traces, sizes, changed, names, in_names, output_names, dyn, opset, export_params, fold,
             keep_inits, model):
    cap = traces[0]
    graphs = [t.graph for t in traces]
    orders = [g.nodes() for g in graphs]
    uniform = _check_same_structure(traces, orders, changed)
    order = orders[0]
    attrs, shapes = {}, {}
    for i, n in enumerate(order):
        attrs[n] = fit_tree([o[i].attrs for o in orders], sizes, changed)
        shapes[n] = list(fit_tree([list(o[i].shape) for o in orders], sizes, changed))
    if cap.rng:
        rnode = next(n for n in order if n.op == "random")
        src = rnode.meta.get("source")
        from .errors import UnsupportedOperatorError
        raise UnsupportedOperatorError(
            f"ember.onnx.export: op 'random'{f' at {src}' if src else ''} cannot be exported to ONNX: random numbers "
            "(dropout or a random op running in training mode) have no deterministic ONNX form; export in eval "
            "mode (the default, training=ember.onnx.TrainingMode.EVAL) or remove the random op")
    # where each dynamic size is read at run time: the first input axis that carries it
    dim_sources = {}
    for name, axes in dyn.items():
        if name in in_names:
            for axis, d in axes.items():
                dim_sources.setdefault(d, (name, axis % len(cap.inputs[in_names.index(name)].shape)))
    b = Builder(opset, dim_sources)
    env, const_vals = {}, {}
    graph_inputs, initializer_inputs = [], []
    for i, ph in enumerate(cap.inputs):
        name = b.reserve(in_names[i])
        env[ph] = name
        axes = dyn.get(name, {})
        dims = [axes.get(a, axes.get(a - len(ph.shape))) or s for a, s in enumerate(ph.shape)]
        graph_inputs.append(value_info(name, ph.dtype, dims))
    pnames = {}
    for ph, t in cap.consts.items():
        name = names.get(id(t))
        pnames[ph] = b.reserve(name) if name is not None else b.fresh("constant")
        const_vals[ph] = t
    used_consts = set()

    def const_name(ph):
        used_consts.add(ph)
        return pnames[ph]

    folded = {}                                           # node -> numpy value (constant folding)
    for n in order:
        if n.is_placeholder:
            if n in uniform:
                env[n] = b.op("ConstantOfShape", [b.ints(shapes[n])],
                              value=tensor_attr(np.full(1, uniform[n], dtype=n.dtype.np)))
            elif n in cap.consts and (export_params or id(cap.consts[n]) not in names):
                folded[n] = None                          # known, materialised lazily below
            continue
        ins = n.inputs
        if fold and n.op != "random" and all(i in folded for i in ins) and not _has_sym(attrs[n], shapes[n]):
            vals = [_value(i, folded, const_vals) for i in ins]
            if _fold_ok(n, vals):
                folded[n] = evaluate(n, vals)
                continue
        xs = []
        for i in ins:
            if i in env:
                xs.append(env[i])
            elif i.is_placeholder:
                xs.append(const_name(i))
                env[i] = xs[-1]
            else:
                v = folded[i]
                nm = b.initializer(b.fresh(f"{_hint(i, pnames)}"), v) if v.size > 64 else b.const(v)
                env[i] = nm
                xs.append(nm)
        if uses_unfit(attrs[n]):
            raise _node_error(n, "a size in it changes with the dynamic axes in a way ONNX shape ops cannot "
                                 f"express ({attrs[n]})")
        try:
            env[n] = emit(b, Ctx(n, xs, attrs[n], shapes[n], [shapes[i] for i in ins]))
        except OnnxExporterError:
            raise
        except Exception as e:
            raise _node_error(n, f"{type(e).__name__}: {e}") from e
    # graph outputs
    outs = list(cap.graph.outputs)
    out_names = list(output_names or (["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]))
    if len(out_names) != len(outs):
        raise ValueError(f"ember.onnx.export: {len(out_names)} output_names for {len(outs)} outputs")
    graph_outputs = []
    for k, (n, name) in enumerate(zip(outs, out_names)):
        b.reserve(name)
        if n not in env:
            if n.is_placeholder:
                env[n] = const_name(n)
            else:
                env[n] = b.const(folded[n])
        b.nodes.append(helper.make_node("Identity", [env[n]], [name], name=f"output_{k}"))
        axes = dyn.get(name, {})
        dims = []
        for a, s in enumerate(shapes[n]):
            given = axes.get(a, axes.get(a - len(shapes[n])))
            if given is not None:
                dims.append(given)
            elif isinstance(s, Sym) and s.is_plain:
                dims.append(s.dims[0])
            elif isinstance(s, (Sym, Unfit)):
                dims.append(f"{name}_dim_{a}")
            else:
                dims.append(s)
        graph_outputs.append(value_info(name, n.dtype, dims))
    # parameters and buffers: initializers (or inputs, export_params=False)
    for ph in cap.graph.inputs:
        if ph not in used_consts:
            continue
        arr = _host(const_vals[ph])
        if export_params or id(const_vals[ph]) not in names:    # (constants built in forward stay)
            b.initializer(pnames[ph], arr)
            if keep_inits:
                initializer_inputs.append(value_info(pnames[ph], ph.dtype, list(ph.shape)))
        else:
            initializer_inputs.append(value_info(pnames[ph], ph.dtype, list(ph.shape)))
    graph = helper.make_graph(b.nodes, type(model).__name__ if not inspect.isfunction(model) else model.__name__,
                              graph_inputs + initializer_inputs, graph_outputs, list(b.initializers.values()))
    return helper.make_model(graph, producer_name="ember", producer_version=ember.__version__,
                             opset_imports=[helper.make_opsetid("", opset)])


def _check_same_structure(traces, orders, changed) -> dict:
    """Raise unless every trace has the first one's graph; -> {placeholder: fill value} for constants
    that forward builds at a size following a dynamic axis (ember.zeros(x.shape[0], h)): uniform
    tensors, exported as ConstantOfShape of the fitted shape."""
    base = orders[0]
    uniform = {}
    pos0 = {n: i for i, n in enumerate(base)}
    for t, (cap, order) in enumerate(zip(traces[1:], orders[1:]), 1):
        what = f"dynamic axis {changed[t]!r}" if changed[t] else "all dynamic axes"
        pos = {n: i for i, n in enumerate(order)}
        if len(order) != len(base):
            raise OnnxExporterError(f"ember.onnx.export: the traced graph changes ({len(base)} vs {len(order)} "
                                    f"nodes) when {what} change size: the model's Python code depends on that "
                                    "size (a loop over it, a branch on it); export it with that axis fixed")
        for a, b_ in zip(base, order):
            if a.op != b_.op or [pos0[i] for i in a.inputs] != [pos[i] for i in b_.inputs] or \
                    a.attrs.keys() != b_.attrs.keys():
                raise OnnxExporterError(f"ember.onnx.export: the traced graph changes at {a.name} = {a.op} when "
                                        f"{what} change size: the model's Python code depends on that size; "
                                        "export it with that axis fixed")
        if [pos0[n] for n in traces[0].graph.outputs] != [pos[n] for n in cap.graph.outputs]:
            raise OnnxExporterError(f"ember.onnx.export: the model's outputs change when {what} change size")
        for (p0, t0), (p1, t1) in zip(traces[0].consts.items(), cap.consts.items()):
            if t0 is t1:
                continue
            a0, a1 = _host(t0), _host(t1)
            if a0.shape == a1.shape and a0.dtype == a1.dtype and np.array_equal(a0, a1, equal_nan=a0.dtype.kind == "f"):
                continue
            fill = _uniform(a0)
            if fill is not None and a1.dtype == a0.dtype and _uniform(a1) == fill and uniform.get(p0, fill) == fill:
                uniform[p0] = fill
            else:
                raise OnnxExporterError(
                    f"ember.onnx.export: the tensor {p0.name} that forward builds from Python values "
                    f"(shape {list(a0.shape)} vs {list(a1.shape)}) changes when {what} change size, so it cannot "
                    "be a constant of the exported graph; build it from tensor ops on the inputs, or keep a "
                    "full-size buffer and slice it")
    return uniform


def _uniform(a: np.ndarray):
    """The one value every element of a has (None when they differ or a is empty)."""
    if a.size == 0:
        return None
    v = a.reshape(-1)[0]
    same = np.all(a == v) if not (a.dtype.kind == "f" and np.isnan(v)) else np.all(np.isnan(a))
    return v.item() if same else None


def _value(node, folded, const_vals):
    v = folded[node]
    if v is None:
        v = folded[node] = _host(const_vals[node])
    return v


def _fold_ok(n, vals) -> bool:
    """Fold unless the result would be much larger than what it is computed from (expand, big masks)."""
    size = 1
    for s in n.shape:
        size *= s
    return size <= max(sum(v.size for v in vals), FOLD_LIMIT)


def _has_sym(attrs, shape) -> bool:
    stack = [attrs, shape]
    while stack:
        v = stack.pop()
        if isinstance(v, (Sym, Unfit)):
            return True
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return False


def _hint(node, pnames) -> str:
    src = next((i for i in node.inputs if i in pnames), None)
    return f"{pnames[src]}.{node.op}" if src is not None else f"folded_{node.op}"


def _host(t) -> np.ndarray:
    d = t._data
    return np.asarray(d if isinstance(d, np.ndarray) else d.get(), order="C")


def _node_error(n, why):
    src = n.meta.get("source")
    return OnnxExporterError(f"ember.onnx.export: cannot export {n.name} = {n.op}"
                             f"{f' at {src}' if src else ''}: {why}")
