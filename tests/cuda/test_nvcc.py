"""The generated CUDA C compiles with nvcc for sm_80 and sm_90 (no GPU needed): every hand-built
kernel of tests/codegen, every fusion-test kernel (when the passes exist) and the GPU-specific shapes,
in ONE translation unit per run so the whole check takes seconds.  Skips without nvcc."""
import shutil
import subprocess

import pytest

from ember.codegen import cuda as cg
from tests.cuda.cases import all_cases

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")


@pytest.fixture(scope="module")
def program():
    cases = all_cases()
    return cases, cg.emit_program([c.kernel for c in cases])


@needs_nvcc
def test_all_kernels_compile_sm80_sm90(program, tmp_path):
    cases, prog = program
    src = tmp_path / "ember_kernels.cu"
    src.write_text(prog.source)
    cmd = [NVCC, "-c", "-x", "cu", "-std=c++17", "-Werror", "all-warnings",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           "-o", str(tmp_path / "ember_kernels.o"), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"nvcc failed ({len(cases)} kernels):\n{res.stdout}\n{res.stderr[-8000:]}"
    assert len(prog.launches) == len(cases) and len(cases) >= 80


@needs_nvcc
def test_ptx_for_each_strategy(program, tmp_path):
    """--ptx (what NVRTC produces) of one kernel per launch strategy; checks the entry points exist."""
    cases, prog = program
    picked = {}
    for c in cases:
        picked.setdefault(prog.launches[c.kernel.name].strategy, c.kernel)
    assert set(picked) == {"pointwise", "thread", "warp", "block", "split"}
    sub = cg.emit_program(list(picked.values()))
    src = tmp_path / "strategies.cu"
    src.write_text(sub.source)
    out = tmp_path / "strategies.ptx"
    res = subprocess.run([NVCC, "--ptx", "-x", "cu", "-std=c++17", "-arch=sm_90", "-o", str(out), str(src)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-4000:]
    ptx = out.read_text()
    for spec in sub.launches.values():
        assert f".entry {spec.name}(" in ptx
        if spec.partial:
            assert f".entry {spec.partial}(" in ptx
