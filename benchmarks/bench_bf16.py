"""Mixed precision on the CPU: the bf16 GEMM against numpy's float32 sgemm, and training steps under
autocast(bf16) against float32 -- ember eager and compiled in this process, PyTorch in its own.

    python benchmarks/bench_bf16.py                      # GEMMs + MNIST step (+ GPT step), ~2-4 min
    python benchmarks/bench_bf16.py --only gemm --rounds 9
    python benchmarks/bench_bf16.py --curve 200          # + loss curves (MNIST, GPT): bf16 vs fp32, 200 steps
    python benchmarks/bench_bf16.py --only none --curve 200     # the loss curves alone

GEMM rows: GFLOP/s of ember's bf16 product (ember/runtime/gemm_bf16.py, bf16 in, float32 accumulation,
bf16 out), numpy's float32 sgemm (OpenBLAS, run by blas_threads.matmul one thread per block: the issue's
baseline) and ember's float32 product (the same with ember's own kernels for the thin shapes they win on,
ember/runtime/gemm_f32.py: what eager float32 uses), on 1024^3 and
on the products the MNIST CNN and the 2-layer GPT run (as ember's eager ops issue them: a convolution is
one [O, C*k*k] @ [C*k*k, L*N] product, ember/nn/_functional/conv.py); torch bf16 / fp32 (torch.matmul)
run in a subprocess so its OpenMP threads do not compete with ours.  Step rows: ms per training step (forward, loss,
backward, SGD/AdamW step) in float32 and under autocast("cpu", bfloat16).

Interleaved rounds, medians (benchmarks/harness.py).  On a shared machine the absolute numbers move
with the other tenants; the ratios within one process are the meaningful part.
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
from harness import NA, Stats, interleave, loadavg, machine_info, markdown_table, wait_quiet  # noqa: E402

# (name, A shape, B shape, B stored transposed): the products ember's eager ops issue for these models
GEMMS = [
    ("1024^3", (1024, 1024), (1024, 1024), False),
    ("mnist conv1 fwd: [10,25]@[25,36864]", (10, 25), (25, 36864), False),
    ("mnist conv2 fwd: [20,250]@[250,4096]", (20, 250), (250, 4096), False),
    ("mnist fc1 fwd: [64,320]@[320,50]^T", (64, 320), (320, 50), True),
    ("mnist conv1 dW: [10,36864]@[36864,25]", (10, 36864), (36864, 25), True),
    ("mnist conv2 dW: [20,4096]@[4096,250]", (20, 4096), (4096, 250), True),
    ("mnist conv2 dX: [250,20]@[20,4096]", (250, 20), (20, 4096), False),
    ("gpt qkv: [1024,128]@[128,384]^T", (1024, 128), (128, 384), True),
    ("gpt mlp up: [1024,128]@[128,512]^T", (1024, 128), (128, 512), True),
    ("gpt mlp down: [1024,512]@[512,128]^T", (1024, 512), (512, 128), True),
    ("gpt attention: 64x [64,32]@[32,64]", (16, 4, 64, 32), (16, 4, 32, 64), False),
    ("gpt B=64 qkv: [4096,128]@[128,384]^T", (4096, 128), (128, 384), True),
    ("gpt B=64 mlp down: [4096,512]@[512,128]^T", (4096, 512), (512, 128), True),
    ("gpt dW mlp up: [512,1024]@[1024,128]", (512, 1024), (1024, 128), False),
]


def gemm_cases():
    """(name, a, b, flops) with float32 operands; B of a Linear layer is a transposed view (W.t())."""
    rng = np.random.default_rng(0)
    for name, sa, sb, bt in GEMMS:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb[:-2] + (sb[-1], sb[-2]) if bt else sb).astype(np.float32)
        if bt:
            b = np.swapaxes(b, -1, -2)
        out = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        yield name, a, b, 2.0 * int(np.prod(out)) * a.shape[-1]


# ------------------------------------------------------------------------------------ torch side
def _torch_main(what: str, rounds: int, batch: int):
    """Runs in its own process: prints one JSON line {row: median seconds}."""
    import torch
    out = {}
    if what.startswith("curve:"):      # curve:<steps>:<models>
        _, n, models = what.split(":")
        for m in models.split(","):
            fn = _mnist_curve if m == "mnist" else _gpt_curve
            out[m] = {prec: fn(torch, prec == "bf16", int(n)) for prec in ("fp32", "bf16")}
    elif what == "gemm":
        for name, a, b, _ in gemm_cases():
            ta = torch.from_numpy(a)
            tb = torch.from_numpy(b) if b.flags.c_contiguous else \
                torch.from_numpy(np.ascontiguousarray(np.swapaxes(b, -1, -2))).transpose(-1, -2)   # W.t()
            fns = {f"{name}|torch fp32": lambda ta=ta, tb=tb: torch.matmul(ta, tb),
                   f"{name}|torch bf16": (lambda ta=ta.bfloat16(), tb=tb.bfloat16(): torch.matmul(ta, tb))}
            for k, v in interleave(fns, rounds=rounds).items():
                out[k] = v.median if isinstance(v, Stats) else None
    else:
        fns = {}
        for prec in ("fp32", "bf16"):
            fns[f"{what}|torch eager {prec}"] = _build_step(torch, what, batch, prec == "bf16", compiled=False)
        for k, v in interleave(fns, rounds=rounds, warmup=3).items():
            out[k] = v.median if isinstance(v, Stats) else None
    print(json.dumps(out))


def _torch(what: str, args) -> dict:
    cmd = [sys.executable, __file__, "--_torch", what, "--rounds", str(args.rounds), "--batch", str(args.batch),
           "--threads", str(args.threads)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        print(f"  torch subprocess failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
        return {}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------- training steps
def _build_step(T, what: str, batch: int, bf16: bool, compiled: bool):
    from bench_models import make_gpt, make_mnist_net
    F = T.nn.functional
    rng = np.random.default_rng(0)
    T.manual_seed(0)
    if what == "mnist":
        model = make_mnist_net(T)
        x = T.tensor(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
        y = T.tensor(rng.integers(0, 10, batch).astype(np.int64))
        opt = T.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)

        def loss_fn(x, y):
            with T.autocast("cpu", dtype=T.bfloat16, enabled=bf16):
                return F.nll_loss(model(x), y)
        inputs = (x, y)
    else:
        model = make_gpt(T)
        idx = T.tensor(rng.integers(0, 65, (16, 64)).astype(np.int64))
        tgt = T.tensor(rng.integers(0, 65, (16, 64)).astype(np.int64))
        opt = T.optim.AdamW(model.parameters(), lr=1e-3)

        def loss_fn(idx, tgt):
            with T.autocast("cpu", dtype=T.bfloat16, enabled=bf16):
                return model(idx, tgt)
        inputs = (idx, tgt)
    fn = T.compile(loss_fn) if compiled else loss_fn

    def step():
        opt.zero_grad()
        loss = fn(*inputs)
        loss.backward()
        opt.step()
        return loss
    return step


def run_gemm(args, rows):
    import ember  # noqa: F401  (installs the bf16 GEMM into blas_threads)
    import ml_dtypes
    from ember.kernels import blas_threads, workers
    from ember.runtime import gemm_bf16
    bf = ml_dtypes.bfloat16
    g = gemm_bf16.instance()
    torch_res = {} if args.no_torch else _torch("gemm", args)
    table = []
    for name, a, b, flops in gemm_cases():
        ab = a.astype(bf)
        bb = b.astype(bf) if b.flags.c_contiguous else np.swapaxes(np.swapaxes(b, -1, -2).astype(bf), -1, -2)
        def sgemm(a=a, b=b, own=None):
            # numpy's float32 sgemm (OpenBLAS) as ember runs it, one thread per block; own: ember's float32
            # kernels for thin shapes switched on (ember/runtime/gemm_f32.py), which numpy does not have
            hook, blas_threads.F32_MATMUL = blas_threads.F32_MATMUL, own
            try:
                return blas_threads.matmul(a, b)
            finally:
                blas_threads.F32_MATMUL = hook
        res = interleave({"numpy fp32": sgemm, "ember fp32": lambda: sgemm(own=blas_threads.F32_MATMUL),
                          "ember bf16": lambda ab=ab, bb=bb: g.matmul(ab, bb)}, rounds=args.rounds)
        gf = {k: flops / v.median / 1e9 if isinstance(v, Stats) else None for k, v in res.items()}
        for prec in ("fp32", "bf16"):
            t = torch_res.get(f"{name}|torch {prec}")
            gf[f"torch {prec}"] = flops / t / 1e9 if t else None
        ratio = gf["ember bf16"] / gf["numpy fp32"] if gf["ember bf16"] and gf["numpy fp32"] else None
        table.append([name] + [f"{gf[k]:.1f}" if gf[k] else "n/a" for k in
                               ("ember bf16", "numpy fp32", "ember fp32", "torch bf16", "torch fp32")]
                     + [f"{ratio:.2f}x" if ratio else "n/a"])
        rows.append({"gemm": name, **gf})
        print(f"  {table[-1]}", flush=True)
    print()
    print(markdown_table(["product", "ember bf16 GF/s", "numpy fp32 GF/s", "ember fp32 GF/s", "torch bf16 GF/s",
                          "torch fp32 GF/s", "ember bf16 / numpy fp32"], table))
    # the ratios hold only on a quiet machine: a busy one takes the second core from every threaded column
    print(f"  {workers.num_threads()} threads; load average at the end: {loadavg()}; parallel loops run serially "
          f"after a straggling thread: {workers.stats()['backoffs']} times")


def run_steps(what, args, rows):
    import ember
    fns = {}
    for compiled in (False, True):
        for bf16 in (False, True):
            label = f"ember {'compiled' if compiled else 'eager'} {'bf16' if bf16 else 'fp32'}"
            try:
                fns[label] = _build_step(ember, what, args.batch, bf16, compiled)
            except Exception as e:  # noqa: BLE001 - a failing variant is a row, not a crash
                fns[label] = NA.from_exc("build failed", e)
    res = interleave(fns, rounds=args.rounds, warmup=3)
    torch_res = {} if args.no_torch else _torch(what, args)
    table = []
    for k, v in res.items():
        table.append([k, f"{v.median * 1e3:.2f}" if isinstance(v, Stats) else str(v)])
    for k, t in torch_res.items():
        table.append([k.split("|")[1], f"{t * 1e3:.2f}" if t else "n/a"])
    rows.append({"step": what, **{r[0]: r[1] for r in table}})
    print(markdown_table([f"{what} training step", "ms/step (median)"], table))
    e32, e16 = res.get("ember eager fp32"), res.get("ember eager bf16")
    if isinstance(e32, Stats) and isinstance(e16, Stats):
        print(f"  eager bf16 / fp32 step time: {e16.median / e32.median:.2f}")


def _mnist_images(n: int) -> tuple:
    """The first-n-batches' worth of real MNIST training images (data/mnist, shipped in the repository),
    normalized as PyTorch's MNIST example does, and their labels; a fixed permutation (seed 0)."""
    import gzip
    root = os.path.join(os.path.dirname(HERE), "data", "mnist")

    def idx(name):
        with gzip.open(os.path.join(root, name)) as f:
            raw = f.read()
        dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)
    pick = np.random.default_rng(0).permutation(60000)[:n]
    x = (idx("train-images-idx3-ubyte.gz")[pick].astype(np.float32) / 255 - 0.1307) / 0.3081
    return np.ascontiguousarray(x.reshape(n, 1, 28, 28)), idx("train-labels-idx1-ubyte.gz")[pick].astype(np.int64)


def _mnist_curve(T, bf16: bool, n: int) -> list:
    """PyTorch's MNIST example as it trains: the CNN, nll_loss, SGD(lr 0.01, momentum 0.5), n batches of 64
    real training images (eval mode: no dropout, so the fp32 and bf16 runs compute the same function)."""
    from bench_models import make_mnist_net
    F = T.nn.functional
    T.manual_seed(0)
    model = make_mnist_net(T)
    model.eval()
    opt = T.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    xs, ys = _mnist_images(64 * n)
    losses = []
    for i in range(n):
        x, y = xs[64 * i:64 * (i + 1)], ys[64 * i:64 * (i + 1)]
        opt.zero_grad()
        with T.autocast("cpu", dtype=T.bfloat16, enabled=bf16):
            loss = F.nll_loss(model(T.tensor(x)), T.tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _gpt_curve(T, bf16: bool, n: int) -> list:
    """The 2-layer GPT, AdamW, n steps on batches of a random Markov chain over 65 tokens (each token has
    2 likely successors: the loss can fall from ln 65 towards ln 2)."""
    from bench_models import make_gpt
    T.manual_seed(0)
    model = make_gpt(T)
    opt = T.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    succ = rng.integers(0, 65, (65, 2))
    losses = []
    for _ in range(n):
        seq = np.empty((16, 65), np.int64)
        seq[:, 0] = rng.integers(0, 65, 16)
        for t in range(1, 65):
            seq[:, t] = succ[seq[:, t - 1], rng.integers(0, 2, 16)]
        opt.zero_grad()
        with T.autocast("cpu", dtype=T.bfloat16, enabled=bf16):
            loss = model(T.tensor(seq[:, :-1]), T.tensor(seq[:, 1:]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _gap(a, b, k: int) -> tuple:
    """(moving averages of a and b over k steps, their gap relative to a's)."""
    sa, sb = np.convolve(a, np.ones(k) / k, "valid"), np.convolve(b, np.ones(k) / k, "valid")
    return sa, sb, np.abs(sb - sa) / np.maximum(np.abs(sa), 1e-6)


def run_curve(n, rows, models, args):
    """Loss over n training steps, eager float32 vs eager autocast(bf16), same seeds and data; the gap
    between their moving averages (n/10 steps) relative to float32's -- and PyTorch's own gap on the same
    runs, for scale (a loss near zero makes any relative gap large)."""
    import ember
    ref = {} if args.no_torch else _torch(f"curve:{n}:{','.join(models)}", args)
    for what in models:
        fn = _mnist_curve if what == "mnist" else _gpt_curve
        a, b = (np.array(fn(ember, bf16, n)) for bf16 in (False, True))
        k = max(1, n // 10)
        sa, sb, rel = _gap(a, b, k)
        step_gap = np.abs(b - a) / np.maximum(np.abs(a), 1e-6)
        line = (f"{what} loss curve over {n} steps (moving average of {k}): fp32 {sa[0]:.3f} -> {sa[-1]:.4f}, "
                f"bf16 {sb[0]:.3f} -> {sb[-1]:.4f}; relative gap max {rel.max():.2%} (step {rel.argmax() + k}), "
                f"final {rel[-1]:.2%}; step by step max {step_gap.max():.2%}")
        row = {"curve": what, "curve_steps": n, "fp32_final": float(sa[-1]), "bf16_final": float(sb[-1]),
               "max_rel_gap": float(rel.max()), "final_rel_gap": float(rel[-1]), "max_step_gap": float(step_gap.max())}
        if what in ref:
            ta, tb, trel = _gap(np.array(ref[what]["fp32"]), np.array(ref[what]["bf16"]), k)
            line += f"; torch's own: max {trel.max():.2%}, final {trel[-1]:.2%} ({ta[-1]:.4f} vs {tb[-1]:.4f})"
            row.update(torch_max_rel_gap=float(trel.max()), torch_final_rel_gap=float(trel[-1]))
        print(line, flush=True)
        rows.append(row)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--only", default="gemm,mnist,gpt", help="comma list of gemm, mnist, gpt")
    ap.add_argument("--curve", type=int, default=0, help="also train n steps fp32 vs bf16 and compare losses")
    ap.add_argument("--curve-models", default="mnist,gpt", help="comma list of mnist, gpt (for --curve)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="ember.set_num_threads (and torch's) for every row")
    ap.add_argument("--wait-quiet", type=float, default=0, help="wait up to this many seconds for a quiet machine "
                    "before each part (shared machines)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--_torch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import ember
        ember.set_num_threads(args.threads)
    if args._torch:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        return _torch_main(args._torch, args.rounds, args.batch)
    info = machine_info()
    print(f"bf16 benchmarks; {info.get('cpu', '?')}; load {loadavg()}")
    rows = []
    only = args.only.split(",")
    if "gemm" in only:
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        run_gemm(args, rows)
    for what in ("mnist", "gpt"):
        if what in only:
            if args.wait_quiet:
                wait_quiet(args.wait_quiet)
            run_steps(what, args, rows)
    if args.curve:
        run_curve(args.curve, rows, [w for w in ("mnist", "gpt") if w in args.curve_models.split(",")], args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
