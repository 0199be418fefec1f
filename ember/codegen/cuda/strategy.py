"""How a CUDA kernel is launched: the strategy chosen from the kernel's shape, and the facts about its
index arithmetic that decide the integer width.

    choose_strategy(kernel) -> (strategy, threads per block)
    needs_idx64(kernel)      some index may leave the int32 range: index arithmetic in 64 bits
    LaunchSpec               what ember/runtime/cuda.py needs to launch one generated kernel
    CudaProgram              one translation unit: source + LaunchSpec per kernel

Strategies (ember/codegen/cuda/render.py spells each one):

  pointwise  no inner axes: a grid-stride loop over the flattened outer domain, with 16-byte vector
             loads/stores where every identity access allows them (and a scalar tail).
  thread     one thread per outer point, serial loops over the inner domain (tiny windows such as
             pooling, and reductions over a strided axis where consecutive threads reading
             consecutive columns is what coalesces).
  warp       one warp per outer point; reductions are butterflies of __shfl_xor_sync.
  block      one block per outer point (long rows, few points): warp shuffles, then one slot per
             warp in shared memory.
  split      full reductions (one outer point, a long single-pass inner domain): PARTS blocks reduce
             slices into a scratch buffer, then one block folds the partials in a fixed order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ember.ir.index import domain_index_range as index_range, linear_coeff as _linear_coeff
from ember.ir.kernel import Buf, IGather, IndexValue, Kernel, Load, Var, _index_postorder

__all__ = ["LaunchSpec", "CudaProgram", "choose_strategy", "needs_idx64", "has_gather", "index_range",
           "nonneg", "is_identity", "BLOCK", "THREAD_MAX_INNER", "WARP_MAX_INNER", "SPLIT_MIN_INNER",
           "SPLIT_PARTS_MAX"]

BLOCK = 256                 # threads per block for every strategy except `block` with long rows
THREAD_MAX_INNER = 16       # inner domains up to this size run one thread per outer point
WARP_MAX_INNER = 2048       # ... up to this size one warp per point, longer rows a block per point
SPLIT_MIN_INNER = 1 << 16   # single-point reductions at least this long use the two-stage split
SPLIT_PARTS_MAX = 512       # stage-one blocks of a split reduction
_INT32_SAFE = (1 << 31) - (1 << 26)   # headroom for `i += stride` in grid-stride loops


# ============================================================================ launch metadata
@dataclass(frozen=True)
class LaunchSpec:
    """How the runtime launches one generated kernel.

    strategy    'pointwise' | 'thread' | 'warp' | 'block' | 'split' (module docstring)
    block       threads per block
    points      outer points (the `n` argument)
    per_block   outer points one block covers per grid-stride step (pointwise/thread: block;
                warp: block/32; block: 1); the runtime sizes the grid from it
    vec         elements per vector step (pointwise only; 1: scalar)
    vec_args    positions in kernel.args of the buffers accessed with vector loads/stores (their
                addresses must be multiples of vec * itemsize for vec_ok=1)
    vec_bytes   required alignment per entry of vec_args
    gathers     the kernel checks gather indices (the runtime reads `err` after it)
    parts       split: stage-one blocks; scratch: (name, dtype name) of each partial buffer,
                each `parts` long, passed after the kernel's buffers to both stages
    partial     split: name of the stage-one kernel
    idx64       64-bit index arithmetic
    """
    name: str
    strategy: str
    block: int
    points: int
    per_block: int
    vec: int = 1
    vec_args: tuple = ()
    vec_bytes: tuple = ()
    gathers: bool = False
    parts: int = 0
    scratch: tuple = ()
    partial: str | None = None
    idx64: bool = False


@dataclass
class CudaProgram:
    """One translation unit: `source` (CUDA C) and `launches[name]` for every kernel."""
    source: str
    launches: dict = field(default_factory=dict)
    kernels: list = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.launches)


# ============================================================================= index analysis
def has_gather(e) -> bool:
    return any(isinstance(n, IGather) for n in _index_postorder(e))


def nonneg(e, outer, inner) -> bool:
    return index_range(e, outer, inner)[0] >= 0


def needs_idx64(k: Kernel) -> bool:
    n_outer = math.prod(k.outer)
    n_inner = math.prod(k.inner) if k.inner else 1
    if n_outer * n_inner >= _INT32_SAFE or any(b.numel >= _INT32_SAFE for b in k.args):
        return True
    exprs = []
    for node in k.nodes:
        if isinstance(node, Load):
            exprs.extend(node.index)
        elif isinstance(node, IndexValue):
            exprs.append(node.index)
    for s in k.stores:
        exprs.extend(s.index)
    for e in exprs:
        for sub in _index_postorder(e):
            if isinstance(sub, IGather) or has_gather(sub):
                continue
            lo, hi = index_range(sub, k.outer, k.inner)
            if lo <= -_INT32_SAFE or hi >= _INT32_SAFE:
                return True
    return False


def is_identity(index, buf: Buf, outer) -> bool:
    """buf[o0, o1, ...] over a buffer shaped like the outer domain: element i of the flat loop."""
    if tuple(buf.shape) != tuple(outer) or len(index) != len(outer):
        return False
    return all(isinstance(e, Var) and e.kind == "o" and e.axis == a for a, e in enumerate(index))


# ============================================================================= strategy choice
def choose_strategy(k: Kernel) -> tuple[str, int]:
    if not k.inner:
        return "pointwise", BLOCK
    n = math.prod(k.outer)
    m = math.prod(k.inner)
    inner_stores = any(k.store_is_inner(s) for s in k.stores)
    if n == 1 and m >= SPLIT_MIN_INNER and k.n_passes == 1 and not inner_stores:
        return "split", BLOCK
    if m <= THREAD_MAX_INNER:
        return "thread", BLOCK
    # reductions whose loads run contiguously along the last OUTER axis (a column sum) coalesce
    # when consecutive threads take consecutive outer points
    last_r = Var("r", len(k.inner) - 1)
    last_o = Var("o", len(k.outer) - 1)
    inner_contig = outer_contig = False
    for node in k.nodes:
        if isinstance(node, Load) and node.index:
            e = node.index[-1]
            cr = _linear_coeff(e, last_r)
            co = _linear_coeff(e, last_o)
            inner_contig |= cr == 1
            outer_contig |= co == 1 and cr == 0
    if outer_contig and not inner_contig and n >= 4 * BLOCK:
        return "thread", BLOCK
    if m <= WARP_MAX_INNER:
        return "warp", BLOCK
    return "block", (512 if m >= 16384 else BLOCK)
