"""ember.distributed's single-process surface: importable without MPI running, PyTorch's names and
errors before init_process_group, backend strings, ReduceOp, Work handles. (Anything that starts
MPI runs in worker processes: see test_collectives.py.)"""
import subprocess
import sys

import pytest

import ember
import ember.distributed as dist
from ember.distributed.process_group import _parse_backend
from ember.distributed.reduce_op import as_op
from ember.distributed.work import Work
from dist_helpers import ROOT


def test_import_is_cheap_and_lazy():
    code = ("import sys, ember; d = ember.distributed; import ember.nn.parallel; "
            "print('mpi4py' in sys.modules, d is sys.modules['ember.distributed'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_not_initialized_errors():
    assert not dist.is_initialized() and dist.is_available()
    for fn in (dist.get_rank, dist.get_world_size, dist.barrier):
        with pytest.raises(ValueError, match="Default process group has not been initialized"):
            fn()
    with pytest.raises(ValueError, match="has not been initialized"):
        dist.all_reduce(ember.ones(2))
    with pytest.raises(ValueError, match="has not been initialized"):
        ember.nn.parallel.DistributedDataParallel(ember.nn.Linear(2, 2))


def test_backend_strings():
    assert _parse_backend("gloo") == ("gloo", {"cpu": "mpi"})
    assert _parse_backend("MPI") == ("mpi", {"cpu": "mpi"})
    assert _parse_backend("nccl") == ("nccl", {"cuda": "nccl"})
    assert _parse_backend("cpu:gloo,cuda:nccl")[1] == {"cpu": "mpi", "cuda": "nccl"}
    assert _parse_backend(None)[1]["cpu"] == "mpi"
    with pytest.raises(ValueError, match="Invalid backend"):
        _parse_backend("tcp")
    with pytest.raises(ValueError, match="invalid backend string"):
        _parse_backend("tpu:nccl")
    assert dist.Backend("GLOO") == dist.Backend.GLOO == "gloo"


def test_reduce_op():
    R = dist.ReduceOp
    assert {R.SUM, R.AVG, R.PRODUCT, R.MIN, R.MAX, R.BAND, R.BOR, R.BXOR} == set(R.RedOpType)
    assert as_op("avg", "x") is R.AVG and as_op(R.MAX, "x") is R.MAX
    with pytest.raises(ValueError, match="op must be a ReduceOp"):
        as_op(3, "all_reduce")


def test_work_handle():
    state = {"polls": 0, "done": []}

    def poll():
        state["polls"] += 1
        return state["polls"] >= 3
    w = Work("all_reduce", poll, ["t"])
    w.then(lambda: state["done"].append(1))
    assert not w.is_completed() and state["done"] == []
    assert w.wait() and w.is_completed() and w.is_success() and state["done"] == [1]
    assert w.result() == ["t"]
    never = Work("all_reduce", lambda: False, timeout=0.05)
    with pytest.raises(RuntimeError, match="did not complete within 0:00:00.05"):
        never.wait()
    assert isinstance(never.exception(), RuntimeError)
    done = Work("barrier", None)
    hit = []
    done.then(lambda: hit.append(1))
    assert hit == [1] and done.is_completed()
