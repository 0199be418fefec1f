"""The generated bfloat16 GEMM (ember/codegen/gemm_bf16.py + ember/runtime/gemm_bf16.py) against a float64
reference on the same bf16 inputs: random shapes (hypothesis) including every edge-tile case, all
operand layouts, bias, both output dtypes, batches, both code paths (vdpbf16ps and the FMA fallback).

Error bound: the products of bf16 values are exact in float32, so the only errors are the float32 sums,
|C - ref| <= (K + 1) * 2^-24 * sum_k |a_ik b_kj| (+ |bias|) (Higham's gamma_K, with margin), plus, for a
bf16 output, one rounding: 2^-8 |ref|."""
import dataclasses

import ml_dtypes
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from ember.codegen import gemm_bf16 as gen
from ember.kernels import casts
from ember.runtime import gemm_bf16 as G

BF = np.dtype(ml_dtypes.bfloat16)
PATHS = [pytest.param(True, id="vdpbf16ps"), pytest.param(False, id="fma-fallback"),
         pytest.param("avx2", id="avx2-config")]


@pytest.fixture(scope="module", params=PATHS)
def gemm(request):
    if request.param is True and not G.host_has_bf16():
        pytest.skip("this CPU has no AVX512-BF16")
    # small cache blocks so that modest shapes cross several K and M blocks
    if request.param == "avx2":
        # the configuration an AVX2 host gets (its tiles, no direct-B path, plain whole-vector moves),
        # compiled for whatever this host is: its code paths are tested on an AVX-512 CI machine too
        avx2 = gen.host_config(False, 256)
        assert avx2.tiles == gen.AVX2_TILES and not avx2.masked16 and not avx2.direct_b_tiles
        return G.Bf16Gemm(dataclasses.replace(avx2, mc=48, kc=64))
    return G.Bf16Gemm(gen.GemmConfig(mc=48, kc=64, dpbf16=request.param))


def _check(c, a, b, bias=None, out_dtype=BF):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = np.matmul(a64, b64)
    mag = np.matmul(np.abs(a64), np.abs(b64))
    if bias is not None:
        ref = ref + bias.astype(np.float64)
        mag = mag + np.abs(bias.astype(np.float64))
    K = a.shape[-1]
    bound = 2.0 * (K + 1) * 2.0 ** -24 * mag
    if np.dtype(out_dtype) == BF:
        bound = bound + 2.0 ** -8 * np.abs(ref)
    assert c.dtype == np.dtype(out_dtype) and c.shape == ref.shape
    err = np.abs(c.astype(np.float64) - ref)
    assert (err <= bound + 1e-38).all(), f"max err/bound {np.max(err / (bound + 1e-38))}"


def _rand(rng, shape):
    return (rng.standard_normal(shape) * 2.0).astype(BF)


def _layout(x, transposed):
    """The same values, stored transposed (column-major) when asked."""
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(x, -1, -2)), -1, -2) if transposed else x


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 70), n=st.integers(1, 110), k=st.integers(1, 150), ta=st.booleans(), tb=st.booleans(),
       with_bias=st.booleans(), f32=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_random_shapes_within_bound(gemm, m, n, k, ta, tb, with_bias, f32, seed):
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
    bias = _rand(rng, (n,)) if with_bias else None
    od = np.float32 if f32 else BF
    c = gemm.mm(_layout(a, ta), _layout(b, tb), bias=bias, out_dtype=od, threads=1)
    _check(c, a, b, bias, od)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (48, 48, 64), (49, 47, 65), (24, 16, 2), (23, 17, 3), (96, 96, 128),
                                   (7, 200, 9), (200, 3, 130), (5, 33, 64), (5, 32, 63)])
@pytest.mark.parametrize("threads", (1, 2))
def test_edge_tiles_every_width_class(gemm, m, n, k, threads):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
    for od in (BF, np.float32):
        _check(gemm.mm(a, b, out_dtype=od, threads=threads), a, b, out_dtype=od)


def test_every_tile_is_exercised(gemm):
    rng = np.random.default_rng(0)
    for t in gemm.cfg.tiles:
        gemm._tile_of[37] = t
        a, b = _rand(rng, (50, 70)), _rand(rng, (70, 37))
        _check(gemm.mm(a, b, threads=1), a, b)
    gemm._tile_of.clear()
    assert {gemm.tile_for(n).nv for n in (10, 20, 48, 300)} == {t.nv for t in gemm.cfg.tiles}   # every width


@pytest.mark.parametrize("sa,sb", [((4, 10, 25), (4, 25, 60)), ((10, 25), (6, 25, 60)), ((3, 2, 7, 9), (3, 2, 9, 33)),
                                   ((2, 1, 5, 4), (1, 3, 4, 6)), ((6, 50, 25), (25, 10)), ((3, 40, 130), (3, 130, 50))])
@pytest.mark.parametrize("tb", (False, True))
def test_batched_products(gemm, sa, sb, tb):
    rng = np.random.default_rng(1)
    a, b = _rand(rng, sa), _rand(rng, sb)
    for od in (BF, np.float32):
        _check(gemm.matmul(a, _layout(b, tb), out_dtype=od), a, b, out_dtype=od)


@pytest.mark.parametrize("m,k,n", [(37, 301, 45), (64, 64, 128), (100, 77, 70), (19, 210, 130)])
def test_lane_contiguous_operands_through_the_kernel(gemm, m, k, n):
    """Transposed operands (a weight gradient's X^T, attention's P^T) large enough for the kernel: packed
    from lane-contiguous rows -- whole 16-lane vectors inside the panel and matrix, single words at the
    edges -- odd K, several K blocks, lanes past the matrix's edge."""
    rng = np.random.default_rng(m + k + n)
    a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
    assert 2 * m * n * k >= G.SMALL_FLOPS
    for threads in (1, 2):
        _check(gemm.mm(_layout(a, True), b, threads=threads), a, b)
        _check(gemm.mm(_layout(a, True), _layout(b, True), out_dtype=np.float32, threads=threads), a, b,
               out_dtype=np.float32)
    a3 = _rand(rng, (3, m, k))
    _check(gemm.matmul(_layout(a3, True), b, threads=2), a3, b)
    a32 = a3.astype(np.float32)    # rounded to bf16 as packed
    _check(gemm.matmul(_layout(a32, True), b), a3, b)


def test_strided_and_negative_stride_operands(gemm):
    rng = np.random.default_rng(2)
    big = _rand(rng, (60, 90))
    a, b = big[::2, 1::3], big[::-1, ::-2][:30, :20]     # neither axis unit-stride; reversed axes
    _check(gemm.mm(a, b, threads=1), a.copy(), b.copy())


def test_nan_inf_propagate_and_rounding_is_nearest_even(gemm):
    a = np.ones((3, 4), BF)
    b = np.ones((4, 20), BF)
    a[0, 0] = np.nan
    a[1, 1] = np.inf
    c = gemm.mm(a, b, threads=1)
    assert np.isnan(c[0]).all() and np.isposinf(c[1].astype(np.float32)).all()
    assert (c[2].astype(np.float32) == 4.0).all()
    # 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0)
    x = np.array([[1.0, 2.0 ** -8]], np.float32).astype(BF)
    y = np.ones((2, 1), BF)
    assert float(gemm.mm(x, y, threads=1)[0, 0]) == 1.0
    assert float(gemm.mm(x, y, out_dtype=np.float32, threads=1)[0, 0]) == 1.0 + 2.0 ** -8


def test_empty_and_zero_k(gemm):
    assert gemm.mm(np.ones((0, 3), BF), np.ones((3, 4), BF)).shape == (0, 4)
    z = gemm.mm(np.ones((2, 0), BF), np.ones((0, 5), BF), out_dtype=np.float32)
    assert z.shape == (2, 5) and not z.any()


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 70), k=st.integers(1, 140), n=st.integers(1, 70), ta=st.booleans(), tb=st.booleans(),
       which=st.sampled_from(["a", "b", "both"]), seed=st.integers(0, 2 ** 16))
@example(m=51, k=51, n=50, ta=True, tb=True, which="a", seed=35)   # np.stack of transposes: not C-contiguous
def test_float32_operands_round_as_packed_like_eager_cast(gemm, m, k, n, ta, tb, which, seed):
    """A float32 operand is rounded to bf16 while packed: the product equals the one over eager's bf16
    casts (ember/kernels/casts.py) bit for bit (every packing path: K- or lane-contiguous, odd K, edge
    lanes, several K blocks; small products through float32 BLAS on the same layouts), and denormals
    and ties round as the cast does."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    a, b = (a.T if ta else a), (b.T if tb else b)
    a.flat[0], b.flat[-1] = 1.5e-39, 3.0 * 2.0 ** -9 + 1.0      # a denormal, a tie (rounds to even)

    def cast(x):
        return casts.astype(x, BF)
    want = gemm.matmul(cast(a), cast(b), out_dtype=np.float32)
    got = gemm.matmul(a if which != "b" else cast(a), b if which != "a" else cast(b), out_dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    a2 = np.stack([a, 2 * a])
    batch = gemm.matmul(a2, b if which != "a" else cast(b))     # the batched kernel
    np.testing.assert_array_equal(batch.view(np.uint16), gemm.matmul(cast(a2), cast(b)).view(np.uint16))


@pytest.mark.parametrize("k,n", [(25, 20001), (130, 3001)])
def test_few_rows_many_columns_chunked(gemm, k, n):
    """One row block and a B bigger than a cache chunk (a small convolution's forward): B is packed and
    used chunk by chunk (gemm_cols), the last chunk and panel partial; float32 B rounds as it packs."""
    rng = np.random.default_rng(k)
    a = rng.standard_normal((10, k)).astype(BF)
    b = rng.standard_normal((k, n)).astype(np.float32)
    assert 2 * G.CHUNK_BYTES < (k + 1) // 2 * 4 * n
    _check(gemm.mm(a, b.astype(BF), out_dtype=np.float32), a, b.astype(BF), out_dtype=np.float32)
    bias = rng.standard_normal(n).astype(BF)
    c = gemm.mm(a, b, bias=bias)
    _check(c, a, b.astype(BF), bias=bias)
    np.testing.assert_array_equal(c.view(np.uint16), gemm.mm(a, b.astype(BF), bias=bias).view(np.uint16))


def test_bad_input():
    g = G.instance()
    with pytest.raises(ValueError, match="cannot be multiplied"):
        g.mm(np.ones((2, 3), BF), np.ones((4, 5), BF))
    with pytest.raises(TypeError, match="bfloat16"):
        g.matmul(np.ones((2, 3), np.float64), np.ones((3, 5), BF))
    with pytest.raises(ValueError, match="2 dimensions"):
        g.matmul(np.ones(3, BF), np.ones((3, 5), BF))


def test_generated_ir_uses_the_instruction_only_when_asked():
    with_bf16 = gen.emit_module(gen.GemmConfig(dpbf16=True))
    without = gen.emit_module(gen.GemmConfig(dpbf16=False))
    assert "llvm.x86.avx512bf16.dpbf16ps.512" in with_bf16
    assert "avx512bf16" not in without and "llvm.fma.v16f32" in without
    with pytest.raises(ValueError, match="kc must be even"):
        gen.emit_module(gen.GemmConfig(kc=63))


def test_eager_bf16_matmul_uses_the_kernel_and_matches_torch():
    torch = pytest.importorskip("torch")
    import ember
    rng = np.random.default_rng(3)
    a = rng.standard_normal((70, 300)).astype(np.float32)
    b = rng.standard_normal((300, 90)).astype(np.float32)
    e = (ember.tensor(a).bfloat16() @ ember.tensor(b).bfloat16()).float().numpy()
    t = (torch.tensor(a).bfloat16() @ torch.tensor(b).bfloat16()).float().numpy()
    # both accumulate in float32 and round once: at most one bf16 unit apart
    np.testing.assert_allclose(e, t, rtol=2.0 ** -7, atol=1e-6)


@pytest.mark.parametrize("m,n,k", [(400, 70, 130), (30, 200, 150), (100, 40, 70), (7, 20, 9)])
def test_threads_split_rows_or_columns(gemm, m, n, k, monkeypatch):
    """Every way of sharing a product between threads (rows with B packed by all threads together, B's
    panels with A packed per chunk, one thread) gives the single-thread result bit for bit."""
    monkeypatch.setattr(G, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(G.workers, "backing_off", lambda: False)
    rng = np.random.default_rng(m + n + k)
    a, b = _rand(rng, (m, k)), _layout(_rand(rng, (k, n)), True)
    bias = _rand(rng, (n,))
    for od in (BF, np.float32):
        one = gemm.mm(a, b, bias=bias, out_dtype=od, threads=1)
        _check(one, a, b, bias, od)
        for threads in (2, 3):
            np.testing.assert_array_equal(gemm.mm(a, b, bias=bias, out_dtype=od, threads=threads), one)
    ba, bb = _rand(rng, (5, m, k)), _rand(rng, (5, k, n))     # batches: split by products
    np.testing.assert_array_equal(gemm.matmul(ba, bb, threads=2), gemm.matmul(ba, bb, threads=1))


@pytest.mark.parametrize("claimed", ["none", "all", "some"])
@pytest.mark.parametrize("m,n,k,f32", [(70, 100, 150, False), (33, 47, 63, True)])
def test_shared_b_groups_not_yet_packed_are_packed_privately(gemm, claimed, m, n, k, f32):
    """Threads splitting rows pack B together (gemm_rows: groups of panels claimed from a counter, flagged
    when done); a group still unflagged -- another thread is packing it, or was descheduled -- is packed
    into the thread's own buffer for the K block at hand.  Every mix gives the single-thread bits."""
    from ember.runtime.gemm_operands import operand, ptr
    rng = np.random.default_rng(m + k)
    a, b, bias = _rand(rng, (m, k)), _layout(_rand(rng, (k, n)), f32), _rand(rng, (n,))
    if f32:
        b = b.astype(np.float32)
    tile = gemm.tile_for(n, m)
    pack_b, rows = gemm.fns[tile][:2]
    cfg = gemm.cfg
    npanels, gpan = -(-n // tile.nr), 1
    share = np.zeros(2 + npanels, np.int64)

    def buf(nbytes):    # 64-byte aligned (packed B is loaded as whole zmm), garbage-filled
        x = np.full(nbytes // 4 + 16, 0xFFFF, np.uint32)
        return x[(-ptr(x)) % 64 // 4:]
    bp, bq, bpriv = buf(gen.packed_b_bytes(cfg, tile, n, k)), buf(gen.packed_b_bytes(cfg, tile, n, k)), \
        buf(gen.panel_bytes(cfg, tile.nr, cfg.kc))
    ap = buf(gen.packed_a_bytes(cfg))
    a_ptr, a_ls, a_ks, a_w, _ = operand(a, 1)
    b_ptr, b_ls, b_ks, b_w, _ = operand(b, 0)
    if claimed == "all":            # another thread claimed every group and finished none
        share[0] = npanels
    elif claimed == "some":         # ... claimed and finished the even groups
        for g in range(0, npanels, 2):
            pack_b(b_ptr, b_ls, b_ks, b_w, n, k, g, g + 1, ptr(bp))
            share[2 + g] = 1
        share[0] = npanels
    # B packed beforehand, all rows in one call: the unshared path
    pack_b(b_ptr, b_ls, b_ks, b_w, n, k, 0, npanels, ptr(bq))
    want = np.zeros((m, n), np.float32)
    rows(a_ptr, a_ls, a_ks, a_w, ptr(bq), m, n, k, 0, m, ptr(want), n, None, 0, ptr(bias), ptr(ap), *G._UNSHARED)
    _check(want, a, b.astype(BF), bias, np.float32)
    c = np.zeros((m, n), np.float32)
    for m0, m1, rdiv in ((0, m // 3, 0), (m // 3, m, 3)):  # rows as given; rows claimed in chunks from share[1]
        share[1] = m0
        rows(a_ptr, a_ls, a_ks, a_w, ptr(bp), m, n, k, m0, m1, ptr(c), n, None, 0, ptr(bias), ptr(ap), b_ptr, b_ls,
             b_ks, b_w, ptr(share), gpan, ptr(bpriv), rdiv)
    np.testing.assert_array_equal(c.view(np.uint32), want.view(np.uint32))
    assert share[0] >= npanels and share[1] == m and (claimed != "none" or share[2:].all())


def test_threads_claim_products_and_column_chunks_from_a_shared_counter(gemm):
    """gemm_batch and gemm_cols under threads: each thread's one call claims products (chunks of columns)
    from a shared counter as it goes -- what another thread claimed is left alone, the rest computed."""
    from ember.runtime.gemm_operands import operand, ptr
    rng = np.random.default_rng(5)
    a, b = _rand(rng, (6, 40, 70)), _rand(rng, (6, 70, 50))
    want = gemm.matmul(a, b, out_dtype=np.float32, threads=1)
    tile = gemm.tile_for(50, 40)
    _, _, _, batch_fn, cols_fn = gemm.fns[tile]
    cfg = gemm.cfg
    ap = np.zeros(gen.packed_a_bytes(cfg) // 4 + 16, np.uint32)
    bp = np.zeros(gen.packed_b_bytes(cfg, tile, 600, 70) // 4 + 16, np.uint32)
    ap, bp = ap[(-ptr(ap)) % 64 // 4:], bp[(-ptr(bp)) % 64 // 4:]
    a_ptr, a_ls, a_ks, a_w, _ = operand(a[0], 1)
    b_ptr, b_ls, b_ks, b_w, _ = operand(b[0], 0)
    c = np.full((6, 40, 50), np.nan, np.float32)
    share = np.array([2], np.int64)          # products 0 and 1: another thread's
    batch_fn(a_ptr, 40 * 70, a_ls, a_ks, a_w, b_ptr, 70 * 50, b_ls, b_ks, b_w, 0, 6, 40, 50, 70, ptr(c), 40 * 50, 50,
             None, 0, 50, None, ptr(ap), ptr(bp), ptr(share))
    assert np.isnan(c[:2]).all() and share[0] >= 6
    np.testing.assert_array_equal(c[2:].view(np.uint32), want[2:].view(np.uint32))
    a2, b2 = _rand(rng, (40, 70)), _rand(rng, (70, 600))
    want = gemm.mm(a2, b2, out_dtype=np.float32, threads=1)
    a_ptr, a_ls, a_ks, a_w, _ = operand(a2, 1)
    b_ptr, b_ls, b_ks, b_w, _ = operand(b2, 0)
    c = np.full((40, 600), np.nan, np.float32)
    width = 2 * tile.nr
    share = np.array([width], np.int64)      # the first chunk: another thread's
    cols_fn(a_ptr, a_ls, a_ks, a_w, b_ptr, b_ls, b_ks, b_w, 40, 600, 70, ptr(c), 600, None, 0, None, ptr(ap), ptr(bp),
            width, ptr(share))
    assert np.isnan(c[:, :width]).all()
    np.testing.assert_array_equal(c[:, width:].view(np.uint32), want[:, width:].view(np.uint32))


def test_split_choice():
    assert G._split(row_blocks=11, panels=8, M=1024, N=384, nt=2) == ("rows", 2)
    assert G._split(row_blocks=1, panels=8, M=20, N=250, nt=2) == ("cols", 4)
    assert G._split(row_blocks=1, panels=1, M=20, N=16, nt=2) is None


@pytest.mark.parametrize("lead", [(), (3,)])
def test_autocast_linear_adds_the_bias_in_the_gemm_epilogue(lead):
    """F.linear under CPU autocast: one GEMM with the bias in its epilogue, rounded once (as PyTorch's
    addmm); values and gradients against torch's autocast, grad_fn named like PyTorch's."""
    torch = pytest.importorskip("torch")
    import ember
    rng = np.random.default_rng(4)
    x = rng.standard_normal(lead + (40, 70)).astype(np.float32)
    w = rng.standard_normal((90, 70)).astype(np.float32)
    b = rng.standard_normal(90).astype(np.float32)
    ex, ew, eb = (ember.tensor(v, requires_grad=True) for v in (x, w, b))
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    with ember.autocast("cpu"):
        ey = ember.nn.functional.linear(ex, ew, eb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ty = torch.nn.functional.linear(tx, tw, tb)
    assert ey.dtype is ember.bfloat16 and ey.shape == tuple(ty.shape)
    if not lead:
        assert ey.grad_fn.name() == ty.grad_fn.name() == "AddmmBackward0"
    # one rounding: exactly the GEMM's bf16 result with the bias added in float32
    x2 = x.reshape(-1, 70).astype(BF)
    one = G.instance().matmul(x2, w.astype(BF).T, bias=b.astype(BF)).reshape(ey.shape)
    np.testing.assert_array_equal(ey.detach().float().numpy(), one.astype(np.float32))
    np.testing.assert_allclose(ey.detach().float().numpy(), ty.detach().float().numpy(), rtol=2 ** -7, atol=1e-2)
    gy = rng.standard_normal(ey.shape).astype(np.float32)
    ey.float().backward(ember.tensor(gy))
    ty.float().backward(torch.tensor(gy))
    for e, t in ((ex, tx), (ew, tw), (eb, tb)):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=2e-2, atol=0.3)


def test_addmm_bf16_uses_the_epilogue_and_falls_back_for_scaled_forms():
    import ember
    rng = np.random.default_rng(5)
    a, b, c = (ember.tensor(rng.standard_normal(s).astype(np.float32)).bfloat16() for s in ((9, 20), (20, 33), (33,)))
    r = ember.addmm(c, a, b)
    ref = G.instance().matmul(a.numpy(), b.numpy(), bias=c.numpy())
    np.testing.assert_array_equal(r.float().numpy(), ref.astype(np.float32))
    r2 = ember.addmm(c, a, b, beta=0.5, alpha=2)     # matmul + scaled add: still right, within bf16
    want = 2 * a.float().numpy() @ b.float().numpy() + 0.5 * c.float().numpy()
    np.testing.assert_allclose(r2.float().numpy(), want, rtol=2 ** -6, atol=0.1)


@pytest.mark.parametrize("layout", ["c", "f", "strided", "broadcast", "small", "permuted", "windows"])
def test_generated_casts_equal_numpy_bit_for_bit(layout):
    """float32 <-> bfloat16 through the generated kernels (ember/kernels/casts.py) round exactly like
    ml_dtypes / PyTorch: nearest even, overflow to inf, denormals kept, NaN stays NaN; any layout."""
    from ember.kernels import casts
    assert casts.CONVERT is not None      # installed by the ember package
    rng = np.random.default_rng(6)
    n = 20011
    x = (rng.standard_normal(n) * np.exp(rng.uniform(-95, 95, n))).astype(np.float32)
    x[:12] = [np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-42, 3.4e38, -3.39e38, 1 + 2 ** -8, 1 + 3 * 2 ** -8, np.nan, 1.0]
    layouts = {"c": lambda x: x[:20000].reshape(100, 200), "f": lambda x: x[:20000].reshape(200, 100).T,
               "strided": lambda x: x[::2], "broadcast": lambda x: np.broadcast_to(x[:300], (50, 300)),
               "small": lambda x: x[:100],
               # a product's result read through a permute (a dense buffer in another axis order), and windows
               "permuted": lambda x: x[:19200].reshape(8, 12, 20, 10).transpose(2, 0, 3, 1),
               "windows": lambda x: np.lib.stride_tricks.sliding_window_view(x[:20000].reshape(100, 200), (3, 3))}
    with np.errstate(over="ignore"):
        xb = layouts[layout](x.astype(BF))          # the same layout in bf16: the cast back from it
    got_back = casts.astype(xb, np.float32)
    assert np.array_equal(got_back.view(np.uint32), xb.astype(np.float32).view(np.uint32))
    x = layouts[layout](x)
    with np.errstate(over="ignore"):
        want = x.astype(BF)
    got = casts.astype(x, BF)
    assert got.shape == want.shape and got.dtype == BF and got.flags.writeable
    nan = np.isnan(want.astype(np.float32))
    assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
    assert np.array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])
    back = casts.astype(got, np.float32)
    assert np.array_equal(back.view(np.uint32)[~nan], got.astype(np.float32).view(np.uint32)[~nan])
    import ember
    t = ember.tensor(np.ascontiguousarray(x))
    assert np.array_equal(t.bfloat16().numpy().view(np.uint16)[~nan], want.view(np.uint16)[~nan])


@pytest.mark.parametrize("masked16", [True, False], ids=["masked-moves", "plain-whole-vectors"])
def test_cast_kernels_every_tail_length(masked16):
    """The cvt kernels on every length 0..40 (each tail of a 16-lane step) and around a full block, with
    native masked moves and with the AVX2 form (plain whole vectors, the masked move at the edge): equal to
    ml_dtypes bit for bit, nothing written past the end."""
    g = G.Bf16Gemm(dataclasses.replace(gen.host_config(False, 256), masked16=masked16, f32_panels=not masked16))
    rng = np.random.default_rng(21)
    for n in list(range(41)) + [255, 256, 257]:
        x = (rng.standard_normal(n) * 1e3).astype(np.float32)
        buf = np.full(n + 16, 7, np.uint16)          # guard words after the output
        out = buf[:n].view(BF)
        g._cvt[BF](x.__array_interface__["data"][0] if n else 0, out.__array_interface__["data"][0], n)
        assert np.array_equal(out.view(np.uint16), x.astype(BF).view(np.uint16)) and (buf[n:] == 7).all()
        back = g.convert(np.ascontiguousarray(out), np.float32)
        assert np.array_equal(back, out.astype(np.float32))


def test_cast_split_across_threads_is_exact(monkeypatch):
    """A large cast runs in chunks on the worker threads: every chunk boundary and the tail are exact
    (lengths off the 16-lane step), and the result equals ml_dtypes' bit for bit."""
    monkeypatch.setattr(G, "CONVERT_PARALLEL_MIN", 1000)
    monkeypatch.setenv("EMBER_NUM_THREADS", "3")
    g = G.instance()
    rng = np.random.default_rng(22)
    for n in (2000, 3001, 6047, 50021):
        x = (rng.standard_normal(n) * 1e3).astype(np.float32)
        got = g.convert(x, BF)
        assert np.array_equal(got.view(np.uint16), x.astype(BF).view(np.uint16))
        assert np.array_equal(g.convert(got, np.float32), got.astype(np.float32))


@pytest.mark.parametrize("sa,sb", [((70, 40), (40, 90)), ((3, 30, 40), (40, 20)), ((4, 30, 40), (4, 40, 20)),
                                   ((5, 6), (6, 7))])
def test_out_buffer_is_written_in_place(sa, sb):
    """A compiled graph's extern matmul hands its output buffer down: the GEMM writes into it."""
    from ember.kernels import blas_threads
    rng = np.random.default_rng(7)
    a, b = _rand(rng, sa), _rand(rng, sb)
    want = G.instance().matmul(a, b)
    out = np.full(want.shape, np.nan, BF)
    r = blas_threads.matmul(a, b, out=out)
    assert r is out and np.array_equal(out.view(np.uint16), want.view(np.uint16))
    with pytest.raises(ValueError, match="C-contiguous"):
        G.instance().matmul(a, b, out=np.empty(want.shape, np.float32))


def test_transposed_heads_and_mixed_broadcasts_run_as_one_batch(gemm, monkeypatch):
    """q @ k.transpose(-2, -1) on [B, T, H, hs] views transposed to [B, H, T, hs] (batch strides that do
    not flatten) and a [1, H] x [B, 1] broadcast: one batched kernel call, never a loop of products."""
    rng = np.random.default_rng(8)
    q = _rand(rng, (3, 64, 4, 32)).transpose(0, 2, 1, 3)          # [3, 4, 64, 32], heads transposed
    k = _rand(rng, (3, 64, 4, 32)).transpose(0, 2, 3, 1)          # [3, 4, 32, 64]
    a, b = _rand(rng, (1, 4, 60, 40)), _rand(rng, (3, 1, 40, 50))
    monkeypatch.setattr(gemm, "mm", lambda *a, **k: pytest.fail("a batch ran as a loop of products"))
    for x, y in ((q, k), (a, b)):
        for od in (BF, np.float32):
            _check(gemm.matmul(x, y, out_dtype=od), x.copy(), y.copy(), out_dtype=od)


@pytest.mark.parametrize("m,n,k", [(50, 40, 130), (7, 33, 64), (97, 100, 256), (30, 20, 63)])
def test_a_read_in_place_equals_packed_bit_for_bit(m, n, k):
    """gemm_blockd (A read where it lies: narrow products, K-contiguous A, even K) sums in the packed
    kernel's order: the same bits, edge rows and several K blocks included (odd K packs)."""
    packed = G.Bf16Gemm(gen.GemmConfig(mc=48, kc=64, direct_a_max_n=0, dpbf16=G.host_has_bf16()))
    direct = G.Bf16Gemm(gen.GemmConfig(mc=48, kc=64, direct_a_max_n=1 << 30, dpbf16=G.host_has_bf16()))
    rng = np.random.default_rng(m * n + k)
    a, b, bias = _rand(rng, (m, k)), _rand(rng, (k, n)), _rand(rng, (n,))
    for od in (BF, np.float32):
        want = packed.mm(a, b, bias=bias, out_dtype=od, threads=1)
        _check(want, a, b, bias, od)
        got = direct.mm(a, b, bias=bias, out_dtype=od, threads=1)
        assert np.array_equal(got.view(np.uint16 if od == BF else np.uint32), want.view(np.uint16 if od == BF else np.uint32))
    big = _rand(rng, (m, k + 10))[:, 3:3 + k]        # rows further apart than K: lda != K
    np.testing.assert_array_equal(direct.mm(big, b, threads=1).view(np.uint16), packed.mm(big, b, threads=1).view(np.uint16))


def test_casts_take_the_kernel_for_dtype_objects_and_types(monkeypatch):
    from ember.kernels import casts
    assert casts.CONVERT is not None
    seen = []
    real = casts.CONVERT
    monkeypatch.setattr(casts, "CONVERT", lambda x, d: seen.append(np.dtype(d)) or real(x, d))
    x = np.ones(casts.MIN_ELEMENTS, BF)
    casts.astype(x, np.float32)                 # the type, as the 16-bit kernels pass it
    casts.astype(x.astype(np.float32), BF)
    casts.astype(x[:10], np.float32)            # small: numpy
    casts.astype(x, np.float64)                 # not a bf16 <-> f32 pair: numpy
    assert seen == [np.dtype(np.float32), BF]


# ---------------------------------------------------------------- B read unpacked (gemm_colsb) and plans
@pytest.fixture(scope="module", params=PATHS)
def staged(request):
    """(B staged unpacked, B packed) on small blocks: 64-column stage pieces and 256-deep inner-product
    blocks, so modest shapes cross several pieces and blocks and end in a partial one."""
    if request.param and not G.host_has_bf16():
        pytest.skip("this CPU has no AVX512-BF16")
    cfg = gen.GemmConfig(mc=48, kc=64, stage_cols=64, dot_kb=256, dpbf16=request.param)
    return G.Bf16Gemm(cfg), G.Bf16Gemm(gen.GemmConfig(mc=48, kc=64, direct_b_tiles=(), dpbf16=request.param))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 32), k=st.integers(2, 64), n=st.integers(2, 300), f32=st.booleans(), with_bias=st.booleans(),
       sliced=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_unpacked_b_within_bound_and_equal_to_packed(staged, m, k, n, f32, with_bias, sliced, seed):
    """gemm_colsb (B's rows interleaved into pairs in registers, never packed) against the float64
    reference, and bit for bit against the packed kernel (the same sums in the same order): every row
    count (edge row tiles), odd K (the last pair's high half zero), partial stage pieces and edge
    columns (masked loads), rows further apart than N."""
    direct, packed = staged
    rng = np.random.default_rng(seed)
    a = _rand(rng, (m, k))
    b = _rand(rng, (k, n + 7))[:, 3:3 + n] if sliced else _rand(rng, (k, n))
    bias = _rand(rng, (n,)) if with_bias else None
    od = np.float32 if f32 else BF
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(G, "DIRECT_B_MIN_N", 1)
        assert direct.direct_b_tile(m, n, k, 1, 0) is not None
        got = direct.mm(a, b, bias=bias, out_dtype=od, threads=1)
    _check(got, a, b.copy(), bias, od)
    want = packed.mm(a, b, bias=bias, out_dtype=od, threads=1)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_unpacked_b_tiles_all_chosen_and_split_over_threads(staged, monkeypatch):
    """Each gemm_colsb tile is the choice for some row count (and gives the packed result); with the
    product split into column chunks over threads, the same bits."""
    monkeypatch.setattr(G, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(G.workers, "backing_off", lambda: False)
    direct, packed = staged
    rng = np.random.default_rng(9)
    chosen = set()
    for m in (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 20, 32):
        k, n = 25, 600
        chosen.add(direct.direct_b_tile(m, n, k, 1, 0))
        a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
        want = packed.mm(a, b, threads=1)
        for threads in (1, 2):
            np.testing.assert_array_equal(direct.mm(a, b, threads=threads).view(np.uint16), want.view(np.uint16))
    assert chosen == set(direct.cfg.direct_b_tiles)
    # not for: a float32 B (rounded as packed), a K-contiguous B, too many rows, too long a K
    assert direct.direct_b_tile(10, 600, 25, 1, 2) is None and direct.direct_b_tile(10, 600, 25, 25, 1) is None
    assert direct.direct_b_tile(33, 600, 25, 1, 0) is None and direct.direct_b_tile(10, 600, 65, 1, 0) is None


def _plan_cases(rng):
    """(a, b, bias, out_dtype) small enough for a plan: one product, a Linear over 3-D input, batches
    (one operand broadcast), K past one block (float32 partial sums), B read unpacked."""
    yield _rand(rng, (64, 320)), _layout(_rand(rng, (320, 50)), True), _rand(rng, (50,)), BF
    yield _rand(rng, (64, 320)), _rand(rng, (320, 50)), None, np.float32
    yield _rand(rng, (3, 40, 130)), _layout(_rand(rng, (130, 70)), True), _rand(rng, (70,)), BF
    yield _rand(rng, (8, 64, 32)), _rand(rng, (8, 32, 64)), None, BF
    yield _rand(rng, (64, 32)), _rand(rng, (6, 32, 64)), _rand(rng, (64,)), np.float32
    yield _rand(rng, (30, 200)), _rand(rng, (200, 90)), None, BF
    yield _rand(rng, (10, 25)), _rand(rng, (25, 3000)), _rand(rng, (3000,)), BF
    yield _rand(rng, (4, 60, 150)), _rand(rng, (4, 150, 40)), None, BF


def test_plans_give_the_general_path_bit_for_bit(monkeypatch):
    """A small product seen before runs from its plan (one gemm_entry call on the arrays themselves):
    the general path's bits, into a new array or a given out; buffers that move drop the plans."""
    g = G.Bf16Gemm(gen.GemmConfig(mc=48, kc=64, stage_cols=64, dpbf16=G.host_has_bf16()))
    if not g._entry:
        pytest.skip("numpy's array struct is not laid out as checked (_DATA_OFFSET)")
    rng = np.random.default_rng(10)
    for a, b, bias, od in _plan_cases(rng):
        first = g.matmul(a, b, bias, od)
        assert len(g._ws.plans) >= 1
        with monkeypatch.context() as mp:
            mp.setattr(g, "_matmul", lambda *x: pytest.fail("a planned product took the general path"))
            again = g.matmul(a, b, bias, od)
            out = np.full(first.shape, np.nan, od)
            assert g.matmul(a, b, bias, od, out=out) is out
        assert again.shape == first.shape and again.dtype == np.dtype(od)
        want = first.view(np.uint8)
        np.testing.assert_array_equal(again.view(np.uint8), want)
        np.testing.assert_array_equal(out.view(np.uint8), want)
        _check(again, a, b.copy(), bias, od)
    a, b = _rand(rng, (20, 60)), _rand(rng, (60, 1000))
    want = g.matmul(a, b)
    g.matmul(_rand(rng, (90, 64)), _rand(rng, (64, 3000)), out_dtype=np.float32)     # bigger: buffers move
    np.testing.assert_array_equal(g.matmul(a, b).view(np.uint16), want.view(np.uint16))


def test_plans_never_skip_a_check():
    """What a plan was not made for takes the general path and its errors: a wrong out, another dtype."""
    g = G.instance()
    rng = np.random.default_rng(11)
    a, b = _rand(rng, (64, 100)), _rand(rng, (100, 40))
    for _ in range(2):
        g.matmul(a, b)
    with pytest.raises(ValueError, match="C-contiguous"):
        g.matmul(a, b, out=np.empty((64, 40), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        g.matmul(a, b, out=np.empty((40, 64), BF).T)
    with pytest.raises(TypeError, match="bfloat16"):
        g.matmul(a.astype(np.float64), b)
    a32 = a.astype(np.float32)         # float32 operand: its own plan, rounded as packed
    np.testing.assert_array_equal(g.matmul(a32, b).view(np.uint16), g.matmul(a, b).view(np.uint16))
    np.testing.assert_array_equal(g.matmul(a32, b).view(np.uint16), g.matmul(a, b).view(np.uint16))


def test_without_the_array_struct_offset_products_take_the_general_path(monkeypatch):
    monkeypatch.setattr(G, "_DATA_OFFSET", None)
    g = G.Bf16Gemm(gen.GemmConfig(mc=48, kc=64, stage_cols=64, dpbf16=G.host_has_bf16()))
    assert not g._entry
    rng = np.random.default_rng(12)
    a, b = _rand(rng, (64, 320)), _rand(rng, (320, 50))
    for _ in range(2):
        _check(g.matmul(a, b), a, b)
    assert not g._ws.plans


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 32), n=st.integers(1, 80), k=st.integers(1024, 1400), f32=st.booleans(),
       with_bias=st.booleans(), sliced=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_inner_products_within_bound_and_split_bit_for_bit(staged, m, n, k, f32, with_bias, sliced, seed):
    """gemm_dot (a long K into a small result, both operands K-contiguous: a weight gradient) against the
    float64 reference: every row and column count (edge tiles repeat the last row / column), K blocks
    and a masked tail, rows further apart than K; split over threads by columns, the same bits."""
    direct, _ = staged
    rng = np.random.default_rng(seed)
    a = _rand(rng, (m, k + 5))[:, 2:2 + k] if sliced else _rand(rng, (m, k))
    b = _rand(rng, (n, k)).T                      # K-contiguous: a transposed view, as dY.T @ X gives
    bias = _rand(rng, (n,)) if with_bias else None
    od = np.float32 if f32 else BF
    assert direct.dot_ok(m, n, k, 1, 1)
    one = direct.mm(a, b, bias=bias, out_dtype=od, threads=1)
    _check(one, a.copy(), b.copy(), bias, od)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(G, "PARALLEL_MIN_FLOPS", 0)
        mp.setattr(G.workers, "backing_off", lambda: False)
        two = direct.mm(a, b, bias=bias, out_dtype=od, threads=2)
    np.testing.assert_array_equal(two.view(np.uint8), one.view(np.uint8))


@pytest.mark.parametrize("m,n,k", [(1, 1, 1024), (3, 5, 1030), (10, 26, 2049), (31, 33, 1024), (32, 80, 1300)])
def test_inner_products_with_the_avx2_tile(m, n, k):
    """gemm_dot with AVX2's 2 x 2 result tile (any host): odd rows and columns at the edges, K blocks
    (dot_kb 256) and a tail; the same bits split over threads."""
    g = G.Bf16Gemm(dataclasses.replace(gen.host_config(False, 256), dot_kb=256))
    assert g.cfg.dot_tile == (2, 2)
    rng = np.random.default_rng(m * n + k)
    a, b = _rand(rng, (m, k)), _rand(rng, (n, k)).T
    assert g.dot_ok(m, n, k, 1, 1)
    one = g.mm(a, b, threads=1)
    _check(one, a, b.copy())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(G, "PARALLEL_MIN_FLOPS", 0)
        mp.setattr(G.workers, "backing_off", lambda: False)
        two = g.mm(a, b, threads=2)
    np.testing.assert_array_equal(two.view(np.uint16), one.view(np.uint16))


def test_inner_products_only_where_they_pay():
    g = G.instance()
    assert g.dot_ok(10, 25, 36864, 1, 1) and g.dot_ok(20, 250, 4096, 1, 1)
    assert not g.dot_ok(64, 64, 8192, 1, 1)          # whole tiles: the packed kernel is faster
    assert not g.dot_ok(10, 25, 512, 1, 1)           # a short K
    assert not g.dot_ok(10, 25, 36864, 0, 1) and not g.dot_ok(10, 25, 36864, 1, 3)   # strided / float32
    rng = np.random.default_rng(13)
    a, b = _rand(rng, (10, 4096)), _rand(rng, (25, 4096)).T
    _check(g.matmul(a, b), a, b.copy())
