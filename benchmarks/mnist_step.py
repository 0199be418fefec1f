"""One training step of PyTorch's classic MNIST CNN at batch 64 (forward, nll_loss, backward, SGD
step): ember eager vs PyTorch eager (when installed), interleaved rounds, medians.

    python benchmarks/mnist_step.py [--rounds 30] [--batch 64] [--profile]

Prints ms/step and samples/s for each, and ember's throughput as a fraction of PyTorch's (target
>= 0.5x). --profile adds a cProfile summary of ember's step (where the time goes).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import NA, interleave, machine_info  # noqa: E402


def build(torch, batch, seed=0):
    """The classic Net, an SGD optimizer and one fixed batch, in `torch` (ember or PyTorch)."""
    from bench_compile import make_mnist_net   # the one definition of the seed CNN in benchmarks/
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = torch.tensor(rng.integers(0, 10, batch).astype(np.int64))
    model = make_mnist_net(torch)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)

    def step():
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()

    import ember
    fns = {"ember": build(ember, args.batch)}
    try:
        import torch
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        fns["torch"] = build(torch, args.batch)
        tinfo = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError as e:
        fns["torch"] = NA(f"PyTorch not installed ({e})")
        tinfo = "torch n/a"
    info = machine_info()
    print(f"MNIST CNN training step, batch {args.batch}; {info.get('cpu', '')}; {tinfo}")
    res = interleave(fns, rounds=args.rounds, warmup=3)
    rows = {}
    for name, r in res.items():
        if isinstance(r, NA):
            print(f"  {name:6s} {r}")
            continue
        ms = r.median * 1e3
        rows[name] = args.batch / r.median
        print(f"  {name:6s} {ms:8.2f} ms/step  (IQR {r.q1 * 1e3:.2f}-{r.q3 * 1e3:.2f})  {rows[name]:9.0f} samples/s")
    if "ember" in rows and "torch" in rows:
        ratio = rows["ember"] / rows["torch"]
        print(f"  ember/torch throughput: {ratio:.2f}x  (target >= 0.5x: {'met' if ratio >= 0.5 else 'NOT met'})")
    if args.profile:
        import cProfile
        import pstats
        step = fns["ember"]
        for _ in range(3):
            step()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(20):
            step()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
