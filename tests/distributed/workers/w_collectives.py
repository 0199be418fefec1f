"""Every collective, dtype and op on this job's ranks, checked against numpy (run by test_collectives.py).

Each rank can compute every rank's input (seeded by case and rank), so each checks its own result
against numpy alone. Failures are collected and raised at the end (aborting the job, non-zero exit);
success prints "OK rank r cases n".
"""
import datetime
import sys

import numpy as np

import ember
import ember.distributed as dist
from ember.distributed import ReduceOp

# ----------------------------------------------------------------------- before initialisation
try:
    dist.get_rank()
    raise AssertionError("get_rank before init_process_group must raise")
except ValueError as e:
    assert "init_process_group" in str(e)
assert not dist.is_initialized()

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
assert dist.is_initialized() and dist.get_backend() == "gloo"
R, N = dist.get_rank(), dist.get_world_size()
failures: list[str] = []
count = 0

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
OPS = [ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.MAX, ReduceOp.BAND, ReduceOp.BOR,
       ReduceOp.BXOR]
SHAPE = (3, 5)


def data(case: int, rank: int, dtype: str, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(1000 * case + rank)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype == "uint8":
        return rng.integers(0, 5, shape).astype(np.uint8)
    if dtype.startswith("int"):
        return rng.integers(-4, 5, shape).astype(dtype)
    return (rng.standard_normal(shape) * 2).astype(dtype)


def valid(op, dtype: str) -> bool:
    if op is ReduceOp.AVG and dtype == "bool":
        return False
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and dtype.startswith("float"):
        return False
    return True


def expected(op, xs: list[np.ndarray]) -> np.ndarray:
    s = np.stack(xs)
    dt = s.dtype
    if dt == np.bool_:
        if op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.BOR):
            return s.any(0)
        if op in (ReduceOp.PRODUCT, ReduceOp.MIN, ReduceOp.BAND):
            return s.all(0)
        return np.logical_xor.reduce(s, 0)
    if op is ReduceOp.SUM:
        return s.astype(np.float64).sum(0).astype(dt) if dt.kind == "f" else s.sum(0, dtype=dt)
    if op is ReduceOp.AVG:
        if dt.kind == "f":
            return (s.astype(np.float64).sum(0) / len(xs)).astype(dt)
        tot = s.astype(np.int64).sum(0)
        return (np.sign(tot) * (np.abs(tot) // len(xs))).astype(dt)
    if op is ReduceOp.PRODUCT:
        return s.astype(np.float64).prod(0).astype(dt) if dt.kind == "f" else s.prod(0, dtype=dt)
    if op is ReduceOp.MIN:
        return s.min(0)
    if op is ReduceOp.MAX:
        return s.max(0)
    return {ReduceOp.BAND: np.bitwise_and, ReduceOp.BOR: np.bitwise_or, ReduceOp.BXOR: np.bitwise_xor}[op].reduce(s, 0)


def close(got: np.ndarray, want: np.ndarray) -> bool:
    want = want.astype(got.dtype) if got.dtype.kind == "f" and want.dtype.kind == "f" else want
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if got.dtype == np.float16:
        return np.allclose(got.astype(np.float32), want.astype(np.float32), rtol=4e-3, atol=4e-3)
    if got.dtype == np.float32:
        return np.allclose(got, want, rtol=1e-5, atol=1e-5)
    if got.dtype == np.float64:
        return np.allclose(got, want, rtol=1e-12, atol=1e-12)
    return np.array_equal(got, want)


def check(name: str, got, want) -> None:
    global count
    count += 1
    got = got.numpy() if isinstance(got, ember.Tensor) else got
    if not close(np.asarray(got), np.asarray(want)):
        failures.append(f"{name}: got {np.asarray(got).ravel()[:6]} want {np.asarray(want).ravel()[:6]}")


def expect_error(name: str, fn, text: str) -> None:
    global count
    count += 1
    try:
        fn()
    except (RuntimeError, ValueError, TypeError) as e:
        if text not in str(e):
            failures.append(f"{name}: error {e!r} lacks {text!r}")
        return
    failures.append(f"{name}: no error")


case = 0
# ----------------------------------------------------------------------------- all_reduce
for dtype in DTYPES:
    for op in OPS:
        case += 1
        name = f"all_reduce {dtype} {op.name}"
        xs = [data(case, r, dtype) for r in range(N)]
        t = ember.tensor(xs[R].copy())
        if not valid(op, dtype):
            expect_error(name, lambda: dist.all_reduce(t, op=op), op.name)
            continue
        dist.all_reduce(t, op=op)
        check(name, t, expected(op, xs))
        # the same through async_op and a Work handle
        t2 = ember.tensor(xs[R].copy())
        work = dist.all_reduce(t2, op=op, async_op=True)
        work.wait()
        if not work.is_completed() or work.result()[0] is not t2:
            failures.append(f"{name} async: work state wrong")
        check(name + " async", t2, expected(op, xs))

# 0-d and empty tensors
case += 1
t = ember.tensor(float(R + 1))
dist.all_reduce(t)
check("all_reduce 0-d", t, np.array(N * (N + 1) / 2, np.float32))
t = ember.zeros(0, 4)
dist.all_reduce(t)
check("all_reduce empty", t, np.zeros((0, 4), np.float32))

# a dtype MPI cannot reduce goes through float32: force that path for float16
pg = dist.group.WORLD
pg.mpi._native[np.dtype(np.float16)] = False
for op in (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.MAX):
    case += 1
    xs = [data(case, r, "float16") for r in range(N)]
    t = ember.tensor(xs[R].copy())
    dist.all_reduce(t, op=op)
    check(f"all_reduce float16 via float32 {op.name}", t, expected(op, xs))
pg.mpi._native.pop(np.dtype(np.float16))

# ---------------------------------------------------------------------------- reduce / rs
for dtype in DTYPES:
    for op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.AVG):
        if not valid(op, dtype):
            continue
        case += 1
        dst = N - 1
        xs = [data(case, r, dtype) for r in range(N)]
        t = ember.tensor(xs[R].copy())
        dist.reduce(t, dst=dst, op=op)
        check(f"reduce {dtype} {op.name}", t, expected(op, xs) if R == dst else xs[R])

        case += 1
        chunks = [[data(case, r * N + c, dtype, (2, 3)) for c in range(N)] for r in range(N)]
        out = ember.tensor(np.zeros((2, 3), dtype))
        dist.reduce_scatter(out, [ember.tensor(c) for c in chunks[R]], op=op)
        check(f"reduce_scatter {dtype} {op.name}", out, expected(op, [chunks[r][R] for r in range(N)]))
        out2 = ember.tensor(np.zeros((2, 3), dtype))
        dist.reduce_scatter_tensor(out2, ember.tensor(np.concatenate(chunks[R])), op=op)
        check(f"reduce_scatter_tensor {dtype} {op.name}", out2, expected(op, [chunks[r][R] for r in range(N)]))

# ---------------------------------------------------------------- broadcast, gathers, scatter
for dtype in DTYPES:
    case += 1
    xs = [data(case, r, dtype) for r in range(N)]
    src = N - 1
    t = ember.tensor(xs[R].copy())
    dist.broadcast(t, src=src)
    check(f"broadcast {dtype}", t, xs[src])
    t = ember.tensor(xs[R].copy())
    dist.broadcast(t, src=0, async_op=True).wait()
    check(f"broadcast async {dtype}", t, xs[0])

    outs = [ember.tensor(np.zeros(SHAPE, dtype)) for _ in range(N)]
    dist.all_gather(outs, ember.tensor(xs[R]))
    for r in range(N):
        check(f"all_gather {dtype} [{r}]", outs[r], xs[r])
    outs = [ember.tensor(np.zeros(SHAPE, dtype)) for _ in range(N)]
    dist.all_gather(outs, ember.tensor(xs[R]), async_op=True).wait()
    check(f"all_gather async {dtype}", np.stack([o.numpy() for o in outs]), np.stack(xs))
    big = ember.tensor(np.zeros((N * SHAPE[0], SHAPE[1]), dtype))
    dist.all_gather_into_tensor(big, ember.tensor(xs[R]))
    check(f"all_gather_into_tensor {dtype}", big, np.concatenate(xs))

    dst = (N - 1) // 2
    gl = [ember.tensor(np.zeros(SHAPE, dtype)) for _ in range(N)] if R == dst else None
    dist.gather(ember.tensor(xs[R]), gl, dst=dst)
    if R == dst:
        check(f"gather {dtype}", np.stack([g.numpy() for g in gl]), np.stack(xs))

    src = N - 1
    parts = [data(case + 500, c, dtype) for c in range(N)]
    out = ember.tensor(np.zeros(SHAPE, dtype))
    dist.scatter(out, [ember.tensor(p) for p in parts] if R == src else None, src=src)
    check(f"scatter {dtype}", out, parts[R])

dist.barrier()
dist.barrier(async_op=True).wait()

# --------------------------------------------------------------------------- Python objects
objs = [None] * N
dist.all_gather_object(objs, {"rank": R, "name": f"r{R}"})
check("all_gather_object", np.array([o["rank"] for o in objs]), np.arange(N))
lst = [R, "x"] if R == 0 else [None, None]
dist.broadcast_object_list(lst, src=0)
check("broadcast_object_list", np.array([lst[0]]), np.array([0]))

# ----------------------------------------------------------------------------------- errors
if N > 1:
    expect_error("mismatched shapes", lambda: dist.all_reduce(ember.zeros(3 + R)), "the ranks made different calls")
    expect_error("mismatched dtypes",
                 lambda: dist.all_reduce(ember.zeros(3, dtype=ember.float32 if R == 0 else ember.float64)),
                 "float64")
    expect_error("different collectives",
                 lambda: dist.all_reduce(ember.zeros(3)) if R == 0 else dist.broadcast(ember.zeros(3), 0),
                 "broadcast")
    expect_error("one rank's bad argument",
                 lambda: dist.all_reduce(ember.zeros(3), op="nope" if R == N - 1 else ReduceOp.SUM),
                 "op must be a ReduceOp" if R == N - 1 else f"rank {N - 1}")
# non-contiguous tensors (ember's weight gradients can be transposed views) go through a copy
base = ember.tensor(np.arange(12.0).reshape(4, 3) * (R + 1))
view = base.t()
dist.all_reduce(view)
check("all_reduce of a transposed view", base, np.arange(12.0).reshape(4, 3) * (N * (N + 1) / 2))
base = ember.tensor(np.full((4, 3), float(R)))
dist.broadcast(base[:, 1], src=N - 1)
want = np.full((4, 3), float(R))
want[:, 1] = N - 1
check("broadcast into a strided view", base, want)
expect_error("all_gather list length", lambda: dist.all_gather([ember.zeros(2)] * (N + 1), ember.zeros(2)),
             "one tensor per rank")
expect_error("gather_list on non-dst",
             lambda: dist.gather(ember.zeros(2), [ember.zeros(2)] * N, dst=0) if R != 0
             else dist.gather(ember.zeros(2), None, dst=0),
             "gather_list")
expect_error("bad src", lambda: dist.broadcast(ember.zeros(2), src=N), "src")
expect_error("not a tensor", lambda: dist.all_reduce(np.zeros(3)), "must be a Tensor")
# after the errors, the communicator still works
t = ember.ones(4)
dist.all_reduce(t)
check("after errors", t, np.full(4, N, np.float32))

# ------------------------------------------------------------------------------- new_group
if N >= 2:
    members = [0, N - 1]
    g = dist.new_group(members)
    t = ember.tensor([float(R + 1)])
    if R in members:
        assert dist.get_rank(g) == members.index(R) and dist.get_world_size(g) == 2
        dist.all_reduce(t, group=g)
        check("new_group all_reduce", t, np.array([1.0 + N], np.float32))
        t = ember.tensor([float(R)])
        dist.broadcast(t, src=N - 1, group=g)
        check("new_group broadcast from a global rank", t, np.array([N - 1.0], np.float32))
    else:
        assert g is dist.GroupMember.NON_GROUP_MEMBER and dist.get_rank(g) == -1
        assert dist.all_reduce(t, group=g) is None

# ---------------------------------------------------------- GradScaler agrees on inf/nan
import ember.nn as nn  # noqa: E402
import ember.optim as optim  # noqa: E402

lin = nn.Linear(2, 2)
opt = optim.SGD(lin.parameters(), lr=0.1)
scaler = ember.amp.GradScaler("cpu", init_scale=8.0)   # ("cuda" disables itself without a GPU, as PyTorch's)
scaler.scale(ember.ones(()))                            # the first scale() sets the scale up, as in PyTorch
before = [p.detach().clone() for p in lin.parameters()]
for p in lin.parameters():
    p.grad = ember.ones_like(p)
if R == N - 1:
    lin.weight.grad[0, 0] = float("inf")
scaler.step(opt)
scaler.update()
check("GradScaler skips on every rank", np.array([all((a == b).all().item() for a, b in zip(before, lin.parameters()))]),
      np.array([True]))
check("GradScaler backs off on every rank", np.array([scaler.get_scale()]), np.array([4.0]))

dist.destroy_process_group()
assert not dist.is_initialized()
if failures:
    raise AssertionError(f"rank {R}: {len(failures)} of {count} checks failed:\n" + "\n".join(failures[:40]))
sys.stdout.write(f"OK rank {R} cases {count}\n")
sys.stdout.flush()
