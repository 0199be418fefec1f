"""ember's float32 GEMM (ember/codegen/gemm_f32.py, ember/runtime/gemm_f32.py): the outer, dot and packed
forms against a float64 reference on random shapes and layouts (edge tiles in rows and columns, every
register tile, K blocks and the K split across threads; B's rows copied, B transposed or gathered into
panels), the output written only inside [M, N], the same bits on any thread count, the plan that routes
products between the forms and BLAS, and the eager / compiled paths that reach it."""
from __future__ import annotations

from unittest import mock

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ember
from ember.codegen import gemm_f32 as gen
from ember.kernels import blas_threads
from ember.runtime import gemm_f32, gemm_operands

_BY_WIDTH = {}


def _gemm(bits: int) -> gemm_f32.F32Gemm:
    """The module with one vector width's tiles (and its way of storing edges), compiled for this host
    whichever it is: AVX2's kernels are tested on an AVX-512 machine too, and the other way round."""
    if gen.TILES[bits] is gemm_f32.host_tiles():
        return gemm_f32.instance()
    if bits not in _BY_WIDTH:
        _BY_WIDTH[bits] = gemm_f32.F32Gemm(gen.TILES[bits])
    return _BY_WIDTH[bits]


def _tiles(form: str) -> list:
    return [pytest.param(bits, t, id=f"{bits}-{t.tag}") for bits in (512, 256) for t in getattr(gen.TILES[bits], form)]


def _operand(rng, shape, transposed: bool) -> np.ndarray:
    """A float32 [r, c] array, stored row-major or as the transpose of a row-major [c, r]."""
    if transposed:
        return np.ascontiguousarray(rng.standard_normal(shape[::-1]).astype(np.float32)).T
    return rng.standard_normal(shape).astype(np.float32)


def _check(a, b, got):
    ref = a.astype(np.float64) @ b.astype(np.float64)
    # float32 accumulation of k products: error bound ~ k * eps * sum |a||b|
    bound = 4 * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-30
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.all(np.abs(got - ref) <= bound * max(1, a.shape[1]) ** 0.5 * 4), np.max(np.abs(got - ref) / bound)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 70), k=st.integers(1, 90), n=st.integers(1, 120), ta=st.booleans(),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 16))
def test_outer_form_matches_float64(m, k, n, ta, threads, seed):
    rng = np.random.default_rng(seed)
    a, b = _operand(rng, (m, k), ta), _operand(rng, (k, n), False)
    _check(a, b, gemm_f32.matmul(a, b, threads=threads, form="outer"))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 300), n=st.integers(1, 40), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2 ** 16))
def test_dot_form_matches_float64(m, k, n, threads, seed):
    rng = np.random.default_rng(seed)
    a, b = _operand(rng, (m, k), False), _operand(rng, (k, n), True)
    _check(a, b, gemm_f32.matmul(a, b, threads=threads, form="dot"))


@pytest.mark.parametrize("bits,tile", _tiles("outer"))
@pytest.mark.parametrize("packed", [False, True])
def test_every_outer_tile_plain_and_packed(bits, tile, packed):
    """Each register tile, reading B in place or through packed column blocks (a ragged last block), on a
    product with edge tiles both ways."""
    rng = np.random.default_rng(1)
    m, k, n = 3 * tile.mr + 1, 7, 5 * tile.nr + 5
    a, b = _operand(rng, (m, k), True), _operand(rng, (k, n), False)
    out = np.full((m, n + 3), np.nan, np.float32)           # a wider row: ldc != N, columns past N untouched
    g = _gemm(bits)
    args = (gemm_f32._addr(a), a.strides[0] // 4, a.strides[1] // 4, gemm_f32._addr(b), b.strides[0] // 4,
            out.__array_interface__["data"][0], out.strides[0] // 4, 0, m, 0, n, k, 0)
    if packed:
        panel = np.full(k * 2 * tile.nr, np.nan, np.float32)
        g.outer_packed[tile](*args, panel.__array_interface__["data"][0], 2 * tile.nr)
    else:
        g.outer[tile](*args)
    _check(a, b, out[:, :n])
    assert np.isnan(out[:, n:]).all()


@pytest.mark.parametrize("bits,tile", _tiles("dot"))
def test_every_dot_tile_with_k_blocks(bits, tile):
    """K in several blocks (accumulators parked between them) and a ragged last block, edge tiles both ways."""
    rng = np.random.default_rng(2)
    m, k, n = 2 * tile.ra + 1, 3 * 32 + 5, 2 * tile.rb + 3
    a, b = _operand(rng, (m, k), False), _operand(rng, (k, n), True)
    out = np.full((m, n + 2), np.nan, np.float32)
    g = _gemm(bits)
    scratch = np.zeros(-(-m // tile.ra) * -(-n // tile.rb) * tile.ra * tile.rb * 16 + 16, np.float32)
    sp = scratch.__array_interface__["data"][0]
    g.dot[tile](gemm_f32._addr(a), a.strides[0] // 4, gemm_f32._addr(b), b.strides[1] // 4,
                out.__array_interface__["data"][0], out.strides[0] // 4, 0, m, 0, n, 0, k, 32,
                sp + (-sp) % 64, 0)
    _check(a, b, out[:, :n])
    assert np.isnan(out[:, n:]).all()


def test_accumulate_flag_adds_to_the_output():
    rng = np.random.default_rng(3)
    a, b = _operand(rng, (5, 9), False), _operand(rng, (9, 21), False)
    c = rng.standard_normal((5, 21)).astype(np.float32)
    out = c.copy()
    g = gemm_f32.instance()
    t = g.outer_tile(5, 21)
    g.outer[t](gemm_f32._addr(a), 9, 1, gemm_f32._addr(b), 21, gemm_f32._addr(out), 21, 0, 5, 0, 21, 9, 1)
    np.testing.assert_allclose(out, c + a @ b, rtol=1e-5, atol=1e-5)


def test_k_split_across_threads_sums_the_parts():
    """A long contraction into a small result splits K across threads, then sums the parts."""
    rng = np.random.default_rng(4)
    a, b = _operand(rng, (12, 3 * gemm_f32.DOT_KC + 17), False), _operand(rng, (3 * gemm_f32.DOT_KC + 17, 30), True)
    _check(a, b, gemm_f32.matmul(a, b, threads=2, form="dot"))


def _strided(rng, shape, layout: str) -> np.ndarray:
    """A float32 [r, c] operand: "rows" row-major, "cols" the transpose of a row-major [c, r], "strided" no
    unit stride at all (every other element of every other row, which the packing gathers), "reversed"
    negative strides both ways."""
    if layout == "reversed":
        return rng.standard_normal(shape).astype(np.float32)[::-1, ::-1]
    if layout == "strided":
        return rng.standard_normal((2 * shape[0], 2 * shape[1])).astype(np.float32)[::2, ::2]
    return _operand(rng, shape, layout == "cols")


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 150), k=st.integers(1, 200), n=st.integers(1, 150),
       la=st.sampled_from(["rows", "cols", "strided", "reversed"]),
       lb=st.sampled_from(["rows", "cols", "strided", "reversed"]),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 16))
def test_packed_form_matches_float64(m, k, n, la, lb, threads, seed):
    rng = np.random.default_rng(seed)
    a, b = _strided(rng, (m, k), la), _strided(rng, (k, n), lb)
    _check(a, b, gemm_f32.matmul(a, b, threads=threads, form="packed"))


@pytest.mark.parametrize("bits,tile", _tiles("packed"))
@pytest.mark.parametrize("layout", ["rows", "cols", "strided"])
def test_every_packed_tile_with_k_blocks(bits, tile, layout):
    """Each tile over B packed from each layout, in K blocks (C accumulated across them) with a ragged last
    block, column groups of one panel, edge tiles both ways; nothing written past column N of a wider C."""
    rng = np.random.default_rng(8)
    m, k, n = 3 * tile.mr + 1, 2 * 24 + 7, 2 * tile.nr + 5
    a, b = _operand(rng, (m, k), True), _strided(rng, (k, n), layout)
    out = np.full((m, n + 3), np.nan, np.float32)
    g = _gemm(bits)
    g.run_packed(gemm_f32._addr(a), a.strides[0] // 4, a.strides[1] // 4, gemm_f32._addr(b), b.strides[0] // 4,
                 b.strides[1] // 4, out.__array_interface__["data"][0], out.strides[0] // 4, m, n, k, 2, tile=tile,
                 kc=24, nc=tile.nr)
    _check(a, b, out[:, :n])
    assert np.isnan(out[:, n:]).all()


def test_packed_accumulate_flag_adds_to_the_output():
    rng = np.random.default_rng(9)
    a, b = _operand(rng, (70, 40), False), _operand(rng, (40, 100), True)
    c = rng.standard_normal((70, 100)).astype(np.float32)
    out = c.copy()
    g = gemm_f32.instance()
    t = gemm_f32.host_tiles().packed[0]
    panels = -(-100 // t.nr)
    bp = np.zeros(40 * panels * t.nr + 16, np.float32)
    bpa = bp.__array_interface__["data"][0]
    bpa += (-bpa) % 64
    g.pack_b(gemm_f32._addr(b), b.strides[0] // 4, b.strides[1] // 4, 40, 100, t.nr, 40, 0, panels, bpa)
    g.packed[t](gemm_f32._addr(a), 40, 1, bpa, gemm_f32._addr(out), 100, 0, 70, 0, 100, 100, 40, 40, t.nr, 1)
    np.testing.assert_allclose(out, c + a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,k,n,ta,tb", [(1024, 128, 384, False, True), (1024, 512, 128, False, False),
                                         (384, 1024, 128, True, False), (128, 1024, 512, True, False)])
def test_gpt_products_take_the_packed_form(m, k, n, ta, tb):
    """The GPT step's products in the layouts its externs pass (x @ W^T, dY @ W, dY^T @ X) are packed-form
    products, equal to float64 and the same bits on 1 and 2 threads; the head's (N, K or M = 65) stay with BLAS."""
    rng = np.random.default_rng(10)
    a, b = _operand(rng, (m, k), ta), _operand(rng, (k, n), tb)
    assert gemm_f32.plan(m, k, n, a.strides, b.strides) == "packed"
    one = gemm_f32.matmul(a, b, threads=1, form="packed")     # (forced: see `host_takes` for AVX2)
    _check(a, b, one)
    np.testing.assert_array_equal(gemm_f32.matmul(a, b, threads=2, form="packed"), one)
    for (hm, hk, hn, ha, hb) in [(1024, 128, 65, False, True), (1024, 65, 128, False, False), (65, 1024, 128, True, False)]:
        x, w = _operand(rng, (hm, hk), ha), _operand(rng, (hk, hn), hb)
        assert gemm_f32.plan(hm, hk, hn, x.strides, w.strides) is None


def test_plan_routes_each_shape():
    """Thin products to the outer / dot forms, large ones (square ones too) to the packed form, small ones and
    ragged narrow results to BLAS."""
    f32 = np.float32
    sq = np.ones((512, 512), f32)
    assert gemm_f32.plan(512, 512, 512, sq.strides, sq.strides) == "packed"
    wide = np.ones((512, 100), f32)                                              # N = 100: 8x48 wastes 22%
    assert gemm_f32.plan(512, 512, 100, sq.strides, wide.strides) is None
    tiny = np.ones((8, 8), f32)
    assert gemm_f32.plan(8, 8, 8, tiny.strides, tiny.strides) is None            # call overhead
    a, b = np.ones((20, 250), f32), np.ones((250, 4096), f32)
    assert gemm_f32.plan(20, 250, 4096, a.strides, b.strides) == "outer"         # conv2 forward
    a1, b1 = np.ones((10, 26), f32), np.ones((26, 36864), f32)
    assert gemm_f32.plan(10, 26, 36864, a1.strides, b1.strides) is None          # one row tile of a big B
    a, bt = np.ones((20, 4096), f32), np.ones((251, 4096), f32).T
    assert gemm_f32.plan(20, 4096, 251, a.strides, bt.strides) == "dot"          # conv2 weight gradient
    odd = np.ones((20, 251), f32)[:, ::2]                                        # columns 8 bytes apart
    assert gemm_f32.plan(20, 126, 4096, odd.strides, b[:126].strides) == "outer"
    assert gemm_f32.matmul(np.ones((4, 4), np.float64), np.ones((4, 4), np.float64)) is None


def test_strided_and_overlapping_operands():
    rng = np.random.default_rng(5)
    big = rng.standard_normal((40, 600)).astype(np.float32)
    a = big[:, ::3][:, :60]                 # K stride 3
    b = rng.standard_normal((60, 5000)).astype(np.float32)[:, 7:4007]
    assert gemm_f32.plan(40, 60, 4000, a.strides, b.strides) == "outer"
    _check(a, b, gemm_f32.matmul(a, b, form="outer"))       # (forced: on AVX2 `host_takes` leaves it to BLAS)
    out = np.empty((40, 4000), np.float32)
    assert gemm_f32.matmul(a, b, out=out, form="outer") is out
    # an output that overlaps an operand is left to numpy
    x = np.ones((64, 64), np.float32)
    assert gemm_f32.matmul(x[:, :32], np.ones((32, 4000), np.float32)[:, :64], out=x[:, 32:]) is None


def test_nonfinite_values_propagate():
    a = np.ones((16, 40), np.float32)
    b = np.ones((40, 4096), np.float32)
    a[3, 5] = np.inf
    b[7, 100] = np.nan
    got = gemm_f32.matmul(a, b, form="outer")
    ref = a @ b
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))


def test_eager_and_compiled_convolution_use_it_and_match_torch_free_reference():
    """The MNIST conv2 product shape through eager F.conv2d and a compiled module equals numpy."""
    assert blas_threads.F32_MATMUL is not None
    rng = np.random.default_rng(6)
    x = ember.tensor(rng.standard_normal((64, 10, 12, 12)).astype(np.float32), requires_grad=True)
    conv = ember.nn.Conv2d(10, 20, 5)
    y = conv(x)
    cols = np.lib.stride_tricks.sliding_window_view(x.detach().numpy(), (5, 5), axis=(2, 3))   # N,C,8,8,5,5
    ref = np.einsum("ncijkl,ockl->noij", cols.astype(np.float64), conv.weight.detach().numpy().astype(np.float64))
    ref += conv.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-4, atol=1e-4)
    compiled = ember.compile(conv)
    np.testing.assert_allclose(compiled(x).detach().numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,k,n,form", [(20, 250, 4096, "outer"), (251, 20, 4096, "outer"), (10, 25, 36864, "outer"),
                                        (20, 4096, 251, "dot"), (300, 1500, 200, "packed"),
                                        (12, 2 * gemm_f32.DOT_K_PART + 100, 30, "dot")])
def test_same_bits_on_any_number_of_threads(m, k, n, form):
    """Work is split by output tiles, or by K parts fixed by the shape: the thread count never changes a bit."""
    rng = np.random.default_rng(7)
    a, b = _operand(rng, (m, k), m > k), _operand(rng, (k, n), form == "dot")
    one = gemm_f32.matmul(a, b, threads=1, form=form)
    for threads in (2, 3):
        np.testing.assert_array_equal(gemm_f32.matmul(a, b, threads=threads, form=form), one)


@settings(max_examples=30, deadline=None)
@given(batch=st.sampled_from([(1,), (5,), (2, 3), (3, 1), (1, 4)]), bcast=st.sampled_from(["none", "a", "b"]),
       m=st.integers(1, 40), k=st.integers(1, 50), n=st.integers(1, 70),
       la=st.sampled_from(["rows", "cols", "strided"]), lb=st.sampled_from(["rows", "cols", "strided"]),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 16))
def test_batched_form_matches_float64(batch, bcast, m, k, n, la, lb, threads, seed):
    """Batches (one operand broadcast, or not) of every layout, through the batch kernel or, where the
    batch dims do not flatten into one stride, left to numpy (None)."""
    rng = np.random.default_rng(seed)

    def stack(shape, layout, lead):
        return np.stack([_strided(rng, shape, layout) for _ in range(int(np.prod(lead)))]).reshape(lead + shape)
    a = stack((m, k), la, (1,) * len(batch) if bcast == "a" else batch)
    b = stack((k, n), lb, (1,) * len(batch) if bcast == "b" else batch)
    got = gemm_f32.matmul(a, b, threads=threads, form="batch")
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    if got is None:         # a layout whose batch dims do not flatten
        assert gemm_operands.batch_stride(np.broadcast_to(a, ref.shape[:-2] + (m, k))) is None \
            or gemm_operands.batch_stride(np.broadcast_to(b, ref.shape[:-2] + (k, n))) is None
        return
    assert got.shape == ref.shape and got.dtype == np.float32
    bound = 16 * np.finfo(np.float32).eps * max(1, k) ** 0.5 * np.matmul(np.abs(a).astype(np.float64), np.abs(b))
    assert np.all(np.abs(got - ref) <= bound + 1e-30)


def test_attention_products_route_by_b_layout_and_keep_bits():
    """Q @ K^T (a K-contiguous B, slow in numpy) takes the batch kernel, the same bits on 1 and 2 threads, into
    a given output too; P @ V (B's rows contiguous) stays with numpy; a batch of rows times one weight is one
    2-D product."""
    rng = np.random.default_rng(11)
    q, kk, v = (rng.standard_normal((16, 4, 64, 32)).astype(np.float32) for _ in range(3))
    kt = kk.transpose(0, 1, 3, 2)
    assert gemm_f32.plan_batched(64, 64, 32, 64, q.strides[-2:], kt.strides[-2:]) == "batch"
    p = rng.standard_normal((16, 4, 64, 64)).astype(np.float32)
    assert gemm_f32.plan_batched(64, 64, 64, 32, p.strides[-2:], v.strides[-2:]) is None
    assert gemm_f32.matmul(p, v) is None
    one = gemm_f32.matmul(q, kt, threads=1, form="batch")      # (forced: on AVX2 BLAS takes it, `host_takes`)
    np.testing.assert_allclose(one, np.matmul(q.astype(np.float64), kt), rtol=1e-5, atol=1e-5)
    out = np.empty((16, 4, 64, 64), np.float32)
    assert gemm_f32.matmul(q, kt, out=out, threads=2, form="batch") is out
    np.testing.assert_array_equal(out, one)
    assert gemm_f32.matmul(q, kt, out=np.empty((16, 4, 64, 65), np.float32)[..., :64], form="batch") is not None
    assert gemm_f32.matmul(q, kt, out=q[..., :1, :1], form="batch") is None      # wrong shape: numpy's error
    x, w = rng.standard_normal((16, 64, 128)).astype(np.float32), rng.standard_normal((384, 128)).astype(np.float32)
    np.testing.assert_allclose(gemm_f32.matmul(x, w.T), np.matmul(x.astype(np.float64), w.T), rtol=1e-4, atol=1e-4)


def test_eager_attention_scores_match_torch(monkeypatch):
    """Attention scores and their gradients through ember's eager matmul (the batch kernel) = torch."""
    torch = pytest.importorskip("torch")
    calls = []
    run = gemm_f32.F32Gemm.run_batch
    monkeypatch.setattr(gemm_f32.F32Gemm, "run_batch", lambda self, *a, **kw: calls.append(a[-4:-1]) or run(self, *a, **kw))
    rng = np.random.default_rng(12)
    qn, kn = (rng.standard_normal((4, 4, 64, 32)).astype(np.float32) for _ in range(2))
    g = rng.standard_normal((4, 4, 64, 64)).astype(np.float32)
    q, k = ember.tensor(qn, requires_grad=True), ember.tensor(kn, requires_grad=True)
    s = q @ k.transpose(-2, -1)
    s.backward(ember.tensor(g))
    tq, tk = torch.tensor(qn, requires_grad=True), torch.tensor(kn, requires_grad=True)
    ts = tq @ tk.transpose(-2, -1)
    ts.backward(torch.tensor(g))
    np.testing.assert_allclose(s.detach().numpy(), ts.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(q.grad.numpy(), tq.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(k.grad.numpy(), tk.grad.numpy(), rtol=1e-4, atol=1e-4)
    # the forward Q @ K^T (M, N, K) by the batch kernel, where ember's kernels take products on this CPU
    assert ((64, 64, 32) in calls) == gemm_f32.host_takes("batch", q.detach().numpy().strides[-2:])


def _gather_case(dtype, seed, m, k, runs, length, transposed, const):
    """(src, desc, G, a, out) for a @ G (transposed: a @ G^T), G = gathered(src, desc) [k, runs * length]:
    random row offsets and run starts into a 4096-element source, the last row the constant 1.0 if const."""
    from ember.kernels import blas
    rng = np.random.default_rng(seed)
    src = rng.standard_normal(4096).astype(dtype)
    J = runs * length
    koff = [int(x) for x in rng.integers(0, 4096 - 64 * 5 - length, k)]
    starts = [int(s) for s in rng.integers(0, 64 * 5, runs)]
    consts = ()
    if const:
        koff[-1] = -1
        consts = ((k - 1, 1.0),)
    desc = (k, J, length, tuple(koff), tuple(starts), consts)
    a = rng.standard_normal((m, J) if transposed else (m, k)).astype(dtype)
    out = np.full((m, k) if transposed else (m, J), np.nan, dtype)
    return src, desc, blas.gathered(np, src, desc), a, out


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 700), runs=st.integers(1, 5), length=st.integers(1, 70),
       transposed=st.booleans(), const=st.booleans(), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 16))
@example(m=30, k=600, runs=2, length=300, transposed=False, const=True, threads=2, seed=1)   # column blocks
def test_gathered_operand_read_in_place(m, k, runs, length, transposed, const, threads, seed):
    """a @ G and a @ G^T with G = gathered(src, desc) never stored: random row offsets, run starts and a
    constant row; long contractions (K x L past the L2 block: the run is cut in column blocks) and edge tiles."""
    src, desc, g, a, out = _gather_case(np.float32, seed, m, k, runs, length, transposed, const)
    got = gemm_f32.matmul_gathered(a, src, desc, out, transposed=transposed, threads=threads)
    assert got is out
    _check(a, g.T if transposed else g, got)


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from([512, 256]), m=st.integers(1, 40), k=st.integers(1, 300), runs=st.integers(1, 4),
       length=st.integers(1, 90), transposed=st.booleans(), const=st.booleans(), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2 ** 16))
@example(bits=256, m=20, k=251, runs=2, length=512, transposed=False, const=True, threads=2, seed=1)  # whole tiles
@example(bits=256, m=20, k=251, runs=2, length=512, transposed=True, const=False, threads=2, seed=1)  # 32-k steps
def test_bf16_gathered_operand_read_in_place(bits, m, k, runs, length, transposed, const, threads, seed):
    """The bf16 forms (compiled convolutions under autocast): a bf16 source and operand, float32 sums, the
    outer form rounding once into a bf16 C -- whole tiles in the paired lane order, edge tiles (runs of any
    length) in the columns' order -- the dot form in 32-k word steps plus masked tails; against float64, for
    both vector widths' kernels on this host."""
    src, desc, g, a, out = _gather_case(ml_dtypes.bfloat16, seed, m, k, runs, length, transposed, const)
    g = g.astype(np.float64)
    with mock.patch.object(gemm_f32, "_INSTANCE", _gemm(bits)):
        got = gemm_f32.matmul_gathered(a, src, desc, out, transposed=transposed, threads=threads)
    assert got is out
    b = g.T if transposed else g
    ref = a.astype(np.float64) @ b
    # float32 sums of exact products, then one rounding to bf16 (half a unit: 2^-9 relative)
    bound = (4 * np.finfo(np.float32).eps * max(1, b.shape[0]) ** 0.5 * (np.abs(a).astype(np.float64) @ np.abs(b))
             + 2.0 ** -8 * np.abs(ref) + 1e-30)
    assert np.all(np.abs(got.astype(np.float64) - ref) <= bound)


@pytest.mark.parametrize("m,k,n,split", [(1000, 130, 700, "rows"), (601, 97, 333, "rows"), (100, 130, 1000, "cols"),
                                         (97, 1100, 1001, "cols")])
def test_threads_claim_every_row_or_panel_once(m, k, n, split):
    """Threads share a product one call each, claiming chunks of rows (or of B's panels) in native code: chunk
    sizes that do not divide the rows, several K blocks, a second call that finds the counter run out -- the
    result is the one-thread product, bit for bit."""
    rng = np.random.default_rng(3)
    a, b = _operand(rng, (m, k), False), _operand(rng, (k, n), True)
    one = gemm_f32.matmul(a, b, threads=1, form="packed")
    _check(a, b, one)
    g = gemm_f32.instance()
    out = np.full((m, n), np.nan, np.float32)
    ptr = gemm_f32.gemm_operands.ptr
    blocked = None
    for threads in (1, 2, 3, 5):          # K blocks of 512 (a second block adds to C)
        out[...] = np.nan
        g.run_packed(ptr(a), a.strides[0] >> 2, a.strides[1] >> 2, ptr(b), b.strides[0] >> 2, b.strides[1] >> 2,
                     ptr(out), n, m, n, k, threads, kc=512, split=split)
        if blocked is None:
            blocked = out.copy()
            _check(a, b, blocked)
        np.testing.assert_array_equal(out, blocked)
    # the claiming kernel called twice in turn on one counter: the first takes every chunk, the second none
    t = gemm_f32.packed_tile(m, n)[0]
    kc, nc = gemm_f32._blocking(t, k)
    npan = -(-n // t.nr)
    share = np.zeros(1, np.int64)
    out[...] = np.nan

    def panels():       # the packed panels are stored 64-byte aligned
        raw = np.empty(-(-k // kc) * npan * kc * t.nr + 16, np.float32)
        return ptr(raw) + (-ptr(raw)) % 64, raw
    if split == "rows":
        bp, keep = panels()
        g.pack_b(ptr(b), b.strides[0] >> 2, b.strides[1] >> 2, k, n, t.nr, kc, 0, npan, bp)
        for _ in range(2):
            g.claiming[id(g.packed[t])](ptr(a), a.strides[0] >> 2, a.strides[1] >> 2, bp, ptr(out), n, 0, m, 0, n, n, k,
                                    kc, nc, 0, 5 * t.mr, ptr(share))
    else:
        for _ in range(2):
            bp, keep = panels()
            g.claiming[id(g.packed_cols[t])](ptr(a), a.strides[0] >> 2, a.strides[1] >> 2, ptr(b), b.strides[0] >> 2,
                                             b.strides[1] >> 2, ptr(out), n, m, n, k, kc, nc, 0, 0, npan, bp, 3,
                                             ptr(share))
    np.testing.assert_array_equal(out, one)


@pytest.mark.parametrize("nb", [1, 7, 37, 64])
def test_batch_products_claimed_once_each(nb):
    """The batch kernel's products claimed in chunks by several calls: every product once, the same bits."""
    rng = np.random.default_rng(nb)
    q, kk = (rng.standard_normal((nb, 64, 32)).astype(np.float32) for _ in range(2))
    kt = kk.transpose(0, 2, 1)
    one = gemm_f32.matmul(q, kt, threads=1, form="batch")
    np.testing.assert_allclose(one, np.matmul(q.astype(np.float64), kt), rtol=1e-5, atol=1e-5)
    for threads in (2, 3):
        np.testing.assert_array_equal(gemm_f32.matmul(q, kt, threads=threads, form="batch"), one)
