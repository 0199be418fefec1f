"""Random kernel-IR nodes: the numpy evaluator and compiled LLVM kernels give eager's draws bit for bit
(uniform float16/32/64, normal float16/32/64; odd shapes, large seeds and offsets, a multi-threaded
split, inside reduction passes); the text form round-trips; malformed nodes are refused."""
import numpy as np

from ember.frontend.rng import _key_seed
from ember.ir.rng import GOLDEN
import pytest

import ember
from codegen_helpers import run_llvm
from ember.ir import dtypes as dt
from ember.ir.index import flat_index
from ember.ir.kernel import (Binary, Buf, Const, IndexValue, Kernel, Load, Random, Reduce, Store, Unary, cast, o,
                             r)
from ember.ir.kernel_eval import run_kernel
from ember.ir.kernel_text import parse_kernel
from ember.runtime.cpu import compile_kernels

F16, F32, F64, I64 = dt.float16, dt.float32, dt.float64, dt.int64


def _value(dist, key, index, dtype):
    """Element `index` of a draw at key: Random(seed=key[0], counter=key[1] + index), cast to dtype."""
    vd = F64 if dist == "normal" else dtype
    counter = Binary("add", Load(key, (1,)), IndexValue(index))
    return cast(Random(dist, Load(key, (0,)), counter, vd), dtype)


def draw_kernel(dist, shape, dtype):
    key, y = Buf("key", (2,), I64), Buf("y", shape, dtype)
    idx = tuple(o(a) for a in range(len(shape)))
    return Kernel([key], [y], shape, stores=[Store(y, idx, _value(dist, key, flat_index(shape, idx), dtype))])


def eager_draw(dist, shape, dtype, seed, skip):
    """What ember.rand / ember.randn return drawing under the key (seed, skip): `skip` values after a
    Generator seeded so that its draws use `seed` (frontend/rng.py `_key_seed`)."""
    g = ember.Generator().manual_seed((seed - GOLDEN) % (1 << 64))
    assert _key_seed(g.initial_seed()) == seed
    ember.rand(skip, generator=g)
    f = ember.rand if dist == "uniform" else ember.randn
    return f(*shape, dtype=dtype, generator=g).numpy()


def test_seed_zero_draws_no_degenerate_first_value():
    """splitmix64(0) == 0: drawn under the raw seed, manual_seed(0) gave the word 0 first -- rand(1) exactly
    0.0, randn(1) a 6.7-sigma value.  Small seeds now start like any other."""
    for seed in range(20):
        ember.manual_seed(seed)
        u = ember.rand(1).item()
        ember.manual_seed(seed)
        z = ember.randn(1).item()
        assert 0.0 < u < 1.0 and abs(z) < 4.5, (seed, u, z)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


DRAWS = [("uniform", F16), ("uniform", F32), ("uniform", F64), ("normal", F16), ("normal", F32), ("normal", F64)]


@pytest.mark.parametrize("dist,dtype", DRAWS, ids=[f"{d}-{t.short}" for d, t in DRAWS])
@pytest.mark.parametrize("shape", [(1,), (7,), (37, 29), (3, 5, 17)], ids=str)
def test_kernel_draw_equals_eager(dist, dtype, shape):
    seed, skip = 20240917, 1000
    k = draw_kernel(dist, shape, dtype)
    key = np.array([seed, skip], np.int64)
    want = eager_draw(dist, shape, dtype, seed, skip)
    assert same_bits(run_kernel(k, [key])[0], want)
    assert same_bits(run_llvm(k, [key])[0], want)


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_large_seed_and_offset_wrap_like_eager(dist):
    """Seeds use all 63 bits and the counter arithmetic wraps modulo 2**64, in every backend."""
    seed, off = (1 << 63) - 12345, (1 << 45) + 3
    k = draw_kernel(dist, (257,), F32)
    key = np.array([seed, off], np.int64)
    from ember.ir import rng
    want = (rng.uniform if dist == "uniform" else rng.normal)(np, seed, off, (257,), np.float32)
    assert same_bits(run_kernel(k, [key])[0], want)
    assert same_bits(run_llvm(k, [key])[0], want)


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_multithreaded_split_equals_eager(dist):
    shape = (1031, 1021)                       # > 4 MB of output: the runtime splits o0 over threads
    k = draw_kernel(dist, shape, F32)
    mod = compile_kernels([k])
    assert mod[k.name].parallel_ok
    key = np.array([7, 123], np.int64)
    out = np.zeros(shape, np.float32)
    mod.run(k.name, [key, out], threads=2)
    assert same_bits(out, eager_draw(dist, shape, F32, 7, 123))


def test_random_inside_reduction_passes():
    """A random row feeding two reduction passes (x - max(x), then its sum) and an inner store: the
    node is placed in every pass and gives the same values each time."""
    n, m = 6, 301
    key, d, s = Buf("key", (2,), I64), Buf("d", (n, m), F32), Buf("s", (n,), F32)
    u = _value("uniform", key, o(0) * m + r(0), F32)
    dev = Binary("sub", u, Reduce("max", u))
    k = Kernel([key], [d, s], (n,), (m,), [Store(d, (o(0), r(0)), dev), Store(s, (o(0),), Reduce("sum", dev))])
    assert k.n_passes == 2
    keya = np.array([3, 40], np.int64)
    u_eager = eager_draw("uniform", (n, m), F32, 3, 40)
    want_d = u_eager - u_eager.max(1, keepdims=True)
    for got_d, got_s in (run_kernel(k, [keya]), run_llvm(k, [keya])):
        assert same_bits(got_d, want_d)              # sub of exact values: no rounding freedom
        np.testing.assert_allclose(got_s, want_d.sum(1), rtol=1e-5)


def test_sum_of_normals_over_inner_axis():
    n, m = 4, 1000
    key, y = Buf("key", (2,), I64), Buf("y", (n,), F64)
    v = _value("normal", key, o(0) * m + r(0), F64)
    k = Kernel([key], [y], (n,), (m,), [Store(y, (o(0),), Reduce("sum", Unary("exp", v)))])
    keya = np.array([11, 0], np.int64)
    want = np.exp(eager_draw("normal", (n, m), F64, 11, 0)).sum(1)
    np.testing.assert_allclose(run_llvm(k, [keya])[0], want, rtol=1e-12)
    np.testing.assert_allclose(run_kernel(k, [keya])[0], want, rtol=1e-12)


def test_text_form_round_trips():
    k = draw_kernel("normal", (5, 3), F32)
    text = str(k)
    assert "random.normal %0, %3 : f64" in text and k.name == "k0_add_randn"
    assert str(parse_kernel(text)) == text
    u = str(draw_kernel("uniform", (4,), F16))
    assert "random.uniform" in u and str(parse_kernel(u)) == u


def test_flops_count_random_values():
    k = draw_kernel("uniform", (10, 3), F32)
    assert k.flops == 2 * 30          # the counter add and the random value, per point


def test_malformed_random_nodes_are_refused():
    seed, ctr = Const(1, I64), Const(2, I64)
    with pytest.raises(ValueError, match="unknown distribution 'poisson'"):
        Random("poisson", seed, ctr, F32)
    with pytest.raises(TypeError, match="seed and counter must be int64"):
        Random("uniform", Const(1.0, F32), ctr, F32)
    with pytest.raises(TypeError, match="random.normal gives float64, not float32"):
        Random("normal", seed, ctr, F32)
    with pytest.raises(TypeError, match="not int32"):
        Random("uniform", seed, ctr, dt.int32)
    bad = str(draw_kernel("uniform", (4,), F32)).replace("random.uniform", "random.gamma")
    with pytest.raises(ValueError, match="gamma"):
        parse_kernel(bad)
