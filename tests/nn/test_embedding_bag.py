"""embedding_bag with offsets (include_last_offset, empty bags), per-sample weights, padding_idx left out
of bags, 2-D input, and embedding's scale_grad_by_freq -- values and gradients against torch."""
import itertools

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")
W = np.sin(np.arange(30.0)).reshape(10, 3).astype(np.float32)


def _run(lib, fl, mode, pad, last, weighted):
    w = lib.tensor(W, requires_grad=True)
    inp = lib.tensor([1, 2, 4, 5, 4, 3, 2, 9, 0, 0])
    off = lib.tensor([0, 4, 4, 8, 10] if last else [0, 4, 4, 8])          # bag 1 is empty
    psw = lib.tensor(np.linspace(0.5, 2, 10).astype(np.float32)) if weighted else None
    out = fl.embedding_bag(inp, w, off, mode=mode, padding_idx=pad, include_last_offset=last, per_sample_weights=psw)
    (out * lib.arange(out.numel(), dtype=lib.float32).reshape(out.shape)).sum().backward()
    return out.detach().numpy(), w.grad.numpy()


@pytest.mark.parametrize("mode, pad, last", list(itertools.product(["sum", "mean", "max"], [None, 0, 4], [False, True])))
def test_embedding_bag_with_offsets_matches_torch(mode, pad, last):
    for weighted in ([False, True] if mode == "sum" else [False]):
        e = _run(ember, F, mode, pad, last, weighted)
        t = _run(torch, torch.nn.functional, mode, pad, last, weighted)
        for a, b in zip(e, t):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_2d_with_padding_matches_torch_and_compiles(mode):
    res = []
    for lib, fl in ((ember, F), (torch, torch.nn.functional)):
        w = lib.tensor(W, requires_grad=True)
        out = fl.embedding_bag(lib.tensor([[1, 2, 0], [3, 0, 0], [0, 0, 0]]), w, mode=mode, padding_idx=0)
        out.sum().backward()
        res.append((out.detach().numpy(), w.grad.numpy()))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    bag = ember.nn.EmbeddingBag(10, 3, mode=mode)
    x = ember.tensor([[1, 2, 3], [4, 5, 5]])
    np.testing.assert_allclose(ember.compile(bag)(x).detach().numpy(), bag(x).detach().numpy(), rtol=1e-6)


def test_scale_grad_by_freq_and_errors():
    grads = []
    for lib, fl in ((ember, F), (torch, torch.nn.functional)):
        w = lib.tensor(W, requires_grad=True)
        fl.embedding(lib.tensor([[1, 1, 2], [1, 3, 3]]), w, scale_grad_by_freq=True).sum().backward()
        grads.append(w.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    assert repr(ember.nn.EmbeddingBag(5, 3, mode="max", padding_idx=0)) == "EmbeddingBag(5, 3, mode='max', padding_idx=0)"
    with pytest.raises(ValueError, match="offsets has to be None"):
        F.embedding_bag(ember.tensor([[1, 2]]), ember.tensor(W), ember.tensor([0]))
    with pytest.raises(NotImplementedError, match="per_sample_weights"):
        F.embedding_bag(ember.tensor([[1, 2]]), ember.tensor(W), mode="mean", per_sample_weights=ember.ones(1, 2))
