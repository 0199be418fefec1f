"""Whole models through ember.compile: zero graph breaks, values and gradients equal to eager,
on the reference interpreter ("eager") and on the LLVM pipeline ("auto")."""
import math

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember import diagnostics as records


class MnistNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 32), nn.LayerNorm(32), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(32, 32), nn.GELU(approximate="tanh"), nn.Linear(32, 5))

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, d=32, heads=4, T=8):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.register_buffer("mask", ember.tril(ember.ones(T, T)).view(1, 1, T, T))

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    def __init__(self, vocab=17, d=32, T=8):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList([Block(d, 4, T), Block(d, 4, T)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(ember.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.c(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _case(name):
    ember.manual_seed(0)
    if name == "mnist":
        return MnistNet(), (ember.randn(8, 1, 28, 28),), lambda out: F.nll_loss(out, ember.tensor([1, 2, 3, 4, 5, 6, 7, 8]))
    if name == "mlp":
        return MLP(), (ember.randn(6, 12),), lambda out: (out ** 2).mean()
    if name == "gpt":
        return TinyGPT(), (ember.randint(0, 17, (2, 8)), ember.randint(0, 17, (2, 8))), lambda out: out
    return BNNet(), (ember.randn(4, 3, 6, 6),), lambda out: out.sum()


def _run(model, args, loss_fn, seed):
    model.zero_grad()
    ember.manual_seed(seed)
    out = model(*args)
    loss = loss_fn(out)
    loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), out.detach().numpy().copy(), grads


@pytest.mark.parametrize("backend", ["eager", "auto"])
@pytest.mark.parametrize("name", ["mnist", "mlp", "gpt", "bn"])
@pytest.mark.parametrize("training", [True, False])
def test_model_compiles_without_breaks_and_matches_eager(name, backend, training):
    model, args, loss_fn = _case(name)
    model.train(training)
    cmodel = ember.compile(model, backend=backend)
    bufs0 = {n: b.numpy().copy() for n, b in model.named_buffers()}
    with records.collect() as recs:
        c_loss, c_out, c_grads = _run(cmodel, args, loss_fn, seed=3)
    bufs_c = {n: b.numpy().copy() for n, b in model.named_buffers()}
    for n, b in model.named_buffers():          # undo the compiled call's buffer updates
        b.copy_(ember.tensor(bufs0[n]))
    e_loss, e_out, e_grads = _run(model, args, loss_fn, seed=3)
    bad = [str(r) for r in recs if r.kind == "breaks" or r.code == "F002"]
    assert not bad, bad
    assert cmodel._compiled.stats["compiles"] == 1
    np.testing.assert_allclose(c_out, e_out, rtol=2e-4, atol=2e-5)
    assert abs(c_loss - e_loss) <= 1e-4 * max(1.0, abs(e_loss))
    assert c_grads.keys() == e_grads.keys()
    for n in e_grads:
        np.testing.assert_allclose(c_grads[n], e_grads[n], rtol=2e-3, atol=2e-5, err_msg=n)
    for n, b in model.named_buffers():          # running statistics: written back identically
        np.testing.assert_allclose(bufs_c[n], b.numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def test_train_eval_switch_is_a_guard():
    model, args, _ = _case("bn")
    cmodel = ember.compile(model, backend="eager")
    cmodel(*args)
    model.eval()
    cmodel(*args)
    model.train()
    cmodel(*args)
    assert cmodel._compiled.stats["compiles"] == 2
    assert state_keys(cmodel) == state_keys(model)


def state_keys(m):
    return list(m.state_dict().keys())


def test_function_closing_over_a_module_guards_its_training_flag():
    model, args, _ = _case("mlp")
    f = ember.compile(lambda x: model(x).sum(), backend="eager")
    model.train()
    ember.manual_seed(1)
    a = f(*args).item()
    model.eval()
    b = f(*args).item()
    ember.manual_seed(1)
    e = model(*args).sum().item()
    assert abs(b - e) < 1e-5      # eval mode: no dropout, like eager
    assert f.stats["compiles"] == 2
    assert a != b
