"""Eager per-op overhead: a 1-element add, plain and on the autograd path, against numpy and PyTorch.

    python benchmarks/eager_overhead.py [--repeats 15] [--number 20000]

Each case is timed `repeats` times, interleaved (ember, numpy, torch, ember, ...) so that machine
noise hits all of them alike; the median per-op time is reported in microseconds. Targets (issue):
ember with autograd <= 5 us (PyTorch ~2.6 us, numpy ~0.4 us on the reference machine).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import ember  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def cases():
    a, b = ember.ones(1), ember.ones(1)
    ag = ember.ones(1, requires_grad=True)
    out = {
        "ember add": lambda: a + b,
        "ember add (autograd)": lambda: ag + b,
        "ember add scalar": lambda: a + 1.0,
        "ember mul scalar (autograd)": lambda: ag * 2.0,
    }
    na, nb = np.ones(1, np.float32), np.ones(1, np.float32)
    out["numpy add"] = lambda: na + nb
    if torch is not None:
        torch.set_num_threads(1)
        ta, tb = torch.ones(1), torch.ones(1)
        tg = torch.ones(1, requires_grad=True)
        out["torch add"] = lambda: ta + tb
        out["torch add (autograd)"] = lambda: tg + tb
        out["torch mul scalar (autograd)"] = lambda: tg * 2.0
    return out


def bench(repeats: int, number: int) -> dict:
    fns = cases()
    times = {k: [] for k in fns}
    for f in fns.values():  # warm up
        for _ in range(1000):
            f()
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                f()
            times[name].append((time.perf_counter() - t0) / number * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--number", type=int, default=20000)
    args = p.parse_args(argv)
    res = bench(args.repeats, args.number)
    print(f"{'case':32s} {'median us/op':>12s}")
    for k, v in res.items():
        print(f"{k:32s} {v:12.2f}")
    target = res["ember add (autograd)"]
    print(f"\nember add with autograd: {target:.2f} us (target <= 5 us): {'OK' if target <= 5 else 'MISSED'}")
    return res


if __name__ == "__main__":
    main()
