"""float32 products of the MNIST CNN and the GPT step: ember's own GEMM (ember/runtime/gemm_f32.py, the
thin shapes) against numpy's OpenBLAS and PyTorch, with the operand layouts ember's compiled steps use.

    python benchmarks/bench_gemm_f32.py [--rounds 9] [--threads 2]

Columns (GFLOP/s, medians of interleaved rounds, benchmarks/harness.py):
  ember          ember/kernels/blas_threads.matmul: what eager ops and compiled externs call (ember's kernels
                 where runtime/gemm_f32.plan picks them, else OpenBLAS on one thread per block)
  ember w/o own  the same with ember's kernels switched off (OpenBLAS with blas_threads' block rules)
  numpy          np.matmul (OpenBLAS's own threading)
  torch          torch.matmul in its own process, default settings
A row's "cold" variant overwrites 16 MB before every call, so the operands come from memory, as in a
training step where other kernels ran in between.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from harness import NA, Stats, interleave, loadavg, machine_info, markdown_table  # noqa: E402

# (name, A shape, A stored transposed, B shape, B stored transposed): as the compiled MNIST / GPT steps
# issue them (the convolution products carry the bias as one more row of K)
GEMMS0 = [
    ("mnist conv1 fwd  [10,26]@[26,36864]", (10, 26), False, (26, 36864), False),
    ("mnist conv1 dW   [10,36864]@[36864,26]^T", (10, 36864), False, (36864, 26), True),
    ("mnist conv2 fwd  [20,251]@[251,4096]", (20, 251), False, (251, 4096), False),
    ("mnist conv2 dW   [20,4096]@[4096,251]^T", (20, 4096), False, (4096, 251), True),
    ("mnist conv2 dcol [251,20]^T@[20,4096]", (251, 20), True, (20, 4096), False),
    ("mnist fc1 fwd    [64,320]@[320,50]^T", (64, 320), False, (320, 50), True),
    ("gpt qkv          [1024,128]@[128,384]^T", (1024, 128), False, (128, 384), True),
    ("gpt mlp down dW  [128,1024]^T@[1024,512]", (128, 1024), True, (1024, 512), False),
]


GEMMS = [g for g in GEMMS0 if not os.environ.get("ONLY") or os.environ["ONLY"] in g[0]]


def operands(sa, ta, sb, tb):
    rng = np.random.default_rng(0)

    def make(shape, transposed):
        if transposed:
            return np.ascontiguousarray(rng.standard_normal(shape[::-1]).astype(np.float32)).T
        return rng.standard_normal(shape).astype(np.float32)
    return make(sa, ta), make(sb, tb)


def _torch_main(rounds: int):
    import torch
    out = {}
    for name, sa, ta, sb, tb in GEMMS:
        a, b = operands(sa, ta, sb, tb)
        x = torch.from_numpy(np.ascontiguousarray(a.T)).T if ta else torch.from_numpy(a)
        y = torch.from_numpy(np.ascontiguousarray(b.T)).T if tb else torch.from_numpy(b)
        res = interleave({name: lambda x=x, y=y: torch.matmul(x, y)}, rounds=rounds)
        out[name] = res[name].median if isinstance(res[name], Stats) else None
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="EMBER_NUM_THREADS for ember (default: all)")
    ap.add_argument("--_torch", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._torch:
        _torch_main(args.rounds)
        return
    if args.threads:
        os.environ["EMBER_NUM_THREADS"] = str(args.threads)
    import ember  # noqa: F401  (installs ember's GEMM into blas_threads)
    from ember.kernels import blas_threads
    from ember.runtime import gemm_f32
    own = gemm_f32.matmul
    print(f"machine: {machine_info()}\nload: {loadavg()}")
    p = subprocess.run([sys.executable, __file__, "--_torch", "--rounds", str(args.rounds)],
                       capture_output=True, text=True, timeout=900)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    torch_t = json.loads(lines[-1]) if p.returncode == 0 and lines else {}
    junk = np.empty(4 << 20, np.float32)
    rows = []
    for name, sa, ta, sb, tb in GEMMS:
        a, b = operands(sa, ta, sb, tb)
        out = np.empty((a.shape[0], b.shape[1]), np.float32)
        flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]

        def call(hook, cold=False):
            def run():
                if cold:
                    junk[...] = 1.0          # evict: the timed call reads its operands from memory
                blas_threads.F32_MATMUL = hook
                try:
                    blas_threads.matmul(a, b, out=out)
                finally:
                    blas_threads.F32_MATMUL = own
            return run
        fns = {"ember": call(own), "ember w/o own": call(None), "numpy": lambda: np.matmul(a, b, out=out),
               "ember cold": call(own, True), "ember w/o own cold": call(None, True)}
        res = interleave(fns, rounds=args.rounds)

        def gf(k):
            v = res[k]
            return flops / v.median / 1e9 if isinstance(v, Stats) else NA("failed")
        cold_fill = interleave({"fill": lambda: junk.fill(1.0)}, rounds=args.rounds)["fill"].median
        tt = torch_t.get(name)
        plan = gemm_f32.plan(a.shape[0], a.shape[1], b.shape[1], a.strides, b.strides) or "BLAS"
        cold_e = flops / max(res["ember cold"].median - cold_fill, 1e-9) / 1e9
        cold_b = flops / max(res["ember w/o own cold"].median - cold_fill, 1e-9) / 1e9
        rows.append([name, plan, f"{gf('ember'):.1f}", f"{gf('ember w/o own'):.1f}", f"{gf('numpy'):.1f}",
                     f"{flops / tt / 1e9:.1f}" if tt else "n/a", f"{gf('ember') / gf('ember w/o own'):.2f}x",
                     f"{cold_e:.1f}", f"{cold_b:.1f}"])
        print("  ", rows[-1])
    print()
    print(markdown_table(["product", "ember path", "ember GF/s", "w/o own GF/s", "numpy GF/s", "torch GF/s",
                          "own vs BLAS", "ember cold", "w/o own cold"], rows))


if __name__ == "__main__":
    main()
