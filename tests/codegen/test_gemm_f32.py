"""ember's float32 GEMM for thin products (ember/codegen/gemm_f32.py, ember/runtime/gemm_f32.py): both
forms against a float64 reference on random shapes and layouts (edge tiles in rows and columns, every
register tile, K blocks and the K split across threads), the output written only inside [M, N], the plan
that leaves other products to BLAS, and the eager / compiled paths that reach it."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ember
from ember.codegen import gemm_f32 as gen
from ember.kernels import blas_threads
from ember.runtime import gemm_f32


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


@pytest.mark.parametrize("tile", gen.OUTER_TILES, ids=lambda t: t.tag)
@pytest.mark.parametrize("packed", [False, True])
def test_every_outer_tile_plain_and_packed(tile, packed):
    """Each register tile, reading B in place or through packed column blocks (a ragged last block), on a
    product with edge tiles both ways."""
    rng = np.random.default_rng(1)
    m, k, n = 3 * tile.mr + 1, 7, 5 * tile.nr + 5
    a, b = _operand(rng, (m, k), True), _operand(rng, (k, n), False)
    out = np.full((m, n + 3), np.nan, np.float32)           # a wider row: ldc != N, columns past N untouched
    g = gemm_f32.instance()
    args = (gemm_f32._addr(a), a.strides[0] // 4, a.strides[1] // 4, gemm_f32._addr(b), b.strides[0] // 4,
            out.__array_interface__["data"][0], out.strides[0] // 4, 0, m, 0, n, k, 0)
    if packed:
        panel = np.full(k * 2 * tile.nr, np.nan, np.float32)
        g.outer_packed[tile](*args, panel.__array_interface__["data"][0], 2 * tile.nr)
    else:
        g.outer[tile](*args)
    _check(a, b, out[:, :n])
    assert np.isnan(out[:, n:]).all()


@pytest.mark.parametrize("tile", gen.DOT_TILES, ids=lambda t: t.tag)
def test_every_dot_tile_with_k_blocks(tile):
    """K in several blocks (accumulators parked between them) and a ragged last block, edge tiles both ways."""
    rng = np.random.default_rng(2)
    m, k, n = 2 * tile.ra + 1, 3 * 32 + 5, 2 * tile.rb + 3
    a, b = _operand(rng, (m, k), False), _operand(rng, (k, n), True)
    out = np.full((m, n + 2), np.nan, np.float32)
    g = gemm_f32.instance()
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


def test_plan_keeps_blas_for_square_and_small_products():
    f32 = np.float32
    sq = np.ones((512, 512), f32)
    assert gemm_f32.plan(512, 512, 512, sq.strides, sq.strides) is None          # BLAS's home ground
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
    _check(a, b, gemm_f32.matmul(a, b))
    out = np.empty((40, 4000), np.float32)
    assert gemm_f32.matmul(a, b, out=out) is out
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
                                        (20, 4096, 251, "dot"),
                                        (12, 2 * gemm_f32.DOT_K_PART + 100, 30, "dot")])
def test_same_bits_on_any_number_of_threads(m, k, n, form):
    """Work is split by output tiles, or by K parts fixed by the shape: the thread count never changes a bit."""
    rng = np.random.default_rng(7)
    a, b = _operand(rng, (m, k), m > k), _operand(rng, (k, n), form == "dot")
    one = gemm_f32.matmul(a, b, threads=1, form=form)
    for threads in (2, 3):
        np.testing.assert_array_equal(gemm_f32.matmul(a, b, threads=threads, form=form), one)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 700), runs=st.integers(1, 5), length=st.integers(1, 70),
       transposed=st.booleans(), const=st.booleans(), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2 ** 16))
@example(m=30, k=600, runs=2, length=300, transposed=False, const=True, threads=2, seed=1)   # column blocks
def test_gathered_operand_read_in_place(m, k, runs, length, transposed, const, threads, seed):
    """a @ G and a @ G^T with G = gathered(src, desc) never stored: random row offsets, run starts and a
    constant row; long contractions (K x L past the L2 block: the run is cut in column blocks) and edge tiles."""
    from ember.kernels import blas
    rng = np.random.default_rng(seed)
    src = rng.standard_normal(4096).astype(np.float32)
    J = runs * length
    koff = [int(x) for x in rng.integers(0, 4096 - 64 * 5 - length, k)]
    starts = [int(s) for s in rng.integers(0, 64 * 5, runs)]
    consts = ()
    if const:
        koff[-1] = -1
        consts = ((k - 1, 1.0),)
    desc = (k, J, length, tuple(koff), tuple(starts), consts)
    g = blas.gathered(np, src, desc)
    a = rng.standard_normal((m, J) if transposed else (m, k)).astype(np.float32)
    out = np.full((m, k) if transposed else (m, J), np.nan, np.float32)
    got = gemm_f32.matmul_gathered(a, src, desc, out, transposed=transposed, threads=threads)
    assert got is out
    _check(a, g.T if transposed else g, got)
