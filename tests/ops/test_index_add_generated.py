"""index_add through the generated row loop (ember/codegen/index_add.py, ember/runtime/eager_kernels.py
index_add_kernel) against torch: random shapes, dims, repeated indices, both float dtypes; errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.frontend import dispatch
from ember.runtime import eager_kernels

torch = pytest.importorskip("torch")

REF = dispatch._BASE["index_add"]
FAST = eager_kernels.index_add_kernel(REF)


def test_the_generated_loop_compiles():
    # (a code generator that fails makes the kernel fall back to the reference silently)
    fns = eager_kernels._index_add_library()
    assert set(fns) == {np.dtype(np.float32), np.dtype(np.float64)}


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_torch(shape, data, dtype):
    dim = data.draw(st.integers(0, len(shape) - 1))
    count = data.draw(st.integers(0, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal(shape).astype(dtype)
    idx = rng.integers(0, shape[dim], count)              # repeats are likely: they accumulate
    src = rng.standard_normal(tuple(shape[:dim]) + (count,) + tuple(shape[dim + 1:])).astype(dtype)
    got = FAST(np, x, idx, src, dim)
    want = torch.from_numpy(x).index_add(dim, torch.from_numpy(idx), torch.from_numpy(src)).numpy()
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)
    assert not np.shares_memory(got, x)


def test_embedding_gradient_size_and_order():
    # the GPT step's token-embedding gradient: 1024 rows of 128 into 65, summed in index order as torch does
    rng = np.random.default_rng(0)
    x = np.zeros((65, 128), np.float32)
    idx = rng.integers(0, 65, 1024)
    src = rng.standard_normal((16, 64, 128)).astype(np.float32)
    got = FAST(np, x, idx, src.reshape(1024, 128), 0)
    want = torch.zeros(65, 128).index_add(0, torch.from_numpy(idx), torch.from_numpy(src.reshape(1024, 128)))
    np.testing.assert_array_equal(got, want.numpy())


def test_non_contiguous_and_int32_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4)).astype(np.float32).T          # (4, 5), Fortran order
    src = rng.standard_normal((5, 5)).astype(np.float32).T             # (5 rows, 5 columns), non-contiguous
    idx = np.array([3, 0, 3, 1, 1], np.int32)
    got = FAST(np, x, idx, src, 0)
    want = torch.from_numpy(np.ascontiguousarray(x)).index_add(0, torch.from_numpy(idx.astype(np.int64)),
                                                               torch.from_numpy(np.ascontiguousarray(src)))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)


def test_other_dtypes_take_the_reference():
    x = np.arange(6, dtype=np.int64).reshape(3, 2)
    got = FAST(np, x, np.array([0, 0, 2]), np.ones((3, 2), np.int64), 0)
    np.testing.assert_array_equal(got, [[2, 3], [2, 3], [5, 6]])


@pytest.mark.parametrize("bad", [65, -1])
def test_index_out_of_range_raises_and_writes_nothing(bad):
    x = np.zeros((65, 4), np.float32)
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for dimension with size 65"):
        FAST(np, x, np.array([1, bad, 2]), np.ones((3, 4), np.float32), 0)
    assert not x.any()


def test_wrong_source_size_raises():
    with pytest.raises(ValueError):
        FAST(np, np.zeros((4, 3), np.float32), np.array([0, 1]), np.ones((3, 3), np.float32), 0)


def test_embedding_backward_through_the_generated_kernel(monkeypatch):
    monkeypatch.setitem(dispatch.KERNELS, "index_add", FAST)
    monkeypatch.setitem(dispatch._BASE, "index_add", FAST)
    rng = np.random.default_rng(2)
    w = rng.standard_normal((10, 6)).astype(np.float32)
    idx = rng.integers(0, 10, (4, 5))
    ew = ember.tensor(w, requires_grad=True)
    ember.nn.functional.embedding(ember.tensor(idx), ew).pow(2).sum().backward()
    tw = torch.tensor(w, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(idx), tw).pow(2).sum().backward()
    np.testing.assert_allclose(ew.grad.numpy(), tw.grad.numpy(), rtol=1e-6)
