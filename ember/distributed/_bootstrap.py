"""Per-rank start-up the launcher puts before the training script (python -m mpi4py -m this script ...).

It sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE from the MPI launcher's variables (MPICH's
hydra: PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS; Open MPI: OMPI_COMM_WORLD_*), as
torchrun does, so a script may read them before init_process_group; then runs the script as
__main__. Running under `python -m mpi4py` means an uncaught exception on any rank aborts the job.
"""
from __future__ import annotations

import os
import runpy
import sys

_SOURCES = {
    "RANK": ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"),
    "WORLD_SIZE": ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"),
    "LOCAL_RANK": ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK"),
    "LOCAL_WORLD_SIZE": ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"),
}


def set_rank_environment(env=os.environ) -> None:
    for name, sources in _SOURCES.items():
        for src in sources:
            if env.get(src, "") != "":
                env[name] = env[src]     # the launcher's values win over inherited ones
                break


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m mpi4py -m ember.distributed._bootstrap script.py [args...] "
                         "| -m module [args...]")
    set_rank_environment()
    if argv[0] == "-m":
        if len(argv) < 2:
            raise SystemExit("ember.distributed._bootstrap: -m needs a module name")
        sys.argv[:] = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv[:] = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
