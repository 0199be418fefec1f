"""Accuracy of the inline polynomial transcendentals (ember/codegen/llvm_math.py) vs numpy float64."""
import numpy as np
import pytest
import math


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _expit(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


from ember.ir import dtypes as dt
from ember.ir.kernel import Binary, Buf, Kernel, Load, Store, Unary, o
from ember.runtime.cpu import compile_kernels

REF = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh,
       "sigmoid": _expit, "erf": _erf, "sin": np.sin, "cos": np.cos}
RANGE = {"exp": (-104, 89), "log": None, "log1p": None, "expm1": (-90, 88), "tanh": (-20, 20),
         "sigmoid": (-90, 90), "erf": (-6, 6), "sin": (-1e4, 1e4), "cos": (-1e4, 1e4)}
# bounds enforced here (measured maxima are in the llvm_math docstring table)
MAX_ULP_F32 = {"exp": 1.5, "log": 1.5, "log1p": 3, "expm1": 2, "tanh": 3, "sigmoid": 3, "erf": 1.5,
               "sin": 1.5, "cos": 1.5}
N = 1 << 16


def inputs(op, dtype):
    rng = np.random.default_rng(7)
    if op == "log":
        a = np.exp(rng.uniform(np.log(1e-45), np.log(3e38), N))
    elif op == "log1p":
        a = np.concatenate([np.exp(rng.uniform(np.log(1e-8), np.log(1e30), N // 2)),
                            -rng.uniform(0, 0.999999, N // 4), rng.uniform(-1e-3, 1e-3, N // 4)])
    else:
        lo, hi = RANGE[op]
        a = np.concatenate([rng.uniform(lo, hi, N // 2), rng.uniform(-1, 1, N // 4), rng.uniform(-1e-3, 1e-3, N // 4)])
    return a.astype(dtype)


def _without_avx512():
    """The CPU device rendering for a host target minus AVX-512: exp's portable 2^n (two multiplies)
    instead of llvm.ldexp (vscalefps), compiled and run on this host."""
    import dataclasses
    from ember.codegen.llvm import emit_module
    from ember.runtime.cpu import CPU, host_target
    t = host_target()
    feats = ",".join(f for f in t.features.split(",") if not f.startswith("+avx512"))
    target = dataclasses.replace(t, features=feats)
    return dataclasses.replace(CPU, render=lambda ks: emit_module(ks, target))


@pytest.fixture(scope="module", params=["host", "no-avx512"])
def compiled(request):
    ks = {}
    for d in (dt.float32, dt.float64):
        for i, op in enumerate(REF):
            x, y = Buf("x", (N,), d), Buf("y", (N,), d)
            ks[(op, d.short)] = Kernel([x], [y], (N,), stores=[Store(y, (o(0),), Unary(op, Load(x, (o(0),))))],
                                       name=f"k{i}_{op}_{d.short}")
    if request.param == "host":
        return compile_kernels(list(ks.values())), ks
    return _without_avx512().compile(list(ks.values()), use_cache=False), ks


def run(compiled, op, d, a):
    mod, ks = compiled
    k = ks[(op, d)]
    out = np.empty(k.outputs[0].shape, a.dtype)
    pad = np.zeros(N, a.dtype)
    pad[:a.size] = a
    mod.run(k.name, [pad, out])
    return out[:a.size]


@pytest.mark.parametrize("op", list(REF))
def test_f32_accuracy_ulp(compiled, op):
    a = inputs(op, np.float32)
    out = run(compiled, op, "f32", a).astype(np.float64)
    with np.errstate(all="ignore"):
        ref = REF[op](a.astype(np.float64))
        r32 = ref.astype(np.float32)
    ok = np.isfinite(r32) & (np.abs(ref) > 1e-37)        # representable, normal results
    ulp = np.abs(out[ok] - ref[ok]) / np.spacing(np.abs(r32[ok])).astype(np.float64)
    assert ulp.max() <= MAX_ULP_F32[op], f"{op}: {ulp.max():.2f} ulp"
    # results outside the normal range must still be right to within subnormal spacing / inf
    np.testing.assert_allclose(out[~ok], r32[~ok].astype(np.float64), rtol=1e-6, atol=2e-38)


@pytest.mark.parametrize("op", list(REF))
def test_f64_accuracy(compiled, op):
    a = inputs(op, np.float64)
    out = run(compiled, op, "f64", a)
    ref = REF[op](a)
    ok = np.isfinite(ref) & (np.abs(ref) > 1e-300)
    rel = np.abs(out[ok] - ref[ok]) / np.abs(ref[ok])
    assert rel.max() < 1e-15, f"{op}: {rel.max():.2e}"


SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1e30, -1e30, 89.0, 88.7, -88.0,
                     -104.0, -200.0, 1000.0, -1.0, 1.0], np.float32)


@pytest.mark.parametrize("op", list(REF))
@pytest.mark.parametrize("d", ["f32", "f64"])
def test_special_values(compiled, op, d):
    a = SPECIALS.astype(np.float32 if d == "f32" else np.float64)
    out = run(compiled, op, d, a)
    with np.errstate(all="ignore"):
        ref = REF[op](a.astype(np.float64)).astype(a.dtype)
    if op in ("sin", "cos"):   # huge arguments: only the NaN/inf behaviour and |v| <= 1 are promised
        big = np.abs(a) > 1e6
        assert (np.abs(out[big & np.isfinite(a)]) <= 1).all()
        out, ref = out[~big], ref[~big]
    np.testing.assert_allclose(out, ref, rtol=4e-7 if d == "f32" else 1e-15, atol=1e-44, equal_nan=True)


def test_exp_overflow_underflow_and_log_edges(compiled):
    out = run(compiled, "exp", "f32", np.array([100, 88.8, -110, -np.inf, np.inf], np.float32))
    assert out[0] == np.inf and out[1] == np.inf and out[2] == 0 and out[3] == 0 and out[4] == np.inf
    out = run(compiled, "log", "f32", np.array([0, -1, np.inf, -0.0, 1], np.float32))
    assert out[0] == -np.inf and np.isnan(out[1]) and out[2] == np.inf and out[3] == -np.inf and out[4] == 0
    out = run(compiled, "tanh", "f32", np.array([50, -50, 1e30, -np.inf], np.float32))
    np.testing.assert_array_equal(out, [1, -1, 1, -1])


def test_pow_f32():
    rng = np.random.default_rng(3)
    n = 4096
    a = np.concatenate([rng.uniform(0, 100, n - 64), rng.uniform(-4, 4, 64)]).astype(np.float32)
    b = np.concatenate([rng.uniform(-20, 20, n - 64), rng.integers(-5, 6, 64)]).astype(np.float32)
    x, e, y = Buf("a", (n,), dt.float32), Buf("b", (n,), dt.float32), Buf("y", (n,), dt.float32)
    k = Kernel([x, e], [y], (n,), stores=[Store(y, (o(0),), Binary("pow", Load(x, (o(0),)), Load(e, (o(0),))))])
    out = np.empty(n, np.float32)
    compile_kernels([k]).run(k.name, [a, b, out])
    with np.errstate(all="ignore"):
        ref = np.power(a.astype(np.float64), b.astype(np.float64))
        r32 = ref.astype(np.float32)
    ok = np.isfinite(r32) & (np.abs(ref) > 1e-37)
    ulp = np.abs(out[ok] - ref[ok]) / np.spacing(np.abs(r32[ok])).astype(np.float64)
    assert ulp.max() <= 1.0
    np.testing.assert_allclose(out[~ok], r32[~ok], rtol=1e-6, atol=2e-38, equal_nan=True)


def test_loops_vectorise_without_libm_calls():
    from ember.codegen.llvm import emit_module
    from ember.runtime.cpu import assembly
    x, y = Buf("x", (4096,), dt.float32), Buf("y", (4096,), dt.float32)
    v = Load(x, (o(0),))
    e = Unary("tanh", v) + Unary("exp", v) + Unary("log", v) + Unary("erf", v) + Unary("sigmoid", v)
    k = Kernel([x], [y], (4096,), stores=[Store(y, (o(0),), e)])
    asm = assembly(emit_module([k]))
    from ember.backends.cpu import get_cpu_capability
    assert ("zmm" if get_cpu_capability() == "AVX512" else "ymm") in asm    # vectorised at the host's width
    assert "call" not in asm.split("k0_")[1]


def test_masked_max_reduction_vectorises_and_is_exact():
    """where(mask, -inf, x) feeding reduce.max (causal attention): the -inf is read from a global so
    instcombine cannot fold it into the accumulator, and the reduction stays vectorised."""
    import re
    from ember.codegen.llvm import emit_module
    from ember.ir.kernel import Const, Reduce, Where, r
    from ember.ir.kernel_eval import run_kernel
    from ember.runtime.cpu import compile_kernels, optimize_ir
    x, m, y = Buf("x", (64, 64), dt.float32), Buf("m", (1, 64), dt.bool_), Buf("y", (64, 1), dt.float32)
    v = Where(Load(m, (0, r(0))), Const(float("-inf"), dt.float32), Load(x, (o(0), r(0))))
    k = Kernel([x, m], [y], (64,), (64,), stores=[Store(y, (o(0), 0), Reduce("max", v))])
    opt = str(optimize_ir(str(emit_module([k]))))
    assert re.search(r"llvm\.(vector\.reduce\.)?f?max(imum|num)?\.v\d+f32", opt), "max reduction stayed scalar"
    xa = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    ma = np.zeros((1, 64), bool)
    ma[0, 10:] = True
    out = np.empty((64, 1), np.float32)
    compile_kernels([k])[k.name](xa, ma, out)
    np.testing.assert_array_equal(out, run_kernel(k, [xa, ma])[0])
    ma[:] = True                                     # every element masked: the max is -inf
    compile_kernels([k])[k.name](xa, ma, out)
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("d", [dt.float32, dt.float64])
def test_minmax_reduction_propagates_nan_anywhere(op, d):
    """A float max/min reduction is a compare-and-select plus a NaN flag (ember/codegen/llvm/ops.py
    combine_minmax): NaN in any lane, the vector remainder, first or last, gives NaN (numpy's
    max/min); infinities and all--inf rows are exact."""
    from ember.ir.kernel import Reduce, r
    from ember.runtime.cpu import compile_kernels
    n, m = 12, 67                                    # 67: four vectors of 16 and a remainder of 3
    x, y = Buf("x", (n, m), d), Buf("y", (n, 1), d)
    k = Kernel([x], [y], (n,), (m,), stores=[Store(y, (o(0), 0), Reduce(op, Load(x, (o(0), r(0)))))])
    xa = np.random.default_rng(3).standard_normal((n, m)).astype(d.np)
    for row, col in enumerate([0, 1, 15, 16, 31, 63, 64, 66]):
        xa[row, col] = np.nan
    xa[8, :] = -np.inf
    xa[9, 5], xa[10, 40] = np.inf, -np.inf
    xa[11, :] = 0.0
    xa[11, 7] = -0.0
    out = np.empty((n, 1), d.np)
    compile_kernels([k])[k.name](xa, out)
    np.testing.assert_array_equal(out[:, 0], getattr(np, op)(xa, axis=1))
