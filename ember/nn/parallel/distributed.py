"""DistributedDataParallel: one model replica per process, gradients averaged across processes.

    dist.init_process_group("mpi")
    model = DistributedDataParallel(Net())          # rank 0's parameters and buffers reach every rank
    loss_fn(model(x), y).backward()                 # gradients are averaged while backward still runs
    opt.step()

At wrap time the ranks check they hold the same parameters (count, shapes, dtypes) and rank 0's
parameters and buffers are broadcast. Gradients are grouped into buckets in reverse registration
order (the order backward produces them): the first bucket up to 1 MB, so communication starts
early, the others up to `bucket_cap_mb` (25 MB). Each parameter's post-accumulate-grad hook copies
its gradient (divided by the world size) into its bucket; a full bucket starts a non-blocking
all-reduce at once, in bucket order on every rank, while backward goes on computing earlier
layers. The last hook of the backward pass waits for all buckets and writes the averages back
into `.grad`, so the optimizer only ever sees averaged gradients.

Also as in PyTorch: no_sync() (accumulate locally, sync on the first backward outside it),
require_backward_grad_sync, .module, broadcast_buffers (rank 0's buffers before each forward),
find_unused_parameters (parameters the forward's output does not reach count as ready with a zero
gradient; a parameter unused on every rank keeps grad None), and PyTorch's error at the next forward
when a parameter never received its gradient. Works on compiled modules both ways round:
DistributedDataParallel(ember.compile(m)) and ember.compile(DistributedDataParallel(m)); in the
second the forward runs as compiled code, so buffers are re-broadcast after each backward instead.
"""
from __future__ import annotations

import contextlib
import time
import weakref

import numpy as np

from ...distributed import _tensors
from ...distributed.process_group import resolve
from ...distributed.reduce_op import ReduceOp
from ..modules.module import Module

__all__ = ["DistributedDataParallel"]

_FIRST_BUCKET_BYTES = 1024 * 1024        # PyTorch's dist._DEFAULT_FIRST_BUCKET_BYTES
_DEFAULT_BUCKET_MB = 25
_BROADCAST_BYTES = 250 * 1024 * 1024     # PyTorch's broadcast_bucket_size for state syncs


class _Bucket:
    """A flat buffer holding the gradients of some parameters of one dtype and device."""

    __slots__ = ("params", "offsets", "buffer", "pending", "work")

    def __init__(self, params, offsets, buffer):
        self.params = params          # indices into DistributedDataParallel._params
        self.offsets = offsets        # (start, stop) per parameter, in elements
        self.buffer = buffer
        self.pending = len(params)
        self.work = None


def _assign_buckets(params, cap_bytes: int) -> list[list[int]]:
    """Group parameter indices (already in reverse registration order) by dtype and device, closing
    a bucket once it holds the size limit: 1 MB (or cap_bytes if smaller) for the first, cap_bytes after."""
    open_: dict = {}
    limits: dict = {}
    done: list[list[int]] = []
    for i, p in enumerate(params):
        key = (p.dtype.name, str(p.device))
        b = open_.setdefault(key, [[], 0])
        b[0].append(i)
        b[1] += p.numel() * p.dtype.itemsize
        if b[1] >= limits.get(key, min(_FIRST_BUCKET_BYTES, cap_bytes)):
            done.append(b[0])
            open_[key] = [[], 0]
            limits[key] = cap_bytes
    done += [b[0] for b in open_.values() if b[0]]
    # buckets complete in the order their last parameter's gradient arrives: sort by first index
    done.sort(key=lambda idx: idx[0])
    return done


def _hook(ddp_ref, index: int):
    def hook(param):
        ddp = ddp_ref()
        if ddp is not None:
            ddp._mark_ready(index)
    return hook


class DistributedDataParallel(Module):
    """torch.nn.parallel.DistributedDataParallel on ember.distributed (MPI for CPU, NCCL for CUDA)."""

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, init_sync: bool = True, process_group=None,
                 bucket_cap_mb: float | None = None, find_unused_parameters: bool = False,
                 check_reduction: bool = False, gradient_as_bucket_view: bool = False, static_graph: bool = False,
                 **unsupported):
        super().__init__()
        if unsupported:
            raise TypeError(f"DistributedDataParallel: unsupported arguments {sorted(unsupported)}")
        pg = resolve(process_group)
        if pg is None:
            raise ValueError("DistributedDataParallel: this rank is not a member of process_group")
        params, names, seen = [], [], set()
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
                names.append(name)
        if not params:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter that "
                               "requires a gradient.")
        devices = {str(p.device) for p in module.parameters()}
        if len(devices) > 1:
            raise ValueError(f"DistributedDataParallel: the module's parameters are on several devices "
                             f"{sorted(devices)}; put the module on one device (one GPU per process)")
        dev = params[0].device
        if device_ids is not None:
            if dev.type == "cpu":
                raise ValueError(f"DistributedDataParallel device_ids and output_device arguments only work with "
                                 f"single-device/multiple-device GPU modules or CPU modules, but got device_ids "
                                 f"{list(device_ids)}, output_device {output_device}, and module parameters "
                                 f"{{{dev!r}}}.")
            if len(device_ids) != 1:
                raise ValueError("device_ids can only be None or contain a single element.")
        self.module = module
        d = self.__dict__                  # plain attributes: not registered as parameters or buffers
        d["process_group"] = pg
        d["device_ids"] = list(device_ids) if device_ids is not None else None
        d["output_device"] = output_device
        d["dim"] = dim
        d["broadcast_buffers"] = broadcast_buffers
        d["find_unused_parameters"] = find_unused_parameters
        d["gradient_as_bucket_view"] = gradient_as_bucket_view   # accepted; gradients are copied either way
        d["static_graph"] = static_graph
        d["require_backward_grad_sync"] = True
        d["require_forward_param_sync"] = True
        d["bucket_bytes_cap"] = int((bucket_cap_mb if bucket_cap_mb is not None else _DEFAULT_BUCKET_MB) * 1024 * 1024)
        d["device"] = dev
        d["_world"] = pg.size()
        d["_backend"] = pg.backend_for(dev.type, "DistributedDataParallel")
        d["_params"] = params[::-1]        # reverse registration order: the order backward produces them
        d["_names"] = names[::-1]
        self._verify_same_model()
        if init_sync and self._world > 1:
            self._broadcast_states([t for t in module.parameters()] + [b for b in module.buffers()])
        self._build_buckets()
        handles: list = []
        ref = weakref.ref(self, lambda _: [h.remove() for h in handles])   # a dropped wrapper unhooks
        handles += [p.register_post_accumulate_grad_hook(_hook(ref, i)) for i, p in enumerate(self._params)]
        d["_hook_handles"] = handles
        d["_fwd_sync"] = None              # the sync decision of the last eager forward (None: none seen)
        d["_unused"] = None                # parameter indices the last forward's output does not reach
        d["_eager_forward"] = False
        d["_comm_stats"] = {"iterations": 0, "wait_s": 0.0, "allreduce_bytes": 0}
        self._reset_iteration()

    # -------------------------------------------------------------------------------- setup
    def _verify_same_model(self) -> None:
        """Every rank must wrap the same parameters; say which differ (PyTorch's wording)."""
        if self._world == 1 or self.process_group.mpi is None:
            return
        mine = [(n, tuple(p.shape), p.dtype.name) for n, p in zip(self._names[::-1], self._params[::-1])]
        everyone = self.process_group.mpi.allgather_object(mine)
        rank = self.process_group.rank()
        for r, theirs in enumerate(everyone):
            if len(theirs) != len(mine):
                raise RuntimeError(f"DDP expects same model across all ranks, but Rank {rank} has {len(mine)} params, "
                                   f"while rank {r} has inconsistent {len(theirs)} params.")
            for (n, s, dt), (n2, s2, dt2) in zip(mine, theirs):
                if s != s2 or dt != dt2:
                    raise RuntimeError(f"DDP expects same model across all ranks, but Rank {rank} has parameter "
                                       f"{n} of shape {list(s)} ({dt}) while rank {r} has {n2} of shape {list(s2)} "
                                       f"({dt2}).")

    def _broadcast_states(self, tensors) -> None:
        """Copy rank 0's values of tensors into every rank's, coalesced per dtype (<= 250 MB per call)."""
        groups: dict = {}
        for t in tensors:
            groups.setdefault(t.dtype.name, []).append(t)
        for ts in groups.values():
            start = 0
            while start < len(ts):
                chunk, nbytes = [], 0
                while start < len(ts) and (not chunk or nbytes + ts[start].nbytes <= _BROADCAST_BYTES):
                    chunk.append(ts[start])
                    nbytes += ts[start].nbytes
                    start += 1
                arrays = [_tensors.array(t) for t in chunk]
                xp = _tensors.xp_of(arrays[0])
                flat = xp.concatenate([a.reshape(-1) for a in arrays])
                self._backend.broadcast(flat, 0)
                if self.process_group.rank() != 0:
                    off = 0
                    for t, a in zip(chunk, arrays):
                        a[...] = flat[off:off + a.size].reshape(a.shape)
                        off += a.size
                        _tensors.written(t)

    def _build_buckets(self) -> None:
        buckets = []
        for idx in _assign_buckets(self._params, self.bucket_bytes_cap):
            p0 = self._params[idx[0]]
            offsets, off = [], 0
            for i in idx:
                n = self._params[i].numel()
                offsets.append((off, off + n))
                off += n
            xp = _tensors.xp_of(_tensors.array(p0))
            if p0.device.type == "cuda":
                with xp.cuda.Device(p0.device.index or 0):
                    buf = xp.zeros(off, p0.dtype.np)
            else:
                buf = np.zeros(off, p0.dtype.np)
            buckets.append(_Bucket(idx, offsets, buf))
        where = {}
        for b, bucket in enumerate(buckets):
            for j, i in enumerate(bucket.params):
                where[i] = (b, j)
        self.__dict__["_buckets"] = buckets
        self.__dict__["_where"] = where    # parameter index -> (bucket, slot)

    # -------------------------------------------------------------------- backward machinery
    def _reset_iteration(self) -> None:
        d = self.__dict__
        d["_active"] = False               # a synchronising backward is under way
        d["_ready"] = [False] * len(self._params)
        d["_next_bucket"] = 0
        for b in self._buckets:
            b.pending = len(b.params)
            b.work = None

    def _mark_ready(self, index: int, zero: bool = False) -> None:
        """A parameter's gradient is final for this backward: copy it into its bucket; start every
        bucket that is now full, in order; finish when the last one has started."""
        if not self._active:
            sync = self._fwd_sync if self._fwd_sync is not None else self.require_backward_grad_sync
            if not sync:
                return
            self.__dict__["_active"] = True
            for i in self._unused or ():   # unused in forward: ready now, with a zero gradient
                self._mark_ready(i, zero=True)
        if self._ready[index]:
            raise RuntimeError(
                f"Expected to mark a variable ready only once. This error is caused by one of the following reasons: "
                f"1) Use of a module parameter outside the `forward` function. Please make sure model parameters are "
                f"not shared across multiple concurrent forward-backward passes. or try to use _set_static_graph() as "
                f"a workaround if this module graph does not change during training loop.2) Reused parameters in "
                f"multiple reentrant backward passes. Parameter {self._names[index]} (index {index}) was marked "
                f"ready twice in one iteration.")
        self._ready[index] = True
        b, j = self._where[index]
        bucket = self._buckets[b]
        lo, hi = bucket.offsets[j]
        view = bucket.buffer[lo:hi]
        grad = self._params[index].grad
        if zero or grad is None:
            view[...] = 0
        else:
            # pre-divide, as PyTorch does: the sum of the ranks' shares is the average
            _tensors.xp_of(view).divide(_tensors.array(grad).reshape(-1), self._world, out=view)
        bucket.pending -= 1
        self._launch_ready()

    def _launch_ready(self) -> None:
        buckets = self._buckets
        while self._next_bucket < len(buckets) and buckets[self._next_bucket].pending == 0:
            bucket = buckets[self._next_bucket]
            bucket.work = self._backend.all_reduce(bucket.buffer, ReduceOp.SUM, async_op=True)
            self._comm_stats["allreduce_bytes"] += bucket.buffer.nbytes
            self.__dict__["_next_bucket"] += 1
        for bucket in buckets[:self._next_bucket]:
            if bucket.work is not None and not bucket.work._finished:
                bucket.work.is_completed()        # on MPI this call moves the transfer on
        if self._next_bucket == len(buckets):
            self._finalize()

    def _finalize(self) -> None:
        """All buckets started: wait, and write the averaged gradients back into .grad."""
        t0 = time.perf_counter()
        for bucket in self._buckets:
            bucket.work.wait()
        self._comm_stats["wait_s"] += time.perf_counter() - t0
        self._comm_stats["iterations"] += 1
        used = None
        if self.find_unused_parameters and self._unused:
            local = np.ones(len(self._params), np.int64)
            local[list(self._unused)] = 0
            used = self.process_group.mpi.max_int64(local) if self.process_group.mpi is not None else local
        import ember
        for bucket in self._buckets:
            for i, (lo, hi) in zip(bucket.params, bucket.offsets):
                p = self._params[i]
                avg = bucket.buffer[lo:hi].reshape(tuple(p.shape))
                if p.grad is None:
                    if used is None or not used[i]:
                        continue                  # unused on every rank: the gradient stays None
                    p.grad = ember.zeros_like(p)
                _tensors.array(p.grad)[...] = avg
                _tensors.written(p.grad)
        eager = self._eager_forward
        self._reset_iteration()
        d = self.__dict__
        d["_fwd_sync"] = None
        d["_unused"] = None
        d["_eager_forward"] = False
        if not eager and self.broadcast_buffers and self._world > 1:
            # a compiled forward never ran our forward(): keep the ranks' buffers equal from here
            self._sync_buffers()

    def _sync_buffers(self) -> None:
        bufs = list(self.module.buffers())
        if bufs:
            self._broadcast_states(bufs)

    # ------------------------------------------------------------------------------ forward
    def forward(self, *inputs, **kwargs):
        if _tensors.tracing_active():       # inside ember.compile(ddp): trace the module itself
            return self.module(*inputs, **kwargs)
        if self._active:
            missing = [f"{self._names[i]} (index {i})" for i, r in enumerate(self._ready) if not r]
            self._reset_iteration()
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new one. This error "
                "indicates that your module has parameters that were not used in producing loss. You can enable "
                "unused parameter detection by passing the keyword argument `find_unused_parameters=True` to "
                "`ember.nn.parallel.DistributedDataParallel`, and by making sure all `forward` function outputs "
                "participate in calculating loss. If you already have done the above, then the distributed data "
                "parallel module wasn't able to locate the output tensors in the return value of your module's "
                "`forward` function. Please include the loss function and the structure of the return value of "
                f"`forward` of your module when reporting this issue (e.g. list, dict, iterable). Parameters which "
                f"did not receive grad for rank {self.process_group.rank()}: {', '.join(missing)}")
        import ember
        grad_on = ember.is_grad_enabled()
        if self.require_forward_param_sync and self.broadcast_buffers and self._world > 1:
            self._sync_buffers()
        out = self.module(*inputs, **kwargs)
        d = self.__dict__
        armed = grad_on and self.require_backward_grad_sync
        d["require_forward_param_sync"] = armed
        d["_fwd_sync"] = armed
        d["_eager_forward"] = True
        if armed and self.find_unused_parameters:
            reached = _tensors.reachable_leaves(out)
            d["_unused"] = [i for i, p in enumerate(self._params) if id(p) not in reached]
        else:
            d["_unused"] = None
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward accumulates gradients locally; the first backward after it averages them."""
        old = self.require_backward_grad_sync
        self.__dict__["require_backward_grad_sync"] = False
        try:
            yield
        finally:
            self.__dict__["require_backward_grad_sync"] = old

    def _set_static_graph(self) -> None:
        self.__dict__["static_graph"] = True

    def _remove_hooks(self) -> None:
        for h in self._hook_handles:
            h.remove()
        self._hook_handles.clear()

    def extra_repr(self) -> str:
        return ""
