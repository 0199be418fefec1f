"""Whole training steps as one compiled call vs the forward-only compile vs PyTorch eager.

    python benchmarks/bench_whole_step.py [--rounds 15] [--only mnist,gpt]

Workloads: the MNIST CNN step (batch 64, SGD momentum 0.5, nll_loss) and a 2-layer d128 GPT step
(batch 16, sequence 64, AdamW), both in eval mode (dropout off, so every variant does the same work).
Variants:
  ember eager         the step in plain ember (autograd engine, eager optimizer)
  ember fwd-compile   `ember.compile(model)`: forward and backward graphs compiled, zero_grad,
                      the autograd hop and optimizer.step() eager (what ember.compile did before)
  ember whole-step    `ember.compile(step)`: zero_grad, forward, backward and step in one program
  ember whole, dynamic  the same with dynamic=True: the batch (and every other argument size) symbolic
  ember split         the same step with `losses.append(loss.item())` after opt.step(): a graph break,
                      so the step runs in pieces (ember/compiler/split.py) and every call replays the
                      step's Python against the recorded pieces
  torch eager         PyTorch in its own subprocess, default settings (NOTES.md: a shared process
                      slows it 3-4x)
For the compiled variants the time outside kernels is measured too, as the same step with the
kernels replaced by no-ops (see StubKernels): "outside kernels" stubs every kernel call of the
generated code (what remains: Python, guards, bindings, allocation, write-backs -- target <= 100 us
for the whole step); "+ launches" stubs only machine code and BLAS, so the runtime's launch path
(argument checks, pointer marshalling, thread-pool hand-offs) counts as outside too.
Before timing, the whole-step result is checked against ember eager (loss and parameters after 3 steps).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from harness import NA, interleave, loadavg, machine_info  # noqa: E402
from bench_models import make_gpt, make_mnist_net  # noqa: E402  (the one definition of each model)


def build(T, kind: str, mode: str, seed: int = 0):
    """(step callable, model, compiled function or None) in `T` (ember or torch); mode: eager |
    fwd (the model compiled) | whole (the step compiled) | split (the step compiled, with a break)."""
    F = T.nn.functional
    rng = np.random.default_rng(seed)
    if kind == "mnist":
        x = T.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
        y = T.tensor(rng.integers(0, 10, 64).astype(np.int64))
        model = make_mnist_net(T)
        opt = T.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)

        def loss_of(m, x, y):
            return F.nll_loss(m(x), y)
    else:
        x = T.tensor(rng.integers(0, 65, (16, 64)).astype(np.int64))
        y = T.tensor(rng.integers(0, 65, (16, 64)).astype(np.int64))
        model = make_gpt(T)
        opt = T.optim.AdamW(model.parameters(), lr=1e-3)

        def loss_of(m, x, y):
            return m(x, y)
    _init(T, model, seed)
    model.eval()
    fwd = T.compile(model) if mode == "fwd" else model

    losses = []

    def step(x, y):
        opt.zero_grad()
        loss = loss_of(fwd, x, y)
        loss.backward()
        opt.step()
        if mode == "split":
            losses.append(loss.item())
        return loss
    fn = T.compile(step, dynamic=mode == "whole-dyn") if mode in ("whole", "whole-dyn", "split") else step
    cf = fn if mode in ("whole", "whole-dyn", "split") else fwd._compiled if mode == "fwd" else None
    return (lambda: fn(x, y)), model, cf


def _init(T, model, seed):
    """Same weights in ember and torch: drawn by numpy, in parameter order."""
    rng = np.random.default_rng(seed + 1)
    with T.no_grad():
        for _, p in model.named_parameters():
            p.copy_(T.tensor((rng.standard_normal(tuple(p.shape)) * 0.05).astype(np.float32)))


# ------------------------------------------------------------------------ time outside kernels
class StubKernels:
    """with StubKernels(compiled_fn, level): the kernels of its variants do nothing (results are
    garbage: time only). level "calls": every kernel / extern / eager-fallback call of the generated
    code is a no-op, so what remains is ember's Python around them (guards, bindings, the executor,
    allocation, write-backs); level "native": only the machine code and BLAS are skipped, so the
    runtime's launch path (argument checks, pointer marshalling, the thread-pool hand-off of large
    kernels) counts as outside too."""

    def __init__(self, cf, level: str = "calls"):
        self.cf, self.level = cf, level

    def __enter__(self):
        from ember.ir.program import EagerStep, ExternStep, KernelStep
        from ember.ir.sizes import substitute
        from ember.runtime import cpu
        from ember.runtime.device import ExternCallable
        self.saved = []
        for cg in self.cf.variants:
            for ex in (cg.forward_exec, cg.backward_exec):
                program = getattr(ex, "program", None)
                if program is None:
                    continue
                module = getattr(ex, "module", None)
                if self.level == "native" and module is not None:
                    for kc in module._callables.values():
                        if isinstance(kc, ExternCallable):
                            dev = kc.module.device
                            if not any(o is dev for o, n, _ in self.saved if n == "run_extern"):
                                self.saved.append((dev, "run_extern", dev.run_extern))
                                object.__setattr__(dev, "run_extern", lambda *a, **k: None)   # (frozen)
                            kc = kc.epilogue
                        if isinstance(kc, cpu.KernelCallable):
                            self.saved.append((kc, "_fn", kc._fn))
                            kc._fn = _no_kernel
                env = ex._fn.__globals__
                for st in program.steps:
                    name = "_" + st.name
                    if isinstance(st, EagerStep):
                        v = program.values[st.output]
                        self.saved.append((env, name, env[name]))
                        shape = substitute(v.shape, getattr(ex, "sizes", {}))    # (a dynamic program's sizes)
                        env[name] = (lambda a: lambda *_: a)(np.zeros(shape, v.dtype.np))
                    elif self.level == "calls" and isinstance(st, (KernelStep, ExternStep)):
                        self.saved.append((env, name, env[name]))
                        env[name] = _no_kernel
        return self

    def __exit__(self, *exc):
        for obj, name, val in reversed(self.saved):
            if isinstance(obj, dict):
                obj[name] = val
            else:
                object.__setattr__(obj, name, val)
        return False


def _no_kernel(*args):
    return 0


def outside_kernels_us(step, cf, rounds: int, level: str = "calls") -> float:
    """CPU time (this thread; other tenants of a shared machine add less noise to it than to wall
    time) per step of `step` with cf's kernels stubbed (see StubKernels): the best of `rounds`
    samples of 20 steps. Level "native" also counts the kernel pool's threads' hand-offs, so it
    uses wall time."""
    clock = time.thread_time if level == "calls" else time.perf_counter
    with StubKernels(cf, level):
        for _ in range(3):
            step()
        times = []
        for _ in range(rounds):
            t0 = clock()
            for _ in range(20):
                step()
            times.append((clock() - t0) / 20)
    return float(np.min(times)) * 1e6


# --------------------------------------------------------------------------------- PyTorch
def torch_child(kinds, rounds):
    """Runs in the subprocess: PyTorch eager step times (median s) as JSON on stdout."""
    import torch
    out = {"version": torch.__version__, "threads": torch.get_num_threads()}
    for kind in kinds:
        step, _, _ = build(torch, kind, "eager")
        for _ in range(3):
            step()
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        out[kind] = float(np.median(ts))
    print(json.dumps(out))


def torch_times(kinds, rounds):
    try:
        r = subprocess.run([sys.executable, __file__, "--torch-child", ",".join(kinds), "--rounds", str(rounds)],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            return NA(f"PyTorch subprocess failed: {r.stderr.strip().splitlines()[-1:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - no torch: the column says so
        return NA(f"PyTorch n/a ({type(e).__name__}: {e})")


# ------------------------------------------------------------------------------------ main
def check(kind):
    """Whole-step and split ember vs eager ember: loss and every parameter after 3 steps."""
    import ember
    e_step, e_model, _ = build(ember, kind, "eager")
    runs = {mode: build(ember, kind, mode) for mode in ("whole", "split")}
    for _ in range(3):
        le = float(e_step())
        got = {mode: float(r[0]()) for mode, r in runs.items()}
    msgs, ok = [], True
    for mode, (_, model, _) in runs.items():
        worst = max(float(np.max(np.abs(a.detach().numpy() - b.detach().numpy())))
                    for a, b in zip(e_model.parameters(), model.parameters()))
        ok &= abs(le - got[mode]) <= 1e-4 * max(1.0, abs(le)) and worst <= 1e-4
        msgs.append(f"{mode}: loss {got[mode]:.6f} vs {le:.6f}, max |param diff| {worst:.2e}")
    return ok, "; ".join(msgs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--only", default="mnist,gpt")
    ap.add_argument("--torch-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    kinds = [k for k in args.only.split(",") if k]
    if args.torch_child is not None:
        torch_child(args.torch_child.split(","), args.rounds)
        return
    import ember
    info = machine_info()
    print(f"whole-step benchmark; {info.get('cpu', '')}; load {loadavg()}")
    tt = torch_times(kinds, args.rounds)
    for kind in kinds:
        ok, msg = check(kind)
        print(f"\n{kind}: whole-step vs eager after 3 steps: {'OK' if ok else 'MISMATCH'} ({msg})")
        fns, cfs = {}, {}
        for mode, label in (("eager", "ember eager"), ("fwd", "ember fwd-compile"), ("whole", "ember whole-step"),
                            ("whole-dyn", "ember whole, dynamic"), ("split", "ember split")):
            step, _, cf = build(ember, kind, mode)
            t0 = time.perf_counter()
            step()
            compile_s = time.perf_counter() - t0
            fns[label] = step
            if cf is not None:
                cfs[label] = (step, cf, compile_s)
        res = interleave(fns, rounds=args.rounds, warmup=3)
        torch_ms = tt[kind] * 1e3 if isinstance(tt, dict) else None
        print(f"  {'variant':20s} {'ms/step':>9s} {'outside kernels':>16s} {'+ launches':>11s} {'compiles':>9s}")
        for label, r in res.items():
            if isinstance(r, NA):
                print(f"  {label:20s} {r}")
                continue
            extra, launch, comp = "", "", ""
            if label in cfs:
                step, cf, compile_s = cfs[label]
                extra = f"{outside_kernels_us(step, cf, args.rounds):11.0f} us"
                # (a dynamic program binds its native callables per size: StubKernels cannot reach them)
                launch = ("n/a" if "dynamic" in label
                          else f"{outside_kernels_us(step, cf, args.rounds, 'native'):8.0f} us")
                comp = f"{cf.stats['compiles']} ({compile_s:.1f} s)"
            print(f"  {label:20s} {r.median * 1e3:9.2f} {extra:>16s} {launch:>11s} {comp:>9s}")
        if torch_ms is not None:
            print(f"  {'torch eager':20s} {torch_ms:9.2f}   (own process, {tt['threads']} threads, "
                  f"torch {tt['version']})")
        else:
            print(f"  torch eager          {tt}")


if __name__ == "__main__":
    main()
