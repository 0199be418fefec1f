"""The fused attention op (ember/ir/ops.py `attention`, kernels in ember/runtime/attention.py): forward and
gradients against PyTorch's unfused attention (random shapes, strides, masks: hypothesis), the generated
kernels against float64, and the compiled path (the pattern rewritten by ember/passes/attention.py)
against eager mode."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ember as E
import ember.nn.functional as F
from ember.frontend.dispatch import apply as P
from ember.runtime import attention as kernels

torch = pytest.importorskip("torch")


def _attention(q, k, v, masked, scale, fill=-math.inf):
    """The op without dropout (its key is never read)."""
    return P("attention", q, k, v, masked, E.zeros(2, dtype=E.int64), scale=scale, fill=fill, p=0.0, keep=1.0)


def _torch_attention(q, k, v, masked, scale):
    s = (q @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(masked, float("-inf"))
    return torch.softmax(s, -1) @ v


def _float64_attention(q, k, v, masked, scale):
    s = np.matmul(q.astype(np.float64), np.swapaxes(k, -1, -2).astype(np.float64)) * scale
    s = np.where(masked, -np.inf, s)
    e = np.exp(s - s.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    go = np.ones(q.shape[:-1] + (v.shape[-1],))
    dp = go @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) * scale
    return p @ v, (ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ go)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 70), st.integers(1, 70),
                   st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=40, deadline=None)
@given(shapes, st.sampled_from(["none", "causal", "random", "row"]), st.booleans(), st.integers(0, 2**31 - 1))
@example((16, 4, 64, 64, 32, 32), "causal", True, 0)       # the GPT benchmark's layer
@example((1, 1, 33, 17, 16, 48), "causal", False, 1)        # more queries than keys, wide values
@example((1, 1, 1, 3, 1, 1), "row", True, 1)                # every row fully masked: NaNs reach every key's dV
def test_attention_matches_torch(shape, mask_kind, strided, seed):
    B, H, L, S, D, Dv = shape
    rng = np.random.default_rng(seed)
    if strided:     # q, k, v as views of one projection, [B, L, 3, H, D] (rows 3 * H * D apart), as a GPT has them
        Dv = D
        L = S
        qkv = rng.standard_normal((B, L, 3, H, D), np.float32)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    else:
        q = rng.standard_normal((B, H, L, D), np.float32)
        k = rng.standard_normal((B, H, S, D), np.float32)
        v = rng.standard_normal((B, H, S, Dv), np.float32)
    masked = {"none": np.zeros((1, 1), bool), "causal": np.triu(np.ones((L, S), bool), 1)[None, None],
              "random": rng.random((B, 1, L, S)) < 0.3, "row": rng.random((1, H, 1, S)) < 0.5}[mask_kind]
    scale = 1 / math.sqrt(D)
    tq, tk, tv = (torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (q, k, v))
    want = _torch_attention(tq, tk, tv, torch.tensor(masked), scale)
    go = rng.standard_normal(want.shape).astype(np.float32)
    want.backward(torch.tensor(go))
    eq, ek, ev = (E.tensor(a, requires_grad=True) for a in (q, k, v))
    got = _attention(eq, ek, ev, E.tensor(masked), scale)
    got.backward(E.tensor(go))
    # fully masked rows are NaN in both (softmax of all -inf), gradients too
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    for e, t in ((eq, tq), (ek, tk), (ev, tv)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("bits", [None, 512, 256], ids=["host", "avx512-tiles", "avx2-tiles"])
def test_generated_kernels_against_float64(bits, monkeypatch):
    """The kernels as this host builds them, and as an AVX-512 or an AVX2 host would (their tiles and edge
    stores), compiled for this one: every width's code is checked on any CI machine."""
    if bits is not None:
        own = kernels._Kernels(bits)
        monkeypatch.setattr(kernels, "_kernels", lambda: own)
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 3, 45, 24), np.float32) for _ in range(3))
    masked = np.triu(np.ones((45, 45), bool), 1)[None, None]
    o = kernels.forward(q, k, v, masked, 0.2)
    joined = kernels.backward(q, k, v, masked, np.ones_like(q), 0.2)
    assert o is not None and joined is not None, "the generated kernels did not take float32 arrays"
    want_o, want_g = _float64_attention(q, k, v, masked, 0.2)
    np.testing.assert_allclose(o, want_o, rtol=1e-5, atol=2e-6)
    got_g = np.split(joined, 3)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(g.reshape(w.shape), w, rtol=1e-4, atol=1e-5)


def test_fully_masked_row_is_nan_like_softmax():
    q, k, v = (E.randn(1, 1, 4, 8) for _ in range(3))
    masked = E.tensor(np.array([[False] * 4, [True] * 4, [False, True, True, True], [False] * 4]))
    out = _attention(q, k, v, masked, 0.5).numpy()
    assert np.isnan(out[0, 0, 1]).all() and np.isfinite(out[0, 0, [0, 2, 3]]).all()
    np.testing.assert_allclose(out[0, 0, 2], v.numpy()[0, 0, 0], rtol=1e-6)


def test_other_dtypes_take_the_reference():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 5, 3)) for _ in range(3))
    masked = np.triu(np.ones((5, 5), bool), 1)
    got = _attention(*(E.tensor(a) for a in (q, k, v)), E.tensor(masked), 0.7).numpy()
    want = _torch_attention(*(torch.tensor(a) for a in (q, k, v)), torch.tensor(masked), 0.7).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_bad_inputs_name_the_op():
    from ember.ir import dtypes as dt
    from ember.ir.ops import TType, infer
    f32 = TType((2, 4, 8), dt.float32)
    with pytest.raises(RuntimeError, match="attention.*bool"):      # (the schema: eager checks it on failure)
        infer("attention", [f32, f32, f32, TType((4, 4), dt.float32), TType((2,), dt.int64)],
              {"scale": 1.0, "fill": -math.inf, "p": 0.0, "keep": 1.0})
    q = E.randn(2, 4, 8)
    with pytest.raises(RuntimeError, match="attention.*key must be"):
        _attention(q, E.randn(2, 4, 5), q, E.zeros(4, 4, dtype=E.bool), 1.0)


class _Causal(E.nn.Module):
    """Attention as people write it (nanoGPT's slow path): masked_fill on a registered tril buffer."""

    def __init__(self, d=32, heads=4, block=16):
        super().__init__()
        self.qkv, self.heads = E.nn.Linear(d, 3 * d), heads
        self.register_buffer("mask", E.tril(E.ones(block, block)).view(1, 1, block, block))

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, L, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // self.heads))
        att = att.masked_fill(self.mask[:, :, :L, :L] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return y.transpose(1, 2).contiguous().view(B, L, C)


def test_compiled_attention_is_fused_and_matches_eager():
    E.manual_seed(0)
    m = _Causal()
    x = E.randn(3, 16, 32)
    want = m(x)
    want.square().sum().backward()
    want_g = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    cm = E.compile(m)
    got = cm(x)
    got.square().sum().backward()
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    for p, g in zip(m.parameters(), want_g):
        np.testing.assert_allclose(p.grad.numpy(), g.numpy(), rtol=1e-4, atol=1e-5)
    report = E.explain(m, x)
    assert "attention×1" in str(report) and report.graph_break_count == 0
    assert "F001" not in str(report)        # the fused kernels are library steps, not fallbacks


def test_attention_weights_the_model_returns_keep_the_unfused_ops():
    def f(q, k, v):
        p = F.softmax(q @ k.transpose(-2, -1), dim=-1)
        return p @ v, p
    q, k, v = (E.randn(2, 6, 4) for _ in range(3))
    report = str(E.explain(f, q, k, v))
    assert "attention" not in report.split("guards")[0].split("ops:")[1].split("\n")[0]
    out, p = E.compile(f)(q, k, v)
    want, wp = f(q, k, v)
    np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["none", "causal", "bool", "float"])
def test_scaled_dot_product_attention_matches_torch(kind):
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((2, 3, 10, 8), np.float32) for _ in range(3))
    keep = rng.random((10, 10)) < 0.7
    keep[:, 0] = True
    kw = {"none": {}, "causal": {"is_causal": True}, "bool": {"attn_mask": keep},
          "float": {"attn_mask": rng.standard_normal((10, 10)).astype(np.float32)}}[kind]
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, **{n: torch.tensor(a) if isinstance(a, np.ndarray) else a for n, a in kw.items()})
    want.sum().backward()
    eq, ek, ev = (E.tensor(a, requires_grad=True) for a in (q, k, v))
    got = F.scaled_dot_product_attention(eq, ek, ev, **{n: E.tensor(a) if isinstance(a, np.ndarray) else a
                                                       for n, a in kw.items()})
    got.sum().backward()
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    for e, t in ((eq, tq), (ek, tk), (ev, tv)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)
    uses_op = got.grad_fn is not None and "attention" in got.grad_fn.name().lower()
    assert uses_op == (kind != "float"), got.grad_fn.name()


def test_dynamic_lengths_compile_once_and_match_eager():
    """dynamic=True: one program for every sequence length (split by a traced size included)."""
    E.manual_seed(1)
    m = _Causal(block=32)
    cm = E.compile(m, dynamic=True)
    for L in (8, 13, 20):
        x = E.randn(2, L, 32)
        want = m(x)
        want.sum().backward()
        want_g = [p.grad.clone() for p in m.parameters()]
        m.zero_grad()
        got = cm(x)
        got.sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
        for p, g in zip(m.parameters(), want_g):
            np.testing.assert_allclose(p.grad.numpy(), g.numpy(), rtol=1e-4, atol=1e-5)
        m.zero_grad()
    assert cm._compiled.stats["compiles"] == 1 and cm._compiled.stats["breaks"] == 0


@pytest.mark.parametrize("fill", [-1e9, -1e4, -2.0])
def test_finite_fill_matches_torch(fill):
    """masked_fill with a finite value (older code's -1e9): masked scores still weigh exp(fill - max), and a
    fully masked row is uniform instead of NaN; the kernels then skip no keys."""
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 9, 8), np.float32) for _ in range(3))
    masked = np.triu(np.ones((9, 9), bool), 1)
    masked[4] = True                                    # one row masked throughout
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    want = torch.softmax((tq @ tk.transpose(-1, -2) * 0.4).masked_fill(torch.tensor(masked), fill), -1) @ tv
    want.square().sum().backward()
    eq, ek, ev = (E.tensor(a, requires_grad=True) for a in (q, k, v))
    got = _attention(eq, ek, ev, E.tensor(masked), 0.4, fill)
    got.square().sum().backward()
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    for e, t in ((eq, tq), (ek, tk), (ev, tv)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=2e-5)


def test_mask_before_scale_with_finite_fill_is_fused():
    def f(q, k, v, masked):
        att = (q @ k.transpose(-2, -1)).masked_fill(masked, -1e9) / math.sqrt(q.size(-1))
        return F.softmax(att, dim=-1) @ v
    q, k, v = (E.randn(2, 3, 7, 8, requires_grad=True) for _ in range(3))
    masked = E.tensor(np.triu(np.ones((7, 7), bool), 1))
    want = f(q, k, v, masked)
    want.sum().backward()
    want_g = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    got = E.compile(f)(q, k, v, masked)
    got.sum().backward()
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    for t, g in zip((q, k, v), want_g):
        np.testing.assert_allclose(t.grad.numpy(), g.numpy(), rtol=1e-4, atol=1e-5)
    assert "attention×1" in str(E.explain(f, q, k, v, masked))


@pytest.mark.parametrize("masks", ["none", "bool", "causal", "float"])
def test_multihead_attention_without_weights_matches_torch(masks):
    """nn.MultiheadAttention(need_weights=False), as TransformerEncoderLayer calls it: the fused op for bool
    masks (attn_mask and key_padding_mask, True: not attended) and none; float masks keep the added scores."""
    E.manual_seed(0)
    torch.manual_seed(0)
    L, N, D = 6, 3, 16
    tm = torch.nn.MultiheadAttention(D, 4)
    em = E.nn.MultiheadAttention(D, 4)
    with E.no_grad():
        for (name, p), (_, tp) in zip(em.named_parameters(), tm.named_parameters()):
            p.copy_(E.tensor(tp.detach().numpy()))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((L, N, D)).astype(np.float32)
    pad = np.zeros((N, L), bool)
    pad[1, -2:] = True
    causal = np.triu(np.ones((L, L), bool), 1)
    kw = {"none": {}, "bool": {"attn_mask": causal, "key_padding_mask": pad}, "causal": {"attn_mask": causal,
          "is_causal": True}, "float": {"attn_mask": np.where(causal, -np.inf, 0).astype(np.float32)}}[masks]
    tx, ex = torch.tensor(x, requires_grad=True), E.tensor(x, requires_grad=True)
    want = tm(tx, tx, tx, need_weights=False, **{k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                                                 for k, v in kw.items()})[0]
    got = em(ex, ex, ex, need_weights=False, **{k: E.tensor(v) if isinstance(v, np.ndarray) else v
                                               for k, v in kw.items()})[0]
    want.square().sum().backward()
    got.square().sum().backward()
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    ops = str(E.explain(lambda t: em(t, t, t, need_weights=False, **{k: E.tensor(v) if isinstance(v, np.ndarray)
                                                                      else v for k, v in kw.items()})[0], ex))
    assert ("attention×1" in ops) == (masks != "float")


def test_transformer_encoder_with_float_causal_mask_is_fused_and_matches_torch():
    """nn.TransformerEncoder(mask=generate_square_subsequent_mask(T)): is_causal=None detects the causal
    mask, as PyTorch does, and the layers' attention runs the fused op (eval mode: no dropout)."""
    torch.manual_seed(0)
    tl = torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    tenc = torch.nn.TransformerEncoder(tl, 2, enable_nested_tensor=False).eval()
    el = E.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    enc = E.nn.TransformerEncoder(el, 2).eval()
    with E.no_grad():
        for (n, p), (tn, tp) in zip(enc.named_parameters(), tenc.named_parameters()):
            assert n == tn
            p.copy_(E.tensor(tp.detach().numpy()))
    x = np.random.default_rng(4).standard_normal((3, 7, 16)).astype(np.float32)
    want = tenc(torch.tensor(x), mask=torch.nn.Transformer.generate_square_subsequent_mask(7))
    mask = E.nn.Transformer.generate_square_subsequent_mask(7)
    got = enc(E.tensor(x), mask=mask)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    from ember.nn.modules.transformer import _detect_is_causal_mask
    assert _detect_is_causal_mask(mask, None, 7) and not _detect_is_causal_mask(mask.T, None, 7)
    assert "attention×2" in str(E.explain(lambda t: enc(t, is_causal=True, mask=mask), E.tensor(x)))


def _dropout_attention(q, k, v, masked, p):
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    att = F.softmax(att.masked_fill(masked, float("-inf")), dim=-1)
    return F.dropout(att, p, training=True) @ v


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_attention_dropout_is_fused_and_draws_what_eager_draws(p):
    """nanoGPT's attn_dropout in training: the fused kernels draw the same uniforms as F.dropout (counter =
    offset + the probabilities' flat index), so compiled = eager for the same seed, gradients too."""
    rng = np.random.default_rng(9)
    q, k, v = (E.tensor(rng.standard_normal((2, 3, 20, 8)).astype(np.float32), requires_grad=True)
               for _ in range(3))
    masked = E.tensor(np.triu(np.ones((20, 20), bool), 1))
    cf = E.compile(_dropout_attention)
    results = []
    for fn in (_dropout_attention, cf, cf):             # eager, then the compiled call twice (the key advances)
        E.manual_seed(3)
        out = fn(q, k, v, masked, p)
        (out * out).sum().backward()
        results.append((out.detach().numpy(), [t.grad.numpy().copy() for t in (q, k, v)]))
        for t in (q, k, v):
            t.grad = None
    (want, want_g), (got, got_g) = results[0], results[1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for g, w in zip(got_g, want_g):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[2][0], want, rtol=1e-4, atol=1e-5)     # same seed, same draws again
    assert "attention×1" in str(E.explain(_dropout_attention, q, k, v, masked, p))
    E.manual_seed(3)
    a = cf(q, k, v, masked, p).detach().numpy()
    b = cf(q, k, v, masked, p).detach().numpy()          # the generator moved on: other draws
    assert not np.allclose(a, b)


def test_sdpa_with_dropout_compiles_into_the_fused_op():
    """F.scaled_dot_product_attention(dropout_p > 0) runs its ops eagerly; compiled, the pass finds them
    (scale on q, where(keep, ., -inf), softmax, F.dropout) and the fused op draws the same numbers."""
    def f(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.2, is_causal=True)
    q, k, v = (E.randn(2, 2, 12, 8, requires_grad=True) for _ in range(3))
    assert "attention×1" in str(E.explain(f, q, k, v))
    outs = []
    for fn in (f, E.compile(f)):
        E.manual_seed(1)
        out = fn(q, k, v)
        out.square().sum().backward()
        outs.append((out.detach().numpy(), [t.grad.numpy().copy() for t in (q, k, v)]))
        for t in (q, k, v):
            t.grad = None
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    for g, w in zip(outs[1][1], outs[0][1]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
