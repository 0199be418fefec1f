"""The models the benchmarks train, written once for `import torch` and `import ember as torch`.

In: a framework module `T` (ember or torch).  Out: modules, optimizers and fixed inputs:

    model = make_mnist_net(T)                 # PyTorch's classic MNIST CNN (conv 1-10-20, fc 320-50-10)
    model = make_gpt(T)                       # 2-layer GPT, d 128, 4 heads, seq 64; forward(idx, targets) -> loss
    w = Workload("mnist_sgd")                 # inputs (numpy), optimizer and loss for one training step
    step = w.step(T, model)                   # zero_grad; loss = f(x, y); loss.backward(); opt.step()

Nothing here times anything (benchmarks/harness.py does) and nothing sets thread or OpenMP
variables: importing this module must leave PyTorch at its defaults.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

F32 = np.float32


def make_mnist_net(T):
    """The seed MNIST CNN, written once for `import torch` and `import ember as torch`."""
    nn, F = T.nn, T.nn.functional

    class Net(nn.Module):
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
            x = self.fc2(x)
            return F.log_softmax(x, dim=1)

    return Net()


def make_gpt(T, vocab=65, d=128, n_head=4, n_layer=2, block=64):
    """A 2-layer GPT (pre-LN, GELU MLP 4x, causal attention by masked_fill, tied embeddings); forward returns the loss."""
    nn, F = T.nn, T.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, 4 * d)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(4 * d, d)
            self.register_buffer("mask", T.tril(T.ones(block, block)).view(1, 1, block, block))

        def forward(self, x):
            B, L, C = x.shape
            hs = C // n_head
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q = q.view(B, L, n_head, hs).transpose(1, 2)
            k = k.view(B, L, n_head, hs).transpose(1, 2)
            v = v.view(B, L, n_head, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(self.mask[:, :, :L, :L] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(B, L, C)
            x = x + self.proj(y)
            return x + self.fc2(self.act(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, d)
            self.wpe = nn.Embedding(block, d)
            self.blocks = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(d)
            self.lm_head = nn.Linear(d, vocab, bias=False)
            self.lm_head.weight = self.wte.weight          # weight tying

        def forward(self, idx, targets):
            B, L = idx.shape
            pos = T.arange(L)
            x = self.wte(idx) + self.wpe(pos)
            for blk in self.blocks:
                x = blk(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return GPT()


def copy_params(dst, src, to_array: Callable, T) -> None:
    """Copy src's parameters into dst by name (works ember->ember and ember->torch)."""
    sp = dict(src.named_parameters())
    with T.no_grad():
        for n, p in dst.named_parameters():
            p.copy_(to_array(sp[n]))


def grads_of(model) -> list:
    return [(np.zeros(tuple(p.shape), F32) if p.grad is None else np.array(p.grad.detach().numpy()))
            for _, p in model.named_parameters()]


class Workload:
    """One training-step workload: `mnist` / `mnist_sgd` (SGD 0.01, momentum 0.5), `mnist_adam`
    (Adam 1e-3), `gpt` (AdamW 1e-3).  Inputs are fixed numpy arrays (seed 0)."""

    KINDS = ("mnist", "mnist_sgd", "mnist_adam", "gpt")

    def __init__(self, kind: str):
        if kind not in self.KINDS:
            raise ValueError(f"unknown workload {kind!r}; choose from {self.KINDS}")
        self.kind = kind
        self.model_kind = "gpt" if kind == "gpt" else "mnist"
        rng = np.random.default_rng(0)
        if self.model_kind == "mnist":
            self.inputs = [(rng.standard_normal((64, 1, 28, 28), F32) - F32(0.1307)) / F32(0.3081),
                           rng.integers(0, 10, 64).astype(np.int64)]
            self.size = "batch 64"
        else:
            self.inputs = [rng.integers(0, 65, (16, 64)).astype(np.int64),
                           rng.integers(0, 65, (16, 64)).astype(np.int64)]
            self.size = "batch 16×64, d128"

    def make(self, T):
        return make_mnist_net(T) if self.model_kind == "mnist" else make_gpt(T)

    def optimizer(self, T, model):
        if self.kind == "mnist_adam":
            return T.optim.Adam(model.parameters(), lr=1e-3)
        if self.model_kind == "mnist":
            return T.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
        return T.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_fn(self, T, model):
        if self.model_kind == "mnist":
            F = T.nn.functional
            return lambda x, y: F.nll_loss(model(x), y)
        return lambda x, y: model(x, y)

    def compiled_loss_fn(self, T, model):
        """(loss fn, the compiled object) with the model compiled; for MNIST the loss joins the
        same graph (a nested compile is inlined)."""
        cm = T.compile(model)
        if self.model_kind == "mnist":
            F = T.nn.functional
            cf = T.compile(lambda x, y: F.nll_loss(cm(x), y))
            return cf, cf
        return (lambda x, y: cm(x, y)), getattr(cm, "_compiled", cm)


def make_step(opt, loss_fn, args) -> Callable[[], object]:
    """One training step: zero_grad(); loss = loss_fn(*args); loss.backward(); opt.step()."""
    def step():
        opt.zero_grad()
        loss = loss_fn(*args)
        loss.backward()
        opt.step()
        return loss
    return step


def loss_and_grads(model, loss_fn, args) -> list:
    """[loss, grad of every parameter] as numpy arrays (parameters' .grad reset before and after)."""
    for p in model.parameters():
        p.grad = None
    loss = loss_fn(*args)
    loss.backward()
    out = [np.array(float(loss.item()))] + grads_of(model)
    for p in model.parameters():
        p.grad = None
    return out
