"""Ordinary PyTorch training scripts run on ember with only their imports changed (scripts/), and,
when PyTorch is installed, give the same losses as PyTorch from the same weights and batches."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402


def _falls(losses, k=5, by=0.0):
    first, last = np.mean(losses[:k]), np.mean(losses[-k:])
    assert last < first - by, f"loss did not fall: first {k} mean {first:.4f}, last {k} mean {last:.4f}"


def _same(a, b, n, what):
    np.testing.assert_allclose(np.array(a[:n]), np.array(b[:n]), rtol=1e-4, atol=1e-6, err_msg=what)


# ------------------------------------------------------------------ "What is torch.nn really?"
STAGES = ["scratch", "module", "linear", "optim", "cnn"]


def test_nn_tutorial_trains():
    r = runner.load("nn_tutorial").main()
    for stage in STAGES:
        _falls(r[stage]["losses"], by=0.1)
        assert r[stage]["acc"] > r[stage]["acc0"] + 0.1, stage
    assert r["optim"]["val_losses"][-1] < r["optim"]["val_losses"][0]
    assert r["linear"]["acc"] > 0.7


def test_nn_tutorial_matches_torch():
    pytest.importorskip("torch")
    e = runner.load("nn_tutorial").main(shuffle=False, epochs=1, cnn_epochs=1)
    t = runner.load("nn_tutorial", "torch").main(init=e["init"], shuffle=False, epochs=1, cnn_epochs=1)
    for stage in STAGES:
        _same(e[stage]["losses"], t[stage]["losses"], 8, stage)


# ---------------------------------------------------------------------- classic MNIST example
def test_classic_mnist_trains():
    r = runner.load("classic_mnist").main(batches=100)
    _falls(r["losses"], k=10, by=0.05)
    assert r["test_loss"] < r["test_loss0"] - 0.05 and r["acc"] > r["acc0"] + 0.1


def test_classic_mnist_matches_torch():
    pytest.importorskip("torch")
    e = runner.load("classic_mnist").main(batches=8, dropout=0.0, shuffle=False)
    t = runner.load("classic_mnist", "torch").main(batches=8, init=e["init"], dropout=0.0, shuffle=False)
    _same(e["losses"], t["losses"], 8, "classic mnist losses")
    assert math.isclose(e["test_loss0"], t["test_loss0"], rel_tol=1e-4)


# ------------------------------------------------------------------------ char-level GPT
def test_char_gpt_trains_and_samples():
    r = runner.load("char_gpt").main(steps=100)
    assert r["tied"] and r["vocab"] > 40
    assert r["losses"][0] > math.log(r["vocab"]) - 0.2          # starts near uniform
    _falls(r["losses"], k=10, by=1.0)                              # falls clearly
    assert all(np.isfinite(r["norms"]))
    assert isinstance(r["sample"], str) and len(r["sample"]) == 61


def test_char_gpt_matches_torch():
    pytest.importorskip("torch")
    steps, bs, block = 5, 16, 32
    rng = np.random.default_rng(0)
    with open(runner.load("char_gpt").DATA, encoding="utf-8") as f:
        n_train = int(0.9 * len(f.read()))
    ix = [rng.integers(0, n_train - block, bs).tolist() for _ in range(steps)]
    e = runner.load("char_gpt").main(steps=steps, batch_ix=ix, sample=False)
    t = runner.load("char_gpt", "torch").main(steps=steps, batch_ix=ix, init=e["init"], sample=False)
    _same(e["losses"], t["losses"], steps, "char GPT losses")
    _same(e["norms"], t["norms"], steps, "char GPT grad norms")
