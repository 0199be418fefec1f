"""The NCCL backend on a GPU with world size 1 (run by test_nccl.py, under mpiexec -n 1 when MPI is
installed, else as a plain process): the communicator, every collective and dtype, async work,
DistributedDataParallel on a CUDA module. Prints "OK rank 0 cases n"."""
import sys

import numpy as np

import ember
import ember.distributed as dist
import ember.nn as nn
import ember.nn.functional as F
from ember.distributed import ReduceOp

dist.init_process_group("nccl")
assert dist.get_world_size() == 1 and dist.get_backend() == "nccl"
failures, count = [], 0


def check(name, got, want):
    global count
    count += 1
    got = got.cpu().numpy() if isinstance(got, ember.Tensor) else np.asarray(got)
    if got.shape != np.shape(want) or not np.allclose(got.astype(np.float64), np.asarray(want, np.float64)):
        failures.append(f"{name}: {got.ravel()[:5]} vs {np.asarray(want).ravel()[:5]}")


rng = np.random.default_rng(0)
for dtype in ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]:
    x = (rng.random((3, 4)) < 0.5) if dtype == "bool" else (rng.standard_normal((3, 4)) * 3).astype(dtype)
    for op in (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX):
        if op is ReduceOp.AVG and dtype == "bool":
            continue
        t = ember.tensor(x, device="cuda")
        dist.all_reduce(t, op=op)
        check(f"all_reduce {dtype} {op.name}", t, x)
        t = ember.tensor(x, device="cuda")
        dist.all_reduce(t, op=op, async_op=True).wait()
        ember.cuda.synchronize()
        check(f"all_reduce async {dtype} {op.name}", t, x)
    t = ember.tensor(x, device="cuda")
    dist.broadcast(t, src=0)
    check(f"broadcast {dtype}", t, x)
    outs = [ember.tensor(np.zeros_like(x), device="cuda")]
    dist.all_gather(outs, ember.tensor(x, device="cuda"))
    check(f"all_gather {dtype}", outs[0], x)
    out = ember.tensor(np.zeros_like(x), device="cuda")
    dist.reduce_scatter_tensor(out, ember.tensor(x, device="cuda"))
    check(f"reduce_scatter_tensor {dtype}", out, x)
    gl = [ember.tensor(np.zeros_like(x), device="cuda")]
    dist.gather(ember.tensor(x, device="cuda"), gl, dst=0)
    check(f"gather {dtype}", gl[0], x)
    out = ember.tensor(np.zeros_like(x), device="cuda")
    dist.scatter(out, [ember.tensor(x, device="cuda")], src=0)
    check(f"scatter {dtype}", out, x)
count += 1
try:
    dist.all_reduce(ember.ones(3, dtype=ember.int32, device="cuda"), op=ReduceOp.BAND)
    failures.append("BAND on NCCL: no error")
except RuntimeError as e:
    if "not supported by NCCL" not in str(e):
        failures.append(f"BAND on NCCL: {e}")
count += 1
try:
    dist.all_reduce(ember.ones(3))
    failures.append("CPU tensor on an nccl group: no error")
except RuntimeError as e:
    if "No backend type associated with device type cpu" not in str(e):
        failures.append(f"CPU tensor on an nccl group: {e}")
dist.barrier()

ember.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).cuda()
ember.manual_seed(0)
ref = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).cuda()
ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0])
x = ember.randn(16, 6, device="cuda")
y = ember.randint(0, 3, (16,), device="cuda")
F.cross_entropy(ddp(x), y).backward()
F.cross_entropy(ref(x), y).backward()
for p, q in zip(model.parameters(), ref.parameters()):
    check("DDP on CUDA grads", p.grad, q.grad.cpu().numpy())
dist.destroy_process_group()
if failures:
    raise AssertionError(f"{len(failures)} of {count} checks failed:\n" + "\n".join(failures[:40]))
sys.stdout.write(f"OK rank 0 cases {count}\n")
