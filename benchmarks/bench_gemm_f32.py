"""float32 products of the MNIST CNN and the GPT step: ember's own GEMM (ember/runtime/gemm_f32.py) against
numpy's OpenBLAS and PyTorch, with the operand layouts ember's compiled steps use.

    python benchmarks/bench_gemm_f32.py [--rounds 9] [--threads 2] [--only gpt]

Columns (GFLOP/s, medians of interleaved rounds, benchmarks/harness.py):
  ember          ember/kernels/blas_threads.matmul: what eager ops and compiled externs call (ember's kernels
                 where runtime/gemm_f32.plan / plan_batched pick them, else OpenBLAS on one thread per block)
  ember w/o own  the same with ember's kernels switched off (OpenBLAS with blas_threads' block rules)
  numpy          np.matmul, OpenBLAS on --threads threads (ember keeps it on one otherwise)
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
# issue them (the convolution products carry the bias as one more row of K).  "^T": the operand is the
# transposed view of a row-major array (x @ W^T reads the Linear weight W[N, K] so; dY^T @ X the gradient).
# A 3-D shape is a batch (attention's 16 x 4 heads as 64 products).
GEMMS0 = [
    ("mnist conv1 fwd  [10,26]@[26,36864]", (10, 26), False, (26, 36864), False),
    ("mnist conv1 dW   [10,36864]@[36864,26]^T", (10, 36864), False, (36864, 26), True),
    ("mnist conv2 fwd  [20,251]@[251,4096]", (20, 251), False, (251, 4096), False),
    ("mnist conv2 dW   [20,4096]@[4096,251]^T", (20, 4096), False, (4096, 251), True),
    ("mnist conv2 dcol [251,20]^T@[20,4096]", (251, 20), True, (20, 4096), False),
    ("mnist fc1 fwd    [64,320]@[320,50]^T", (64, 320), False, (320, 50), True),
    ("gpt qkv          [1024,128]@[128,384]^T", (1024, 128), False, (128, 384), True),
    ("gpt attn proj    [1024,128]@[128,128]^T", (1024, 128), False, (128, 128), True),
    ("gpt mlp up       [1024,128]@[128,512]^T", (1024, 128), False, (128, 512), True),
    ("gpt mlp down     [1024,512]@[512,128]^T", (1024, 512), False, (512, 128), True),
    ("gpt lm head      [1024,128]@[128,65]^T", (1024, 128), False, (128, 65), True),
    ("gpt qkv dX       [1024,384]@[384,128]", (1024, 384), False, (384, 128), False),
    ("gpt mlp up dX    [1024,512]@[512,128]", (1024, 512), False, (512, 128), False),
    ("gpt mlp down dX  [1024,128]@[128,512]", (1024, 128), False, (128, 512), False),
    ("gpt qkv dW       [384,1024]^T@[1024,128]", (384, 1024), True, (1024, 128), False),
    ("gpt mlp up dW    [512,1024]^T@[1024,128]", (512, 1024), True, (1024, 128), False),
    ("gpt mlp down dW  [128,1024]^T@[1024,512]", (128, 1024), True, (1024, 512), False),
    ("gpt attn QK^T    64x[64,32]@[32,64]^T", (64, 64, 32), False, (64, 32, 64), True),
    ("gpt attn PV      64x[64,64]@[64,32]", (64, 64, 64), False, (64, 64, 32), False),
]


GEMMS = list(GEMMS0)


def operands(sa, ta, sb, tb):
    rng = np.random.default_rng(0)

    def make(shape, transposed):
        if transposed:      # the last two axes swapped on a row-major array
            full = shape[:-2] + shape[:-3:-1]
            return np.swapaxes(rng.standard_normal(full).astype(np.float32), -1, -2)
        return rng.standard_normal(shape).astype(np.float32)
    return make(sa, ta), make(sb, tb)


def _torch_main(rounds: int):
    import torch
    out = {}
    for name, sa, ta, sb, tb in GEMMS:
        a, b = operands(sa, ta, sb, tb)
        x = torch.from_numpy(np.ascontiguousarray(a.swapaxes(-1, -2))).swapaxes(-1, -2) if ta else torch.from_numpy(a)
        y = torch.from_numpy(np.ascontiguousarray(b.swapaxes(-1, -2))).swapaxes(-1, -2) if tb else torch.from_numpy(b)
        res = interleave({name: lambda x=x, y=y: torch.matmul(x, y)}, rounds=rounds)
        out[name] = res[name].median if isinstance(res[name], Stats) else None
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None, help="EMBER_NUM_THREADS for ember (default: all)")
    ap.add_argument("--only", default="", help="rows whose name contains this (e.g. gpt)")
    ap.add_argument("--_torch", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global GEMMS
    GEMMS = [g for g in GEMMS0 if args.only in g[0]]
    if args._torch:
        _torch_main(args.rounds)
        return
    if args.threads:
        os.environ["EMBER_NUM_THREADS"] = str(args.threads)
    import ember  # noqa: F401  (installs ember's GEMM into blas_threads)
    from ember.kernels import blas_threads
    from ember.kernels import workers
    from ember.runtime import gemm_f32
    own = gemm_f32.matmul
    nthreads = args.threads or os.cpu_count() or 1
    print(f"machine: {machine_info()}\nload: {loadavg()}\nthreads: ember {workers.num_threads()}, numpy {nthreads}")
    p = subprocess.run([sys.executable, __file__, "--_torch", "--rounds", str(args.rounds), "--only", args.only],
                       capture_output=True, text=True, timeout=900)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    torch_t = json.loads(lines[-1]) if p.returncode == 0 and lines else {}
    junk = np.empty(4 << 20, np.float32)

    def numpy_matmul(a, b, out):
        blas_threads.set_threads(nthreads)      # OpenBLAS's own threading, as plain numpy runs it
        try:
            np.matmul(a, b, out=out)
        finally:
            blas_threads.set_threads(1)
    rows = []
    for name, sa, ta, sb, tb in GEMMS:
        a, b = operands(sa, ta, sb, tb)
        out = np.empty(a.shape[:-1] + b.shape[-1:], np.float32)
        flops = 2.0 * out.size * a.shape[-1]

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
        fns = {"ember": call(own), "ember w/o own": call(None), "numpy": lambda: numpy_matmul(a, b, out),
               "ember cold": call(own, True), "ember w/o own cold": call(None, True)}
        res = interleave(fns, rounds=args.rounds)

        def gf(k):
            v = res[k]
            return flops / v.median / 1e9 if isinstance(v, Stats) else NA("failed")
        cold_fill = interleave({"fill": lambda: junk.fill(1.0)}, rounds=args.rounds)["fill"].median
        tt = torch_t.get(name)
        if a.ndim == 2:
            plan = gemm_f32.plan(a.shape[0], a.shape[1], b.shape[1], a.strides, b.strides) or "BLAS"
        else:
            plan = gemm_f32.plan_batched(a.shape[0], *a.shape[1:], b.shape[-1], a.strides[1:], b.strides[1:]) or "numpy"
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
