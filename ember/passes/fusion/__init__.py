"""Fusion: an optimised Graph -> a Program of kernel-IR kernels, extern calls and eager fallbacks.

In: a Graph after the cleanup passes (ember/passes/manager.py).  Out: a `Program`
(ember/ir/program.py): steps in execution order, each a `Kernel` (a fused loop nest), an
`ExternKernel` (matmul through BLAS, with a fused epilogue kernel) or an `EagerStep` (an op the
kernel IR cannot express, run by its eager kernel), plus FusionRecords saying what was fused,
what was not and why.

    program = fuse(graph)            # usually through ember.passes.compile_graph

The stages, one module each: classify.py (what each node is to the fuser, why an op runs eagerly),
decide.py (groups, reductions fitted into kernels), merge.py (horizontal merges, pointwise kernels into
reductions, epilogues), operands.py (how a
product reads its operands: views, transposes, folded casts), lower.py (index
maps of the ops and the LOWERINGS registry: node -> kernel-IR expression; group -> Kernel),
schedule.py (value names, steps in execution order).

How groups form
---------------
Every node is either REALIZED (its value lives in a buffer: graph inputs, graph outputs, matmul
results, extern / eager operands, values several kernels need) or INLINED (recomputed inside each
kernel that reads it).  A kernel ("group") has a domain outer + inner and a list of realized nodes
it stores; everything it computes is the composition of the stored nodes' producers, evaluated at
the index each one is requested at.  Movement ops (reshape, permute, expand, slice, flip, pad,
windows, cat) are never copies: they map a request index to an input index
(ember.ir.index.map_*), so a fused kernel loads through the composed index map.

Nodes are decided in reverse topological order, so when a node is decided every group that needs
it is known, with the index it is needed at:
  * a pointwise / movement / constant node needed by one kernel is inlined there; needed by
    several, it is recomputed in each while that stays cheap (RECOMPUTE_BUDGET), else realized;
  * a reduction is inlined when exactly one kernel needs it, once per outer point, over the
    kernel's inner axes (a kernel without inner axes takes the reduction's axes: the axes of its
    elementwise domain that the reduction's result is broadcast over become inner axes -- this is
    how softmax / layer_norm / their backward become one kernel with several reduction passes);
    otherwise it is realized ("not fused: would recompute a reduction", "different reduction
    domain");
  * a realized node is stored by one of the kernels that need it when its index there is a plain
    one-to-one map of the kernel's loop variables and doing so creates no cycle between groups
    (checked with networkx reachability on the group graph), else it gets a kernel of its own;
  * matmul is an extern; its operands may be free views of a buffer (a reshape of a contiguous
    array, a transpose of the last two dims -> transpose_a/_b, broadcast batch dims); on the CPU a
    cast(float32 -> bfloat16) of a buffer that only products read folds into them (cast_a/_b: the
    bf16 GEMM rounds as it packs) -- operands.py;
  * `random` is a Random kernel-IR node (the counter-based generator of ember/ir/rng.py at the
    key's offset plus the element's flat index), so dropout's mask fuses like any pointwise value;
  * ops the kernel IR cannot express (cumsum, sort, scatter, index_add, fold, bool sums) are eager
    steps, recorded as fallbacks with the reason.
Then kernels over the same domain that read a common buffer and do not depend on each other merge
(horizontal fusion), and a kernel that is the only consumer of a matmul result becomes that
extern's epilogue (bias, activation, softmax ...).
"""
from __future__ import annotations

from ember.ir.graph import Graph
from ember.ir.program import Program

from .classify import NodeClass, classify
from . import merge
from .decide import RECOMPUTE_BUDGET, Fuser, FusionOptions
from .lower import LOWERINGS, lowering
from .schedule import schedule

__all__ = ["fuse", "classify", "NodeClass", "FusionOptions", "RECOMPUTE_BUDGET", "LOWERINGS", "lowering"]


def fuse(graph: Graph, options: FusionOptions | None = None) -> Program:
    """Group `graph` into kernels, externs and eager steps (see the module docstring)."""
    f = Fuser(graph, options or FusionOptions())
    f.decide()
    if f.opt.horizontal:
        merge.horizontal(f)
        merge.into_reductions(f)
    if f.opt.epilogues:
        merge.epilogues(f)
    return schedule(f)
