"""Dynamic sizes: how many compiles, and how much compile time, varying sizes cost.

    python benchmarks/bench_dynamic.py            # both workloads, dynamic=None (automatic) vs False,
                                                  # each row in a process of its own

Workloads (ember.compile of a whole training step: zero_grad + forward + backward + step):
    mnist_epoch   the MNIST CNN (benchmarks/bench_models.py), batches of 64 over 1000 samples: 15
                  full batches and a partial last batch of 40, then a second epoch
    gpt_seqlens   the 2-layer GPT, batch 4, sequence lengths 1..64 in order
Each row: compiles (and each one's time), eager calls (past the recompile limit a call runs
eagerly), and the wall time of all steps.  The kernel cache is off (EMBER_CACHE=0): every compile
generates and compiles its code.  Compiled results are checked against eager in tests/compile/
test_dynamic.py; this file only counts.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EMBER_CACHE", "0")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import ember  # noqa: E402
import ember.nn.functional as F  # noqa: E402
from bench_models import make_gpt, make_mnist_net  # noqa: E402


def mnist_epoch(dynamic):
    ember.manual_seed(0)
    m = make_mnist_net(ember)
    opt = ember.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss
    f = ember.compile(step, dynamic=dynamic)
    sizes = ([64] * 15 + [40]) * 2
    return f, [(ember.randn(b, 1, 28, 28), ember.randint(0, 10, (b,))) for b in sizes]


def gpt_seqlens(dynamic):
    ember.manual_seed(0)
    m = make_gpt(ember)
    opt = ember.optim.AdamW(m.parameters(), lr=1e-3)

    def step(x, y):
        opt.zero_grad()
        loss = m(x, y)
        loss.backward()
        opt.step()
        return loss
    f = ember.compile(step, dynamic=dynamic)
    return f, [(ember.randint(0, 65, (4, L)), ember.randint(0, 65, (4, L))) for L in range(1, 65)]


def run(make, dynamic):
    f, batches = make(dynamic)
    t0 = time.perf_counter()
    for x, y in batches:
        float(f(x, y))
    wall = time.perf_counter() - t0
    s = f.stats
    each = ", ".join(f"{v.stats['compile_time_s']:.2f}" for v in f.variants)
    return s["compiles"], each, s["eager_calls"], wall, len(batches)


WORKLOADS = {"mnist_epoch": mnist_epoch, "gpt_seqlens": gpt_seqlens}


def main():
    if len(sys.argv) == 3:          # one row, in a process of its own (no warm-up carried between rows)
        name, dyn = sys.argv[1], {"None": None, "False": False, "True": True}[sys.argv[2]]
        c, ct, e, wall, n = run(WORKLOADS[name], dyn)
        print(f"| {name} | {dyn} | {n} | {c} | {ct} | {e} | {wall:.2f} |", flush=True)
        return
    import subprocess
    print("| workload | dynamic | calls | compiles | compile time each (s) | eager calls | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    for name in WORKLOADS:
        for dyn in ("None", "False"):
            r = subprocess.run([sys.executable, __file__, name, dyn], capture_output=True, text=True)
            rows = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
            print(rows[-1] if rows else f"| {name} | {dyn} | failed: {r.stderr.strip().splitlines()[-1:]} |",
                  flush=True)


if __name__ == "__main__":
    main()
