"""Building the ONNX graph: fresh names, nodes, initializers, and values computed from dynamic sizes.

In:  the opset, and where each dynamic size can be read at run time (graph input name, axis).
Out: lists of NodeProto and TensorProto for onnx.helper.make_graph. The op emitters (ops.py) call
     `op()` for each ONNX node and the helpers here for constants, integer lists that may hold
     `Sym`s (shape tensors), and opset-dependent forms (reductions, squeeze/unsqueeze).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .dynamic import Sym, Unfit

ONNX_TYPES = {"bool": TensorProto.BOOL, "uint8": TensorProto.UINT8, "int8": TensorProto.INT8,
              "int16": TensorProto.INT16, "int32": TensorProto.INT32, "int64": TensorProto.INT64,
              "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
              "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}


def onnx_type(d) -> int:
    return ONNX_TYPES[d.name]


class Builder:
    def __init__(self, opset: int, dim_sources: dict):
        self.opset = opset
        self.dim_sources = dim_sources          # symbol -> (graph input name, axis)
        self.nodes: list = []
        self.initializers: dict = {}            # name -> TensorProto
        self._used: set = set()
        self._n = 0
        self._consts: dict = {}                 # (dtype, shape, bytes) -> name, for small constants
        self._dims: dict = {}

    # ----------------------------------------------------------------------------- basics
    def fresh(self, hint: str = "t") -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def reserve(self, name: str) -> str:
        """A user-visible name (input, output, parameter): kept as is, never reused."""
        if name in self._used:
            raise ValueError(f"ember.onnx.export: the name {name!r} is used twice")
        self._used.add(name)
        return name

    def op(self, op_type: str, inputs: list, n_out: int = 1, name_hint: str | None = None, **attrs):
        outs = [self.fresh(name_hint or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, [i or "" for i in inputs], outs,
                                           name=f"{op_type}_{len(self.nodes)}", **attrs))
        return outs[0] if n_out == 1 else outs

    def initializer(self, name: str, array: np.ndarray) -> str:
        a = np.asarray(array)
        self.initializers[name] = numpy_helper.from_array(a if a.flags.c_contiguous else a.copy(order="C"), name)
        return name

    def const(self, array, dtype=None) -> str:
        """A constant (deduplicated when small)."""
        a = np.asarray(array if dtype is None else np.asarray(array).astype(dtype.np))
        key = (a.dtype.str, a.shape, a.tobytes()) if a.size <= 64 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.initializer(self.fresh("const"), a)
        if key is not None:
            self._consts[key] = name
        return name

    def i64(self, values) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def scalar(self, value, d) -> str:
        return self.const(np.asarray(value, dtype=d.np))

    # ------------------------------------------------------------------- dynamic values
    def dim(self, symbol: str) -> str:
        """The run-time size of a dynamic axis, as a 0-d int64."""
        got = self._dims.get(symbol)
        if got is None:
            src, axis = self.dim_sources[symbol]
            shape = self.op("Shape", [src])
            got = self._dims[symbol] = self.op("Gather", [shape, self.const(np.int64(axis))], axis=0)
        return got

    def int_value(self, v) -> str:
        """A 0-d int64 for an int or an integer Sym."""
        if isinstance(v, Unfit):
            raise _unfit(v)
        if not isinstance(v, Sym):
            return self.const(np.int64(v))
        out = None
        for d in v.dims:
            out = self.dim(d) if out is None else self.op("Mul", [out, self.dim(d)])
        if v.coef != 1:
            out = self.op("Mul", [out, self.const(np.int64(v.coef))])
        if v.bias:
            out = self.op("Add", [out, self.const(np.int64(v.bias))])
        return out

    def float_value(self, v, d) -> str:
        """A 0-d value of dtype d for a float or a float Sym (coef * prod or coef / prod)."""
        if isinstance(v, Unfit):
            raise _unfit(v)
        if not isinstance(v, Sym):
            return self.scalar(v, d)
        prod = self.op("Cast", [self.int_value(Sym(v.dims))], to=onnx_type(d))
        if v.inverse:
            return self.op("Div", [self.scalar(v.coef, d), prod])
        out = self.op("Mul", [prod, self.scalar(v.coef, d)])
        return self.op("Add", [out, self.scalar(v.bias, d)]) if v.bias else out

    def ints(self, items) -> str:
        """A 1-D int64 tensor from ints and Syms (a constant when all are ints)."""
        items = list(items)
        if all(type(x) is int for x in items):
            return self.i64(items)
        parts = [self.i64([x]) if type(x) is int else self.unsqueeze(self.int_value(x), [0]) for x in items]
        return self.op("Concat", parts, axis=0) if len(parts) > 1 else parts[0]

    # ------------------------------------------------------------------- opset-dependent forms
    def unsqueeze(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.i64(axes)])

    def squeeze(self, x: str, axes) -> str:
        return self.op("Squeeze", [x, self.i64(axes)])

    def reduce(self, op_type: str, x: str, axes, keepdims: bool) -> str:
        axes = list(axes)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.i64(axes)], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))


def _unfit(v):
    from .errors import OnnxExporterError
    return OnnxExporterError(f"ember.onnx.export: a size in the graph changes with the dynamic axes as "
                             f"{list(v.values)} across traces, which is not bias + coef * (product of dynamic "
                             "sizes); export with fewer dynamic axes")


def value_info(name: str, d, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx_type(d), list(dims))

