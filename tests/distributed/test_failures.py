"""A rank that raises, dies, or stops calling collectives ends the whole job with a non-zero exit
status well within the test's timeout: never a hang."""
import pytest

from dist_helpers import needs_mpi, run_ranks

pytestmark = needs_mpi


@pytest.mark.parametrize("mode", ["raise", "kill", "timeout"])
def test_failing_rank_ends_the_job(mode):
    res = run_ranks(2, "w_failure.py", mode, timeout=90)
    assert not res.timed_out, str(res)
    assert res.returncode != 0, str(res)
    assert "was not stopped" not in res.stdout, str(res)
    if mode == "raise":
        assert "rank 1 fails on purpose" in res.stderr, str(res)
    if mode == "timeout":
        assert "did not complete within 0:00:02" in res.stderr, str(res)
