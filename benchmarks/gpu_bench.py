"""GPU benchmark: ember's generated CUDA kernels vs CuPy eager vs torch eager / torch.compile, and training
steps on device 'cuda' vs torch.

    python benchmarks/gpu_bench.py [--rounds 15] [--no-torch-compile] [--no-training] [--no-kernels] [--quick]
                                   [--budget 300] [--variant-timeout 120]

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

Training steps (zero_grad, forward + backward, optimizer step): the MNIST CNN at batch 64 and 256 and
the 2-layer GPT of benchmarks/bench_models.py at 16x64 and 64x64, each as ember eager, ember.compile
of the loss (default and mode="reduce-overhead": CUDA graphs), ember.compile of the whole step
(zero_grad .. optimizer.step in one program: graphs by default), torch eager, torch.compile of the
loss (default and "reduce-overhead").  Per variant: ms/step (synchronised, interleaved medians), host us/step (the
step's Python time without the final synchronize), launches/step (CUDA API calls that queue work,
counted by torch.profiler for every library in the process; for ember's compiled programs also
ember's own count), and GPU busy (GPU kernel time / step time).  Every variant builds and warms
up under a deadline (--variant-timeout), torch.compile's builds under a shared budget (--budget):
what does not fit, or fails, becomes an n/a row with the reason.

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
            if args.torch_compile and args.kernel_torch_compile:
                try:
                    tc = torch.compile(tfs[name])
                    tc(*tins, tout)
                    fns["torch.compile"] = lambda tc=tc: (tc(*tins, tout), sync())
                except Exception as e:   # noqa: BLE001
                    fns["torch.compile"] = NA.from_exc("torch.compile failed", e)
            else:
                fns["torch.compile"] = NA("not run (--no-torch-compile / --no-kernel-torch-compile)")
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


TRAIN_VARIANTS = ("ember eager", "ember compiled", "ember reduce-overhead", "ember whole step", "torch eager",
                  "torch.compile", "torch.compile reduce-overhead")
# CUDA API calls that put work on a stream (what "launches" counts for the profiler)
LAUNCH_APIS = ("LaunchKernel", "GraphLaunch", "MemcpyAsync", "MemsetAsync", "LaunchCooperativeKernel",
               "cuLaunch", "MemcpyHtoDAsync", "MemcpyDtoHAsync", "MemcpyDtoDAsync")


class Deadline:
    """`with Deadline(s):` raises TimeoutError in this (main) thread after s seconds: a compile
    that hangs or takes too long becomes an n/a row, never a stuck benchmark."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def _fire(self, *_):
        raise TimeoutError(f"took more than {self.seconds:.0f} s")

    def __enter__(self):
        import signal
        self._old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        import signal
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        return False


def _workloads(args):
    """(kind, size label, batch shape) of the training steps: MNIST 64 and 256, GPT 16x64 and 64x64."""
    if args.quick:
        return [("mnist", "batch 64", 64), ("gpt", "batch 16x64", 16)]
    return [("mnist", "batch 64", 64), ("mnist", "batch 256", 256), ("gpt", "batch 16x64", 16),
            ("gpt", "batch 64x64", 64)]


def _make_step(T, kind, batch, variant):
    """A training step (zero_grad, forward, backward, optimizer step) for one variant, without the
    final synchronize; and the compiled function (ember) or None."""
    from bench_models import make_gpt, make_mnist_net
    rng = np.random.default_rng(0)
    if kind == "mnist":
        inputs = [rng.standard_normal((batch, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, batch)]
    else:
        inputs = [rng.integers(0, 65, (batch, 64)), rng.integers(0, 65, (batch, 64))]
    is_torch = variant.startswith("torch")
    TD = OnDevice(T, "cuda")
    T.manual_seed(0)
    model = (make_mnist_net(TD) if kind == "mnist" else make_gpt(TD)).to("cuda")
    opt = T.optim.SGD(model.parameters(), lr=0.01, momentum=0.5) if kind == "mnist" else \
        T.optim.AdamW(model.parameters(), lr=1e-3)
    xs = [T.as_tensor(a, device="cuda") if is_torch else T.tensor(a, device="cuda") for a in inputs]
    F = T.nn.functional
    fwd = (lambda x, y: F.nll_loss(model(x), y)) if kind == "mnist" else (lambda x, y: model(x, y))
    compiled = None
    if variant == "ember compiled":
        fwd = compiled = T.compile(fwd, backend="cuda")
    elif variant == "ember reduce-overhead":
        fwd = compiled = T.compile(fwd, backend="cuda", mode="reduce-overhead")
    elif variant == "torch.compile":
        fwd = T.compile(fwd)
    elif variant == "torch.compile reduce-overhead":
        fwd = T.compile(fwd, mode="reduce-overhead")

    def step():
        opt.zero_grad()
        loss = fwd(*xs)
        loss.backward()
        opt.step()
        return loss
    if variant == "ember whole step":
        # zero_grad .. optimizer.step in one compiled function: one program, CUDA graphs by default
        def whole(*a):
            opt.zero_grad()
            loss = fwd(*a)
            loss.backward()
            opt.step()
            return loss
        compiled = T.compile(whole, backend="cuda")
        return (lambda: compiled(*xs)), compiled
    return step, compiled


def _host_us(step, sync, n=10) -> float:
    """Median host time of a step (issue only: the synchronize after it is not counted), in us."""
    ts = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
        sync()
    ts.sort()
    return ts[len(ts) // 2] * 1e6


def _ember_launches(step, sync, rt, compiled):
    """Launches ember issued in one step (its kernels exactly, library calls by their known count,
    graph replays, copies) -- the compiled program's part only: eager ops are CuPy's, uncounted."""
    sync()
    before = rt.COUNTER.snapshot()
    was = compiled.stats.get("cuda_launches", 0) if compiled is not None else 0
    step()
    sync()
    syncs = rt.COUNTER.snapshot()[4] - before[4]
    return (compiled.stats.get("cuda_launches", 0) - was if compiled is not None else None), syncs


def _profiled(step, sync, torch):
    """(API launches, GPU kernels, GPU kernel time s) of one step seen by torch.profiler (CUPTI sees
    every library in the process: CuPy's launches too).  None when profiling is not possible."""
    if torch is None:
        return None
    try:
        from torch.profiler import ProfilerActivity, profile
        sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            sync()
        launches = kernels = 0
        busy_us = 0.0
        for e in prof.events():
            if any(k in e.name for k in LAUNCH_APIS) and str(e.device_type).endswith("CPU"):
                launches += 1
            elif str(e.device_type).endswith("CUDA"):
                kernels += 1
                busy_us += getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0) or 0.0
        return launches, kernels, busy_us * 1e-6
    except Exception as e:   # noqa: BLE001
        say(f"    profiler unavailable: {short_reason(e, 100)}")
        return None


def bench_training(args, cp):
    import ember as E
    from ember.runtime import cuda as rt
    torch, why = get_torch_cuda()
    sync = cp.cuda.Device().synchronize
    tsync = torch.cuda.synchronize if torch else None

    def both_sync():
        sync()
        if tsync:
            tsync()
    rows = []
    t_start = time.perf_counter()
    compile_s = 0.0
    for kind, size, batch in _workloads(args):
        steps, compiled, setup_s = {}, {}, {}
        for variant in TRAIN_VARIANTS:
            is_torch = variant.startswith("torch")
            if is_torch and torch is None:
                steps[variant] = NA(why)
                continue
            if "compile" in variant and is_torch and not args.torch_compile:
                steps[variant] = NA("not run (--no-torch-compile)")
                continue
            limit = args.variant_timeout
            if variant.startswith("torch.compile"):
                # torch.compile's builds are the long ones: they share a budget, the rest always run
                left = args.budget - compile_s
                if left < 20:
                    steps[variant] = NA(f"skipped: the {args.budget:.0f} s budget for torch.compile builds is spent")
                    continue
                limit = min(limit, left)
            try:
                t0 = time.perf_counter()
                with Deadline(limit):
                    step, compiled[variant] = _make_step(torch if is_torch else E, kind, batch, variant)
                    for _ in range(3):       # compile, capture, warm caches
                        step()
                    both_sync()
                setup_s[variant] = time.perf_counter() - t0
                steps[variant] = step
            except Exception as e:   # noqa: BLE001
                steps[variant] = NA.from_exc("setup failed", e)
                say(f"    {kind} {size} {variant}: {steps[variant]}")
            if variant.startswith("torch.compile"):
                compile_s += time.perf_counter() - t0
        timed = {v: (f if isinstance(f, NA) else (lambda f=f: (f(), both_sync()))) for v, f in steps.items()}
        res = interleave(timed, rounds=max(5, args.rounds), warmup=2, min_sample_s=0.0, max_inner=1)
        ref = res.get("torch eager")
        for variant in TRAIN_VARIANTS:
            r = res[variant]
            if isinstance(r, NA):
                rows.append([kind, size, variant, "n/a", "", "", "", "", "", short_reason(r.reason, 70)])
                continue
            step = steps[variant]
            host = _host_us(step, both_sync)
            launches, syncs = ("", "")
            if not variant.startswith("torch"):
                n, s = _ember_launches(step, both_sync, rt, compiled.get(variant))
                launches, syncs = ("" if n is None else str(n)), str(s)
            prof = _profiled(step, both_sync, torch)
            api = f"{prof[0]}" if prof else ""
            busy = f"{100 * prof[2] / r.median:.0f}%" if prof and prof[2] else ""
            ratio = f"{ref.median / r.median:.2f}x" if ref is not None and not isinstance(ref, NA) else ""
            note = f"setup {setup_s.get(variant, 0):.1f}s"
            c = compiled.get(variant)
            if c is not None:
                note += f", graphs {c.stats.get('cuda_graph_captures', 0)} captured"
                v = c.variants[-1] if c.variants else None
                if v is not None and any(ex is not None and not hasattr(ex, "program")
                                         for ex in (v.forward_exec, v.backward_exec)):
                    note += ", a graph runs on the reference interpreter (F002)"
            rows.append([kind, size, variant, f"{r.median * 1e3:.2f}", ratio, f"{host:.0f}", api, launches,
                         busy, note + (f", ember syncs/step {syncs}" if syncs not in ("", "0") else "")])
        say(f"  {kind} {size}: done ({time.perf_counter() - t_start:.0f} s)")
    say()
    say(markdown_table(["step", "size", "variant", "ms/step", "vs torch eager", "host us/step",
                        "launches/step (profiler)", "launches/step (ember count)", "GPU busy", "notes"], rows))
    say()
    say("ms/step: median of interleaved synchronised steps (zero_grad, forward, backward, optimizer step). "
        "host us/step: the step's Python time without the final synchronize. launches (profiler): CUDA API calls "
        "that queue work (kernel / graph launches, async copies and memsets) in one profiled step, any library; "
        "launches (ember count): what ember's compiled programs issued (ember.runtime.cuda.COUNTER; eager ops "
        "and the optimizer are not in it). GPU busy: GPU kernel time of the profiled step / ms/step.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the script)")
    ap.add_argument("--no-torch-compile", dest="torch_compile", action="store_false")
    ap.add_argument("--no-training", dest="training", action="store_false")
    ap.add_argument("--no-kernels", dest="kernels", action="store_false", help="skip the fused-kernel section")
    ap.add_argument("--no-kernel-torch-compile", dest="kernel_torch_compile", action="store_false",
                    help="torch.compile only in the training section (its builds take the time)")
    ap.add_argument("--budget", type=float, default=240.0,
                    help="seconds for all torch.compile builds of the training section (then n/a rows)")
    ap.add_argument("--variant-timeout", type=float, default=120.0,
                    help="seconds one variant may take to build and warm up (torch.compile included)")
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
    if args.kernels:
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
