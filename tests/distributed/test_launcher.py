"""python -m ember.distributed.run: the mpiexec command it builds (hosts, interface, threads, timeout)
and a real 2-rank run: torchrun's environment variables, one thread per rank, a failing rank's exit
status."""
import sys

import pytest

from dist_helpers import needs_mpi, run_ranks
from ember.distributed import run as launcher


def command(*argv, env=None):
    return launcher.build_command(launcher.parser().parse_args(list(argv)), env or {})


def test_command_single_host():
    cmd, env = command("--nproc-per-node", "3", "--mpiexec", "mpiexec", "train.py", "--lr", "0.1")
    assert cmd[:3] == ["mpiexec", "-n", "3"]
    tail = cmd[cmd.index(sys.executable):]
    assert tail == [sys.executable, "-m", "mpi4py", "-m", "ember.distributed._bootstrap", "train.py", "--lr", "0.1"]
    for var in launcher.THREAD_VARS:
        i = cmd.index(var)
        assert cmd[i - 1] == "-genv" and cmd[i + 1] == "1"
    assert "-f" not in cmd and "MPIEXEC_TIMEOUT" not in env


def test_command_multi_host():
    cmd, env = command("--nnodes", "2", "--nproc-per-node", "8", "--hostfile", "hosts", "--iface", "ib0",
                       "--threads-per-proc", "4", "--timeout", "600", "--mpiexec", "mpiexec", "-m", "pkg.train")
    s = " ".join(cmd)
    assert "-n 16 -f hosts -ppn 8 -iface ib0" in s
    assert "-genv OMP_NUM_THREADS 4" in s and env["MPIEXEC_TIMEOUT"] == "600"
    assert s.endswith("-m ember.distributed._bootstrap -m pkg.train")


def test_command_keeps_thread_settings_from_the_environment_and_checks_hosts():
    cmd, _ = command("--mpiexec", "mpiexec", "t.py", env={"OMP_NUM_THREADS": "2"})
    assert "-genv OMP_NUM_THREADS 2" in " ".join(cmd)
    with pytest.raises(SystemExit, match="hostfile"):
        command("--nnodes", "2", "--mpiexec", "mpiexec", "t.py")


@needs_mpi
def test_two_ranks_get_torchrun_variables_and_a_failing_rank_fails_the_job(tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import os, sys\n"
                      "v = [os.environ[k] for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE',\n"
                      "     'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'EMBER_NUM_THREADS')]\n"
                      "sys.stdout.write('ENV rank ' + ' '.join(v + sys.argv[1:]) + '\\n')\n"
                      "sys.stdout.flush()\n"
                      "import ember.distributed as dist\n"
                      "dist.init_process_group('mpi')\n"
                      "dist.barrier()                 # both have printed\n"
                      "if v[0] == '1': raise SystemExit('rank 1 says no')\n"
                      "dist.barrier()                 # rank 0 waits here until the job is ended\n")
    cmd = [sys.executable, "-m", "ember.distributed.run", "--nproc-per-node", "2", "--timeout", "60",
           str(script), "--x", "1"]
    res = run_ranks(2, "", command=cmd, timeout=90)
    lines = sorted(ln for ln in res.stdout.splitlines() if ln.startswith("ENV rank"))
    assert lines == ["ENV rank 0 0 2 2 1 1 1 --x 1", "ENV rank 1 1 2 2 1 1 1 --x 1"], str(res)
    assert res.returncode != 0 and not res.timed_out and "rank 1 says no" in res.stderr, str(res)


def test_bootstrap_reads_mpich_and_open_mpi_variables():
    from ember.distributed import _bootstrap
    env = {"PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2", "RANK": "9"}
    _bootstrap.set_rank_environment(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == ("3", "4", "1", "2")
    env = {"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "6", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}
    _bootstrap.set_rank_environment(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("5", "6", "0")
