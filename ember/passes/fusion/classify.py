"""Op classification for fusion: what a graph node is to the fuser, and why an op runs eagerly.

In: a graph Node (after the cleanup passes).  Out: `classify(n) -> (NodeClass, reason)`, where the
class says how fusion treats the node (a buffer to read, a value to compute inside a kernel, a
library call, an eager step) and `reason` says why an op is EAGER (it becomes the FusionRecord and
the F001 diagnostic).  Also the reduced dims of a reduction, which the later stages share.  (What
recomputing an op costs is a column of the op table: ember.ir.ops.OPS[op].cost.)
"""
from __future__ import annotations

from enum import Enum

from ember.ir import dtypes as dt
from ember.ir.graph import Node
from ember.ir.kernel import BINARY_OPS, UNARY_OPS
from ember.ir.ops import EXPENSIVE, OPS

__all__ = ["NodeClass", "classify", "reduce_dims", "code_size", "VIEW_OPS"]


class NodeClass(str, Enum):
    PLACEHOLDER = "placeholder"   # a graph input: always a buffer
    CONST = "const"               # full / arange: computed from the index, never loaded
    POINTWISE = "pointwise"       # elementwise: inlined or stored by a kernel
    MOVEMENT = "movement"         # an index map (ember.ir.index.map_*), never a copy
    REDUCE = "reduce"             # a reduction over a kernel's inner axes
    GATHER = "gather"             # take / gather: a load through an index buffer
    RANDOM = "random"             # counter-based random numbers: computed from the key and the index
    EXTERN = "extern"             # matmul: a library call (ExternKernel)
    EAGER = "eager"               # no kernel IR lowering: the eager kernel runs it

    def __str__(self) -> str:
        return self.value


_POINTWISE_KINDS = ("unary", "binary", "ternary", "cast")
VIEW_OPS = ("reshape", "permute", "expand", "slice", "flip", "pad", "windows", "cat")

# why an op the kernel IR cannot express runs eagerly (default: "<op> has no kernel IR lowering")
_EAGER_REASONS = {
    "cumsum": "scan (cumsum): the kernel IR has no scan loops",
    "argsort": "sorting (argsort) is not expressible in the kernel IR",
    "topk": "sorting (topk) is not expressible in the kernel IR",
    "scatter": "scatter writes through an index (the kernel IR stores by loop index only)",
    "scatter_add": "scatter_add accumulates through an index (no atomic stores in the kernel IR)",
    "index_add": "index_add accumulates through an index (no atomic stores in the kernel IR)",
    "fold": "fold (the adjoint of windows) sums overlapping windows: not a gather",
    "attention": "attention runs as one fused kernel of its own (ember/runtime/attention.py)",
    "attention_grad": "attention's gradient runs as one fused kernel of its own (ember/runtime/attention.py)",
}


def classify(n: Node) -> tuple[NodeClass, str]:
    """(class, reason); reason is empty unless the class is EAGER."""
    if n.is_placeholder:
        return NodeClass.PLACEHOLDER, ""
    op = n.op
    d = OPS.get(op)
    if op in ("full", "arange"):
        return NodeClass.CONST, ""
    if op == "stop_gradient":
        return NodeClass.POINTWISE, ""
    if d is None:
        return NodeClass.EAGER, f"unknown op {op}"
    if d.kind in _POINTWISE_KINDS:
        why = _pointwise_unsupported(n)
        return (NodeClass.EAGER, why) if why else (NodeClass.POINTWISE, "")
    if op in VIEW_OPS:
        return NodeClass.MOVEMENT, ""
    if d.kind == "reduce":
        why = _reduce_unsupported(n)
        return (NodeClass.EAGER, why) if why else (NodeClass.REDUCE, "")
    if op in ("take", "gather"):
        return NodeClass.GATHER, ""
    if op == "random":
        return NodeClass.RANDOM, ""
    if op in ("matmul", "addmm"):
        return NodeClass.EXTERN, ""
    return NodeClass.EAGER, _EAGER_REASONS.get(op, f"{op} has no kernel IR lowering")


def _pointwise_unsupported(n: Node) -> str:
    """Why a pointwise node has no kernel IR form ("" when it has one)."""
    op = n.op
    if op in ("where", "cast"):
        return ""
    x = n.inputs[0]
    if OPS[op].kind == "unary":
        if op not in UNARY_OPS:
            return f"{op} has no kernel IR op"
        if x.dtype is dt.bool_ and op == "neg":
            return "neg of bool (an error in eager mode)"
        return ""
    if op not in BINARY_OPS:
        return f"{op} has no kernel IR op"
    if x.dtype is dt.bool_ and op in ("sub", "div", "pow", "remainder", "floor_divide"):
        return f"{op} of bool values"
    if op in ("remainder", "floor_divide") and x.dtype.is_integer and not _nonzero_constant(n.inputs[1]):
        # eager raises ZeroDivisionError (PyTorch's error); a kernel cannot raise per element
        return f"integer {op} by a divisor that may be zero (the eager kernel raises ZeroDivisionError)"
    return ""


def _nonzero_constant(n: Node) -> bool:
    """n is a constant (through broadcasts and reshapes) whose value is not zero."""
    while n.op in ("expand", "reshape", "cast") and n.inputs:
        if n.op == "cast" and not n.inputs[0].dtype.is_integer:
            return False        # a float constant cast to an integer may truncate to zero
        n = n.inputs[0]
    return n.op == "full" and n.attrs.get("value") not in (0, None)


def _reduce_unsupported(n: Node) -> str:
    op, x, dims = n.op, n.inputs[0], n.attrs["dims"]
    if dims is not None and len(tuple(dims)) == 0:
        return f"{op} over an empty dim list"
    if op in ("sum", "prod") and x.dtype is dt.bool_:
        return f"{op} of bool values (kernel IR reductions need a numeric dtype)"
    if op in ("argmax", "argmin") and dims is not None and len(tuple(dims)) != 1:
        return f"{op} over several dims"
    return ""


def reduce_dims(n: Node) -> tuple:
    """The input dims a reduction node reduces, sorted (all dims when `dims` is None)."""
    nd = len(n.inputs[0].shape)
    dims = n.attrs["dims"]
    if dims is None:
        return tuple(range(nd))
    return tuple(sorted({d % max(nd, 1) for d in dims}))


def code_size(n: Node, cls: NodeClass) -> int:
    """Roughly how much loop-body code computing n adds to a kernel (the fuser caps a kernel's total:
    LLVM's optimiser is superlinear in one loop body's length): an op 1, an op the op table marks
    EXPENSIVE (a math function the code generators expand into tens of instructions) 16, index
    maps and constants 0."""
    if cls is NodeClass.MOVEMENT or cls is NodeClass.CONST or n.is_placeholder:
        return 0
    d = OPS.get(n.op)
    return 16 if d is not None and d.cost >= EXPENSIVE else 1
