"""nn.RNN / LSTM / GRU, their cells and nn.utils.rnn against PyTorch: same weights (copied through
state_dict, so the parameter names must match), same inputs; outputs, final states and the gradients
of the input, the initial states and every parameter."""
import math

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember import diagnostics as records
from ember.nn.utils import rnn as U

torch = pytest.importorskip("torch")
TU = torch.nn.utils.rnn

RTOL, ATOL = 1e-5, 1e-5


def _np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def close(a, b, what, rtol=RTOL, atol=ATOL):
    a, b = _np(a), _np(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def twins(cls, *args, **kwargs):
    em = getattr(nn, cls)(*args, **kwargs)
    tm = getattr(torch.nn, cls)(*args, **kwargs)
    assert list(em.state_dict()) == list(tm.state_dict()), "parameter names differ from PyTorch's"
    tm.load_state_dict({k: torch.tensor(v.numpy().copy()) for k, v in em.state_dict().items()})
    return em, tm


def leaves(arrays, lib):
    return [lib.tensor(a, requires_grad=True) for a in arrays]


def flat_out(out):
    """output, h or (h, c) -> list of tensors (packed output -> its data)."""
    o, h = out
    o = o.data if isinstance(o, (U.PackedSequence, TU.PackedSequence)) else o
    return [o] + (list(h) if isinstance(h, tuple) else [h])


def compare(em, tm, x, states=None, pack=None, seed=1):
    """Run both modules on x (and optional initial states), compare outputs and final states, then
    backpropagate the same random upstream gradients and compare all gradients."""
    ex, tx = leaves([x], ember)[0], leaves([x], torch)[0]
    es = ts = None
    if states is not None:
        es, ts = leaves(states, ember), leaves(states, torch)
    ein, tin = (ex, tx) if pack is None else (pack(ex, U), pack(tx, TU))
    eh = None if es is None else (tuple(es) if len(es) == 2 else es[0])
    th = None if ts is None else (tuple(ts) if len(ts) == 2 else ts[0])
    eo, to = flat_out(em(ein, eh)), flat_out(tm(tin, th))
    for i, (a, b) in enumerate(zip(eo, to)):
        close(a, b, f"output {i}")
    rng = np.random.default_rng(seed)
    gs = [rng.standard_normal(tuple(b.shape)).astype(x.dtype) for b in to]
    sum((a * ember.tensor(g)).sum() for a, g in zip(eo, gs)).backward()
    sum((b * torch.tensor(g)).sum() for b, g in zip(to, gs)).backward()
    close(ex.grad, tx.grad, "grad of input", 1e-4)
    for i, (a, b) in enumerate(zip(es or [], ts or [])):
        close(a.grad, b.grad, f"grad of initial state {i}", 1e-4)
    tp = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        close(p.grad, tp[name].grad, f"grad of {name}", 1e-4)


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------- layers
LAYER_CASES = [
    ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2)),
    ("RNN", dict(bidirectional=True, batch_first=True)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(batch_first=True, bias=False)),
    ("LSTM", dict(proj_size=3)),
    ("LSTM", dict(proj_size=2, num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=3, bidirectional=True)),
    ("GRU", dict(batch_first=True, bias=False, num_layers=2)),
]


def _state_shapes(cls, kw, batch):
    rows = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    h = kw.get("proj_size", 0) or 6
    return [(rows, batch, h), (rows, batch, 6)] if cls == "LSTM" else [(rows, batch, h)]


@pytest.mark.parametrize("cls,kw", LAYER_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(LAYER_CASES)])
@pytest.mark.parametrize("with_state", [False, True])
def test_layer_matches_torch(cls, kw, with_state):
    em, tm = twins(cls, 5, 6, **kw)
    T, N = 4, 3
    x = rand(N, T, 5) if kw.get("batch_first") else rand(T, N, 5)
    states = [rand(*s, seed=i + 7) for i, s in enumerate(_state_shapes(cls, kw, N))] if with_state else None
    compare(em, tm, x, states)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_matches_torch(cls, batch_first):
    em, tm = twins(cls, 5, 6, num_layers=2, batch_first=batch_first)
    states = [rand(2, 6, seed=3 + i) for i in range(2 if cls == "LSTM" else 1)]
    compare(em, tm, rand(4, 5), states)
    compare(em, tm, rand(4, 5))


def test_float64_matches_torch():
    em = nn.LSTM(3, 4, num_layers=2, dtype=ember.float64)
    tm = torch.nn.LSTM(3, 4, num_layers=2, dtype=torch.float64)
    tm.load_state_dict({k: torch.tensor(v.numpy().copy()) for k, v in em.state_dict().items()})
    compare(em, tm, rand(5, 2, 3, dtype=np.float64))
    assert em.weight_ih_l1.dtype is ember.float64


def test_dropout_between_layers():
    em, tm = twins("LSTM", 5, 6, num_layers=3, dropout=0.5)
    x = rand(4, 3, 5)
    em.eval()
    tm.eval()
    compare(em, tm, x)                       # eval: no dropout, same as torch
    em.train()
    ember.manual_seed(0)
    a = em(ember.tensor(x))[0]
    ember.manual_seed(1)
    b = em(ember.tensor(x))[0]
    em.eval()
    c = em(ember.tensor(x))[0]
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())     # training: masks differ
    assert not np.allclose(a.detach().numpy(), c.detach().numpy())
    # the last layer's output is not dropped: no exact zeros appear in the output
    assert np.all(a.detach().numpy() != 0)


# ------------------------------------------------------------------------------- packed
def _packer(lengths, batch_first=False, enforce_sorted=True):
    def pack(x, lib):
        return lib.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    return pack


@pytest.mark.parametrize("cls,kw", [("LSTM", dict(num_layers=2, bidirectional=True)), ("GRU", dict()),
                                    ("RNN", dict(bidirectional=True, batch_first=True)),
                                    ("LSTM", dict(proj_size=2, bidirectional=True))])
@pytest.mark.parametrize("sorted_", [True, False])
@pytest.mark.parametrize("with_state", [False, True])
def test_packed_sequence_matches_torch(cls, kw, sorted_, with_state):
    em, tm = twins(cls, 5, 6, **kw)
    lengths = [5, 3, 3, 1] if sorted_ else [3, 5, 1, 3]
    bf = kw.get("batch_first", False)
    x = rand(4, 5, 5) if bf else rand(5, 4, 5)
    states = [rand(*s, seed=i + 9) for i, s in enumerate(_state_shapes(cls, kw, 4))] if with_state else None
    compare(em, tm, x, states, pack=_packer(lengths, bf, sorted_))


def test_packed_output_round_trip_matches_torch():
    em, tm = twins("GRU", 3, 4, bidirectional=True)
    x = rand(6, 3, 3)
    lengths = ember.tensor([2, 6, 4])
    eo, _ = em(U.pack_padded_sequence(ember.tensor(x), lengths, enforce_sorted=False))
    to, _ = tm(TU.pack_padded_sequence(torch.tensor(x), torch.tensor([2, 6, 4]), enforce_sorted=False))
    assert eo.batch_sizes.tolist() == to.batch_sizes.tolist() == [3, 3, 2, 2, 1, 1]
    assert eo.sorted_indices.tolist() == to.sorted_indices.tolist()
    assert eo.unsorted_indices.tolist() == to.unsorted_indices.tolist()
    for bf in (False, True):
        for total in (None, 8):
            e, el = U.pad_packed_sequence(eo, batch_first=bf, padding_value=-1.0, total_length=total)
            t, tl = TU.pad_packed_sequence(to, batch_first=bf, padding_value=-1.0, total_length=total)
            close(e, t, f"padded batch_first={bf} total={total}")
            assert el.tolist() == tl.tolist() and el.dtype is ember.int64


def test_pack_and_pad_helpers_match_torch():
    seqs = [rand(n, 2, seed=n) for n in (4, 2, 3)]
    es, ts = leaves(seqs, ember), leaves(seqs, torch)
    for bf in (False, True):
        for side in ("right", "left"):
            close(U.pad_sequence(es, batch_first=bf, padding_value=0.5, padding_side=side),
                  TU.pad_sequence(ts, batch_first=bf, padding_value=0.5, padding_side=side), f"pad {bf} {side}")
    ep, tp = U.pack_sequence(es, enforce_sorted=False), TU.pack_sequence(ts, enforce_sorted=False)
    close(ep.data, tp.data, "pack_sequence data")
    assert ep.batch_sizes.tolist() == tp.batch_sizes.tolist()
    assert ep.batch_sizes.device.type == "cpu" and ep.batch_sizes.dtype is ember.int64
    for a, b in zip(U.unpack_sequence(ep), TU.unpack_sequence(tp)):
        close(a, b, "unpack_sequence")
    # gradients flow back through pack -> pad
    (U.pad_packed_sequence(ep)[0] * 2).sum().backward()
    (TU.pad_packed_sequence(tp)[0] * 2).sum().backward()
    for a, b in zip(es, ts):
        close(a.grad, b.grad, "grad through pack/pad")
    p = U.pack_sequence([ember.ones(3, 1), ember.ones(2, 1)])
    _, batch_sizes, si, ui = p                          # a 4-tuple, as in PyTorch
    assert si is None and ui is None and batch_sizes.tolist() == [2, 2, 1]
    assert p.double().data.dtype is ember.float64 and p.to(ember.float64).batch_sizes is p.batch_sizes


def test_pack_padded_sequence_errors():
    x = ember.zeros(4, 3, 2)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        U.pack_padded_sequence(x, [1, 3, 4])
    with pytest.raises(RuntimeError, match=r"len\(lengths\)` to be equal to batch_size, but got 2 \(batch_size=3\)"):
        U.pack_padded_sequence(x, [4, 3])
    with pytest.raises(RuntimeError, match="greater than 0"):
        U.pack_padded_sequence(x, [4, 0, 1], enforce_sorted=False)
    with pytest.raises(RuntimeError, match=r"sequence length \(5\) exceeds the padded length of the input \(4\)"):
        U.pack_padded_sequence(x, [5, 3, 1])
    with pytest.raises(RuntimeError, match="empty list"):
        U.pad_sequence([])
    with pytest.raises(RuntimeError, match="trailing shape"):
        U.pad_sequence([ember.ones(2, 3), ember.ones(3, 4)])
    p = U.pack_padded_sequence(x, [4, 2, 1])
    with pytest.raises(ValueError, match="total_length"):
        U.pad_packed_sequence(p, total_length=3)


# -------------------------------------------------------------------------------- cells
CELL_CASES = [("RNNCell", dict()), ("RNNCell", dict(nonlinearity="relu", bias=False)), ("LSTMCell", dict()),
              ("LSTMCell", dict(bias=False)), ("GRUCell", dict()), ("GRUCell", dict(bias=False))]


@pytest.mark.parametrize("cls,kw", CELL_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CELL_CASES)])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_state", [False, True])
def test_cell_matches_torch(cls, kw, batched, with_state):
    em, tm = twins(cls, 5, 4, **kw)
    lead = (3,) if batched else ()
    x = rand(*lead, 5)
    ex, tx = leaves([x], ember)[0], leaves([x], torch)[0]
    n = 2 if cls == "LSTMCell" else 1
    es = ts = None
    if with_state:
        arrs = [rand(*lead, 4, seed=5 + i) for i in range(n)]
        es, ts = leaves(arrs, ember), leaves(arrs, torch)
    eo = em(ex, None if es is None else (tuple(es) if n == 2 else es[0]))
    to = tm(tx, None if ts is None else (tuple(ts) if n == 2 else ts[0]))
    eo, to = (list(eo), list(to)) if n == 2 else ([eo], [to])
    for a, b in zip(eo, to):
        close(a, b, "cell output")
    g = [rand(*tuple(b.shape), seed=11 + i) for i, b in enumerate(to)]
    sum((a * ember.tensor(v)).sum() for a, v in zip(eo, g)).backward()
    sum((b * torch.tensor(v)).sum() for b, v in zip(to, g)).backward()
    close(ex.grad, tx.grad, "grad of input", 1e-4)
    for a, b in zip(es or [], ts or []):
        close(a.grad, b.grad, "grad of state", 1e-4)
    tp = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        close(p.grad, tp[name].grad, f"grad of {name}", 1e-4)


def test_cell_loop_equals_layer():
    """An LSTMCell stepped by hand equals a one-layer LSTM with the same weights."""
    cell, lstm = nn.LSTMCell(3, 5), nn.LSTM(3, 5)
    lstm.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x = ember.randn(6, 2, 3)
    h = c = ember.zeros(2, 5)
    outs = []
    for t in range(6):
        h, c = cell(x[t], (h, c))
        outs.append(h)
    out, (_, cn) = lstm(x)
    close(ember.stack(outs), out, "outputs", 1e-6, 1e-6)
    close(c, cn[0], "cell state", 1e-6, 1e-6)


# ------------------------------------------------------------------- construction, API
def test_parameter_names_shapes_and_init():
    m = nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5)
    t = torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5)
    assert [(n, tuple(p.shape)) for n, p in m.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    bound = 1 / math.sqrt(20)
    for p in m.parameters():
        a = p.detach().numpy()
        assert a.min() >= -bound and a.max() <= bound and a.std() > bound / 3
    assert [[tuple(p.shape) for p in ws] for ws in m.all_weights] == \
        [[tuple(p.shape) for p in ws] for ws in t.all_weights]
    assert m._flat_weights_names == t._flat_weights_names
    assert m.flatten_parameters() is None
    assert repr(m) == repr(t)
    for cls, kw in [("RNN", dict(nonlinearity="relu", bias=False, batch_first=True, dropout=0.2, num_layers=2)),
                    ("GRU", dict()), ("RNNCell", dict(nonlinearity="relu")), ("GRUCell", dict(bias=False))]:
        assert repr(getattr(nn, cls)(3, 4, **kw)) == repr(getattr(torch.nn, cls)(3, 4, **kw))
    assert isinstance(m, nn.RNNBase) and isinstance(nn.LSTMCell(2, 3), nn.RNNCellBase)


def test_state_dict_loads_from_torch():
    t = torch.nn.GRU(4, 3, num_layers=2, bidirectional=True)
    m = nn.GRU(4, 3, num_layers=2, bidirectional=True)
    m.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    x = rand(5, 2, 4)
    close(m(ember.tensor(x))[0], t(torch.tensor(x))[0], "output after loading torch's weights")


def test_constructor_errors():
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        nn.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        nn.LSTM(3, 0)
    with pytest.raises(TypeError, match="input_size should be of type int"):
        nn.LSTM(3.0, 4)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.5)


def test_forward_errors():
    m = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="LSTM: Expected input to be 2D or 3D, got 4D instead"):
        m(ember.zeros(2, 2, 2, 3))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 5"):
        m(ember.zeros(2, 2, 5))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(1, 2, 4\), got \[1, 3, 4\]"):
        m(ember.zeros(5, 2, 3), (ember.zeros(1, 3, 4), ember.zeros(1, 3, 4)))
    with pytest.raises(RuntimeError, match="hx and cx should also be 3-D"):
        m(ember.zeros(5, 2, 3), (ember.zeros(3, 4), ember.zeros(3, 4)))
    with pytest.raises(ValueError, match=r"RNN input dtype \(ember.float64\) does not match weight dtype"):
        m(ember.zeros(5, 2, 3, dtype=ember.float64))
    g = nn.GRU(3, 4)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\), got \[2, 2, 4\]"):
        g(ember.zeros(5, 2, 3), ember.zeros(2, 2, 4))
    with pytest.raises(RuntimeError, match="For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"):
        g(ember.zeros(5, 3), ember.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="GRUCell: Expected input to be 1D or 2D, got 3D instead"):
        nn.GRUCell(3, 4)(ember.zeros(1, 2, 3))
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 2 expected 3"):
        nn.LSTMCell(3, 4)(ember.zeros(2, 2))
    with pytest.raises(RuntimeError, match=r"LSTMCell: Expected hx\[1\] of shape \(2, 4\), got \[2, 5\]"):
        nn.LSTMCell(3, 4)(ember.zeros(2, 3), (ember.zeros(2, 4), ember.zeros(2, 5)))


# ------------------------------------------------------------------------------ compile
class LM(nn.Module):
    """Embedding -> 2-layer LSTM -> Linear, as in PyTorch's word_language_model example."""

    def __init__(self, ntoken=11, ninp=8, nhid=12, cls="LSTM", **kw):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, cls)(ninp, nhid, 2, **kw)
        self.decoder = nn.Linear(nhid * (2 if kw.get("bidirectional") else 1), ntoken)

    def forward(self, idx, hidden=None):
        out, hidden = self.rnn(self.encoder(idx), hidden)
        return self.decoder(out), hidden


def _lm_step(model, idx, target, hidden=None):
    model.zero_grad()
    logits, hidden = model(idx, hidden)
    loss = ember.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
    loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
    return loss.item(), logits.detach().numpy(), grads


@pytest.mark.parametrize("backend", ["eager", "auto"])
@pytest.mark.parametrize("cls,kw", [("LSTM", dict()), ("GRU", dict(bidirectional=True))])
def test_compiled_equals_eager(backend, cls, kw):
    """ember.compile unrolls the time loop: no graph break, one compile, values and gradients equal."""
    ember.manual_seed(0)
    model = LM(cls=cls, **kw)
    idx, target = ember.randint(0, 11, (5, 3)), ember.randint(0, 11, (5, 3))
    cmodel = ember.compile(model, backend=backend)
    with records.collect() as recs:
        c = _lm_step(cmodel, idx, target)
        c2 = _lm_step(cmodel, idx, target)
    assert not [r for r in recs if r.kind == "breaks"], [str(r) for r in recs]
    assert cmodel._compiled.stats["compiles"] == 1
    e = _lm_step(model, idx, target)
    for a in (c, c2):
        assert abs(a[0] - e[0]) < 1e-5
        np.testing.assert_allclose(a[1], e[1], rtol=1e-4, atol=1e-5)
        for n in e[2]:
            np.testing.assert_allclose(a[2][n], e[2][n], rtol=1e-3, atol=1e-5, err_msg=n)


def test_compiled_with_initial_state_and_new_length():
    ember.manual_seed(1)
    model = LM()
    cmodel = ember.compile(model, backend="eager")
    h = (ember.randn(2, 3, 12), ember.randn(2, 3, 12))
    for T in (4, 6):
        idx = ember.randint(0, 11, (T, 3))
        (a, (ha, ca)), (b, (hb, cb)) = cmodel(idx, h), model(idx, h)
        close(a, b, f"T={T}", 1e-5, 1e-6)
        close(ha, hb, "h_n", 1e-5, 1e-6)
        close(ca, cb, "c_n", 1e-5, 1e-6)
    assert cmodel._compiled.stats["compiles"] == 2        # a new length is a new trace


def test_compiled_packed_sequence_breaks_and_runs_eagerly():
    """Packing reads the lengths, so a lengths tensor given to a compiled function is a graph break;
    the call then runs eagerly and gives eager's values."""
    ember.manual_seed(2)
    rnn = nn.GRU(3, 4)

    def f(x, lengths):
        out, h = rnn(U.pack_padded_sequence(x, lengths, enforce_sorted=False))
        return U.pad_packed_sequence(out)[0].sum() + h.sum()

    x, lengths = ember.randn(5, 3, 3), ember.tensor([2, 5, 3])
    cf = ember.compile(f, backend="eager")
    with records.collect() as recs:
        got = cf(x, lengths)
    assert [r for r in recs if r.kind == "breaks"]
    close(got, f(x, lengths), "packed through compile", 1e-6, 1e-6)
