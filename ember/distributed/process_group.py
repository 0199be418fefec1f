"""Process groups: init_process_group and the questions scripts ask about the job (rank, size, ...).

    dist.init_process_group("mpi")       # or "gloo" (runs on MPI too), "nccl", "cpu:gloo,cuda:nccl", None
    dist.get_rank(), dist.get_world_size()

Ranks and the world size come from MPI (the job was started by `python -m ember.distributed.run`
or `mpiexec -n N python -m mpi4py script.py`); RANK / WORLD_SIZE set in the environment, and the
`rank=` / `world_size=` arguments, must agree with it. A group holds one backend per device type:
MPI for CPU tensors, NCCL (through CuPy) for CUDA tensors.

Every collective first agrees with the other ranks on what is being called (which collective, dtype,
shape, root): one small MPI all-reduce, so that a mismatch is a clear error on every rank rather
than a hang or garbage.
"""
from __future__ import annotations

import datetime
import os
import zlib

import numpy as np

__all__ = ["ProcessGroup", "Backend", "GroupMember", "group", "init_process_group", "destroy_process_group",
           "is_initialized", "is_available", "is_mpi_available", "is_nccl_available", "is_gloo_available",
           "get_rank", "get_world_size", "get_backend", "new_group", "get_process_group_ranks",
           "get_global_rank", "get_group_rank", "get_node_local_rank", "default_group"]

default_pg_timeout = datetime.timedelta(minutes=30)

_WIDTH = 16              # ints per agreement fingerprint: flag, call, op/root, dtype, rank, dims (hashed beyond)
_CODES: dict = {}

_NOT_INIT = ("Default process group has not been initialized, please make sure to call init_process_group.")


class Backend(str):
    """Backend names, as torch.distributed.Backend: Backend.MPI == "mpi"."""

    MPI = "mpi"
    GLOO = "gloo"
    NCCL = "nccl"
    UNDEFINED = "undefined"

    def __new__(cls, name: str):
        if not isinstance(name, str):
            raise ValueError(f"Backend name must be a string, but got: {name!r}")
        return str.__new__(cls, name.lower())


def is_available() -> bool:
    return True


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
        return True
    except ImportError:
        return False


is_gloo_available = is_mpi_available   # "gloo" scripts run on MPI here


def is_nccl_available() -> bool:
    try:
        from cupy.cuda import nccl  # noqa: F401
        return True
    except Exception:   # no cupy, or a cupy built without NCCL
        return False


def _need_mpi(why: str):
    try:
        from mpi4py import MPI
        return MPI
    except ImportError:
        raise RuntimeError(f"ember.distributed: {why} needs mpi4py and an MPI runtime: "
                           "pip install 'ember[distributed]' (installs mpi4py and mpich)") from None


def _parse_backend(backend) -> tuple[str, dict]:
    """'mpi' | 'gloo' | 'nccl' | 'cpu:gloo,cuda:nccl' | None -> (name, {device type: 'mpi'|'nccl'})."""
    if backend is None or str(backend).lower() == "undefined":
        spec = {"cpu": "mpi"}
        if is_nccl_available():
            from ..frontend.device import cuda_available
            if cuda_available():
                spec["cuda"] = "nccl"
        return "cpu:mpi,cuda:nccl" if "cuda" in spec else "mpi", spec
    name = str(backend).lower()
    kinds = {"mpi": "mpi", "gloo": "mpi", "nccl": "nccl"}
    if ":" in name:
        spec = {}
        for part in name.split(","):
            dev, _, b = part.partition(":")
            if dev.strip() not in ("cpu", "cuda") or b.strip() not in kinds:
                raise ValueError(f"ember.distributed: invalid backend string {backend!r}: expected e.g. "
                                 "'cpu:gloo,cuda:nccl'")
            spec[dev.strip()] = kinds[b.strip()]
        return name, spec
    if name not in kinds:
        raise ValueError(f"Invalid backend: '{backend}'. ember.distributed supports 'mpi', 'gloo' (which runs on "
                         "MPI), 'nccl' (CUDA tensors through CuPy), or a device map like 'cpu:gloo,cuda:nccl'")
    return name, ({"cpu": "mpi"} if kinds[name] == "mpi" else {"cuda": "nccl"})


class ProcessGroup:
    """A set of ranks that run collectives together, with one backend per device type."""

    def __init__(self, backend_name: str, spec: dict, comm, ranks: list[int], rank: int, timeout):
        self.backend_name = backend_name
        self.comm = comm                   # an MPI communicator (a Dup of the world's), or None
        self.ranks = ranks                 # global ranks, in group-rank order
        self._rank = rank
        self._size = len(ranks)
        self.timeout = timeout
        self._spec = spec
        self._backends: dict = {}
        if comm is not None:
            from .mpi_backend import MpiBackend
            self._mpi = MpiBackend(comm, timeout)
        else:
            self._mpi = None

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def name(self) -> str:
        return self.backend_name

    def __repr__(self):
        return f"<ember.distributed.ProcessGroup {self.backend_name} rank {self._rank} of {self._size}>"

    def backend_for(self, device_type: str, what: str):
        kind = self._spec.get(device_type)
        if kind is None:
            raise RuntimeError(f"ember.distributed.{what}: No backend type associated with device type "
                               f"{device_type} (this group's backend is {self.backend_name!r}; use 'mpi'/'gloo' for "
                               "CPU tensors, 'nccl' for CUDA tensors, or 'cpu:gloo,cuda:nccl' for both)")
        be = self._backends.get(kind)
        if be is None:
            if kind == "mpi":
                be = self._mpi
            else:
                if not is_nccl_available():
                    raise RuntimeError("ember.distributed: the 'nccl' backend needs CuPy with NCCL "
                                       "(pip install 'ember[cuda]') on a machine with NVIDIA GPUs")
                from .nccl_backend import NcclBackend
                be = NcclBackend(self.comm, self._rank, self._size, self.timeout)
            self._backends[kind] = be
        return be

    @property
    def mpi(self):
        """The MPI backend (host-side agreement, objects, barriers), or None for a one-process NCCL group."""
        return self._mpi

    # ----------------------------------------------------------------------- agreement check
    def agree(self, what: str, fingerprint: tuple | None, desc, error: BaseException | None) -> None:
        """Raise on every rank when any rank failed its local checks (`error`) or the ranks are not
        calling the same thing (`fingerprint`: ints naming the collective, dtype, shape, root, op).
        desc: this rank's call in words (or a function making it), for the error message."""
        if self._size == 1 or self._mpi is None:
            if error is not None:
                raise error
            return
        code = _CODES.get(what)
        if code is None:
            code = _CODES[what] = zlib.crc32(what.encode())
        fp = [1 if error is not None else 0, code, *(fingerprint or ())]
        fp = fp + [-1] * (_WIDTH - len(fp)) if len(fp) <= _WIDTH else fp[:_WIDTH - 1] + [zlib.crc32(repr(fp).encode())]
        # one MAX all-reduce of (v, -v) gives every rank both the max and the min of each entry
        both = self._mpi.max_int64(np.array(fp + [-x for x in fp], np.int64),
                                   f"{what} (checking that every rank makes the same call)").tolist()
        failed = both[0] > 0
        if not failed and both[:_WIDTH] == [-x for x in both[_WIDTH:]]:
            return
        desc = desc() if callable(desc) else desc
        reports = self._mpi.allgather_object((desc, None if error is None else f"{type(error).__name__}: {error}"))
        if error is not None:
            raise error
        if failed:
            bad = [f"rank {r}: {e}" for r, (_, e) in enumerate(reports) if e is not None]
            raise RuntimeError(f"ember.distributed.{what}: another rank failed in this collective: " + "; ".join(bad))
        calls = ", ".join(f"rank {r}: {d}" for r, (d, _) in enumerate(reports))
        raise RuntimeError(f"ember.distributed.{what}: the ranks made different calls ({calls}). Every rank must call "
                           "the same collective, in the same order, with tensors of the same shape and dtype.")

    def free(self) -> None:
        for be in self._backends.values():
            if be is not self._mpi:
                be.free()
        if self._mpi is not None:
            self._mpi.free()
        self._backends.clear()
        self._mpi = None
        self.comm = None
        self._freed = True


class _NonMember:
    def __repr__(self):
        return "GroupMember.NON_GROUP_MEMBER"


class GroupMember:
    NON_GROUP_MEMBER = _NonMember()

    @classmethod
    def _world(cls):
        return _world


class _WorldDescriptor:
    def __get__(self, obj, cls):
        return _world


GroupMember.WORLD = _WorldDescriptor()


class group:
    """dist.group.WORLD: the default process group."""

    WORLD = _WorldDescriptor()


_world: ProcessGroup | None = None
_groups: list[ProcessGroup] = []
_local_rank = 0


def default_group() -> ProcessGroup:
    if _world is None:
        raise ValueError(_NOT_INIT)
    return _world


def resolve(grp) -> ProcessGroup | None:
    """The group a call names (None: the default one); None when this rank is not a member."""
    if grp is None or grp is GroupMember.WORLD:
        return default_group()
    if grp is GroupMember.NON_GROUP_MEMBER:
        return None
    if not isinstance(grp, ProcessGroup):
        raise TypeError(f"ember.distributed: group must be a ProcessGroup, got {type(grp).__name__}")
    if getattr(grp, "_freed", False):
        raise ValueError("ember.distributed: this process group has been destroyed")
    return grp


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"ember.distributed: environment variable {name}={v!r} is not an integer") from None


def init_process_group(backend=None, init_method=None, timeout=None, world_size: int = -1, rank: int = -1,
                       store=None, group_name: str = "", pg_options=None, device_id=None) -> None:
    """Join the job's default process group (torch.distributed.init_process_group).

    init_method and store are accepted for compatibility; the rendezvous is MPI's (the launcher
    already connected the processes)."""
    global _world, _local_rank
    if _world is not None:
        raise ValueError("trying to initialize the default process group twice!")
    name, spec = _parse_backend(backend)
    if timeout is None:
        timeout = default_pg_timeout
    elif not isinstance(timeout, datetime.timedelta):
        raise TypeError(f"Expected timeout argument to be of type datetime.timedelta, got {type(timeout).__name__}")
    env_size = _env_int("WORLD_SIZE")
    env_rank = _env_int("RANK")
    want_size = world_size if world_size not in (None, -1) else env_size
    want_rank = rank if rank not in (None, -1) else env_rank
    use_mpi = "cpu" in spec or is_mpi_available() or (want_size or 1) > 1
    if use_mpi:
        MPI = _need_mpi(f"backend {name!r}" if "cpu" in spec else "a job of several processes")
        comm = MPI.COMM_WORLD.Dup()
        r, n = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=r)
        _local_rank, local_size = local.Get_rank(), local.Get_size()
        local.Free()
    else:
        comm, r, n = None, 0, 1
        _local_rank, local_size = 0, 1
    if want_size is not None and want_size != n:
        if comm is not None:
            comm.Free()
        src = "world_size" if world_size not in (None, -1) else "WORLD_SIZE"
        raise RuntimeError(f"ember.distributed: {src}={want_size} but MPI started {n} process(es). ember's process "
                           f"groups run on MPI: launch with `python -m ember.distributed.run --nproc-per-node "
                           f"{want_size} script.py` (or `mpiexec -n {want_size} python -m mpi4py script.py`)")
    if want_rank is not None and want_rank != r:
        if comm is not None:
            comm.Free()
        src = "rank" if rank not in (None, -1) else "RANK"
        raise RuntimeError(f"ember.distributed: {src}={want_rank} but MPI gave this process rank {r}; the ranks "
                           "come from the MPI launcher and cannot be chosen")
    for k, v in (("RANK", r), ("WORLD_SIZE", n), ("LOCAL_RANK", _local_rank), ("LOCAL_WORLD_SIZE", local_size)):
        os.environ.setdefault(k, str(v))   # scripts read these after init, as under torchrun
    if device_id is not None:
        from .. import cuda
        cuda.set_device(device_id)
    _world = ProcessGroup(name, spec, comm, list(range(n)), r, timeout)
    _groups.append(_world)


def destroy_process_group(group=None) -> None:
    """Free a group's communicators (all groups, and the default one, when group is None)."""
    global _world
    if group is None or group is _world:
        if _world is None:
            raise ValueError(_NOT_INIT)
        for g in _groups:
            g.free()
        _groups.clear()
        _world = None
        return
    if group is GroupMember.NON_GROUP_MEMBER:
        return
    group.free()
    if group in _groups:
        _groups.remove(group)


def is_initialized() -> bool:
    return _world is not None


def get_rank(group=None) -> int:
    """This process's rank in `group` (-1 when it is not a member)."""
    g = resolve(group)
    return -1 if g is None else g.rank()


def get_world_size(group=None) -> int:
    g = resolve(group)
    return -1 if g is None else g.size()


def get_backend(group=None) -> str:
    g = resolve(group)
    if g is None:
        raise ValueError("Invalid process group specified")
    return Backend(g.backend_name)


def get_node_local_rank(fallback_rank: int | None = None) -> int:
    """This process's index among the ranks on its host (LOCAL_RANK)."""
    v = _env_int("LOCAL_RANK")
    if v is not None:
        return v
    if _world is not None:
        return _local_rank
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError("LOCAL_RANK is not in the environment. Consider passing fallback_rank to allow "
                       "`get_node_local_rank` to work, assuming you are not running in a multi-device context "
                       "and want the code to run locally instead.")


def get_process_group_ranks(group) -> list[int]:
    g = resolve(group)
    return [] if g is None else list(g.ranks)


def get_global_rank(group, group_rank: int) -> int:
    g = resolve(group)
    if g is None or not 0 <= group_rank < g.size():
        raise ValueError(f"Group rank {group_rank} is not part of group {group}")
    return g.ranks[group_rank]


def get_group_rank(group, global_rank: int) -> int:
    g = resolve(group)
    if g is None or global_rank not in g.ranks:
        raise ValueError(f"Global rank {global_rank} is not part of group {group}")
    return g.ranks.index(global_rank)


def new_group(ranks=None, timeout=None, backend=None, pg_options=None, use_local_synchronization=False,
              group_desc=None, device_id=None):
    """A group of some ranks. Every rank of the default group must call it (as in PyTorch); the
    ranks outside get GroupMember.NON_GROUP_MEMBER."""
    world = default_group()
    n = world.size()
    members = list(range(n)) if ranks is None else sorted(set(int(r) for r in ranks))
    for r in members:
        if not 0 <= r < n:
            raise ValueError(f"ember.distributed.new_group: rank {r} is outside the world (size {n})")
    name, spec = (world.backend_name, world._spec) if backend is None else _parse_backend(backend)
    timeout = timeout or world.timeout
    if world.comm is None:     # a one-process world without MPI
        return ProcessGroup(name, spec, None, members, 0, timeout) if members else GroupMember.NON_GROUP_MEMBER
    sub = world.comm.Create(world.comm.Get_group().Incl(members))
    MPI = _need_mpi("new_group")
    if sub == MPI.COMM_NULL:
        return GroupMember.NON_GROUP_MEMBER
    g = ProcessGroup(name, spec, sub, members, sub.Get_rank(), timeout)
    _groups.append(g)
    return g
