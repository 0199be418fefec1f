"""ember.distributed: torch.distributed's API for data-parallel training across processes and hosts.

    import ember.distributed as dist
    dist.init_process_group("mpi")               # "gloo" works too (it runs on MPI); "nccl" for GPUs
    dist.all_reduce(t, op=dist.ReduceOp.SUM)     # in place, on every rank
    work = dist.all_reduce(t, async_op=True); ...; work.wait()

Start the processes with `python -m ember.distributed.run --nproc-per-node 2 train.py` (or
`mpiexec -n 2 python -m mpi4py train.py`). CPU tensors travel through MPI (mpi4py on their numpy
memory, no pickling); CUDA tensors through NCCL (CuPy), one GPU per rank. See docs/distributed.md.
Importing this package is cheap: mpi4py loads in init_process_group.
"""
from __future__ import annotations

from .reduce_op import ReduceOp
from .work import Work
from .process_group import (Backend, GroupMember, ProcessGroup, default_pg_timeout, destroy_process_group,
                            get_backend, get_global_rank, get_group_rank, get_node_local_rank, get_process_group_ranks,
                            get_rank, get_world_size, group, init_process_group, is_available, is_gloo_available,
                            is_initialized, is_mpi_available, is_nccl_available, new_group)
from .collectives import (all_gather, all_gather_into_tensor, all_gather_object, all_reduce, any_across_ranks,
                          barrier, broadcast, broadcast_object_list, gather, reduce, reduce_scatter,
                          reduce_scatter_tensor, scatter)

__all__ = ["ReduceOp", "Work", "Backend", "GroupMember", "ProcessGroup", "group", "default_pg_timeout",
           "init_process_group", "destroy_process_group", "is_initialized", "is_available", "is_mpi_available",
           "is_nccl_available", "is_gloo_available", "get_rank", "get_world_size", "get_backend",
           "get_node_local_rank", "get_process_group_ranks", "get_global_rank", "get_group_rank", "new_group",
           "all_reduce", "reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
           "reduce_scatter_tensor", "gather", "scatter", "barrier", "all_gather_object", "broadcast_object_list",
           "any_across_ranks"]
