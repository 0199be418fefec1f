"""The README's command: examples/mnist_ddp.py on 2 processes through the launcher (--dry-run:
two training batches and one test batch per rank; slow-marked, it loads MNIST on both ranks)."""
import os
import sys

import pytest

from dist_helpers import ROOT, needs_mpi, run_ranks

pytestmark = [needs_mpi, pytest.mark.slow]


def test_mnist_ddp_dry_run_on_two_processes():
    cmd = [sys.executable, "-m", "ember.distributed.run", "--nproc-per-node", "2", "--timeout", "240",
           os.path.join(ROOT, "examples", "mnist_ddp.py"), "--dry-run"]
    res = run_ranks(2, "", command=cmd, timeout=300)
    assert res.returncode == 0 and not res.timed_out, str(res)
    out = res.stdout
    assert out.count("training on 2 rank(s)") == 1          # rank 0 logs, rank 1 stays quiet
    assert "Test set: Average loss" in out and "Accuracy: " in out and "/2000 " in out
    assert "summary: test accuracy" in out
