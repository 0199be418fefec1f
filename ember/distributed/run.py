"""The launcher: `python -m ember.distributed.run [options] train.py [args...]` (torchrun's role).

    python -m ember.distributed.run --nproc-per-node 2 train.py --epochs 3
    python -m ember.distributed.run --nnodes 2 --nproc-per-node 8 --hostfile hosts --iface eth0 train.py

It runs `mpiexec -n N python -m mpi4py -m ember.distributed._bootstrap train.py args...`: MPI starts
the ranks (on several hosts through a hostfile and ssh), `-m mpi4py` aborts the whole job when any
rank raises, and the bootstrap sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE as torchrun
does. Each rank gets one BLAS/OpenMP/ember thread unless --threads-per-proc (or the variables
already in the environment) say otherwise: N ranks times all-core BLAS would oversubscribe the CPU.
The exit status is mpiexec's: non-zero when any rank failed. --timeout ends a job that runs too
long (MPIEXEC_TIMEOUT), so a deadlock cannot hold a CI run forever.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "EMBER_NUM_THREADS")


def find_mpiexec(explicit: str | None = None) -> str:
    """mpiexec next to this Python (the mpich wheel installs it there), else on PATH."""
    if explicit:
        return explicit
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(here):
        return here
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("ember.distributed.run: mpiexec not found. Install the distributed extra: "
                         "pip install 'ember[distributed]' (mpi4py and mpich), or pass --mpiexec PATH")
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ember.distributed.run",
                                description="Start a data-parallel ember job on MPI (torchrun's role).")
    p.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1, help="processes per host")
    p.add_argument("--nnodes", type=int, default=1, help="number of hosts (with --hostfile or --hosts)")
    p.add_argument("--hostfile", help="MPICH hostfile: one 'host[:slots]' per line")
    p.add_argument("--hosts", help="comma-separated host names (instead of --hostfile)")
    p.add_argument("--iface", help="network interface MPI uses between hosts (e.g. eth0, ib0)")
    p.add_argument("--threads-per-proc", type=int, default=None,
                   help="BLAS/OpenMP/ember threads per rank (default 1, or the value already in the environment)")
    p.add_argument("--timeout", type=int, default=None, help="end the whole job after this many seconds")
    p.add_argument("--mpiexec", help="the mpiexec to use (default: next to this Python, else on PATH)")
    p.add_argument("--dry-run", action="store_true", help="print the mpiexec command and exit")
    p.add_argument("-m", dest="module", action="store_true", help="run the target as a module (python -m ...)")
    p.add_argument("script", help="the training script (or module, with -m)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    return p


def build_command(a, env: dict) -> tuple[list[str], dict]:
    """The mpiexec command line and its environment."""
    if a.nproc_per_node < 1 or a.nnodes < 1:
        raise SystemExit("ember.distributed.run: --nproc-per-node and --nnodes must be at least 1")
    if a.nnodes > 1 and not (a.hostfile or a.hosts):
        raise SystemExit("ember.distributed.run: --nnodes > 1 needs --hostfile or --hosts to say where")
    env = dict(env)
    cmd = [find_mpiexec(a.mpiexec), "-n", str(a.nproc_per_node * a.nnodes)]
    if a.hostfile:
        cmd += ["-f", a.hostfile]
    if a.hosts:
        cmd += ["-hosts", a.hosts]
    if a.hostfile or a.hosts:
        cmd += ["-ppn", str(a.nproc_per_node)]
    if a.iface:
        cmd += ["-iface", a.iface]
    for var in THREAD_VARS:
        value = str(a.threads_per_proc) if a.threads_per_proc is not None else env.get(var, "1")
        cmd += ["-genv", var, value]     # -genv reaches the ranks on other hosts too
    if a.timeout:
        env["MPIEXEC_TIMEOUT"] = str(a.timeout)
    target = ["-m", a.script] if a.module else [a.script]
    cmd += [sys.executable, "-m", "mpi4py", "-m", "ember.distributed._bootstrap"] + target + list(a.args)
    return cmd, env


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    cmd, env = build_command(a, os.environ)
    if a.dry_run:
        print(" ".join(cmd))
        return 0
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
