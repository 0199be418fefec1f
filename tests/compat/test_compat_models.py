"""More ordinary PyTorch training scripts (scripts/), each run three ways: eagerly (it trains: the loss
falls), through ember.compile (the same losses as eager, from compiled code), and, when PyTorch is
installed, against PyTorch from the same weights and batches (the same losses).

Recurrent models (word LM, char-RNN classifier, LBFGS sine LSTM, GRU regression), a DCGAN, a VAE, a
residual CNN and a char-level Transformer with weight-decay parameter groups."""
import math
import os
import sys

import numpy as np
import pytest

from ember import diagnostics as records

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402


def _falls(losses, k=5, by=0.0):
    first, last = np.mean(losses[:k]), np.mean(losses[-k:])
    assert last < first - by, f"loss did not fall: first {k} mean {first:.4f}, last {k} mean {last:.4f}"


def _same(a, b, what, rtol=1e-4, atol=1e-6):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def _compiled(name, nets=("net",), **kw):
    """Run a script compiled and eager with the same arguments; check the compiled run made no graph
    break and ran compiled code for every call; return both results."""
    with records.collect() as recs:
        c = runner.load(name).main(compiled=True, **kw)
    breaks = [str(r) for r in recs if r.kind == "breaks"]
    assert not breaks, breaks
    for n in nets:
        stats = c[n]._compiled.stats
        assert stats["compiles"] >= 1 and stats["eager_calls"] == 0, stats
    return c, runner.load(name).main(**kw)


def _torch():
    return pytest.importorskip("torch")


# --------------------------------------------------------------- word-level LSTM language model
def test_word_lm_trains():
    r = runner.load("word_lm").main(batches=30)
    _falls(r["losses"], by=0.5)
    assert r["val"] < r["val0"] - 0.3 and r["ntokens"] > 500


def test_word_lm_compiled_equals_eager():
    c, e = _compiled("word_lm", batches=4, bptt=6, lines=120, nlayers=1)
    _same(c["losses"], e["losses"], "compiled vs eager losses (dropout masks too: same RNG stream)")
    assert math.isclose(c["val"], e["val"], rel_tol=1e-5)


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_word_lm_matches_torch(rnn_type):
    _torch()
    kw = dict(batches=6, dropout=0.0, rnn_type=rnn_type, lines=200)
    e = runner.load("word_lm").main(**kw)
    t = runner.load("word_lm", "torch").main(init=e["init"], **kw)
    _same(e["losses"], t["losses"], "word LM losses")
    assert math.isclose(e["val0"], t["val0"], rel_tol=1e-5) and math.isclose(e["val"], t["val"], rel_tol=1e-4)


# ------------------------------------------------- char-RNN classifier with pack_padded_sequence
def test_char_rnn_classifier_trains():
    r = runner.load("char_rnn_classify").main(epochs=3)
    _falls(r["losses"], by=0.2)
    assert r["acc"] > r["acc0"] + 0.2


def test_char_rnn_classifier_compiled_breaks_on_lengths_and_equals_eager():
    """pack_padded_sequence reads the lengths tensor (the packed layout depends on its values), so the
    compiled model records a graph break there and runs eagerly, with eager's results."""
    with records.collect() as recs:
        c = runner.load("char_rnn_classify").main(compiled=True, epochs=1, n_words=48)
    e = runner.load("char_rnn_classify").main(epochs=1, n_words=48)
    breaks = [r for r in recs if r.kind == "breaks"]
    assert breaks and all(r.code == "B003" for r in breaks), [str(r) for r in breaks]
    _same(c["losses"], e["losses"], "losses", rtol=1e-6)


def test_char_rnn_classifier_matches_torch():
    _torch()
    e = runner.load("char_rnn_classify").main(epochs=1, n_words=96, shuffle=False)
    t = runner.load("char_rnn_classify", "torch").main(init=e["init"], epochs=1, n_words=96, shuffle=False)
    _same(e["losses"], t["losses"], "char-RNN losses")
    assert e["acc"] == t["acc"]


# ------------------------------------------------------------------------------------- DCGAN
def test_dcgan_trains():
    r = runner.load("dcgan").main(batches=30)
    _falls(r["errD"], by=0.15)                                 # the discriminator learns
    assert np.mean(r["D_x"][-5:]) > np.mean(r["D_x"][:5]) + 0.1   # and tells real from fake better
    assert all(np.isfinite(r["errG"]))


def test_dcgan_compiled_equals_eager():
    c, e = _compiled("dcgan", nets=("G", "D"), batches=3, shuffle=False)
    _same(c["errD"], e["errD"], "errD")
    _same(c["errG"], e["errG"], "errG")


def test_dcgan_matches_torch():
    _torch()
    e = runner.load("dcgan").main(batches=6, shuffle=False)
    t = runner.load("dcgan", "torch").main(init=e["init"], noises=e["noise"], batches=6, shuffle=False)
    for k in ("errD", "errG", "D_x", "D_G_z1", "D_G_z2"):
        _same(e[k], t[k], k)


# --------------------------------------------------------------------------------------- VAE
def test_vae_trains():
    r = runner.load("vae").main(epochs=2)
    _falls(r["losses"], k=3, by=30)
    assert r["test"] < r["test0"] - 30 and r["sample"].shape == (16, 1, 28, 28)


def test_vae_compiled_trains_and_equals_eager():
    c, e = _compiled("vae", epochs=1)
    _same(c["losses"], e["losses"], "VAE losses (randn_like too: same RNG stream)")
    _falls(c["losses"], k=2, by=10)


def test_vae_matches_torch():
    _torch()
    rng = np.random.default_rng(0)
    noises = [rng.standard_normal((64, 8)).astype(np.float32) for _ in range(4)]
    e = runner.load("vae").main(epochs=1, n_train=256, noises=noises, shuffle=False)
    t = runner.load("vae", "torch").main(init=e["init"], epochs=1, n_train=256, noises=noises, shuffle=False)
    _same(e["losses"], t["losses"], "VAE losses")
    assert math.isclose(e["test"], t["test"], rel_tol=1e-4)


# ------------------------------------------------------------------------------ residual CNN
def test_resnet_trains():
    r = runner.load("resnet").main(n_train=640)
    _falls(r["losses"], by=0.05)
    assert r["acc"] > r["acc0"] + 0.05
    assert r["lrs"][-1] < 1e-3                                  # cosine annealing reached ~0


@pytest.mark.slow                   # compiling the whole ResNet step takes ~20 s on a busy 2-core machine
def test_resnet_compiled_equals_eager():
    c, e = _compiled("resnet", n_train=64, shuffle=False)
    _same(c["losses"], e["losses"], "ResNet losses", rtol=1e-3)
    for k in e["running"]:
        _same(c["running"][k], e["running"][k], k, rtol=1e-3, atol=1e-5)


def test_resnet_matches_torch():
    _torch()
    e = runner.load("resnet").main(n_train=128, shuffle=False)
    t = runner.load("resnet", "torch").main(init=e["init"], n_train=128, shuffle=False)
    _same(e["losses"], t["losses"], "ResNet losses", rtol=2e-4)
    _same(e["lrs"], t["lrs"], "learning rates", rtol=1e-9)
    for k in t["running"]:          # four steps at lr 0.5 amplify float32 rounding a little
        _same(e["running"][k], t["running"][k], k, rtol=1e-3, atol=1e-4)


# ------------------------------------------- char-level Transformer with weight-decay groups
def test_char_transformer_trains():
    r = runner.load("char_transformer").main(steps=40)
    assert r["losses"][0] > math.log(r["vocab"]) - 0.3             # starts near uniform
    _falls(r["losses"], by=0.5)
    assert r["groups"][0] > 0 and r["groups"][1] > 0


def test_char_transformer_compiled_equals_eager():
    c, e = _compiled("char_transformer", steps=3, nlayers=1, block_size=8, batch_size=4)
    _same(c["losses"], e["losses"], "compiled vs eager losses")


def test_char_transformer_matches_torch():
    _torch()
    rng = np.random.default_rng(0)
    n_train = runner.load("char_transformer").main(steps=0)["n_train"]
    ix = [rng.integers(0, n_train - 25, 8).tolist() for _ in range(5)]
    kw = dict(steps=5, batch_size=8, dropout=0.0, batch_ix=ix)
    e = runner.load("char_transformer").main(**kw)
    t = runner.load("char_transformer", "torch").main(init=e["init"], **kw)
    assert e["groups"] == t["groups"]
    _same(e["losses"], t["losses"], "char Transformer losses")


# ------------------------------------------------------------- LSTMCell sine waves with LBFGS
def test_time_sequence_lbfgs_trains():
    r = runner.load("time_sequence_lbfgs").main(steps=3)
    assert r["losses"][-1] < 0.1 * r["losses"][0]
    assert r["test_losses"][-1] < r["test_losses"][0] and r["pred"].shape == (3, 23 + 8)


def test_time_sequence_lbfgs_compiled_equals_eager():
    c, e = _compiled("time_sequence_lbfgs", steps=1, L=8, max_iter=4)
    _same(c["losses"], e["losses"], "losses", rtol=1e-10)
    _same(c["test_losses"], e["test_losses"], "test losses", rtol=1e-10)
    assert c["evals"] == e["evals"]


def test_time_sequence_lbfgs_matches_torch():
    _torch()
    e = runner.load("time_sequence_lbfgs").main(steps=2)
    t = runner.load("time_sequence_lbfgs", "torch").main(init=e["init"], steps=2)
    _same(e["losses"], t["losses"], "losses (float64)", rtol=1e-9)
    _same(e["pred"], t["pred"], "predictions (float64)", rtol=1e-7, atol=1e-9)
    assert e["evals"] == t["evals"]


# -------------------------------------------------------------------- GRU time-series regression
def test_gru_timeseries_trains():
    r = runner.load("gru_timeseries").main(epochs=4)
    _falls(r["losses"], by=0.05)
    assert r["val"] < 0.5 * r["val0"]


def test_gru_timeseries_compiled_equals_eager():
    c, e = _compiled("gru_timeseries", epochs=1, seq_length=5, n_layers=1, dropout=0.0)
    _same(c["losses"], e["losses"], "GRU losses")
    assert math.isclose(c["val"], e["val"], rel_tol=1e-5)


def test_gru_timeseries_matches_torch():
    _torch()
    kw = dict(epochs=2, dropout=0.0, shuffle=False)
    e = runner.load("gru_timeseries").main(**kw)
    t = runner.load("gru_timeseries", "torch").main(init=e["init"], **kw)
    _same(e["losses"], t["losses"], "GRU regression losses")
    assert math.isclose(e["val"], t["val"], rel_tol=1e-4)
