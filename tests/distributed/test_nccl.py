"""The NCCL backend with world size 1 on a GPU (skipped without CuPy, NCCL and a GPU)."""
import os
import sys

import pytest

from dist_helpers import WORKERS, have_mpi, mpiexec, ok_lines, run_ranks


def _gpu_nccl() -> bool:
    import ember
    import ember.distributed as dist
    return ember.cuda.is_available() and dist.is_nccl_available()


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _gpu_nccl(), reason="needs CuPy with NCCL and a CUDA GPU")]


def test_nccl_world_of_one():
    worker = os.path.join(WORKERS, "w_nccl.py")
    cmd = ([mpiexec(), "-n", "1", sys.executable, "-m", "mpi4py", worker] if have_mpi()
           else [sys.executable, worker])
    res = run_ranks(1, "", command=cmd, timeout=300)
    assert res.returncode == 0 and not res.timed_out, str(res)
    ok_lines(res, 1)
