"""How a product (the matmul extern) reads its operands: free views, transposes, folded casts.

In: the Fuser (ember/passes/fusion/decide.py) and a matmul operand node.  Out: `extern_operand` -> the
buffer node the call reads, the shape it sees it as and whether it reads it transposed (the movement ops
between them cost nothing: numpy / BLAS / the bf16 GEMM take strides and flags; a permutation that is
the transpose of a sibling permutation of the same value is read as that sibling, transposed: see
`transposed_sibling`); `folds_cast` -> whether
a cast(float32 -> bfloat16) on the way folds into the call (the CPU bf16 GEMM rounds a float32 operand as
it packs it: ember/runtime/gemm_bf16.py), so the cast costs no kernel and no pass over memory.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ember.ir import dtypes as dt
from ember.ir.graph import Node

from .classify import NodeClass

if TYPE_CHECKING:
    from .decide import Fuser

__all__ = ["extern_operand", "folds_cast", "unreshaped", "is_buffer", "stored_anyway", "transposed_sibling"]


def extern_operand(f: "Fuser", x: Node, siblings: bool = True) -> tuple:
    """(base node, shape the extern sees it as, transpose flag): the movement ops between x and
    a buffer that cost nothing for numpy/BLAS matmul.  A transpose that is a graph output, of a
    value that is not a buffer, is read as stored (a Linear layer's cast weight, saved transposed
    for backward, is then stored once, not also untransposed for the product)."""
    n = x
    if (n.op == "expand" and len(n.shape) >= 2 and len(n.inputs[0].shape) >= 2
            and n.inputs[0].shape[-2:] == n.shape[-2:]):
        n = n.inputs[0]                  # broadcast batch dims: matmul broadcasts them itself
    transpose = False
    nd = len(n.shape)
    if (n.op == "permute" and tuple(n.attrs["dims"]) == tuple(range(nd - 2)) + (nd - 1, nd - 2)
            and (not stored_anyway(f, n) or is_buffer(f, unreshaped(f, n.inputs[0])))):
        transpose = True
        n = n.inputs[0]
    elif siblings and n.op == "permute" and nd >= 2:
        sib = transposed_sibling(f, n)
        if sib is not None:
            transpose, n = True, sib
    view = n
    n = unreshaped(f, n)                 # a reshape of a contiguous buffer is free
    if n is not view and f.cls[n] is NodeClass.CONST:
        n = view
    return n, tuple(view.shape), transpose


def transposed_sibling(f: "Fuser", n: Node) -> Node | None:
    """A permute s of n's input whose last two dims are swapped against n's, that the product can read
    with a transpose flag instead of a copy of n.  Attention reads K^T in the forward (q @ k^T) and K in
    the backward (dS @ k): canonicalize composes each with the head split into one permute of the qkv
    slice, so without this the step stored both layouts (GPT: two copy kernels of 3 MB per layer).
    Only toward the sibling that keeps the source's innermost dim innermost (its copy reads and
    writes rows; a transposed copy writes with a stride), and only where reading s costs no more
    than storing n: n needs no buffer of its own so far (no other product reads it as one), and s
    has a buffer already or is not decided yet (the product's request then makes it one)."""
    dims = tuple(n.attrs["dims"])
    if stored_anyway(f, n) or f.buf_need.get(n):     # n is stored anyway: read it as it is
        return None
    if dims[-2] != len(dims) - 1:       # only toward the layout that keeps the source's rows: its
        return None                     # copy is contiguous, a transposed one writes with a stride
    want = dims[:-2] + (dims[-1], dims[-2])
    for s in n.inputs[0].users:
        if s is n or s.op != "permute" or tuple(s.attrs["dims"]) != want or s.dtype != n.dtype:
            continue
        if f.pos[s] < f.cursor or f.home.get(s) is not None:
            return s
    return None


def unreshaped(f: "Fuser", n: Node) -> Node:
    """n below its reshapes; the first one that is stored anyway when what lies below is no buffer."""
    stop = None
    while n.op == "reshape":
        if stop is None and stored_anyway(f, n):
            stop = n
        n = n.inputs[0]
    return stop if stop is not None and not is_buffer(f, n) else n


def stored_anyway(f: "Fuser", n: Node) -> bool:
    """Does n get a buffer of its own whatever its consumers do (an output that is not a view of
    another buffer, or the base of such a view)?"""
    return (n in f.is_output and n not in f.views) or n in f.must


def is_buffer(f: "Fuser", n: Node) -> bool:
    """Is n's value in memory whatever the fuser decides (an input, a library call's or eager
    op's result, an output)?"""
    return n.is_placeholder or stored_anyway(f, n) or f.cls[n] in (NodeClass.EXTERN, NodeClass.EAGER)


def folds_cast(f: "Fuser", c: Node) -> bool:
    """Does the product read c = cast(float32 -> bfloat16) from its float32 source, rounding while it
    packs (ember/runtime/gemm_bf16.py), instead of a kernel storing a bf16 copy?  When the source is a
    buffer anyway (an input, a product's or eager op's result, an output) and c is needed only as
    products' operands; a source computed by a kernel keeps the cast there (it stores bf16 directly,
    half the bytes).  CPU only: the GPU's products (cuBLAS) take the operands as stored."""
    if (c.op != "cast" or c.dtype is not dt.bfloat16 or c.inputs[0].dtype is not dt.float32
            or c.device != "cpu" or c in f.is_output or c in f.must):
        return False
    if not is_buffer(f, unreshaped(f, c.inputs[0])):
        return False
    stack, seen = [c], {c}
    while stack:                         # every use of c: movement ops the products peel, then a product
        v = stack.pop()
        for u in v.users:
            if u in seen:
                continue
            if f.cls[u] is NodeClass.EXTERN:
                if any(inp is v and extern_operand(f, inp)[0] is not c for inp in u.inputs):
                    return False
            elif u.op in ("expand", "permute", "reshape") and u not in f.is_output and u not in f.must:
                seen.add(u)
                stack.append(u)
            else:
                return False
    return True
