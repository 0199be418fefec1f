"""Collectives on 1, 2 and 3 MPI ranks: every dtype and op against numpy, async work handles,
mismatched calls giving clear errors on every rank, new_group, GradScaler's inf agreement
(workers/w_collectives.py holds the cases; one mpiexec run per world size)."""
import pytest

from dist_helpers import needs_mpi, ok_lines, run_ranks

pytestmark = needs_mpi


@pytest.mark.parametrize("n", [1, 2, 3])
def test_collectives_against_numpy(n):
    res = run_ranks(n, "w_collectives.py", timeout=180)
    assert res.returncode == 0 and not res.timed_out, str(res)
    for rest in ok_lines(res, n).values():
        assert int(rest.split()[-1]) > 250      # every rank ran the whole table
