"""The NCCL backend: collectives on CUDA tensors through CuPy's NCCL bindings (one GPU per rank).

The communicator for a device is created on that device's first collective: rank 0 draws NCCL's
unique id and MPI broadcasts it (with one process and no MPI, no broadcast is needed). Collectives
run on one communication stream per device that first waits for the caller's current stream; the
returned Work's wait() makes the current stream wait for the collective (the host does not block),
as PyTorch's NCCL work does.

NCCL reduces float16/32/64, bfloat16, int8, uint8, int32 and int64; bool reduces as uint8 with
MAX (or) / MIN (and); int16 reduces in int32. NCCL has no bitwise reductions (BAND/BOR/BXOR).
Data-moving collectives (broadcast, all_gather, gather, scatter) move bytes, so every dtype works.
"""
from __future__ import annotations

from .reduce_op import ReduceOp, BITWISE
from .work import Work

_R = ReduceOp


class NcclBackend:
    name = "nccl"

    def __init__(self, mpi_comm, rank: int, size: int, timeout=None):
        import cupy
        from cupy.cuda import nccl
        self.cp = cupy
        self.nccl = nccl
        self.mpi_comm = mpi_comm          # None when the world is this one process
        self.rank = rank
        self.size = size
        self.timeout = timeout
        self._comms: dict = {}            # device index -> (NcclCommunicator, stream)
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
                       "float64": nccl.NCCL_FLOAT64, "int8": nccl.NCCL_INT8, "uint8": nccl.NCCL_UINT8,
                       "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64,
                       "bfloat16": getattr(nccl, "NCCL_BFLOAT16", 9)}
        self._ops = {_R.SUM: nccl.NCCL_SUM, _R.PRODUCT: nccl.NCCL_PROD, _R.MIN: nccl.NCCL_MIN,
                     _R.MAX: nccl.NCCL_MAX}
        self._avg = getattr(nccl, "NCCL_AVG", None) if nccl.get_version() >= 21000 else None

    # ------------------------------------------------------------------------------ plumbing
    def _comm(self, device: int):
        entry = self._comms.get(device)
        if entry is None:
            uid = self.nccl.get_unique_id() if self.rank == 0 else None
            if self.mpi_comm is not None:
                uid = self.mpi_comm.bcast(uid, root=0)
            with self.cp.cuda.Device(device):
                comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)
                stream = self.cp.cuda.Stream(non_blocking=True)
            entry = self._comms[device] = (comm, stream)
        return entry

    def _launch(self, what, arrays, launch, post=None, async_op=False) -> Work:
        """Run launch(comm, stream_ptr) on the communication stream after the current stream's work;
        post() (stream-ordered CuPy ops) runs after the collective, on the caller's stream."""
        cp = self.cp
        dev = arrays[0].device.id
        comm, stream = self._comm(dev)
        with cp.cuda.Device(dev):
            current = cp.cuda.get_current_stream()
            ready = cp.cuda.Event(disable_timing=True)
            ready.record(current)
            stream.wait_event(ready)
            launch(comm, stream.ptr)
            done = cp.cuda.Event(disable_timing=True)
            done.record(stream)
        work = _NcclWork(what, done, dev, self.timeout, self.rank)
        work._keep = arrays               # the buffers must outlive the collective
        if post is not None:
            work.then(post)
        if not async_op:
            work.wait()
        return work

    def _reduce_plan(self, arr, op, what):
        """(buffer NCCL reduces, NCCL type, NCCL op, finish or None)."""
        cp = self.cp
        if op in BITWISE:
            raise RuntimeError(f"ember.distributed.{what}: ReduceOp.{op.name} is not supported by NCCL "
                               "(NCCL has sum, product, min, max and avg)")
        name = arr.dtype.name
        if name == "bool":
            buf = arr.view(cp.uint8)
            nop = self.nccl.NCCL_MAX if op in (_R.SUM, _R.MAX) else self.nccl.NCCL_MIN
            return buf, self.nccl.NCCL_UINT8, nop, None
        buf = arr if name in self._types else arr.astype(cp.int32 if arr.dtype.kind in "iu" else cp.float32)
        ntype = self._types[buf.dtype.name]
        n = self.size
        native_avg = op is _R.AVG and self._avg is not None and buf.dtype.kind == "f"
        nop = self._avg if native_avg else self._ops[_R.SUM if op is _R.AVG else op]

        def finish(res, dst):
            if op is _R.AVG and not native_avg:
                if res.dtype.kind == "f":
                    res /= n
                else:   # integer AVG truncates toward zero
                    q = cp.abs(res) // n
                    res[...] = cp.where(res < 0, -q, q)
            if res is not dst:
                dst[...] = res.astype(dst.dtype)
        return buf, ntype, nop, finish

    # --------------------------------------------------------------------------- collectives
    def all_reduce(self, arr, op, async_op=False) -> Work:
        buf, t, nop, finish = self._reduce_plan(arr, op, "all_reduce")
        return self._launch("all_reduce", [arr, buf],
                            lambda c, s: c.allReduce(buf.data.ptr, buf.data.ptr, buf.size, t, nop, s),
                            (lambda: finish(buf, arr)) if finish is not None else None, async_op)

    def reduce(self, arr, op, root, async_op=False) -> Work:
        buf, t, nop, finish = self._reduce_plan(arr, op, "reduce")
        post = (lambda: finish(buf, arr)) if finish is not None and self.rank == root else None
        return self._launch("reduce", [arr, buf],
                            lambda c, s: c.reduce(buf.data.ptr, buf.data.ptr, buf.size, t, nop, root, s),
                            post, async_op)

    def reduce_scatter(self, out, inp, op, async_op=False) -> Work:
        buf, t, nop, finish = self._reduce_plan(inp, op, "reduce_scatter")
        if buf is inp:
            res = out
        elif inp.dtype.kind == "b":
            res = out.view(self.cp.uint8)
        else:
            res = self.cp.empty(out.shape, buf.dtype)
        return self._launch("reduce_scatter", [out, inp, buf, res],
                            lambda c, s: c.reduceScatter(buf.data.ptr, res.data.ptr, res.size, t, nop, s),
                            (lambda: finish(res, out)) if finish is not None else None, async_op)

    def broadcast(self, arr, root, async_op=False) -> Work:
        u8 = self.nccl.NCCL_UINT8
        return self._launch("broadcast", [arr],
                            lambda c, s: c.broadcast(arr.data.ptr, arr.data.ptr, arr.nbytes, u8, root, s),
                            None, async_op)

    def all_gather(self, out, inp, async_op=False) -> Work:
        u8 = self.nccl.NCCL_UINT8
        return self._launch("all_gather", [out, inp],
                            lambda c, s: c.allGather(inp.data.ptr, out.data.ptr, inp.nbytes, u8, s),
                            None, async_op)

    def gather(self, out, inp, root, async_op=False) -> Work:
        """Point-to-point sends to the root inside one NCCL group (NCCL has no gather)."""
        u8, nb, me = self.nccl.NCCL_UINT8, inp.nbytes, self.rank
        cp = self.cp

        def launch(c, s):
            self.nccl.groupStart()
            try:
                if me == root:
                    for r in range(self.size):
                        if r == root:
                            cp.cuda.runtime.memcpyAsync(out.data.ptr + r * nb, inp.data.ptr, nb,
                                                        cp.cuda.runtime.memcpyDeviceToDevice, s)
                        else:
                            c.recv(out.data.ptr + r * nb, nb, u8, r, s)
                else:
                    c.send(inp.data.ptr, nb, u8, root, s)
            finally:
                self.nccl.groupEnd()
        return self._launch("gather", [inp] + ([out] if out is not None else []), launch, None, async_op)

    def scatter(self, out, inp, root, async_op=False) -> Work:
        u8, nb, me = self.nccl.NCCL_UINT8, out.nbytes, self.rank
        cp = self.cp

        def launch(c, s):
            self.nccl.groupStart()
            try:
                if me == root:
                    for r in range(self.size):
                        if r == root:
                            cp.cuda.runtime.memcpyAsync(out.data.ptr, inp.data.ptr + r * nb, nb,
                                                        cp.cuda.runtime.memcpyDeviceToDevice, s)
                        else:
                            c.send(inp.data.ptr + r * nb, nb, u8, r, s)
                else:
                    c.recv(out.data.ptr, nb, u8, root, s)
            finally:
                self.nccl.groupEnd()
        return self._launch("scatter", [out] + ([inp] if inp is not None else []), launch, None, async_op)

    def barrier(self, async_op=False) -> Work:
        cp = self.cp
        dev = cp.cuda.runtime.getDevice()
        with cp.cuda.Device(dev):
            flag = cp.zeros(1, cp.float32)
        work = self.all_reduce(flag, _R.SUM, async_op=True)
        if not async_op:
            work.wait()
            cp.cuda.Device(dev).synchronize()
        return work

    def free(self) -> None:
        for comm, _ in self._comms.values():
            comm.destroy()
        self._comms.clear()


class _NcclWork(Work):
    """wait() orders the caller's stream after the collective; the host only blocks for a timeout."""

    def __init__(self, what, done, device, timeout, rank):
        super().__init__(what, lambda: done.done, (), timeout, rank)
        self._done = done
        self._device = device

    def wait(self, timeout=None) -> bool:
        if self._finished:
            return True
        if timeout is not None:
            super().wait(timeout)          # host-side wait with a deadline, then the stream order below
        import cupy as cp
        with cp.cuda.Device(self._device):
            cp.cuda.get_current_stream().wait_event(self._done)
            self._finish()
        return True
