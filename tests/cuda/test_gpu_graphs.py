"""CUDA graphs on a real GPU (mode="reduce-overhead"): captures happen, CUDA accepts them, replays give
what kernel-by-kernel execution gives, and a step issues one graph launch per compiled program.
The same behaviour without a GPU (on the fake CuPy) is tests/cuda/test_cuda_graph.py."""
import copy

import numpy as np
import pytest

import ember as E
import ember.nn as nn
import ember.nn.functional as F
from ember import diagnostics as records
from tests.cuda.gpu_helpers import assert_close, gpu, to_numpy  # noqa: F401  (fixture)
from tests.cuda.test_gpu_models import CNN, mlp

pytestmark = pytest.mark.gpu


class TinyGPT(nn.Module):
    """Embedding (a gather forward, an eager index_add backward), attention-free MLP, cross entropy."""

    def __init__(self, vocab=50, d=32):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Embedding(16, d)
        self.ln, self.fc, self.head = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, vocab)

    def forward(self, idx, targets):
        pos = E.arange(idx.shape[1], device=idx.device)
        h = self.emb(idx) + self.pos(pos)
        logits = self.head(F.gelu(self.fc(self.ln(h))))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _train(model, mode, batches, opt_cls, **kw):
    """Losses, final parameters and the compiled function's stats of training a copy of model."""
    model = copy.deepcopy(model).to("cuda")
    opt = opt_cls(model.parameters(), **kw)
    compiled = E.compile(model, mode=mode)
    if isinstance(model, TinyGPT):
        loss_of = compiled                                  # returns the loss itself
    else:
        crit = F.nll_loss if isinstance(model, CNN) else F.cross_entropy
        loss_of = lambda x, y: crit(compiled(x), y)         # noqa: E731
    losses = []
    for xs in batches:
        opt.zero_grad()
        loss = loss_of(*[E.tensor(a, device="cuda") for a in xs])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [to_numpy(p) for p in model.parameters()], compiled._compiled.stats


def _batches(kind, n=6):
    rng = np.random.default_rng(0)
    if kind == "cnn":
        return [(rng.standard_normal((16, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 16))
                for _ in range(n)]
    if kind == "mlp":
        return [(rng.standard_normal((16, 32)).astype(np.float32), rng.integers(0, 10, 16)) for _ in range(n)]
    return [(rng.integers(0, 50, (4, 16)), rng.integers(0, 50, (4, 16))) for _ in range(n)]


@pytest.mark.parametrize("kind, make, opt_cls, kw", [
    ("mlp", mlp, E.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    ("cnn", CNN, E.optim.AdamW, {"lr": 1e-3}),
    ("gpt", TinyGPT, E.optim.AdamW, {"lr": 1e-3}),
])
def test_reduce_overhead_training_equals_default(gpu, kind, make, opt_cls, kw):
    E.manual_seed(0)
    model = make()
    batches = _batches(kind)
    with records.collect() as recs:
        l0, p0, s0 = _train(model, None, batches, opt_cls, **kw)
        l1, p1, s1 = _train(model, "reduce-overhead", batches, opt_cls, **kw)
    np.testing.assert_allclose(l1, l0, rtol=1e-5, atol=1e-6)
    for a, b in zip(p1, p0):
        assert_close(a, b, 1e-4, 1e-6, "parameter after training")
    refused = [str(r) for r in recs if r.code in ("C006", "C007")]
    assert not refused, refused                   # CUDA accepted every capture
    assert s1.get("cuda_graph_captures", 0) >= 1 and s1.get("cuda_graph_replays", 0) >= len(batches) - 2
    assert s1["cuda_launches"] < s0["cuda_launches"] and s1["cuda_syncs"] == 0
    if kind != "gpt":                             # the GPT backward has an eager index_add (C001)
        # forward and backward captured; at most a second instance each (outputs still held)
        assert 2 <= s1["cuda_graph_captures"] <= 4, [str(r) for r in recs]
        assert s1["cuda_graph_replays"] >= 2 * (len(batches) - 2)


def test_inference_is_one_graph_launch_per_call(gpu):
    from ember.runtime import cuda as rt
    E.manual_seed(1)
    model = CNN().to("cuda").eval()
    cm = E.compile(model, mode="reduce-overhead")
    x = E.randn(32, 1, 28, 28, device="cuda")
    with E.no_grad():
        ref = model(x)
        for _ in range(3):
            before = rt.COUNTER.snapshot()
            y = cm(x)
            after = rt.COUNTER.snapshot()
        assert_close(y, ref, 1e-4, 1e-5)
    assert after[2] - before[2] == 1                       # one graph replay
    assert rt.COUNTER.launches(before, after) == 2         # + the copy of x into its static buffer
    assert cm._compiled.stats["cuda_syncs"] == 0


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_out_of_range_index_raises_at_synchronize(gpu, mode):
    """No host sync inside a compiled call: the index error surfaces at ember.cuda.synchronize (as a
    device-side assert does in PyTorch), and the program keeps working afterwards."""
    emb = nn.Embedding(10, 4).to("cuda")
    cm = E.compile(emb, mode=mode)
    ok = E.tensor(np.array([1, 2, 3]), device="cuda")
    with E.no_grad():
        for _ in range(3):
            cm(ok)
        cm(E.tensor(np.array([1, 12, 3]), device="cuda"))
        with pytest.raises(IndexError, match="index 12 is out of bounds for dimension 0 with size 10"):
            E.cuda.synchronize()
        assert_close(cm(ok), emb(ok), 0, 0)
        E.cuda.synchronize()


@pytest.mark.parametrize("opt_cls, kw", [(E.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
                                         (E.optim.AdamW, {"lr": 1e-3})])
def test_whole_training_step_replays_by_default(gpu, opt_cls, kw):
    """zero_grad .. optimizer.step compiled as one function: CUDA graphs without asking, == eager."""
    E.manual_seed(0)
    base = CNN()
    runs = {}
    for compiled in (False, True):
        model = copy.deepcopy(base).to("cuda")
        opt = opt_cls(model.parameters(), **kw)

        def step(x, y):
            opt.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            opt.step()
            return loss
        fn = E.compile(step) if compiled else step
        losses = []
        for xs in _batches("cnn"):
            losses.append(fn(*[E.tensor(a, device="cuda") for a in xs]).item())
        runs[compiled] = losses, [to_numpy(p) for p in model.parameters()], fn
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(runs[True][1], runs[False][1]):
        assert_close(a, b, 1e-3, 1e-5, "parameter after training")
    st = runs[True][2].stats
    assert st.get("cuda_graph_captures", 0) >= 1 and st.get("cuda_graph_replays", 0) >= 3, st
    assert st["cuda_syncs"] == 0
