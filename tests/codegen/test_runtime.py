"""CPU runtime: threaded split, disk cache behaviour, extern kernels (numpy GEMM + compiled epilogue)."""
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, ExternKernel, Kernel, Load, Reduce, Store, Unary, o, r
from ember.runtime import cache
from ember.runtime.cpu import compile_kernels

F32 = dt.float32
REPO = Path(__file__).resolve().parents[2]


def softmax(n, m, id=0):
    x, y = Buf("x", (n, m), F32), Buf("y", (n, m), F32)
    v = Load(x, (o(0), r(0)))
    e = Unary("exp", v - Reduce("max", v))
    return Kernel([x], [y], (n,), (m,), [Store(y, (o(0), r(0)), e / Reduce("sum", e))], id=id)


def test_threaded_split_is_identical(rng):
    k = softmax(1027, 515)       # > PARALLEL_MIN_BYTES, odd row count: uneven chunks
    mod = compile_kernels([k])
    assert mod[k.name].parallel_ok
    xa = rng.standard_normal((1027, 515), np.float32)
    y1, y2, y3 = (np.empty_like(xa) for _ in range(3))
    mod.run(k.name, [xa, y1], threads=1)
    mod.run(k.name, [xa, y2], threads=2)
    mod.run(k.name, [xa, y3], threads=7)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y3)


def test_data_pointer_is_remembered_only_while_the_array_lives(rng):
    from ember.runtime.cpu import data_pointer
    k = softmax(3, 8)
    fn = compile_kernels([k])[k.name]
    for _ in range(50):     # fresh arrays, many of them at a recycled id: each call sees its own data
        x = rng.standard_normal((3, 8), np.float32)
        y = np.empty_like(x)
        assert data_pointer(x) == x.__array_interface__["data"][0]
        fn.launch([x, y])
        e = np.exp(x - x.max(1, keepdims=True))
        np.testing.assert_allclose(y, e / e.sum(1, keepdims=True), rtol=1e-6)
        del x, y
    z = np.zeros(())
    assert data_pointer(z) == data_pointer(z) == z.__array_interface__["data"][0]


def test_argument_checks(rng):
    k = softmax(4, 8)
    fn = compile_kernels([k])[k.name]
    x = rng.standard_normal((4, 8), np.float32)
    with pytest.raises(TypeError, match="expects float32"):
        fn(x.astype(np.float64), np.empty((4, 8), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        fn(np.asfortranarray(x), np.empty((4, 8), np.float32))
    with pytest.raises(TypeError, match="takes 2 arrays"):
        fn(x)


def test_engine_lifetime_survives_module_reference_drop(rng):
    import gc
    k = softmax(4, 8, id=9)
    fn = compile_kernels([k])[k.name]   # the CompiledModule itself is dropped here
    gc.collect()
    x, y = rng.standard_normal((4, 8), np.float32), np.empty((4, 8), np.float32)
    fn(x, y)
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-6)


# ------------------------------------------------------------------------------------- cache
def _cache_script(cache_dir, extra_env=None):
    code = textwrap.dedent(f"""
        import sys, json, numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from ember.ir import dtypes as dt
        from ember.ir.kernel import Buf, Kernel, Load, Store, Unary, o
        from ember.runtime import cache
        from ember.runtime.cpu import compile_kernels
        x, y = Buf("x", (64,), dt.float32), Buf("y", (64,), dt.float32)
        k = Kernel([x], [y], (64,), stores=[Store(y, (o(0),), Unary("exp", Load(x, (o(0),))))], id=77)
        m = compile_kernels([k])
        a = np.linspace(-3, 3, 64, dtype=np.float32); out = np.empty_like(a)
        m.run(k.name, [a, out])
        assert np.allclose(out, np.exp(a), rtol=1e-6)
        print(json.dumps({{"source": m.source, **{{k: v for k, v in cache.stats().items() if k != "disabled_reason"}}}}))
    """)
    env = dict(os.environ, EMBER_CACHE_DIR=str(cache_dir), **(extra_env or {}))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    import json
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_cache_hit_in_new_process_and_permissions(tmp_path):
    d = tmp_path / "c"
    first = _cache_script(d)
    assert first["source"] == "compiled" and first["writes"] == 1
    second = _cache_script(d)
    assert second["source"] == "disk" and second["hits"] == 1 and second["writes"] == 0
    for p in (d, d / "llvm"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700


def test_damaged_entry_is_rebuilt(tmp_path):
    d = tmp_path / "c"
    _cache_script(d)
    (entry,) = (d / "llvm").glob("*.obj")
    raw = bytearray(entry.read_bytes())
    raw[-10] ^= 0xFF                       # flip payload bits: the hash check must catch it
    entry.write_bytes(bytes(raw))
    res = _cache_script(d)
    assert res["source"] == "compiled" and res["damaged"] == 1 and res["writes"] == 1
    assert _cache_script(d)["source"] == "disk"   # overwritten with a good entry
    entry.write_bytes(b"not an ember object at all")
    assert _cache_script(d)["source"] == "compiled"


def test_cache_disabled(tmp_path):
    d = tmp_path / "c"
    res = _cache_script(d, {"EMBER_CACHE": "0"})
    assert res["source"] == "compiled" and res["writes"] == 0
    assert not d.exists()


def test_cache_key_depends_on_target_and_text():
    from ember.codegen.llvm import TargetInfo
    t1 = TargetInfo("x86_64-unknown-linux-gnu", "e", "znver5", "+avx512f")
    t2 = TargetInfo("x86_64-unknown-linux-gnu", "e", "znver4", "+avx512f")
    assert cache.cache_key("a", t1) != cache.cache_key("a", t2)
    assert cache.cache_key("a", t1) != cache.cache_key("b", t1)
    assert cache.cache_key("a", t1) == cache.cache_key("a", t1)


def test_world_writable_cache_root_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    monkeypatch.setenv("EMBER_CACHE_DIR", str(d))
    assert cache.cache_dir() is None
    assert "writable" in cache.stats()["disabled_reason"]


# ------------------------------------------------------------------------------------ externs
def test_matmul_with_fused_epilogue(rng):
    a, w = Buf("a", (32, 48), F32), Buf("w", (24, 48), F32)
    mm, bias, out = Buf("mm", (32, 24), F32), Buf("bias", (24,), F32), Buf("out", (32, 24), F32)
    v = Load(mm, (o(0), o(1))) + Load(bias, (o(1),))
    ep = Kernel([mm, bias], [out], (32, 24), stores=[Store(out, (o(0), o(1)), Unary("tanh", v))], id=1)
    x = ExternKernel("matmul", [a, w], mm, {"transpose_b": True}, epilogue=ep, id=1)
    mod = compile_kernels([x])
    aa, wa, ba = (rng.standard_normal(s.shape).astype(np.float32) for s in (a, w, bias))
    res = np.empty((32, 24), np.float32)
    mod.run(x.name, [aa, wa, ba, res])
    np.testing.assert_allclose(res, np.tanh(aa @ wa.T + ba), rtol=1e-5, atol=1e-6)


def test_bmm_without_epilogue(rng):
    a, b, out = Buf("a", (3, 4, 5), F32), Buf("b", (3, 5, 6), F32), Buf("out", (3, 4, 6), F32)
    x = ExternKernel("bmm", [a, b], out, id=2)
    aa, bb = rng.standard_normal((3, 4, 5), np.float32), rng.standard_normal((3, 5, 6), np.float32)
    res = np.empty((3, 4, 6), np.float32)
    compile_kernels([x]).run(x.name, [aa, bb, res])
    np.testing.assert_allclose(res, aa @ bb, rtol=1e-5)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2)])
def test_conv2d_im2col_matches_direct_reduction_kernel(rng, stride, padding, dilation, groups):
    """conv2d extern == the same conv written as a kernel-IR window reduction (kernel_eval)."""
    from ember.ir.kernel_eval import run_kernel
    from ember.kernels.blas import conv2d_output_shape
    N, C, H, W, O, K = 2, 4, 9, 9, 6, 3
    cg = C // groups
    og = O // groups
    xs, ws = (N, C, H, W), (O, cg, K, K)
    oshape = conv2d_output_shape(xs, ws, stride, padding, dilation)
    x, w, bias = Buf("x", xs, F32), Buf("w", ws, F32), Buf("bias", (O,), F32)
    out = Buf("out", oshape, F32)
    ext = ExternKernel("conv2d", [x, w, bias], out, dict(stride=stride, padding=padding, dilation=dilation,
                                                         groups=groups), id=3)
    xa, wa, ba = (rng.standard_normal(b.shape).astype(np.float32) for b in (x, w, bias))
    res = np.empty(oshape, np.float32)
    compile_kernels([ext]).run(ext.name, [xa, wa, ba, res])
    # reference: direct reduction over (c, kh, kw) in kernel IR
    chan = (o(1) // og) * cg + r(0)
    xv = Load(x, (o(0), chan, o(2) * stride + r(1) * dilation - padding, o(3) * stride + r(2) * dilation - padding),
              fill=0.0, masked=[2, 3])
    body = xv * Load(w, (o(1), r(0), r(1), r(2)))
    k = Kernel([x, w, bias], [out], oshape, (cg, K, K),
               [Store(out, (o(0), o(1), o(2), o(3)), Reduce("sum", body) + Load(bias, (o(1),)))])
    (ref,) = run_kernel(k, [xa, wa, ba])
    np.testing.assert_allclose(res, ref, rtol=1e-4, atol=1e-4)
