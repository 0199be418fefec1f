"""Run a worker script on N MPI ranks for the distributed tests.

Every run has a timeout (a hung collective fails the test, it never hangs the suite), one BLAS /
OpenMP / ember thread per rank (the machine has few cores), and this checkout first on the path.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKERS = os.path.join(HERE, "workers")
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "EMBER_NUM_THREADS": "1"}


def mpiexec() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def have_mpi() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return mpiexec() is not None


needs_mpi = pytest.mark.skipif(not have_mpi(), reason="needs mpi4py and mpiexec: pip install 'ember[distributed]'")


def env() -> dict:
    e = dict(os.environ)
    e.update(THREADS)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("MPIEXEC_TIMEOUT", None)
    return e


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str, seconds: float, timed_out: bool):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.timed_out = timed_out

    def __str__(self):
        return (f"rc={self.returncode} after {self.seconds:.1f}s (timed out: {self.timed_out})\n--- stdout\n"
                f"{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}")


def run_ranks(n: int, worker: str, *args: str, timeout: float = 120.0, command: list[str] | None = None) -> Result:
    """`mpiexec -n n python -m mpi4py workers/<worker> args...` (or `command`). After timeout the whole
    process group (mpiexec and every rank) is killed, so nothing outlives the test."""
    cmd = command or [mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", os.path.join(WORKERS, worker),
                      *args]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)      # our own session: mpiexec and the ranks it started
        out, err = proc.communicate()
        timed_out = True
    r = Result(proc.returncode, out, err, time.monotonic() - t0, timed_out)
    return r


def ok_lines(res: Result, n: int, tag: str = "OK") -> dict[int, str]:
    """{rank: the rest of its line} from the "<tag> rank <r> ..." lines a worker prints; every rank
    must have printed one. (Ranks share the pipe, so lines may interleave: match, don't split.)"""
    found = {int(m.group(1)): m.group(2) for m in re.finditer(rf"{tag} rank (\d+)([^\n]*?)(?=OK rank|\n|$)",
                                                             res.stdout)}
    assert sorted(found) == list(range(n)), str(res)
    return found
