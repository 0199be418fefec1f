"""Generated CUDA kernels on a real GPU == kernel_eval: every case of tests/cuda/cases.py (the
harvested LLVM-backend kernels, fusion-test kernels, and the GPU-specific shapes for each launch
strategy), compiled as ONE module; plus gathers, alignment, caching, argument checks and externs."""
import numpy as np
import pytest

from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, ExternKernel, Kernel, Load, Store, Unary, o
from ember.ir.kernel_eval import run_kernel
from tests.cuda.cases import _embedding, _pointwise_chain, _softmax, all_cases
from tests.cuda.gpu_helpers import assert_close, gpu  # noqa: F401  (fixture)

pytestmark = pytest.mark.gpu

CASES = [c for c in all_cases() if c.run]


@pytest.fixture(scope="module")
def module():
    from ember.runtime import cuda as rt
    if not rt.available():
        pytest.skip("needs CuPy and an NVIDIA GPU")
    return rt.compile_kernels([c.kernel for c in CASES])


def _run(gpu, mod, kernel, inputs):
    ins = [gpu.asarray(a) for a in inputs]
    outs = [gpu.zeros(b.shape, dtype=b.dtype.np) for b in kernel.outputs]
    mod.run(kernel.name, ins + outs)
    return outs


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_matches_kernel_eval(gpu, module, case):
    with np.errstate(all="ignore"):
        ref = run_kernel(case.kernel, case.inputs)
    got = _run(gpu, module, case.kernel, case.inputs)
    # CUDA's libm and numpy differ by an ulp or two; -ftz flushes f32 denormals
    for i, (a, b) in enumerate(zip(got, ref)):
        assert_close(a, b, max(case.rtol, 4e-6), max(case.atol, 1e-6), f"{case.name} output {i}")


@pytest.mark.parametrize("bad", [10, -1, 1 << 40])
def test_gather_out_of_range_raises_and_recovers(gpu, bad):
    from ember.runtime import cuda as rt
    k = _embedding(4, 10, 4)
    mod = rt.compile_kernels([k])
    ids, w = gpu.asarray(np.array([1, 2, bad, 3], np.int64)), gpu.ones((10, 4), np.float32)
    y = gpu.zeros((4, 4), np.float32)
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for dimension 0 with size 10"):
        mod.run(k.name, [ids, w, y])
    mod.run(k.name, [gpu.asarray(np.array([1, 2, 0, 3], np.int64)), w, y])   # the flag was reset


def test_misaligned_views_use_the_scalar_path(gpu):
    from ember.runtime import cuda as rt
    n = 1 << 16
    k = _pointwise_chain(n)
    mod = rt.compile_kernels([k])
    rng = np.random.default_rng(0)
    xs, zs = rng.standard_normal(n + 1).astype(np.float32), rng.standard_normal(n + 1).astype(np.float32)
    x, z = gpu.asarray(xs)[1:], gpu.asarray(zs)[1:]          # 4-byte offset: not 16-byte aligned
    y = gpu.zeros(n + 1, np.float32)[1:]
    mod.run(k.name, [x, z, y])
    ref = run_kernel(k, [xs[1:], zs[1:]])[0]
    assert_close(y, ref, 4e-6, 1e-6)


def test_memory_cache_and_determinism(gpu):
    from ember.runtime import cuda as rt
    from tests.cuda.cases import _full_reduce
    k1 = _full_reduce(1 << 20, "sum")
    m1 = rt.compile_kernels([k1])
    m2 = rt.compile_kernels([_full_reduce(1 << 20, "sum")])
    assert m2.source == "memory" and m2.key == m1.key
    x = gpu.asarray(np.random.default_rng(1).standard_normal(1 << 20).astype(np.float32))
    ys = []
    for _ in range(3):
        y = gpu.zeros(1, np.float32)
        m2.run(k1.name, [x, y])
        ys.append(float(y.get()[0]))
    assert ys[0] == ys[1] == ys[2]       # fixed-order two-stage reduction


def test_argument_checks(gpu):
    from ember.runtime import cuda as rt
    k = _softmax(4, 8)
    fn = rt.compile_kernels([k])[k.name]
    x = gpu.zeros((4, 8), np.float32)
    with pytest.raises(TypeError, match="expects float32"):
        fn(x.astype(np.float64), gpu.empty((4, 8), np.float32))
    with pytest.raises(TypeError, match="cupy array"):
        fn(np.zeros((4, 8), np.float32), gpu.empty((4, 8), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        fn(gpu.asfortranarray(x), gpu.empty((4, 8), np.float32))
    with pytest.raises(TypeError, match="takes 2 arrays"):
        fn(x)


def test_extern_matmul_with_epilogue(gpu):
    from ember.runtime import cuda as rt
    F32 = dt.float32
    a, b, t = Buf("a", (64, 96), F32), Buf("b", (48, 96), F32), Buf("t", (64, 48), F32)
    bias, y = Buf("bias", (48,), F32), Buf("y", (64, 48), F32)
    ep = Kernel([t, bias], [y], (64, 48),
                stores=[Store(y, (o(0), o(1)), Unary("tanh", Load(t, (o(0), o(1))) + Load(bias, (o(1),))))], id=3)
    x = ExternKernel("matmul", [a, b], t, {"transpose_b": True}, epilogue=ep, id=3)
    mod = rt.compile_kernels([x])
    rng = np.random.default_rng(2)
    an, bn, cn = (rng.standard_normal(s).astype(np.float32) for s in ((64, 96), (48, 96), (48,)))
    out = gpu.zeros((64, 48), np.float32)
    mod.run(x.name, [gpu.asarray(an), gpu.asarray(bn), gpu.asarray(cn), out])
    assert_close(out, np.tanh(an @ bn.T + cn), 1e-4, 1e-4)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (1, 1, 1, 2)])
def test_extern_conv2d_matches_cpu_blas(gpu, stride, padding, dilation, groups):
    from ember.kernels import blas
    from ember.runtime import cuda as rt
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 11, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4 // groups, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    shape = blas.conv2d_output_shape(x.shape, w.shape, stride, padding, dilation)
    ref = np.empty(shape, np.float32)
    blas.conv2d(x, w, bias, ref, stride, padding, dilation, groups)
    out = gpu.zeros(shape, np.float32)
    rt.conv2d(gpu.asarray(x), gpu.asarray(w), gpu.asarray(bias), out, stride, padding, dilation, groups)
    assert_close(out, ref, 1e-4, 1e-4)
