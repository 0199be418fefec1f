"""Generated CUDA kernels == kernel_eval, run through the host emulation (tests/cuda/emulator: g++,
one OS thread per CUDA thread, barriers for __syncthreads and warp shuffles).  Covers every launch
strategy, vector loads with a tail, NaN propagation, float16, gathers -- on machines without a GPU."""
import shutil

import numpy as np
import pytest

from ember.ir.kernel_eval import run_kernel
from tests.cuda import emulator
from tests.cuda.cases import _embedding, emulation_cases

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")

CASES = emulation_cases()


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    extra = [_embedding(4, 10, 4), _embedding(4, 10, 4, wrap=True)]
    extra[0].name, extra[1].name = "emu_gather_checked", "emu_gather_wrapped"
    return emulator.build([c.kernel for c in CASES] + extra, tmp_path_factory.mktemp("emu"))


def _close(a, b, rtol, atol, what):
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if a.dtype.kind == "f":
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=max(rtol, 1e-6),
                                   atol=max(atol, 1e-6), equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_emulated_matches_kernel_eval(lib, case):
    with np.errstate(all="ignore"):
        ref = run_kernel(case.kernel, case.inputs)
    got = emulator.run(lib, case.kernel, case.inputs)
    for i, (a, b) in enumerate(zip(got, ref)):
        _close(a, b, case.rtol, case.atol, f"{case.name} output {i}")


def test_unaligned_pointers_take_the_scalar_path(lib):
    case = next(c for c in CASES if c.name == "emu_chain_vec_tail")
    assert lib.prog.launches[case.kernel.name].vec == 4
    ref = emulator.run(lib, case.kernel, case.inputs)
    got = emulator.run(lib, case.kernel, case.inputs, vec_ok=False)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [10, -1, 1 << 40])
def test_gather_out_of_range_raises(lib, bad):
    k = next(k for k in lib.prog.kernels if k.name == "emu_gather_checked")
    ids = np.array([1, 2, bad, 3], np.int64)
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for dimension 0 with size 10"):
        emulator.run(lib, k, [ids, np.ones((10, 4), np.float32)])


def test_gather_wrap_negative(lib):
    k = next(k for k in lib.prog.kernels if k.name == "emu_gather_wrapped")
    ids = np.array([-1, 0, -10, 9], np.int64)
    w = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.testing.assert_array_equal(emulator.run(lib, k, [ids, w])[0], w[ids])
