"""Random kernel-IR nodes in generated CUDA C: run through the host emulation (tests/cuda/emulator)
they give eager's draws bit for bit -- uniform and normal, float16/32/64, a vectorised pointwise kernel
with a tail, random values inside warp and block reductions; nvcc's PTX of the generator holds no FMA.
The generator's helpers are added only to programs that use them.  (tests/cuda/test_nvcc.py compiles
random kernels of every launch strategy: tests/cuda/cases.py gpu_cases.)"""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ember.codegen import cuda as cg
from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, Kernel, Load, Store, o
from tests.cuda import emulator
from tests.cuda.cases import _random_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "codegen"))
from test_random import DRAWS, draw_kernel, eager_draw, same_bits  # noqa: E402

F32, I64 = dt.float32, dt.int64
NVCC = shutil.which("nvcc")


def _cases():
    cases = []
    for dist, dtype in DRAWS:
        for shape in [(5,), (4099,), (3, 7, 11)]:
            k = draw_kernel(dist, shape, dtype)
            k.name = f"rand_{dist}_{dtype.short}_{'x'.join(map(str, shape))}"
            cases.append((k, dist, shape, dtype))
    return cases


CASES = _cases()
ROWS = [_random_rows(30, 200), _random_rows(3, 5000)]
ROWS[0].name, ROWS[1].name = "rand_rows_warp", "rand_rows_block"


def test_helpers_only_in_programs_with_random_nodes():
    assert "ember_randn_f64(" in cg.emit_program([CASES[0][0]]).source
    x, y = Buf("x", (4,), F32), Buf("y", (4,), F32)
    plain = Kernel([x], [y], (4,), stores=[Store(y, (o(0),), Load(x, (o(0),)))])
    assert "ember_splitmix64" not in cg.emit_program([plain]).source


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
def test_no_fma_in_the_generated_generator(tmp_path):
    """nvcc contracts a*b + c into an FMA by default; the generator's intrinsics must prevent it (an
    FMA rounds once where numpy rounds twice).  The PTX of a normal draw holds no fma instruction."""
    k = draw_kernel("normal", (1000,), dt.float64)
    src = tmp_path / "normal.cu"
    src.write_text(cg.emit_program([k]).source)
    out = tmp_path / "normal.ptx"
    res = subprocess.run([NVCC, "--ptx", "-x", "cu", "-std=c++17", "-arch=sm_90", "-o", str(out), str(src)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-4000:]
    ptx = out.read_text()
    assert "mul.rn.f64" in ptx and "sqrt.rn.f64" in ptx
    assert "fma." not in ptx


def test_reductions_over_random_values_use_the_warp_and_block_strategies():
    """(tests/cuda/test_nvcc.py compiles these strategies with random operands: tests/cuda/cases.py)"""
    prog = cg.emit_program(ROWS)
    assert [prog.launches[k.name].strategy for k in ROWS] == ["warp", "block"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not on PATH")
    return emulator.build([k for k, *_ in CASES] + ROWS, tmp_path_factory.mktemp("emu_rng"))


@pytest.mark.parametrize("case", CASES, ids=[c[0].name for c in CASES])
def test_emulated_draw_equals_eager(lib, case):
    k, dist, shape, dtype = case
    key = np.array([977, 31], np.int64)
    got = emulator.run(lib, k, [key])[0]
    assert same_bits(got, eager_draw(dist, shape, dtype, 977, 31))


@pytest.mark.parametrize("k", ROWS, ids=[k.name for k in ROWS])
def test_emulated_random_in_reductions(lib, k):
    n, m = k.outputs[0].shape
    key = np.array([5, 0], np.int64)
    d, mx = emulator.run(lib, k, [key])
    u = eager_draw("uniform", (n, m), F32, 5, 0)
    assert same_bits(mx, u.max(1)) and same_bits(d, u - u.max(1, keepdims=True))
