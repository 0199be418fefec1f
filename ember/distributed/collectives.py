"""Collectives on tensors (torch.distributed's functions): all_reduce, broadcast, all_gather,
reduce_scatter, gather, scatter, reduce, barrier, and the object helpers.

In: tensors (CPU: the MPI backend on their numpy memory; CUDA: NCCL; a non-contiguous tensor is
staged through a contiguous copy). Out: results written into
the given tensors; None, or a Work with async_op=True. Before moving data every rank checks, with
one small all-reduce, that all ranks make the same call; any local error (a bad argument on one
rank) is raised on every rank, so a mistake never leaves the others waiting.
"""
from __future__ import annotations

import zlib

import numpy as np

from . import _tensors
from ._tensors import Tensor, array, written
from .process_group import resolve
from .reduce_op import BITWISE, ReduceOp, as_op

__all__ = ["all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
           "reduce_scatter_tensor", "gather", "scatter", "reduce", "barrier", "all_gather_object",
           "broadcast_object_list", "any_across_ranks"]


# ------------------------------------------------------------------------------------- checks
def _buffer(t, what: str, name: str = "tensor"):
    """t's array, or a contiguous copy of it (the collective then copies the result back: ember's
    gradients can be transposed views, and MPI/NCCL need one dense block)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"ember.distributed.{what}: {name} must be a Tensor, got {type(t).__name__}")
    _tensors.check_not_traced(t, what)
    a = array(t)
    return a if a.flags.c_contiguous else _xp(a).ascontiguousarray(a)


def _same_kind(ts, ref, what: str, name: str):
    """Every tensor of a list matches ref in shape, dtype and device."""
    out = []
    for i, t in enumerate(ts):
        _buffer(t, what, f"{name}[{i}]")
        a = array(t)
        if tuple(t.shape) != tuple(ref.shape) or t.dtype is not ref.dtype or t.device != ref.device:
            raise ValueError(f"ember.distributed.{what}: {name}[{i}] is {t.dtype.name} {list(t.shape)} on {t.device} "
                             f"but the tensor is {ref.dtype.name} {list(ref.shape)} on {ref.device}; they must match")
        out.append(a)
    return out


def _check_op(op, dtype, what: str) -> None:
    kind = np.dtype(dtype).kind
    if op is ReduceOp.AVG and kind == "b":
        raise RuntimeError(f"ember.distributed.{what}: ReduceOp.AVG needs a numeric tensor, got bool")
    if op in BITWISE and kind not in "biu":
        raise RuntimeError(f"ember.distributed.{what}: ReduceOp.{op.name} needs an integer or bool tensor, "
                           f"got {np.dtype(dtype).name}")


_DTYPE_CODES: dict = {}


def _fp(a) -> tuple:
    """Ints describing an array: dtype, rank, shape."""
    code = _DTYPE_CODES.get(a.dtype)
    if code is None:
        code = _DTYPE_CODES[a.dtype] = zlib.crc32(np.dtype(a.dtype).name.encode())
    return (code, a.ndim, *a.shape)


def _desc(t) -> str:
    return f"{t.dtype.name} {list(t.shape)}"


def _root(pg, rank, group_rank, what: str, name: str) -> int:
    """The group rank of a root given as a global rank (src/dst) or as group_src/group_dst."""
    if group_rank is not None:
        if not 0 <= int(group_rank) < pg.size():
            raise ValueError(f"ember.distributed.{what}: group_{name}={group_rank} is outside the group (size "
                             f"{pg.size()})")
        return int(group_rank)
    if int(rank) not in pg.ranks:
        raise ValueError(f"ember.distributed.{what}: {name}={rank} is not a rank of this group (ranks {pg.ranks})")
    return pg.ranks.index(int(rank))


def _agreed(pg, what: str, prepare):
    """prepare() -> (fingerprint, description (lazy), payload); every rank agrees before data moves."""
    try:
        fp, desc, payload = prepare()
        err = None
    except (TypeError, ValueError, RuntimeError) as e:
        fp, desc, payload, err = None, f"{what} (failed)", None, e
    pg.agree(what, fp, desc, err)
    return payload


def _finish(work, outs, async_op, extra=None):
    """When done: copy staged results back, bump the written tensors' versions. outs: (tensor, the
    array the collective wrote, or None when it wrote the tensor's own). The Work only for async_op."""
    if extra is not None:
        work.then(extra)

    def done():
        for t, a in outs:
            if a is not None and a is not array(t):
                array(t)[...] = a.reshape(tuple(t.shape))
            written(t)
    work.then(done)
    work._result = [t for t, _ in outs]
    return work if async_op else None


# ------------------------------------------------------------------------------- reductions
def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce tensor over all ranks, in place, on every rank."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        o = as_op(op, "all_reduce")
        a = _buffer(tensor, "all_reduce")
        _check_op(o, a.dtype, "all_reduce")
        be = pg.backend_for(tensor.device.type, "all_reduce")
        return (o.value,) + _fp(a), lambda: f"all_reduce(op={o.name}) {_desc(tensor)}", (o, a, be)
    o, a, be = _agreed(pg, "all_reduce", prepare)
    return _finish(be.all_reduce(a, o, async_op), [(tensor, a)], async_op)


def reduce(tensor, dst: int = 0, op=ReduceOp.SUM, group=None, async_op: bool = False, group_dst=None):
    """Reduce tensor over all ranks into dst's tensor (the others' are left as they were)."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        o = as_op(op, "reduce")
        root = _root(pg, dst, group_dst, "reduce", "dst")
        a = _buffer(tensor, "reduce")
        _check_op(o, a.dtype, "reduce")
        be = pg.backend_for(tensor.device.type, "reduce")
        return (o.value, root) + _fp(a), lambda: f"reduce(dst={root}, op={o.name}) {_desc(tensor)}", (o, root, a, be)
    o, root, a, be = _agreed(pg, "reduce", prepare)
    work = be.reduce(a, o, root, async_op)
    return _finish(work, [(tensor, a)] if pg.rank() == root else [], async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """output on rank r = the reduction over ranks of input_list[r]."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        o = as_op(op, "reduce_scatter")
        out = _buffer(output, "reduce_scatter", "output")
        if not isinstance(input_list, (list, tuple)) or len(input_list) != pg.size():
            got = len(input_list) if isinstance(input_list, (list, tuple)) else repr(input_list)
            raise ValueError(f"ember.distributed.reduce_scatter: input_list must hold one tensor per rank "
                             f"({pg.size()}), got {got}")
        ins = _same_kind(input_list, output, "reduce_scatter", "input_list")
        _check_op(o, out.dtype, "reduce_scatter")
        be = pg.backend_for(output.device.type, "reduce_scatter")
        xp = _xp(out)
        flat = xp.concatenate([i.reshape(-1) for i in ins]) if ins[0].size else xp.empty(0, out.dtype)
        return (o.value,) + _fp(out), lambda: f"reduce_scatter(op={o.name}) {_desc(output)}", (o, out, flat, be)
    o, out, flat, be = _agreed(pg, "reduce_scatter", prepare)
    return _finish(be.reduce_scatter(out.reshape(-1), flat, o, async_op), [(output, out)], async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op: bool = False):
    """output on rank r = the reduction over ranks of chunk r of input (input has size * output's elements)."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        o = as_op(op, "reduce_scatter_tensor")
        out = _buffer(output, "reduce_scatter_tensor", "output")
        inp = _buffer(input, "reduce_scatter_tensor", "input")
        if inp.size != out.size * pg.size() or input.dtype is not output.dtype or input.device != output.device:
            raise ValueError(f"ember.distributed.reduce_scatter_tensor: input ({_desc(input)}) must have world size "
                             f"({pg.size()}) times the elements of output ({_desc(output)}), same dtype and device")
        _check_op(o, out.dtype, "reduce_scatter_tensor")
        be = pg.backend_for(output.device.type, "reduce_scatter_tensor")
        return ((o.value,) + _fp(out) + _fp(inp),
                lambda: f"reduce_scatter_tensor(op={o.name}) {_desc(input)} -> {_desc(output)}", (o, out, inp, be))
    o, out, inp, be = _agreed(pg, "reduce_scatter_tensor", prepare)
    return _finish(be.reduce_scatter(out.reshape(-1), inp.reshape(-1), o, async_op), [(output, out)], async_op)


# ---------------------------------------------------------------------------- data movement
def broadcast(tensor, src: int = 0, group=None, async_op: bool = False, group_src=None):
    """Copy src's tensor into every rank's tensor."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        root = _root(pg, src, group_src, "broadcast", "src")
        a = _buffer(tensor, "broadcast")
        be = pg.backend_for(tensor.device.type, "broadcast")
        return (root,) + _fp(a), lambda: f"broadcast(src={root}) {_desc(tensor)}", (root, a, be)
    root, a, be = _agreed(pg, "broadcast", prepare)
    work = be.broadcast(a, root, async_op)
    return _finish(work, [(tensor, a)] if pg.rank() != root else [], async_op)


def all_gather(tensor_list, tensor, group=None, async_op: bool = False):
    """tensor_list[r] = rank r's tensor, on every rank."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        a = _buffer(tensor, "all_gather")
        if not isinstance(tensor_list, list) or len(tensor_list) != pg.size():
            raise ValueError(f"ember.distributed.all_gather: tensor_list must be a list of one tensor per rank "
                             f"({pg.size()})")
        outs = _same_kind(tensor_list, tensor, "all_gather", "tensor_list")
        be = pg.backend_for(tensor.device.type, "all_gather")
        xp = _xp(a)
        flat = xp.empty((pg.size(),) + a.shape, a.dtype)
        return _fp(a), lambda: f"all_gather {_desc(tensor)}", (a, outs, flat, be)
    a, outs, flat, be = _agreed(pg, "all_gather", prepare)

    def scatter_out():
        for r, o in enumerate(outs):
            o[...] = flat[r]
    return _finish(be.all_gather(flat.reshape(-1), a.reshape(-1), async_op), [(t, None) for t in tensor_list],
                   async_op, scatter_out)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op: bool = False):
    """output_tensor = the ranks' inputs concatenated (size * input elements, in rank order)."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        out = _buffer(output_tensor, "all_gather_into_tensor", "output_tensor")
        inp = _buffer(input_tensor, "all_gather_into_tensor", "input_tensor")
        if (out.size != inp.size * pg.size() or output_tensor.dtype is not input_tensor.dtype
                or output_tensor.device != input_tensor.device):
            raise ValueError(f"ember.distributed.all_gather_into_tensor: output_tensor ({_desc(output_tensor)}) must "
                             f"have world size ({pg.size()}) times the elements of input_tensor "
                             f"({_desc(input_tensor)}), same dtype and device")
        be = pg.backend_for(input_tensor.device.type, "all_gather_into_tensor")
        return (_fp(inp) + _fp(out), lambda: f"all_gather_into_tensor {_desc(input_tensor)} -> {_desc(output_tensor)}",
                (out, inp, be))
    out, inp, be = _agreed(pg, "all_gather_into_tensor", prepare)
    return _finish(be.all_gather(out.reshape(-1), inp.reshape(-1), async_op), [(output_tensor, out)], async_op)


def gather(tensor, gather_list=None, dst: int = 0, group=None, async_op: bool = False, group_dst=None):
    """gather_list[r] on dst = rank r's tensor."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        root = _root(pg, dst, group_dst, "gather", "dst")
        a = _buffer(tensor, "gather")
        outs, flat = [], None
        if pg.rank() == root:
            if not isinstance(gather_list, list) or len(gather_list) != pg.size():
                raise ValueError("Argument ``gather_list`` must be specified on destination rank, as a list of one "
                                 f"tensor per rank ({pg.size()}).")
            outs = _same_kind(gather_list, tensor, "gather", "gather_list")
            flat = _xp(a).empty((pg.size(),) + a.shape, a.dtype)
        elif gather_list:
            raise ValueError("Argument ``gather_list`` must NOT be specified on non-destination ranks.")
        be = pg.backend_for(tensor.device.type, "gather")
        return (root,) + _fp(a), lambda: f"gather(dst={root}) {_desc(tensor)}", (root, a, outs, flat, be)
    root, a, outs, flat, be = _agreed(pg, "gather", prepare)

    def scatter_out():
        for r, o in enumerate(outs):
            o[...] = flat[r]
    work = be.gather(None if flat is None else flat.reshape(-1), a.reshape(-1), root, async_op)
    return _finish(work, [(t, None) for t in gather_list] if outs else [], async_op, scatter_out if outs else None)


def scatter(tensor, scatter_list=None, src: int = 0, group=None, async_op: bool = False, group_src=None):
    """Rank r's tensor = scatter_list[r] on src."""
    pg = resolve(group)
    if pg is None:
        return None

    def prepare():
        root = _root(pg, src, group_src, "scatter", "src")
        a = _buffer(tensor, "scatter")
        flat = None
        if pg.rank() == root:
            if not isinstance(scatter_list, list) or len(scatter_list) != pg.size():
                raise ValueError("Argument ``scatter_list`` must be specified on source rank, as a list of one "
                                 f"tensor per rank ({pg.size()}).")
            ins = _same_kind(scatter_list, tensor, "scatter", "scatter_list")
            flat = _xp(a).concatenate([i.reshape(-1) for i in ins]) if a.size else _xp(a).empty(0, a.dtype)
        elif scatter_list:
            raise ValueError("Argument ``scatter_list`` must NOT be specified on non-source ranks.")
        be = pg.backend_for(tensor.device.type, "scatter")
        return (root,) + _fp(a), lambda: f"scatter(src={root}) {_desc(tensor)}", (root, a, flat, be)
    root, a, flat, be = _agreed(pg, "scatter", prepare)
    return _finish(be.scatter(a.reshape(-1), flat, root, async_op), [(tensor, a)], async_op)


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Wait until every rank of the group reaches this call."""
    pg = resolve(group)
    if pg is None:
        return None
    if pg.mpi is not None and "cpu" in pg._spec:
        work = pg.mpi.barrier(async_op)
    elif "cuda" in pg._spec:
        work = pg.backend_for("cuda", "barrier").barrier(async_op)
    else:
        work = pg.mpi.barrier(async_op)
    return work if async_op else None


# --------------------------------------------------------------------------- Python objects
def all_gather_object(object_list: list, obj, group=None) -> None:
    """object_list[r] = rank r's obj (pickled: for metadata, not for tensors' data)."""
    pg = resolve(group)
    if pg is None:
        return
    if not isinstance(object_list, list) or len(object_list) != pg.size():
        raise ValueError(f"ember.distributed.all_gather_object: object_list must be a list of length {pg.size()}")
    got = [obj] if pg.mpi is None else pg.mpi.allgather_object(obj)
    object_list[:] = got


def broadcast_object_list(object_list: list, src: int = 0, group=None, device=None, group_src=None) -> None:
    """Replace object_list's items with src's (pickled)."""
    pg = resolve(group)
    if pg is None:
        return
    root = _root(pg, src, group_src, "broadcast_object_list", "src")
    if pg.mpi is None:
        return
    got = pg.mpi.bcast_object(list(object_list) if pg.rank() == root else None, root)
    if len(got) != len(object_list):
        raise ValueError(f"ember.distributed.broadcast_object_list: rank {root} sent {len(got)} objects but this "
                         f"rank's list holds {len(object_list)}")
    object_list[:] = got


def any_across_ranks(flag: bool, group=None) -> bool:
    """True on every rank when flag is True on any rank (one small all-reduce; GradScaler's inf check)."""
    pg = resolve(group)
    if pg is None or pg.size() == 1 or pg.mpi is None:
        return bool(flag)
    return bool(pg.mpi.max_int64(np.array([1 if flag else 0], np.int64))[0])


def _xp(a):
    """numpy or cupy: the module of an array."""
    if isinstance(a, np.ndarray):
        return np
    import cupy
    return cupy
