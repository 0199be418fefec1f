"""GPU benchmark: ember's generated CUDA kernels vs CuPy eager vs torch eager / torch.compile, and training
steps on device 'cuda' vs torch.

    python benchmarks/gpu_bench.py [--rounds 15] [--no-torch-compile] [--no-training] [--quick]

Kernels (float32, the four fusion workloads of benchmarks/fusion_kernels.py, same kernel IR):
  gelu_tanh   gelu_tanh(x) * w + b over 4096x4096
  layer_norm  over the last axis of 8192x1024 (weight, bias)
  softmax     over the last axis of 8192x1024
  chain10     a 10-op pointwise chain over 4M elements
Each variant writes into a preallocated output; every call ends with a device synchronize (so a
sample is the whole kernel, not its launch), rounds are interleaved and rotated (benchmarks/harness.py),
medians are reported with GB/s = bytes moved (each buffer read or written once) / time, next to a
CuPy device-to-device copy of the same size ("% copy" = the bandwidth ceiling).  ember's result is
checked against CuPy eager in the same run.

Training steps (when ember and torch run on the GPU): the MNIST CNN at batch 256 and the 2-layer GPT
of benchmarks/bench_models.py at batch 64x64, ember eager on cuda (and ember.compile with
backend='cuda' once wired) vs torch eager on cuda.

Writes a markdown table to stdout and to $OUT/gpu_results.md when OUT is set.  A variant that cannot
run becomes "n/a: <reason>", never a crash.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from harness import NA, interleave, markdown_table, short_reason  # noqa: E402

LINES: list[str] = []


def say(msg: str = "") -> None:
    print(msg, flush=True)
    LINES.append(msg)


# ----------------------------------------------------------------------------- kernels
def kernel_builders():
    """The fusion benchmark's kernel IR (imported, so both benchmarks time the same kernels)."""
    from fusion_kernels import chain_kernel, gelu_kernel, layer_norm_kernel, softmax_kernel
    return {"gelu_tanh": gelu_kernel, "layer_norm": layer_norm_kernel, "softmax": softmax_kernel,
            "chain10": chain_kernel}


def cupy_fns(cp):
    f32 = np.float32

    def gelu(x, w, b, out):
        t = cp.tanh((x + f32(0.044715) * x * x * x) * f32(0.7978845608028654))
        cp.multiply(f32(0.5) * x * (1 + t), w, out=out)
        out += b

    def ln(x, w, b, out):
        mean = x.mean(-1, keepdims=True)
        d = x - mean
        var = (d * d).mean(-1, keepdims=True)
        cp.multiply(d / cp.sqrt(var + f32(1e-5)), w, out=out)
        out += b

    def sm(x, out):
        e = cp.exp(x - x.max(-1, keepdims=True))
        cp.divide(e, e.sum(-1, keepdims=True), out=out)

    def chain(x, z, out):
        t = cp.abs(x * f32(1.5) + z) - f32(0.25)
        t = cp.sqrt(t * t + 1)
        cp.divide(t - z, t + 2, out=out)

    return {"gelu_tanh": gelu, "layer_norm": ln, "softmax": sm, "chain10": chain}


def torch_fns(torch):
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

    return {"gelu_tanh": gelu, "layer_norm": ln, "softmax": sm, "chain10": chain}


def get_torch_cuda():
    try:
        import torch
    except ImportError as e:
        return None, f"torch not installed ({e})"
    if not torch.cuda.is_available():
        return None, "torch has no CUDA here"
    return torch, ""


def bench_kernels(args, cp, rt):
    sync = cp.cuda.Device().synchronize
    torch, why = get_torch_cuda()
    try:
        builders = kernel_builders()
    except Exception as e:   # noqa: BLE001
        say(f"kernel section skipped: cannot import benchmarks/fusion_kernels.py ({short_reason(e)})")
        return
    cfs, tfs = cupy_fns(cp), torch_fns(torch) if torch else {}
    rows = []
    rng = np.random.default_rng(0)
    for name, build in builders.items():
        k = build() if not args.quick else _quick(name, build)
        ins_np = [rng.standard_normal(b.shape).astype(np.float32) for b in k.inputs]
        ins = [cp.asarray(a) for a in ins_np]
        out_e, out_c = cp.empty(k.outputs[0].shape, np.float32), cp.empty(k.outputs[0].shape, np.float32)
        nbytes = k.bytes_moved
        fns = {}
        t0 = time.perf_counter()
        try:
            mod = rt.compile_kernels([k])
            launch = mod[k.name].launch
            arrays = ins + [out_e]
            fns["ember CUDA"] = lambda launch=launch, arrays=arrays: (launch(arrays), sync())
            strategy = mod.launches[k.name].strategy
        except Exception as e:   # noqa: BLE001
            fns["ember CUDA"] = NA.from_exc("compile failed", e)
            strategy = "?"
            traceback.print_exc()
        compile_s = time.perf_counter() - t0
        fns["cupy eager"] = lambda f=cfs[name]: (f(*ins, out_c), sync())
        src, dst = cp.empty(nbytes // 8, np.float32), cp.empty(nbytes // 8, np.float32)   # r+w = nbytes
        fns["cupy copy"] = lambda: (cp.copyto(dst, src), sync())
        if torch:
            tins = [torch.as_tensor(a, device="cuda") for a in ins_np]
            tout = torch.empty(k.outputs[0].shape, device="cuda")
            fns["torch eager"] = lambda f=tfs[name]: (f(*tins, tout), sync())
            if args.torch_compile:
                try:
                    tc = torch.compile(tfs[name])
                    tc(*tins, tout)
                    fns["torch.compile"] = lambda tc=tc: (tc(*tins, tout), sync())
                except Exception as e:   # noqa: BLE001
                    fns["torch.compile"] = NA.from_exc("torch.compile failed", e)
            else:
                fns["torch.compile"] = NA("not run (--no-torch-compile)")
        else:
            fns["torch eager"] = fns["torch.compile"] = NA(why)
        res = interleave(fns, rounds=args.rounds, warmup=3, min_sample_s=0.002, max_inner=200)
        check = "n/a"
        if not isinstance(res["ember CUDA"], NA):
            a, b = out_e.get(), out_c.get()
            check = "ok" if np.allclose(a, b, rtol=1e-4, atol=1e-5) else \
                f"MISMATCH max|d|={float(np.nanmax(np.abs(a - b))):.2e}"
        copy_gbs = nbytes / res["cupy copy"].median / 1e9 if not isinstance(res["cupy copy"], NA) else None
        for variant in ("ember CUDA", "cupy eager", "torch eager", "torch.compile"):
            r = res[variant]
            if isinstance(r, NA):
                rows.append([name, variant, "n/a", "", "", short_reason(r.reason, 60)])
                continue
            gbs = nbytes / r.median / 1e9
            pct = f"{100 * gbs / copy_gbs:.0f}%" if copy_gbs else ""
            note = f"{strategy}, compile {compile_s:.2f}s, {check}" if variant == "ember CUDA" else ""
            rows.append([name, variant, f"{r.median * 1e3:.3f}", f"{gbs:.0f}", pct, note])
        if copy_gbs:
            rows.append([name, "cupy copy (ceiling)", f"{res['cupy copy'].median * 1e3:.3f}", f"{copy_gbs:.0f}",
                         "100%", f"{nbytes / 2**20:.0f} MiB moved"])
        say(f"  {name}: done")
    say()
    say(markdown_table(["kernel", "variant", "ms", "GB/s", "% copy", "notes"], rows))


def _quick(name, build):
    return {"gelu_tanh": lambda: build(1024, 1024), "layer_norm": lambda: build(1024, 1024),
            "softmax": lambda: build(1024, 1024), "chain10": lambda: build(1 << 20)}[name]()


# ----------------------------------------------------------------------------- training
class OnDevice:
    """`T` (ember or torch) whose factories default to device `dev` (bench_models.py's models call
    T.arange / T.ones without a device)."""

    FACTORIES = ("arange", "ones", "zeros", "tensor", "full", "empty", "randn", "rand")

    def __init__(self, T, dev):
        self._T, self._dev = T, dev

    def __getattr__(self, name):
        attr = getattr(self._T, name)
        if name in self.FACTORIES:
            def f(*a, _f=attr, **kw):
                kw.setdefault("device", self._dev)
                return _f(*a, **kw)
            return f
        return attr


def bench_training(args, cp):
    import ember as E
    from bench_models import make_gpt, make_mnist_net
    torch, why = get_torch_cuda()
    sync = cp.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    rows = []
    mb = 64 if args.quick else 256
    gb = 16 if args.quick else 64
    work = {
        "mnist": (lambda T: make_mnist_net(T), [rng.standard_normal((mb, 1, 28, 28)).astype(np.float32),
                                                rng.integers(0, 10, mb).astype(np.int64)], f"batch {mb}"),
        "gpt": (lambda T: make_gpt(T), [rng.integers(0, 65, (gb, 64)).astype(np.int64),
                                        rng.integers(0, 65, (gb, 64)).astype(np.int64)], f"batch {gb}x64, d128"),
    }
    for kind, (make, inputs, size) in work.items():
        fns = {}

        def setup(T, tensor_fn, compiled=False):
            TD = OnDevice(T, "cuda")
            model = make(TD).to("cuda")
            opt = T.optim.SGD(model.parameters(), lr=0.01, momentum=0.5) if kind == "mnist" else \
                T.optim.AdamW(model.parameters(), lr=1e-3)
            xs = [tensor_fn(a) for a in inputs]
            F = T.nn.functional
            fwd = (lambda x, y: F.nll_loss(model(x), y)) if kind == "mnist" else (lambda x, y: model(x, y))
            if compiled:
                fwd = T.compile(fwd, backend="cuda")

            def step():
                opt.zero_grad()
                loss = fwd(*xs)
                loss.backward()
                opt.step()
                sync()
                return loss
            return model, step

        try:
            em, fns["ember eager (cuda)"] = setup(E, lambda a: E.tensor(a, device="cuda"))
        except Exception as e:   # noqa: BLE001
            fns["ember eager (cuda)"] = NA.from_exc("setup failed", e)
        try:
            _, step = setup(E, lambda a: E.tensor(a, device="cuda"), compiled=True)
            step()
            fns["ember compiled (cuda)"] = step
        except Exception as e:   # noqa: BLE001
            fns["ember compiled (cuda)"] = NA.from_exc("ember.compile(backend='cuda')", e)
        if torch:
            try:
                tm, fns["torch eager (cuda)"] = setup(torch, lambda a: torch.as_tensor(a, device="cuda"))
            except Exception as e:   # noqa: BLE001
                fns["torch eager (cuda)"] = NA.from_exc("setup failed", e)
        else:
            fns["torch eager (cuda)"] = NA(why)
        res = interleave(fns, rounds=max(5, args.rounds // 2), warmup=3, min_sample_s=0.0, max_inner=1)
        ref = res.get("torch eager (cuda)")
        for variant, r in res.items():
            if isinstance(r, NA):
                rows.append([kind, size, variant, "n/a", "", short_reason(r.reason, 70)])
                continue
            ratio = f"{ref.median / r.median:.2f}x" if ref is not None and not isinstance(ref, NA) else ""
            rows.append([kind, size, variant, f"{r.median * 1e3:.2f}", ratio, ""])
        say(f"  {kind}: done")
    say()
    say(markdown_table(["step", "size", "variant", "ms/step", "vs torch (throughput)", "notes"], rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the script)")
    ap.add_argument("--no-torch-compile", dest="torch_compile", action="store_false")
    ap.add_argument("--no-training", dest="training", action="store_false")
    args = ap.parse_args()
    try:
        import cupy as cp
        from ember.runtime import cuda as rt
        if not rt.available():
            raise RuntimeError("CuPy sees no GPU")
    except Exception as e:   # noqa: BLE001
        say(f"gpu_bench: CUDA not available here ({short_reason(e, 120)}); nothing to measure")
        return 0
    info = rt.device_info()
    torch, why = get_torch_cuda()
    say(f"# ember GPU benchmark\n\n{info['name']} (sm_{info['compute_capability']}, {info['sm_count']} SMs), "
        f"CuPy {cp.__version__}, torch {torch.__version__ if torch else 'n/a: ' + why}\n")
    say("## Fused kernels (float32; median of interleaved rounds, each call synchronised)\n")
    bench_kernels(args, cp, rt)
    if args.training:
        say("\n## Training steps on cuda (forward + backward + optimizer step, synchronised)\n")
        try:
            bench_training(args, cp)
        except Exception as e:   # noqa: BLE001
            traceback.print_exc()
            say(f"training section failed: {short_reason(e, 200)}")
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "gpu_results.md").write_text("\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
