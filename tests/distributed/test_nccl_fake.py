"""ember's NCCL backend without a GPU: CuPy and NCCL replaced by stand-ins (fake_nccl.py) where the
ranks are threads reading each other's buffers by address. Checks the dtype and op mapping (bool
as uint8 max/min, int16 through int32, AVG), pointer arithmetic of gather/scatter, and the unique
id broadcast. The real library is exercised by test_nccl.py on a GPU."""
import numpy as np
import pytest

import fake_nccl
from fake_nccl import R, asarray

N = 3
DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


def data(rank, dtype, shape=(2, 5), salt=0):
    rng = np.random.default_rng(100 * salt + rank)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("uint8",):
        return rng.integers(0, 4, shape).astype(dtype)
    if dtype.startswith("int"):
        return rng.integers(-4, 5, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def expected(op, xs):
    s = np.stack(xs)
    if s.dtype == bool:
        return s.any(0) if op in (R.SUM, R.MAX) else s.all(0)
    if op is R.AVG:
        if s.dtype.kind == "f":
            return (s.astype(np.float64).sum(0) / len(xs)).astype(s.dtype)
        t = s.astype(np.int64).sum(0)
        return (np.sign(t) * (np.abs(t) // len(xs))).astype(s.dtype)
    if op is R.SUM:
        return s.sum(0, dtype=s.dtype)
    if op is R.PRODUCT:
        return s.prod(0, dtype=s.dtype)
    return s.max(0) if op is R.MAX else s.min(0)


def close(a, b):
    if a.dtype.kind == "f":
        return np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=3e-3, atol=3e-3)
    return np.array_equal(a, b)


@pytest.fixture
def fake():
    with fake_nccl.installed() as cp:
        yield cp


@pytest.mark.parametrize("op", [R.SUM, R.AVG, R.PRODUCT, R.MIN, R.MAX])
def test_all_reduce_and_reduce_scatter(fake, op):
    def body(r, be):
        bad = []
        for dtype in DTYPES:
            if op is R.AVG and dtype == "bool":
                continue
            xs = [data(q, dtype) for q in range(N)]
            a = asarray(xs[r])
            be.all_reduce(a, op)
            if not close(np.asarray(a), expected(op, xs)):
                bad.append(f"all_reduce {dtype}")
            w = be.all_reduce(asarray(xs[r]), op, async_op=True)
            w.wait()
            ins = [data(q, dtype, (N * 4,), salt=1) for q in range(N)]
            out = asarray(np.zeros(4, ins[0].dtype))
            be.reduce_scatter(out, asarray(ins[r]), op)
            if not close(np.asarray(out), expected(op, [x[r * 4:(r + 1) * 4] for x in ins])):
                bad.append(f"reduce_scatter {dtype}")
            red = asarray(xs[r])
            be.reduce(red, op, 1)
            if r == 1 and not close(np.asarray(red), expected(op, xs)):
                bad.append(f"reduce {dtype}")
        return bad
    assert fake_nccl.run_ranks(N, body) == [[]] * N


def test_data_movement(fake):
    def body(r, be):
        bad = []
        for dtype in DTYPES:
            xs = [data(q, dtype, salt=2) for q in range(N)]
            b = asarray(xs[r])
            be.broadcast(b, 2)
            bad += [] if np.array_equal(b, xs[2]) else [f"broadcast {dtype}"]
            g = asarray(np.zeros((N,) + xs[0].shape, xs[0].dtype))
            be.all_gather(g.reshape(-1), asarray(xs[r]).reshape(-1))
            bad += [] if np.array_equal(g, np.stack(xs)) else [f"all_gather {dtype}"]
            got = asarray(np.zeros((N,) + xs[0].shape, xs[0].dtype)) if r == 0 else None
            be.gather(None if got is None else got.reshape(-1), asarray(xs[r]).reshape(-1), 0)
            if r == 0 and not np.array_equal(got, np.stack(xs)):
                bad.append(f"gather {dtype}")
            out = asarray(np.zeros_like(xs[0]))
            src = asarray(np.stack(xs)).reshape(-1) if r == 1 else None
            be.scatter(out.reshape(-1), src, 1)
            bad += [] if np.array_equal(out, xs[r]) else [f"scatter {dtype}"]
        return bad
    assert fake_nccl.run_ranks(N, body) == [[]] * N
    assert ("groupStart", None) in fake_nccl.calls and any(c[0] == "recv" for c in fake_nccl.calls)


def test_bitwise_ops_are_refused(fake):
    def body(r, be):
        with pytest.raises(RuntimeError, match="not supported by NCCL"):
            be.all_reduce(asarray(np.ones(3, np.int32)), R.BAND)
        return True
    assert fake_nccl.run_ranks(1, body) == [True]


def test_unique_id_reaches_every_rank_once_per_device(fake):
    def body(r, be):
        be.all_reduce(asarray(np.ones(2, np.float32)), R.SUM)
        be.all_reduce(asarray(np.ones(2, np.float32)), R.SUM)
        return len(be._comms)
    assert fake_nccl.run_ranks(N, body) == [1] * N
