"""Stand-ins for `cupy` and `cupy.cuda.nccl` that run ember's NCCL backend without a GPU: device
arrays are numpy arrays (with .data.ptr and .device), streams and events are no-ops, and an NCCL
communicator of N ranks is N threads of this process meeting at barriers, reading each other's
buffers through their addresses exactly as NCCL would. Only what ember/distributed/nccl_backend.py
touches is provided.

    with installed():                 # sys.modules["cupy"...] = the fakes, restored after
        results = run_ranks(3, fn)    # fn(rank, backend) on 3 threads
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
import types

import numpy as np

from ember.distributed.reduce_op import ReduceOp


class ndarray(np.ndarray):
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def asarray(a, dtype=None):
    return np.array(a, dtype=dtype).view(ndarray)


def _mem(ptr: int, nbytes: int, dtype) -> np.ndarray:
    """A numpy view of nbytes at address ptr."""
    buf = (ctypes.c_char * nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype)


# -------------------------------------------------------------------------------- fake nccl
NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64 = 0, 1, 2, 3, 4, 5
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_BFLOAT16 = 6, 7, 8, 9
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4
_NP = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32, NCCL_INT64: np.int64,
       NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}


class _World:
    """What the ranks of one communicator share."""

    def __init__(self, n):
        self.n = n
        self.barrier = threading.Barrier(n, timeout=20)
        self.slots = [None] * n
        self.mail: dict = {}
        self.cond = threading.Condition()


_worlds: dict = {}
_lock = threading.Lock()
calls: list = []            # (op name, rank) of every NCCL call, for the tests


def get_version():
    return 21805


def get_unique_id():
    return tuple(range(128))


def groupStart():
    calls.append(("groupStart", None))


def groupEnd():
    calls.append(("groupEnd", None))


class NcclCommunicator:
    def __init__(self, ndev, uid, rank):
        assert uid == get_unique_id(), "every rank must get rank 0's unique id"
        with _lock:
            self.world = _worlds.setdefault((uid, ndev, _generation[0]), _World(ndev))
        self.rank = rank

    def _exchange(self, value, read):
        """Publish value (a buffer address), read(addresses) everyone's buffers, and only then let
        anyone write: in-place collectives read the inputs before the outputs land."""
        w = self.world
        w.slots[self.rank] = value
        w.barrier.wait()
        got = read(list(w.slots))
        w.barrier.wait()
        return got

    def allReduce(self, send, recv, count, dtype, op, stream):
        calls.append(("allReduce", self.rank))
        dt = _NP[dtype]
        arrays = self._exchange(send, lambda ps: np.stack([_mem(p, count * np.dtype(dt).itemsize, dt).copy()
                                                           for p in ps]))
        _mem(recv, count * np.dtype(dt).itemsize, dt)[...] = _reduce(arrays, op, dt)
        self.world.barrier.wait()

    def reduce(self, send, recv, count, dtype, op, root, stream):
        calls.append(("reduce", self.rank))
        dt = _NP[dtype]
        arrays = self._exchange(send, lambda ps: np.stack([_mem(p, count * np.dtype(dt).itemsize, dt).copy()
                                                           for p in ps]))
        if self.rank == root:
            _mem(recv, count * np.dtype(dt).itemsize, dt)[...] = _reduce(arrays, op, dt)
        self.world.barrier.wait()

    def reduceScatter(self, send, recv, recvcount, dtype, op, stream):
        calls.append(("reduceScatter", self.rank))
        dt = _NP[dtype]
        size = np.dtype(dt).itemsize
        arrays = self._exchange(send, lambda ps: np.stack(
            [_mem(p + self.rank * recvcount * size, recvcount * size, dt).copy() for p in ps]))
        _mem(recv, recvcount * size, dt)[...] = _reduce(arrays, op, dt)
        self.world.barrier.wait()

    def broadcast(self, send, recv, count, dtype, root, stream):
        calls.append(("broadcast", self.rank))
        assert dtype == NCCL_UINT8
        data = self._exchange(send, lambda ps: _mem(ps[root], count, np.uint8).copy())
        _mem(recv, count, np.uint8)[...] = data
        self.world.barrier.wait()

    def allGather(self, send, recv, count, dtype, stream):
        calls.append(("allGather", self.rank))
        assert dtype == NCCL_UINT8
        parts = self._exchange(send, lambda ps: [_mem(p, count, np.uint8).copy() for p in ps])
        _mem(recv, count * len(parts), np.uint8)[...] = np.concatenate(parts)
        self.world.barrier.wait()

    def send(self, buf, count, dtype, peer, stream):
        calls.append(("send", self.rank))
        w = self.world
        with w.cond:
            w.mail.setdefault((self.rank, peer), []).append(_mem(buf, count, np.uint8).copy())   # FIFO per pair
            w.cond.notify_all()

    def recv(self, buf, count, dtype, peer, stream):
        calls.append(("recv", self.rank))
        w = self.world
        with w.cond:
            assert w.cond.wait_for(lambda: w.mail.get((peer, self.rank)), timeout=20), "recv without a send"
            _mem(buf, count, np.uint8)[...] = w.mail[(peer, self.rank)].pop(0)

    def destroy(self):
        pass


_generation = [0]


def _reduce(arrays, op, dt):
    if op == NCCL_SUM:
        return arrays.sum(0, dtype=dt)
    if op == NCCL_PROD:
        return arrays.prod(0, dtype=dt)
    if op == NCCL_MAX:
        return arrays.max(0)
    if op == NCCL_MIN:
        return arrays.min(0)
    if op == NCCL_AVG:
        return (arrays.astype(np.float64).sum(0) / len(arrays)).astype(dt)
    raise AssertionError(op)


# -------------------------------------------------------------------------------- fake cupy
class _Stream:
    ptr = 0

    def __init__(self, non_blocking=False):
        pass

    def wait_event(self, ev):
        pass


class _Event:
    done = True

    def __init__(self, disable_timing=False):
        pass

    def record(self, stream=None):
        pass


class _Device:
    def __init__(self, i=0):
        self.id = i

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def synchronize(self):
        pass


def _memcpy(dst, src, n, kind, stream):
    _mem(dst, n, np.uint8)[...] = _mem(src, n, np.uint8)


def make_modules():
    nccl = types.ModuleType("cupy.cuda.nccl")
    for k, v in globals().items():
        if k.startswith("NCCL_") or k in ("get_version", "get_unique_id", "groupStart", "groupEnd",
                                          "NcclCommunicator"):
            setattr(nccl, k, v)
    runtime = types.SimpleNamespace(getDevice=lambda: 0, memcpyAsync=_memcpy, memcpyDeviceToDevice=3)
    cuda = types.ModuleType("cupy.cuda")
    cuda.nccl = nccl
    cuda.Device = _Device
    cuda.Stream = _Stream
    cuda.Event = _Event
    cuda.runtime = runtime
    cuda.get_current_stream = lambda: _Stream()
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    cupy.ndarray = ndarray
    for name in ("uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"):
        setattr(cupy, name, getattr(np, name))
    cupy.asarray = asarray
    cupy.empty = lambda shape, dtype=float: np.empty(shape, dtype).view(ndarray)
    cupy.zeros = lambda shape, dtype=float: np.zeros(shape, dtype).view(ndarray)
    cupy.abs = np.abs
    cupy.where = lambda c, a, b: np.where(c, a, b).view(ndarray)
    cupy.concatenate = lambda xs: np.concatenate(xs).view(ndarray)
    cupy.ascontiguousarray = lambda a: np.ascontiguousarray(a).view(ndarray)
    return {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.nccl": nccl}


@contextlib.contextmanager
def installed():
    mods = make_modules()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    _generation[0] += 1
    calls.clear()
    try:
        yield mods["cupy"]
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _ObjComm:
    """The MPI communicator the backend uses to broadcast the unique id, among threads."""

    def __init__(self, world, rank):
        self.world, self.rank = world, rank

    def bcast(self, obj, root=0):
        w = self.world
        if self.rank == root:
            w.slots[root] = obj
        w.barrier.wait()
        got = w.slots[root]
        w.barrier.wait()
        return got


def run_ranks(n: int, fn):
    """fn(rank, NcclBackend) on n threads; returns their results (re-raising the first error)."""
    from ember.distributed.nccl_backend import NcclBackend
    shared = _World(n)
    out, errors = [None] * n, []

    def body(r):
        try:
            out[r] = fn(r, NcclBackend(_ObjComm(shared, r), r, n))
        except BaseException as e:   # noqa: BLE001 - reported below
            errors.append(e)
            shared.barrier.abort()
            for w in _worlds.values():
                w.barrier.abort()
    threads = [threading.Thread(target=body, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return out


R = ReduceOp
