"""The loop skeleton of a kernel, written once for every code generator.

In: a `Kernel` (ember/ir/kernel.py).  Out: `linearize(kernel)`, a list of steps that a renderer
(ember/codegen/llvm/render.py, ember/codegen/cuda/render.py) spells one by one:

    Loop("o", 0, n0) ... Loop("o", k, nk)       the outer loops (level 1..k+1)
    for each reduction pass p = 1..n_passes:
        BeginPass(p, reduces)                    accumulators set to the reductions' identity
        Loop("r", 0, m0) ...                     the inner loops
        Node(x, level) ... Combine(reduce)       each reduce's operand, folded into its accumulator
        EndLoop() ...
        EndPass(p, reduces)                      results available from a new level on
    [Loop("r", ...) Node ... Store(s) EndLoop()] stores that run over the inner domain
    Node ... Store(s)                            the per-outer-point stores
    EndLoop() ...                                closes the outer loops

Levels are insertion points, innermost last: 0 is the kernel entry, each open loop and each
finished pass adds one, closing a loop drops its level and every level above it.  A `Node` is
placed at the shallowest level where all its operands exist: a load at the level of the deepest loop
variable in its index, anything else at the deepest level of its operands (a reduction's result at
its pass's level).  So loop-invariant loads and arithmetic are computed once, not per iteration,
which keeps inner loops free of gathers and branches (they vectorise).  A node that varies with an
inner variable is placed again in every pass (each pass has its own inner loop); any other node is
placed once.  Nodes come in the order the stores and reductions first need them (operands before
users, left to right), so two runs give identical output.

Also here, shared by the renderers: `emitted_kernels` (externs contribute their epilogue; names must
be unique), `strides`, `reduce_identity`, and `cast_rule` (numpy astype semantics, classified).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.dtypes import DType
from ember.ir.kernel import Expr, ExternKernel, IndexValue, Kernel, Load, Reduce, Store, Var, _index_postorder

__all__ = ["Loop", "EndLoop", "Node", "BeginPass", "Combine", "EndPass", "StoreStep", "Step", "linearize",
           "emitted_kernels", "strides", "reduce_identity", "cast_rule", "is_unsigned"]


# ======================================================================================= steps
@dataclass(frozen=True)
class Loop:
    kind: str          # "o" outer, "r" inner
    axis: int
    size: int


@dataclass(frozen=True)
class EndLoop:
    pass


@dataclass(frozen=True)
class Node:
    node: Expr
    level: int         # insertion point (see the module docstring)


@dataclass(frozen=True)
class BeginPass:
    no: int
    reduces: tuple


@dataclass(frozen=True)
class Combine:
    reduce: Reduce     # fold reduce.x (placed just before) into the accumulator


@dataclass(frozen=True)
class EndPass:
    no: int
    reduces: tuple
    level: int         # the level the results live at


@dataclass(frozen=True)
class StoreStep:
    store: Store
    inner: bool        # inside the final inner loop


Step = Union[Loop, EndLoop, Node, BeginPass, Combine, EndPass, StoreStep]


# ================================================================================== linearize
class _Linearizer:
    def __init__(self, k: Kernel):
        self.k = k
        self.steps: list = []
        self.n_levels = 1                       # level 0: the kernel entry
        self.loop_levels: list[int] = []
        self.var_level: dict[tuple, int] = {}   # (kind, axis) -> level of its loop
        self.placed: dict = {}                  # placement key -> level
        self.pass_no = 0

    def open(self, kind: str, axis: int, size: int) -> None:
        self.steps.append(Loop(kind, axis, size))
        self.var_level[(kind, axis)] = self.n_levels
        self.loop_levels.append(self.n_levels)
        self.n_levels += 1

    def close(self) -> None:
        self.steps.append(EndLoop())
        self.n_levels = self.loop_levels.pop()   # the loop's level and every level above it go

    def _key(self, node):
        return (id(node), self.pass_no) if self.k.uses_inner[id(node)] else id(node)

    def _index_level(self, exprs) -> int:
        lvl = 0
        for e in exprs:
            for n in _index_postorder(e):
                if isinstance(n, Var):
                    lvl = max(lvl, self.var_level[(n.kind, n.axis)])
        return lvl

    def place(self, root: Expr) -> None:
        """Node steps for root and the operands not placed yet (iterative post-order)."""
        if self._key(root) in self.placed:
            return
        stack = [(root, False)]
        while stack:
            node, ready = stack.pop()
            key = self._key(node)
            if key in self.placed:
                continue
            if not ready:
                stack.append((node, True))
                for c in reversed(node.operands()):
                    if self._key(c) not in self.placed:
                        stack.append((c, False))
                continue
            if isinstance(node, Reduce):
                raise AssertionError(f"{self.k.name}: reduce used before its pass")
            if isinstance(node, Load):
                lvl = self._index_level(node.index)
            elif isinstance(node, IndexValue):
                lvl = self._index_level([node.index])
            else:
                lvl = max([self.placed[self._key(c)] for c in node.operands()], default=0)
            self.placed[key] = lvl
            self.steps.append(Node(node, lvl))

    def run(self, with_passes: bool) -> list:
        k = self.k
        for axis, n in enumerate(k.outer):
            self.open("o", axis, n)
        by_pass: dict[int, list] = {}
        for node in k.nodes:
            if isinstance(node, Reduce):
                by_pass.setdefault(k.pass_of[id(node)], []).append(node)
        for p in range(1, k.n_passes + 1):
            reduces = tuple(by_pass.get(p, ()))
            if with_passes:
                self.pass_no = p
                self.steps.append(BeginPass(p, reduces))
                for axis, n in enumerate(k.inner):
                    self.open("r", axis, n)
                for red in reduces:
                    self.place(red.x)
                    self.steps.append(Combine(red))
                for _ in k.inner:
                    self.close()
            level = self.n_levels
            self.n_levels += 1
            for red in reduces:
                self.placed[id(red)] = level
            self.steps.append(EndPass(p, reduces, level))
        self.pass_no = 0
        inner_stores = [s for s in k.stores if k.store_is_inner(s)]
        if inner_stores:
            self.pass_no = k.n_passes + 1
            for axis, n in enumerate(k.inner):
                self.open("r", axis, n)
            for s in inner_stores:
                self.place(s.value)
                self.steps.append(StoreStep(s, True))
            for _ in k.inner:
                self.close()
            self.pass_no = 0
        for s in k.stores:
            if not k.store_is_inner(s):
                self.place(s.value)
                self.steps.append(StoreStep(s, False))
        for _ in k.outer:
            self.close()
        return self.steps


def linearize(kernel: Kernel, with_passes: bool = True) -> list:
    """The kernel's steps (module docstring).  with_passes=False leaves the reduction loops out: the
    reductions' results are taken as given (EndPass steps only), for a renderer that computes them
    elsewhere (the second stage of a split reduction on the GPU)."""
    return _Linearizer(kernel).run(with_passes)


# ======================================================================== shared scalar facts
def emitted_kernels(kernels: Sequence) -> Iterator[Kernel]:
    """The kernels a module defines: each Kernel, and each ExternKernel's epilogue (if any)."""
    seen = set()
    for k in kernels:
        if isinstance(k, ExternKernel):
            k = k.epilogue
            if k is None:
                continue
        if k.name in seen:
            raise ValueError(f"two kernels named {k.name}")
        seen.add(k.name)
        yield k


def strides(shape) -> list[int]:
    """Row-major element strides."""
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]


def is_unsigned(d: DType) -> bool:
    """Compared and extended as unsigned (bool is 0/1)."""
    return d is dt.uint8 or d is dt.bool_


def reduce_identity(op: str, d: DType):
    """The accumulator's start value: 0 / 1 for sum / prod, the far end of the type for max / min
    (and argmax / argmin): -inf/+inf for floats, the integer limits, False/True for bool."""
    if op == "sum":
        return 0
    if op == "prod":
        return 1
    low = op in ("max", "argmax")
    if d.is_floating_point:
        return -math.inf if low else math.inf
    if d is dt.bool_:
        return not low
    i = np.iinfo(d.np)
    return int(i.min) if low else int(i.max)


def cast_rule(src: DType, dst: DType) -> str:
    """Which numpy astype conversion applies (each renderer spells every rule):
    same        no-op
    truth       to bool: x != 0 (NaN is true)
    float       float -> float, widening or rounding
    float_int   float -> integer: truncate toward zero; NaN and out-of-range values are each
                target's rule (CPU: INT_MIN through int32, or int64 for int64, then wrapped, as
                numpy and PyTorch on x86; CUDA: the device's saturating conversion)
    int_float   integer or bool -> float (unsigned for uint8/bool)
    int         integer or bool -> integer: truncate, or extend (zero-extend unsigned sources)"""
    if src is dst:
        return "same"
    if dst is dt.bool_:
        return "truth"
    if src.is_floating_point:
        return "float" if dst.is_floating_point else "float_int"
    return "int_float" if dst.is_floating_point else "int"
