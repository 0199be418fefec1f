"""Device logic that needs no GPU: without CuPy or a GPU, ember.cuda.is_available() is False, device
'cuda' fails with a clear error everywhere it can be named, and the CPU path is untouched.  (On a GPU
machine the 'unavailable' tests skip; the gpu-marked tests cover the other side.)"""
import numpy as np
import pytest

import ember as E
from ember.runtime import cuda as rt

no_cuda = pytest.mark.skipif(E.cuda.is_available(), reason="a GPU is present")
MSG = "CUDA is not available"


@no_cuda
def test_queries_without_cuda():
    assert E.cuda.is_available() is False
    assert E.cuda.device_count() == 0
    assert E.cuda.memory_allocated() == 0
    assert E.cuda.is_initialized() is False
    E.cuda.synchronize()          # no-ops
    E.cuda.manual_seed_all(0)
    E.cuda.empty_cache()
    assert rt.available() is False


def test_device_objects_need_no_gpu():
    d = E.device("cuda:1")
    assert (d.type, d.index, str(d)) == ("cuda", 1, "cuda:1")
    assert E.device("cuda") == E.device("cuda:0") and E.device("cpu") != E.device("cuda")
    assert repr(E.device("cuda", 0)) == "device(type='cuda', index=0)"
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda"):
        E.device("tpu")


@no_cuda
@pytest.mark.parametrize("make", [
    lambda: E.tensor([1.0, 2.0], device="cuda"),
    lambda: E.zeros(3, device="cuda"),
    lambda: E.ones(2, 2, device="cuda:0"),
    lambda: E.full((2,), 3.0, device=E.device("cuda")),
    lambda: E.arange(4, device="cuda"),
    lambda: E.randn(3, device="cuda"),
    lambda: E.rand(3, device="cuda"),
    lambda: E.eye(2, device="cuda"),
    lambda: E.linspace(0, 1, 5, device="cuda"),
    lambda: E.ones(3).cuda(),
    lambda: E.ones(3).to("cuda"),
    lambda: E.ones(3).to(device="cuda:0"),
    lambda: E.zeros_like(E.ones(2), device="cuda"),
    lambda: E.cuda.current_device(),
    lambda: E.cuda.get_device_name(),
    lambda: E.cuda.get_device_capability(),
], ids=lambda f: "")
def test_cuda_errors_are_clear(make):
    with pytest.raises(RuntimeError, match=MSG):
        make()


@no_cuda
def test_module_to_cuda_errors_and_leaves_cpu_params():
    lin = E.nn.Linear(3, 2)
    w = lin.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError, match=MSG):
        lin.to("cuda")
    assert lin.weight.device == E.device("cpu")
    np.testing.assert_array_equal(lin.weight.detach().numpy(), w)


@no_cuda
def test_cuda_runtime_says_why():
    with pytest.raises(RuntimeError, match="CuPy"):
        rt.compile_kernels([])
    with pytest.raises(RuntimeError, match="CuPy"):
        rt.device_info()


def test_cuda_source_needs_no_gpu():
    from tests.cuda.cases import _softmax
    src = rt.cuda_source([_softmax(8, 100)])
    assert 'extern "C" __global__' in src


def test_cpu_path_untouched():
    x = E.randn(4, 5, requires_grad=True)
    assert x.device == E.device("cpu") and not x.is_cuda and x.is_cpu
    y = (x.exp() * 2).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(x.detach().numpy()), rtol=1e-6)
    assert x.cpu() is x or x.cpu().device == E.device("cpu")
    assert x.to("cpu").device == E.device("cpu")


def test_rng_is_counter_based_and_device_independent_in_numpy():
    """The generator's words come from uint64 arithmetic only (what CuPy reproduces exactly)."""
    from ember.frontend import rng
    bits = rng.random_bits(np, 42, 10, 5)
    again = rng.random_bits(np, 42, 10, 5)
    np.testing.assert_array_equal(bits, again)
    assert bits.dtype == np.uint64
    u = rng.uniform(np, 42, 0, (1000,), np.float32)
    assert u.min() >= 0 and u.max() < 1
