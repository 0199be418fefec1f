"""Fused-kernel benchmark: hand-built kernel IR compiled by ember's LLVM backend vs numpy (and torch).

Run:  python benchmarks/fusion_kernels.py [--repeats 15] [--threads N] [--threshold]

Kernels (float32):
  gelu_tanh   gelu_tanh(x) * w + b over 4096x4096 (w, b broadcast rows of length 4096)
  layer_norm  over the last axis of 8192x1024, with weight and bias
  softmax     over the last axis of 8192x1024
  chain10     a 10-op pointwise chain over 4M elements
For each: median ms of interleaved repeats (ember, numpy, torch run in turn each round, so drift
hits all alike), and GB/s = bytes moved (each buffer read or written once) / time, compared with the
bandwidth of a numpy copy of the same size measured the same way ("% copy").  Outputs are preallocated
and reused (fresh 64 MiB outputs would mostly measure page faults).

--threshold measures the single- vs multi-thread crossover that sets
ember.runtime.cpu.PARALLEL_MIN_BYTES.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# torch's OpenMP workers spin after each op and would steal both cores from the next (ember)
# run in the interleaved loop: make them sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from ember.ir import dtypes as dt  # noqa: E402
from ember.ir.kernel import Buf, Const, Kernel, Load, Reduce, Store, Unary, o, r  # noqa: E402
from ember.runtime.cpu import compile_kernels, num_threads  # noqa: E402

F32 = dt.float32


def c(v):
    return Const(v, F32)


# ---------------------------------------------------------------------------- kernels
def gelu_kernel(n=4096, m=4096):
    x, w, b, y = Buf("x", (n, m), F32), Buf("w", (m,), F32), Buf("b", (m,), F32), Buf("y", (n, m), F32)
    xv = Load(x, (o(0), o(1)))
    inner = (xv + c(0.044715) * xv * xv * xv) * c(0.7978845608028654)
    g = c(0.5) * xv * (c(1.0) + Unary("tanh", inner))
    out = g * Load(w, (o(1),)) + Load(b, (o(1),))
    return Kernel([x, w, b], [y], outer=(n, m), stores=[Store(y, (o(0), o(1)), out)], id=0)


def layer_norm_kernel(n=8192, m=1024, eps=1e-5):
    x, w, b, y = Buf("x", (n, m), F32), Buf("w", (m,), F32), Buf("b", (m,), F32), Buf("y", (n, m), F32)
    xv = Load(x, (o(0), r(0)))
    mean = Reduce("sum", xv) * c(1.0 / m)
    d = xv - mean
    var = Reduce("sum", d * d) * c(1.0 / m)
    out = d * Unary("rsqrt", var + c(eps)) * Load(w, (r(0),)) + Load(b, (r(0),))
    return Kernel([x, w, b], [y], outer=(n,), inner=(m,), stores=[Store(y, (o(0), r(0)), out)], id=1)


def softmax_kernel(n=8192, m=1024):
    x, y = Buf("x", (n, m), F32), Buf("y", (n, m), F32)
    xv = Load(x, (o(0), r(0)))
    e = Unary("exp", xv - Reduce("max", xv))
    return Kernel([x], [y], outer=(n,), inner=(m,), stores=[Store(y, (o(0), r(0)), e / Reduce("sum", e))], id=2)


def chain_kernel(n=1 << 22):
    x, z, y = Buf("x", (n,), F32), Buf("z", (n,), F32), Buf("y", (n,), F32)
    v = Load(x, (o(0),))
    u = Load(z, (o(0),))
    t = v * c(1.5) + u                          # 2
    t = Unary("abs", t) - c(0.25)               # 4
    t = t * t                                   # 5
    t = Unary("sqrt", t + c(1.0))               # 7
    t = (t - u) / (t + c(2.0))                  # 10
    return Kernel([x, z], [y], outer=(n,), stores=[Store(y, (o(0),), t)], id=3)


# ---------------------------------------------------------------------------- references
def np_gelu(x, w, b, out):
    t = np.tanh((x + np.float32(0.044715) * x * x * x) * np.float32(0.7978845608028654))
    np.multiply(np.float32(0.5) * x * (1 + t), w, out=out)
    out += b


def np_layer_norm(x, w, b, out):
    mean = x.mean(-1, keepdims=True)
    d = x - mean
    var = (d * d).mean(-1, keepdims=True)
    np.multiply(d / np.sqrt(var + np.float32(1e-5)), w, out=out)
    out += b


def np_softmax(x, out):
    e = np.exp(x - x.max(-1, keepdims=True))
    np.divide(e, e.sum(-1, keepdims=True), out=out)


def np_chain(x, z, out):
    t = np.abs(x * np.float32(1.5) + z) - np.float32(0.25)
    t = np.sqrt(t * t + 1)
    np.divide(t - z, t + 2, out=out)


def torch_fns():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(num_threads())
    F = torch.nn.functional

    def gelu(x, w, b, out):
        torch.add(F.gelu(x, approximate="tanh") * w, b, out=out)

    def ln(x, w, b, out):
        out.copy_(F.layer_norm(x, (x.shape[-1],), w, b, 1e-5))

    def sm(x, out):
        torch.softmax(x, -1, out=out)

    def chain(x, z, out):
        t = torch.sqrt(torch.square(torch.abs(x * 1.5 + z) - 0.25) + 1)
        torch.div(t - z, t + 2, out=out)

    return {"gelu_tanh": gelu, "layer_norm": ln, "softmax": sm, "chain10": chain}, torch


# ---------------------------------------------------------------------------- harness
def interleaved(fns: dict, repeats: int) -> dict:
    times = {k: [] for k in fns}
    for f in fns.values():   # warm up (JIT page-in, BLAS threads, caches)
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--threshold", action="store_true", help="measure the threading threshold")
    args = ap.parse_args(argv)
    if args.threads:
        os.environ["EMBER_NUM_THREADS"] = str(args.threads)
    if args.threshold:
        return threshold()
    rng = np.random.default_rng(0)
    kernels = {"gelu_tanh": gelu_kernel(), "layer_norm": layer_norm_kernel(),
               "softmax": softmax_kernel(), "chain10": chain_kernel()}
    t0 = time.perf_counter()
    mod = compile_kernels(list(kernels.values()))
    print(f"compiled {len(kernels)} kernels in {1e3 * (time.perf_counter() - t0):.0f} ms "
          f"({mod.source}); threads={num_threads()}")
    tf = torch_fns()
    rows = []
    for name, k in kernels.items():
        ins = [rng.standard_normal(b.shape).astype(np.float32) for b in k.inputs]
        out = np.empty(k.outputs[0].shape, np.float32)
        ref = np.empty_like(out)
        fn = mod[k.name]
        npf = {"gelu_tanh": np_gelu, "layer_norm": np_layer_norm, "softmax": np_softmax, "chain10": np_chain}[name]
        fn(*ins, out)
        npf(*ins, ref)
        err = float(np.max(np.abs(out - ref)))
        nbytes = k.bytes_moved
        src = np.empty(nbytes // 8, np.float32)
        dst = np.empty_like(src)
        src[:] = 1
        cases = {"ember": lambda: fn(*ins, out), "numpy": lambda: npf(*ins, ref),
                 "copy": lambda: np.copyto(dst, src)}
        if tf is not None:
            tfns, torch = tf
            tins = [torch.from_numpy(a) for a in ins]
            tout = torch.from_numpy(np.empty_like(out))
            cases["torch"] = lambda: tfns[name](*tins, tout)
        med = interleaved(cases, args.repeats)
        gbs = nbytes / med["ember"] / 1e9
        copy_gbs = 2 * src.nbytes / med["copy"] / 1e9
        rows.append((name, med, gbs, copy_gbs, err))
    hdr = f"{'kernel':<11} {'ember ms':>9} {'numpy ms':>9} {'torch ms':>9} {'ember GB/s':>11} {'copy GB/s':>10} {'% copy':>7} {'vs numpy':>9} {'max|err|':>9}"
    print(hdr)
    print("-" * len(hdr))
    for name, med, gbs, copy_gbs, err in rows:
        tms = f"{1e3 * med['torch']:9.2f}" if "torch" in med else f"{'-':>9}"
        print(f"{name:<11} {1e3 * med['ember']:9.2f} {1e3 * med['numpy']:9.2f} {tms} {gbs:11.1f} "
              f"{copy_gbs:10.1f} {100 * gbs / copy_gbs:6.0f}% {med['numpy'] / med['ember']:8.1f}x {err:9.1e}")


def threshold():
    """Time a pointwise kernel at growing sizes on 1 thread and on all threads."""
    nt = num_threads()
    print(f"size (bytes moved)   1 thread us   {nt} threads us")
    for n in [1 << s for s in range(12, 22)]:
        k = chain_kernel(n)
        mod = compile_kernels([k])
        fn = mod[k.name]
        x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        z, y = x.copy(), np.empty_like(x)
        med = interleaved({"1": lambda: fn(x, z, y, threads=1), "n": lambda: fn(x, z, y, threads=nt)}, 200)
        # force the split regardless of the threshold for the comparison
        fn.parallel_ok = True
        med_n = interleaved({"n": lambda: fn(x, z, y, threads=nt)}, 200)["n"]
        print(f"{k.bytes_moved:>18}   {1e6 * med['1']:11.1f}   {1e6 * med_n:12.1f}")


if __name__ == "__main__":
    main()
