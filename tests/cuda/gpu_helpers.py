"""Shared fixtures for the gpu-marked CUDA tests (import them into a test module; no conftest.py here
because tests/codegen imports its own conftest by module name and a second one would shadow it).

Tests marked @pytest.mark.gpu need CuPy and a GPU; they are deselected by default
(`python -m pytest -m gpu tests/cuda` runs them) and skip cleanly where CUDA is unavailable."""
import numpy as np
import pytest


@pytest.fixture
def gpu():
    """The cupy module; skips the test where CUDA is unavailable."""
    from ember.runtime import cuda as rt
    if not rt.available():
        pytest.skip("needs CuPy and an NVIDIA GPU")
    import cupy
    return cupy


def to_numpy(x):
    """numpy copy of a cupy array / ember tensor / numpy array."""
    if hasattr(x, "detach"):
        x = x.detach()
        return x.cpu().numpy() if x.device.type != "cpu" else x.numpy()
    if hasattr(x, "get"):
        return x.get()
    return np.asarray(x)


def assert_close(actual, expected, rtol, atol, what=""):
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    assert a.dtype == e.dtype, f"{what}: dtype {a.dtype} != {e.dtype}"
    if a.dtype.kind == "f":
        np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(a, e, err_msg=what)
