"""nn.DataParallel: without CUDA it runs the module as is; its scatter -> replicate -> run -> gather
path (run here over two "devices" that are both the CPU) gives the module's output and, summed over
the replicas, the whole batch's gradients."""
import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.nn.parallel import data_parallel

torch = pytest.importorskip("torch")


def model():
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)).double()


def test_cpu_runs_the_module_as_is():
    m = model()
    dp = nn.DataParallel(m)
    x = ember.tensor(np.random.default_rng(0).standard_normal((6, 5)))
    assert dp.device_ids == [] and dp.module is m
    assert ember.equal(dp(x), m(x))
    assert list(dp.state_dict()) == ["module." + k for k in m.state_dict()]


@pytest.mark.parametrize("batch", [6, 7, 1])
def test_scatter_replicate_gather_path(batch):
    m, ref = model(), model()
    dp = nn.DataParallel(m)
    cpu = ember.device("cpu")
    x = ember.tensor(np.random.default_rng(1).standard_normal((batch, 5)))
    out = dp._run_on([cpu, cpu], cpu, (x,), {})
    want = ref(x)
    assert out.shape == want.shape and ember.allclose(out, want)
    out.pow(2).sum().backward()
    want.pow(2).sum().backward()
    for p, q in zip(m.parameters(), ref.parameters()):
        assert ember.allclose(p.grad, q.grad)


def test_scatter_and_gather_structures():
    cpu = ember.device("cpu")
    x = ember.arange(10.0).reshape(5, 2)
    parts = data_parallel.scatter((x, {"k": x, "n": 3}, "tag"), [cpu, cpu, cpu], 0)
    assert len(parts) == 3 and [p[0].shape[0] for p in parts] == [2, 2, 1]
    assert parts[1][1]["n"] == 3 and parts[2][2] == "tag"
    back = data_parallel.gather([p[0] for p in parts], cpu, 0)
    assert ember.equal(back, x)
    losses = data_parallel.gather([ember.tensor(1.0), ember.tensor(2.0)], cpu, 0)
    assert losses.tolist() == [1.0, 2.0]                   # scalars stack, as in PyTorch
