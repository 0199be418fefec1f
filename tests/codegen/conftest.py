"""Fixtures of the codegen tests."""
import numpy as np
import pytest

from codegen_helpers import _CACHE, check_kernel, run_llvm  # noqa: F401


@pytest.fixture
def check():
    return check_kernel


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def cache_dir():
    return _CACHE
