"""Compile time of long pointwise chains: does it grow linearly with the number of ops?

    python benchmarks/compile_chain.py                 # arith and exp chains of 250..2000 ops
    python benchmarks/compile_chain.py --sizes 500,1000 --kinds arith

Each row compiles one fresh chain (the disk cache off: EMBER_CACHE=0) with the LLVM backend and
prints the wall time of the first call (trace + passes + fusion + LLVM + one run on 256 floats),
the kernels fusion made and the time per op. A long chain is split into kernels of at most
ember.passes.fusion.decide.MAX_KERNEL_SIZE (classify.code_size): LLVM's optimiser is quadratic in the length
of one loop body, so without the split a 2000-op chain spent seconds in O3 alone.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ["EMBER_CACHE"] = "0"

import ember  # noqa: E402

KINDS = {
    "arith": lambda x, i: x * 1.0001 + 0.001 if i % 2 else x - 0.5,        # two ops per odd step
    "exp": lambda x, i: (x * 0.001).exp() if i % 2 else x - 1.0,           # half transcendental
}


def compile_seconds(kind: str, n_steps: int) -> tuple[float, int, int]:
    """(seconds of the first call, graph ops, kernels) of a chain of n_steps steps."""
    step = KINDS[kind]

    def chain(x):
        for i in range(n_steps):
            x = step(x, i)
        return x

    cf = ember.compile(chain, backend="llvm")
    t0 = time.perf_counter()
    cf(ember.randn(256))
    dt_s = time.perf_counter() - t0
    cg = cf.variants[0]
    ops = sum(1 for n in cg.graph.nodes() if not n.is_placeholder and n.op != "full")
    return dt_s, ops, len(cg.forward_exec.program.kernels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250,500,1000,2000", help="ops per chain (approximate), comma-separated")
    ap.add_argument("--kinds", default="arith,exp", help=f"chain kinds: {', '.join(KINDS)}")
    a = ap.parse_args()
    print(f"{'kind':<6} {'ops':>5} {'kernels':>7} {'compile s':>10} {'ms/op':>7}")
    for kind in a.kinds.split(","):
        for size in (int(s) for s in a.sizes.split(",")):
            steps = size * 2 // 3          # both kinds make 1.5 graph ops per step
            s, ops, kernels = compile_seconds(kind, steps)
            print(f"{kind:<6} {ops:>5} {kernels:>7} {s:>10.2f} {s / ops * 1e3:>7.2f}")


if __name__ == "__main__":
    main()
