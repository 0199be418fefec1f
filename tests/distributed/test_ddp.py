"""DistributedDataParallel on 2 MPI ranks (batch 32 each) against one process on batch 64, float64:
SGD and Adam over 5 steps with one and several buckets, no_sync accumulation, BatchNorm buffers,
compiled models both ways round, find_unused_parameters, PyTorch's errors
(workers/w_ddp.py holds the cases)."""
from dist_helpers import needs_mpi, ok_lines, run_ranks

pytestmark = needs_mpi


def test_ddp_two_ranks_match_one_process():
    res = run_ranks(2, "w_ddp.py", timeout=240)
    assert res.returncode == 0 and not res.timed_out, str(res)
    for rest in ok_lines(res, 2).values():
        assert int(rest.split()[-1]) >= 70
