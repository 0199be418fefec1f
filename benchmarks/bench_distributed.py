"""ember.distributed on this machine: all-reduce bandwidth (ember vs raw mpi4py on the same numpy
buffers, 1 KB - 64 MB) and DistributedDataParallel training (2 ranks vs 1: samples/s, and how much
of the all-reduce time backward hides).

    python benchmarks/bench_distributed.py            # ~2-4 min on 2 cores
    python benchmarks/bench_distributed.py --quick    # fewer sizes, rounds and steps

The driver starts each measurement as its own MPI job (`mpiexec -n N python -m mpi4py this --worker
...`, one BLAS/OpenMP/ember thread per rank) and prints markdown tables.

All-reduce: float32 SUM in place, interleaved rounds (raw, ember, ember async) so machine drift hits
all alike; a sample is the slowest rank's time per call over enough calls to last ~20 ms; medians.
"algbw" is bytes / time; "busbw" multiplies by 2(n-1)/n, the bytes each rank must move in a ring.
ember's blocking call includes its cross-rank agreement check (one small all-reduce).

DDP: the seed MNIST CNN (batch 64 per rank, SGD) and a wide MLP (3 x Linear(1024, 1024), batch 32 per
rank) on synthetic data. samples/s = world x batch / median step time. "exposed" is the time the
last gradient hook waits for the buckets' all-reduces (what backward did not hide); "standalone" is
the same buckets all-reduced back to back after backward; hidden = 1 - exposed / standalone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

SIZES = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
QUICK_SIZES = [1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]


# ---------------------------------------------------------------------------- worker side
def worker_allreduce(args) -> None:
    import numpy as np
    from mpi4py import MPI
    import ember
    import ember.distributed as dist
    dist.init_process_group("mpi")
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    sizes = QUICK_SIZES if args.quick else SIZES
    for nbytes in sizes:
        buf = np.ones(nbytes // 4, np.float32)
        t = ember.from_numpy(buf)          # the same memory for both
        variants = {
            "raw": lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
            "ember": lambda: dist.all_reduce(t),
            "ember_async": lambda: dist.all_reduce(t, async_op=True).wait(),
        }
        for fn in variants.values():
            fn()
        comm.Barrier()
        t0 = time.perf_counter()
        variants["raw"]()
        est = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        iters = max(1, min(2000, int(0.02 / max(est, 1e-7))))
        samples = {k: [] for k in variants}
        names = list(variants)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                buf[...] = 1.0                  # keep the values bounded
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(iters):
                    variants[name]()
                dt = (time.perf_counter() - t0) / iters
                samples[name].append(comm.allreduce(dt, op=MPI.MAX))
        if rank == 0:
            print("RESULT " + json.dumps({"bytes": nbytes, "world": comm.Get_size(), "iters": iters,
                                          **{k: statistics.median(v) for k, v in samples.items()}}), flush=True)
    dist.destroy_process_group()


def _model(kind: str, ember):
    nn = ember.nn
    if kind == "mnist":
        from bench_models import make_mnist_net
        return make_mnist_net(ember), (64, 1, 28, 28), 10
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)), (32, 1024), 10


def worker_ddp(args) -> None:
    import numpy as np
    import ember
    import ember.distributed as dist
    import ember.nn.functional as F
    from ember.distributed.reduce_op import ReduceOp
    from ember.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    ember.manual_seed(0)
    net, shape, classes = _model(args.model, ember)
    model = DDP(net, bucket_cap_mb=args.bucket_mb)
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    rng = np.random.default_rng(rank)
    x = ember.tensor(rng.standard_normal(shape).astype(np.float32))
    y = ember.tensor(rng.integers(0, classes, shape[0]).astype(np.int64))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for _ in range(3):
        step()
    times, waits = [], []
    for _ in range(args.steps):
        w0 = model._comm_stats["wait_s"]
        dist.barrier()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        waits.append(model._comm_stats["wait_s"] - w0)
    # the same buckets all-reduced back to back, with nothing to hide behind
    standalone = []
    for _ in range(args.steps):
        dist.barrier()
        t0 = time.perf_counter()
        for b in model._buckets:
            model._backend.all_reduce(b.buffer, ReduceOp.SUM)
        standalone.append(time.perf_counter() - t0)
    # A rank's wait also holds its lead over the slowest rank (skew, not communication): the rank
    # that reached the end of backward last waits only for what communication backward left over.
    everyone = [None] * world
    dist.all_gather_object(everyone, waits)
    exposed = [min(w[i] for w in everyone) for i in range(len(waits))]
    step_s = statistics.median(times)
    if rank == 0:
        print("RESULT " + json.dumps({
            "model": args.model, "world": world, "batch": shape[0], "step_ms": 1e3 * step_s,
            "samples_per_s": world * shape[0] / step_s, "exposed_ms": 1e3 * statistics.median(exposed),
            "standalone_ms": 1e3 * statistics.median(standalone), "buckets": len(model._buckets),
            "grad_mb": sum(b.buffer.nbytes for b in model._buckets) / 2**20, "bucket_mb": args.bucket_mb}),
            flush=True)
    dist.destroy_process_group()


# ---------------------------------------------------------------------------- driver side
def run_job(n: int, worker_args: list[str], timeout: float) -> list[dict]:
    from ember.distributed.run import find_mpiexec
    cmd = [find_mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", os.path.abspath(__file__),
           "--worker"] + worker_args
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               EMBER_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(worker_args)} on {n} ranks failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def fmt_size(b: int) -> str:
    return f"{b >> 20} MB" if b >= 1 << 20 else f"{b >> 10} KB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="jobs per DDP configuration and world size (median)")
    p.add_argument("--only", default="allreduce,ddp", help="allreduce, ddp, or both (comma-separated)")
    p.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker is not None:
        w = argparse.ArgumentParser()
        w.add_argument("kind")
        w.add_argument("--quick", action="store_true")
        w.add_argument("--rounds", type=int, default=9)
        w.add_argument("--steps", type=int, default=20)
        w.add_argument("--model", default="mnist")
        w.add_argument("--bucket-mb", type=float, default=25.0)
        wa = w.parse_args(a.worker)
        (worker_allreduce if wa.kind == "allreduce" else worker_ddp)(wa)
        return 0

    from harness import machine_info, markdown_table
    rounds = a.rounds or (5 if a.quick else 9)
    steps = a.steps or (8 if a.quick else 20)
    info = machine_info(("numpy", "mpi4py", "mpich"))
    print("## Machine\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()))
    if "allreduce" in a.only:
        res = run_job(2, ["allreduce", "--rounds", str(rounds)] + (["--quick"] if a.quick else []), 1200)
        rows = []
        for r in res:
            b, n = r["bytes"], r["world"]
            bus = 2 * (n - 1) / n
            rows.append([fmt_size(b), f"{1e6 * r['raw']:.1f}", f"{1e6 * r['ember']:.1f}",
                         f"{1e6 * r['ember_async']:.1f}", f"{b / r['raw'] / 1e9:.2f}", f"{b / r['ember'] / 1e9:.2f}",
                         f"{bus * b / r['ember'] / 1e9:.2f}", f"{r['raw'] / r['ember']:.2f}"])
        print(f"\n## All-reduce, float32 SUM, 2 ranks on one host ({rounds} rounds, medians)\n")
        print(markdown_table(["size", "mpi4py µs", "ember µs", "ember async µs", "mpi4py algbw GB/s",
                              "ember algbw GB/s", "ember busbw GB/s", "ember speed vs mpi4py"], rows))
    if "ddp" in a.only:
        configs = [("mnist", 25.0), ("mnist", 0.02), ("mlp", 25.0), ("mlp", 4.0)]
        rows = []
        repeats = a.repeats or (1 if a.quick else 3)
        for model, cap in configs:
            job = ["ddp", "--model", model, "--steps", str(steps), "--bucket-mb", str(cap)]
            ones, twos = [], []
            for _ in range(repeats):            # alternate, so a busy spell hits both world sizes
                ones.append(run_job(1, job, 1200)[0])
                twos.append(run_job(2, job, 1200)[0])
            one = {k: statistics.median(r[k] for r in ones) if isinstance(ones[0][k], float) else ones[0][k]
                   for k in ones[0]}
            two = {k: statistics.median(r[k] for r in twos) if isinstance(twos[0][k], float) else twos[0][k]
                   for k in twos[0]}
            hidden = 1 - two["exposed_ms"] / two["standalone_ms"] if two["standalone_ms"] > 0 else 0.0
            rows.append([model, f"{two['grad_mb']:.2f}", f"{cap:g}", str(two["buckets"]), f"{one['samples_per_s']:.0f}",
                         f"{two['samples_per_s']:.0f}", f"{two['samples_per_s'] / one['samples_per_s']:.2f}×",
                         f"{two['step_ms']:.1f}", f"{two['standalone_ms']:.2f}", f"{two['exposed_ms']:.2f}",
                         f"{100 * max(0.0, hidden):.0f}%"])
        print(f"\n## DistributedDataParallel, 2 ranks vs 1 ({steps} steps per job, {repeats} jobs each, medians)\n")
        print(markdown_table(["model", "grads MB", "bucket cap MB", "buckets", "1 rank samples/s",
                              "2 ranks samples/s", "speed-up", "2-rank step ms", "all-reduce alone ms",
                              "exposed ms", "hidden"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
