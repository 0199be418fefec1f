"""Random numbers in compiled graphs: rand / randn / dropout run inside fused kernels (no eager step,
no F001 record), and compiled and eager runs with the same seed agree bit for bit -- values, dropout
masks, gradients and the generator state after the call -- on the LLVM pipeline and on the numpy
kernel-IR evaluator; odd sizes, float16/32/64, a kernel large enough to split over threads."""
import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember import diagnostics as records
from ember.compiler.interpreter import Interpreter
from ember.frontend import dispatch
from ember.passes import compile_graph
from ember.runtime.executor import Executor


def bits(t):
    a = t.detach().numpy() if isinstance(t, ember.Tensor) else np.asarray(t)
    return a.dtype, a.shape, a.tobytes()


def _draws(x):
    n = x.shape[0]
    return (ember.rand(n, 3) * x[:, None],
            ember.randn(n, dtype=ember.float64) + x.double(),
            ember.rand(2, n, dtype=ember.float16),
            ember.randn(5, n, dtype=ember.float16),
            F.dropout(x, 0.25))


@pytest.mark.parametrize("n", [1, 7, 131])
def test_compiled_draws_equal_eager_bit_for_bit(n):
    x = ember.randn(n)
    cf = ember.compile(_draws)
    for seed in (0, 12345):
        with records.collect() as recs:
            ember.manual_seed(seed)
            got = cf(x)
            state_c = ember.get_rng_state().tolist()
        ember.manual_seed(seed)
        want = _draws(x)
        assert ember.get_rng_state().tolist() == state_c
        for g, w in zip(got, want):
            assert bits(g) == bits(w)
        assert not [r for r in recs if r.code == "F001"], [str(r) for r in recs]
    assert cf.stats["compiles"] == 1


def test_consecutive_calls_draw_fresh_numbers_like_eager():
    cf = ember.compile(lambda: ember.rand(4, 4))
    ember.manual_seed(3)
    a, b = cf(), cf()
    ember.manual_seed(3)
    assert bits(a) == bits(ember.rand(4, 4)) and bits(b) == bits(ember.rand(4, 4))
    assert bits(a) != bits(b)


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_large_draw_split_over_threads(dist):
    f = (lambda: ember.rand(1031, 1021)) if dist == "uniform" else (lambda: ember.randn(1031, 1021))
    cf = ember.compile(f)
    ember.manual_seed(99)
    got = cf()
    ember.manual_seed(99)
    assert bits(got) == bits(f())


class DropNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 33), nn.Linear(33, 5)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def test_dropout_model_values_and_gradients_equal_eager():
    ember.manual_seed(0)
    model = DropNet()
    x = ember.randn(9, 12)
    cmodel = ember.compile(model)

    def step(m):
        model.zero_grad()
        ember.manual_seed(4)
        out = m(x)
        (out * out).sum().backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()}

    out_c, g_c = step(cmodel)
    out_e, g_e = step(model)
    # the mask is the same bit for bit: the same elements are zero
    np.testing.assert_array_equal(out_c.detach().numpy() == 0, out_e.detach().numpy() == 0)
    np.testing.assert_allclose(out_c.detach().numpy(), out_e.detach().numpy(), rtol=1e-5, atol=1e-6)
    for n in g_e:
        np.testing.assert_allclose(g_c[n].numpy(), g_e[n].numpy(), rtol=1e-4, atol=1e-6, err_msg=n)
    steps = cmodel._compiled.variants[-1].forward_exec.program.steps
    assert not [s for s in steps if type(s).__name__ == "EagerStep"]


@pytest.mark.parametrize("runner", ["numpy", "llvm"])
def test_fused_dropout_program_equals_interpreter_bit_for_bit(runner):
    """The traced graph of dropout -> relu -> scale through fusion and a runner equals the reference
    interpreter (eager kernels) exactly: mask, output and saved values."""
    def f(x):
        return F.relu(F.dropout(x, 0.4) * 3.0) + ember.randn(*x.shape)

    cf = ember.compile(f, backend="eager")
    cf(ember.randn(17, 5))
    g = cf.variants[-1].graph
    prog = compile_graph(g)
    assert not prog.eager_steps and len(prog.kernels) == 1
    xs = np.random.default_rng(0).standard_normal((17, 5)).astype(np.float32)
    key = np.array([77, 1 << 33], np.int64)
    got = Executor(prog, runner=runner, eager_kernels=dispatch.KERNELS).run([xs, key])
    want = Interpreter(g, np).run([xs, key])
    assert [bits(a) for a in got] == [bits(a) for a in want]


def test_dropout_training_step_compiles_without_interpreter_fallback():
    """Dropout feeding a transposed consumer goes through the loop_order pass, which must know the
    Random node (it once raised there, and the whole graph fell back to the interpreter: F002)."""
    from ember import diagnostics
    nn, F = ember.nn, ember.nn.functional

    class Net(nn.Module):        # PyTorch's classic MNIST example, with both of its dropouts
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 10, 5)
            self.conv2 = nn.Conv2d(10, 20, 5)
            self.conv2_drop = nn.Dropout2d()
            self.fc1 = nn.Linear(320, 50)
            self.fc2 = nn.Linear(50, 10)

        def forward(self, x):
            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
            x = F.relu(self.fc1(x.view(-1, 320)))
            x = F.dropout(x, training=self.training)
            return F.log_softmax(self.fc2(x), dim=1)

    ember.manual_seed(0)
    model = Net()
    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    x, y = ember.randn(4, 1, 28, 28), ember.randint(0, 10, (4,))

    @ember.compile
    def step(x, y):          # the whole training step: its programs go through loop_order
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss

    with diagnostics.collect() as recs:
        step(x, y)
    assert not [r for r in recs if r.code == "F002"], [str(r) for r in recs if r.code == "F002"]
