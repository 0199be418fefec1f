"""ember/runtime/cuda.py end to end without a GPU: a fake `cupy` (tests/cuda/emulator/fake_cupy.py:
numpy-backed arrays, RawModule compiled through the host emulation) stands in for CuPy, so compile
caching, launch configuration, argument passing (int64 n, int32 vec_ok, scratch buffers of split
reductions), gather errors, argument checks, externs and the executor runner are exercised here.
The real thing is tests/cuda/test_gpu_*.py on a GPU."""
import shutil

import numpy as np
import pytest

from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, ExternKernel, Kernel, Load, Store, Unary, o
from ember.ir.kernel_eval import run_kernel
from tests.cuda import cases as C
from tests.cuda.emulator import fake_cupy

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")


@pytest.fixture
def cp(tmp_path):
    with fake_cupy.installed(tmp_path) as fake:
        yield fake


def test_program_of_all_strategies(cp):
    from ember.runtime import cuda as rt
    ks = [C._pointwise_chain(4099), C._softmax(40, 300), C._softmax(3, 5000), C._full_reduce(1 << 16, "sum"),
          C._full_reduce(70_001, "argmin"), C._column_sum(50, 1100), C._embedding(100, 50, 16)]
    for i, k in enumerate(ks):
        k.name = f"r{i}_{k.name}"
    mod = rt.compile_kernels(ks)
    assert mod.source == "compiled" and set(mod.names) == {k.name for k in ks}
    assert {s.strategy for s in mod.launches.values()} == {"pointwise", "warp", "block", "split", "thread"}
    rng = np.random.default_rng(0)
    for k in ks:
        ins = [rng.integers(0, 50, b.shape).astype(b.dtype.np) if b.dtype is dt.int64
               else rng.standard_normal(b.shape).astype(b.dtype.np) for b in k.inputs]
        outs = [cp.zeros(b.shape, b.dtype.np) for b in k.outputs]
        mod.run(k.name, [cp.asarray(a) for a in ins] + outs)
        for a, b in zip(outs, run_kernel(k, ins)):
            np.testing.assert_allclose(a.get(), b, rtol=1e-4, atol=1e-3, err_msg=k.name)
    again = rt.compile_kernels(ks)
    assert again.source == "memory" and again.raw is mod.raw


def test_gather_error_raises_and_resets(cp):
    from ember.runtime import cuda as rt
    k = C._embedding(4, 10, 4)
    mod = rt.compile_kernels([k])
    w, y = cp.asarray(np.ones((10, 4), np.float32)), cp.zeros((4, 4), np.float32)
    with pytest.raises(IndexError, match="index 12 is out of bounds for dimension 0 with size 10"):
        mod.run(k.name, [cp.asarray(np.array([1, 12, 0, 3])), w, y])
    mod.run(k.name, [cp.asarray(np.array([1, 2, 0, 3])), w, y])
    assert not mod.err.get().any()


def test_misaligned_arrays_run_scalar(cp):
    from ember.runtime import cuda as rt
    k = C._pointwise_chain(4099)
    mod = rt.compile_kernels([k])
    rng = np.random.default_rng(1)
    xs, zs = (rng.standard_normal(4100).astype(np.float32) for _ in range(2))
    x, z, y = cp.asarray(xs)[1:], cp.asarray(zs)[1:], cp.zeros(4100, np.float32)[1:]
    assert x.data.ptr % 16
    mod.run(k.name, [x, z, y])
    np.testing.assert_allclose(y.get(), run_kernel(k, [xs[1:], zs[1:]])[0], rtol=1e-5, atol=1e-6)


def test_argument_checks(cp):
    from ember.runtime import cuda as rt
    k = C._softmax(4, 40)
    fn = rt.compile_kernels([k])[k.name]
    with pytest.raises(TypeError, match="cupy array"):
        fn(np.zeros((4, 40), np.float32), cp.zeros((4, 40), np.float32))
    with pytest.raises(TypeError, match="expects float32"):
        fn(cp.zeros((4, 40), np.float64), cp.zeros((4, 40), np.float32))
    with pytest.raises(TypeError, match="takes 2 arrays"):
        fn(cp.zeros((4, 40), np.float32))


def test_extern_matmul_epilogue_and_conv(cp):
    from ember.kernels import blas
    from ember.runtime import cuda as rt
    F32 = dt.float32
    a, b, t = Buf("a", (6, 9), F32), Buf("b", (5, 9), F32), Buf("t", (6, 5), F32)
    y = Buf("y", (6, 5), F32)
    ep = Kernel([t], [y], (6, 5), stores=[Store(y, (o(0), o(1)), Unary("tanh", Load(t, (o(0), o(1)))))], id=2)
    x = ExternKernel("matmul", [a, b], t, {"transpose_b": True}, epilogue=ep, id=2)
    mod = rt.compile_kernels([x])
    rng = np.random.default_rng(2)
    an, bn = rng.standard_normal((6, 9)).astype(np.float32), rng.standard_normal((5, 9)).astype(np.float32)
    out = cp.zeros((6, 5), np.float32)
    mod.run(x.name, [cp.asarray(an), cp.asarray(bn), out])
    np.testing.assert_allclose(out.get(), np.tanh(an @ bn.T), rtol=1e-5, atol=1e-6)
    xi = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    wi = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    bi = rng.standard_normal(6).astype(np.float32)
    shape = blas.conv2d_output_shape(xi.shape, wi.shape, 2, 1, 1)
    ref = np.empty(shape, np.float32)
    blas.conv2d(xi, wi, bi, ref, 2, 1, 1, 2)
    got = cp.zeros(shape, np.float32)
    rt.conv2d(cp.asarray(xi), cp.asarray(wi), cp.asarray(bi), got, 2, 1, 1, 2)
    np.testing.assert_allclose(got.get(), ref, rtol=1e-5, atol=1e-5)


def test_cuda_runner_callables(cp):
    """The executor runner: one module for a fusion-pass program; each step's callable runs."""
    from ember.runtime.cuda import CudaRunner
    progs = C._fusion_programs()
    name, fn, args = next(p for p in progs if p[0] == "layer_norm")
    import ember as E
    from ember.passes import compile_graph
    cf = E.compile(fn, backend="eager")
    cf(*args)
    prog = compile_graph(cf.variants[-1].graph)
    runner = CudaRunner()
    calls = runner.callables(prog)
    assert set(calls) == {s.name for s in prog.steps if hasattr(s, "kernel") and s.name in calls}
    assert runner.xp is cp and runner.module is not None


def test_runner_entry_point(cp):
    """ember/compiler/backends.py asks ember.runtime.cuda.runner() for the executor runner."""
    from ember.runtime import cuda as rt
    r = rt.runner()
    assert isinstance(r, rt.CudaRunner) and r.name == "cuda" and r.cuda_source is None
