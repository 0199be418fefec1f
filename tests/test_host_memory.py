"""ember.kernels.host_memory: glibc's malloc keeps freed eager arrays for reuse (set at import), and
EMBER_MALLOC_TUNING=0 leaves it alone."""
import platform
import subprocess
import sys

import pytest

import ember  # noqa: F401  (importing ember tunes the allocator)
from ember.kernels import host_memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_import_tunes_glibc_malloc_once():
    assert host_memory.TUNED
    assert host_memory.tune()                      # idempotent
    assert host_memory.MMAP_THRESHOLD == 32 << 20 and host_memory.TRIM_THRESHOLD == 256 << 20


def test_opt_out_leaves_the_allocator_alone():
    code = "import ember; from ember.kernels import host_memory as h; print(h.TUNED)"
    env = {"EMBER_MALLOC_TUNING": "0", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
