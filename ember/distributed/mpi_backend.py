"""The MPI backend: collectives on numpy buffers through mpi4py (CPU tensors, one or many hosts).

Every call hands MPI the array's own memory (upper-case mpi4py calls: Allreduce, Bcast, ...), never
a pickled copy. Reductions run on MPI's own types; a floating dtype MPI cannot reduce (float16 on
some MPIs, bfloat16) is reduced in float32 and cast back. AVG is a SUM followed by a division
(truncating toward zero for integers, as NCCL does). bool reduces with logical or/and.

In: contiguous numpy arrays and a ReduceOp. Out: the arrays are written in place; each call returns
a Work (already complete unless async_op).
"""
from __future__ import annotations

import numpy as np

from .reduce_op import ReduceOp
from .work import Work

_R = ReduceOp


def _mpi():
    from mpi4py import MPI
    return MPI


class MpiBackend:
    name = "mpi"

    def __init__(self, comm, timeout=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self._ops = {_R.SUM: MPI.SUM, _R.AVG: MPI.SUM, _R.PRODUCT: MPI.PROD, _R.MIN: MPI.MIN, _R.MAX: MPI.MAX,
                     _R.BAND: MPI.BAND, _R.BOR: MPI.BOR, _R.BXOR: MPI.BXOR}
        self._bool_ops = {_R.SUM: MPI.LOR, _R.MAX: MPI.LOR, _R.BOR: MPI.LOR, _R.PRODUCT: MPI.LAND,
                          _R.MIN: MPI.LAND, _R.BAND: MPI.LAND, _R.BXOR: MPI.LXOR}
        self._native: dict = {}

    # ------------------------------------------------------------------------------ helpers
    def reduces_natively(self, dtype: np.dtype) -> bool:
        """Can MPI reduce this dtype itself? Checked once per dtype on a one-element buffer."""
        ok = self._native.get(dtype)
        if ok is None:
            ok = False
            if dtype.kind in "biuf":
                try:
                    a = np.ones(1, dtype)
                    self.MPI.COMM_SELF.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM if dtype.kind != "b"
                                                else self.MPI.LOR)
                    ok = True
                except Exception:   # mpi4py has no type for it, or MPI cannot reduce it
                    ok = False
            self._native[dtype] = ok
        return ok

    def _plan(self, arr: np.ndarray, op):
        """(the buffer MPI reduces: arr itself or a float32 copy, the MPI op)."""
        if arr.dtype.kind == "b":
            return arr, self._bool_ops[op]
        buf = arr if self.reduces_natively(arr.dtype) else arr.astype(np.float32)
        return buf, self._ops[op]

    def _finisher(self, res: np.ndarray, dst: np.ndarray, op):
        """The step after MPI's reduction into res: AVG's division, the cast back into dst; or None."""
        if op is not _R.AVG and res is dst:
            return None
        n = self.size

        def finish():
            if op is _R.AVG:
                if res.dtype.kind == "f":
                    np.divide(res, n, out=res)
                else:   # integer AVG truncates toward zero, like NCCL
                    q = np.abs(res) // n
                    res[...] = np.where(res < 0, -q, q)
            if res is not dst:
                dst[...] = res.astype(dst.dtype)
        return finish

    @staticmethod
    def _bytes(arr: np.ndarray) -> np.ndarray:
        return arr.reshape(-1).view(np.uint8)

    def _work(self, what, req, finish, result=()):
        """Wrap an MPI request (or None for a finished blocking call) into a Work."""
        if req is None:
            w = Work(what, None, result, self.timeout, self.rank)
        else:
            reqs = req if isinstance(req, list) else [req]
            w = Work(what, lambda: self.MPI.Request.Testall(reqs), result, self.timeout, self.rank)
            w._requests = reqs     # keep the requests (and so their buffers) alive until done
        if finish is not None:
            w.then(finish)
        return w

    # --------------------------------------------------------------------------- collectives
    def all_reduce(self, arr: np.ndarray, op, async_op: bool = False) -> Work:
        buf, mpi_op = self._plan(arr, op)
        post = self._finisher(buf, arr, op)
        if async_op:
            return self._work("all_reduce", self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=mpi_op), post)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=mpi_op)
        return self._work("all_reduce", None, post)

    def reduce(self, arr: np.ndarray, op, root: int, async_op: bool = False) -> Work:
        buf, mpi_op = self._plan(arr, op)
        root_here = self.rank == root
        send = self.MPI.IN_PLACE if root_here else buf
        recv = buf if root_here else None
        post = self._finisher(buf, arr, op) if root_here else None
        if async_op:
            return self._work("reduce", self.comm.Ireduce(send, recv, op=mpi_op, root=root), post)
        self.comm.Reduce(send, recv, op=mpi_op, root=root)
        return self._work("reduce", None, post)

    def broadcast(self, arr: np.ndarray, root: int, async_op: bool = False) -> Work:
        b = self._bytes(arr)
        if async_op:
            return self._work("broadcast", self.comm.Ibcast(b, root=root), None)
        self.comm.Bcast(b, root=root)
        return self._work("broadcast", None, None)

    def all_gather(self, out: np.ndarray, inp: np.ndarray, async_op: bool = False) -> Work:
        """out: size * inp.size elements, rank r's input at out[r * inp.size:]."""
        s, r = self._bytes(inp), self._bytes(out)
        if async_op:
            return self._work("all_gather", self.comm.Iallgather(s, r), None)
        self.comm.Allgather(s, r)
        return self._work("all_gather", None, None)

    def reduce_scatter(self, out: np.ndarray, inp: np.ndarray, op, async_op: bool = False) -> Work:
        """inp: size * out.size elements; rank r receives the reduction of every rank's chunk r."""
        buf, mpi_op = self._plan(inp, op)
        res = out if buf is inp else np.empty(out.shape, buf.dtype)
        post = self._finisher(res, out, op)
        if async_op:
            return self._work("reduce_scatter", self.comm.Ireduce_scatter_block(buf, res, op=mpi_op), post)
        self.comm.Reduce_scatter_block(buf, res, op=mpi_op)
        return self._work("reduce_scatter", None, post)

    def gather(self, out: np.ndarray | None, inp: np.ndarray, root: int, async_op: bool = False) -> Work:
        s = self._bytes(inp)
        r = self._bytes(out) if self.rank == root else None
        if async_op:
            return self._work("gather", self.comm.Igather(s, r, root=root), None)
        self.comm.Gather(s, r, root=root)
        return self._work("gather", None, None)

    def scatter(self, out: np.ndarray, inp: np.ndarray | None, root: int, async_op: bool = False) -> Work:
        s = self._bytes(inp) if self.rank == root else None
        r = self._bytes(out)
        if async_op:
            return self._work("scatter", self.comm.Iscatter(s, r, root=root), None)
        self.comm.Scatter(s, r, root=root)
        return self._work("scatter", None, None)

    def barrier(self, async_op: bool = False) -> Work:
        work = self._work("barrier", self.comm.Ibarrier(), None)
        if not async_op:
            work.wait()        # with the group's timeout
        return work

    # --------------------------------------------------------------- host-side agreement, objects
    def max_int64(self, v: np.ndarray, what: str = "agreement check") -> np.ndarray:
        """Element-wise max over the ranks of a small int64 vector, waited for with the group's
        timeout: this is where a rank that stopped calling collectives is noticed."""
        out = np.empty_like(v)
        self._work(what, self.comm.Iallreduce(v, out, op=self.MPI.MAX), None).wait()
        return out

    def allgather_object(self, obj) -> list:
        return self.comm.allgather(obj)

    def bcast_object(self, obj, root: int):
        return self.comm.bcast(obj, root=root)

    def free(self) -> None:
        if self.comm is not None and self.comm != self.MPI.COMM_NULL:
            self.comm.Free()
        self.comm = None
