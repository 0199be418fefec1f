"""Rotation copies (ember/codegen/transpose.py): which kernels take the blocked transpose, and that it
equals numpy's transpose bit for bit on any shape, edge blocks and pieces of the range included."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.codegen import transpose
from ember.codegen.llvm.render import emit_module
from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, Cast, Kernel, Load, Reduce, Store, o, r
from ember.runtime.cpu import compile_kernels

F32 = dt.float32


def _rotation(shape, j, dtype=F32, name="rot"):
    """dst[o0..on-1] = src[oj..on-1, o0..oj-1]: src's shape is the destination's rotated."""
    n = len(shape)
    src_shape = tuple(shape[(j + i) % n] for i in range(n))
    x, y = Buf("x", src_shape, dtype), Buf("y", tuple(shape), dtype)
    idx = tuple(o((j + i) % n) for i in range(n))
    return Kernel([x], [y], tuple(shape), stores=[Store(y, tuple(o(i) for i in range(n)), Load(x, idx))], name=name)


def test_plan_takes_rotations_only():
    assert transpose.plan(_rotation((10, 12, 12, 64), 3)) == (144, 64)      # MNIST's NCHW -> batch-last
    assert transpose.plan(_rotation((64, 1440), 1)) == (1, 1440)
    assert transpose.plan(_rotation((4, 4), 1)) is None                     # too small to block
    assert transpose.plan(_rotation((40, 40), 1, dt.float64)) is None       # float32 only
    x, y = Buf("x", (30, 20, 10), F32), Buf("y", (30, 10, 20), F32)
    swap = Kernel([x], [y], (30, 10, 20), stores=[Store(y, (o(0), o(1), o(2)), Load(x, (o(0), o(2), o(1))))])
    assert transpose.plan(swap) is None                                     # not a rotation of all axes
    x, y = Buf("x", (40, 30), F32), Buf("y", (30, 40), dt.float64)
    cast = Kernel([x], [y], (30, 40), stores=[Store(y, (o(0), o(1)), Cast(Load(x, (o(1), o(0))), dt.float64))])
    assert transpose.plan(cast) is None
    x, y = Buf("x", (40, 30, 5), F32), Buf("y", (30, 40), F32)
    red = Kernel([x], [y], (30, 40), (5,), stores=[Store(y, (o(0), o(1)), Reduce("sum", Load(x, (o(1), o(0), r(0)))))])
    assert transpose.plan(red) is None                                      # a reduction, not a copy


def test_module_defines_the_kernel_once_and_its_claiming_wrapper():
    text = emit_module([_rotation((64, 1440), 1, name="k_rot")])
    assert text.count('define i32 @"k_rot"(') == 1 and 'define i32 @"k_rot_claimed"(' in text
    assert 'declare i32 @"k_rot"(' not in text
    assert text.count("@llvm.masked.load.v16f32.p0(ptr, i32") == 1


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=2, max_size=4), j=st.integers(1, 3), seed=st.integers(0, 99),
       threads=st.sampled_from([1, 2]))
def test_equals_numpy_transpose_bit_for_bit(shape, j, seed, threads):
    j = 1 + (j - 1) % (len(shape) - 1)
    k = _rotation(shape, j, name=f"rot_{'_'.join(map(str, shape))}_{j}")
    n = len(shape)
    src = np.random.default_rng(seed).standard_normal(k.inputs[0].shape).astype(np.float32)
    src.flat[::7] = np.nan                                  # NaNs (and their payloads) move unchanged
    mod = compile_kernels([k])
    out = np.full(tuple(shape), 7.0, np.float32)
    mod.run(k.name, [src, out], threads=threads)
    want = src.transpose([(i - j) % n for i in range(n)])
    np.testing.assert_array_equal(out.view(np.uint32), np.ascontiguousarray(want).view(np.uint32))


def test_pieces_of_the_range_write_only_their_rows():
    """[start, stop) over the first axis: each piece writes its rows and nothing else (the guard cells around
    the output stay as they were)."""
    shape, j = (10, 12, 12, 64), 3
    k = _rotation(shape, j, name="rot_pieces")
    assert transpose.plan(k) is not None
    src = np.random.default_rng(0).standard_normal(k.inputs[0].shape).astype(np.float32)
    want = np.ascontiguousarray(src.transpose(1, 2, 3, 0))
    mod = compile_kernels([k])
    fn = mod[k.name]._fn
    guard = np.full(want.size + 64, -1.0, np.float32)
    out = guard[32:32 + want.size].reshape(shape)
    err = np.zeros(3, np.int64)
    for lo, hi in ((3, 7), (0, 3), (7, 10)):
        assert fn(src.ctypes.data, out.ctypes.data, err.ctypes.data, lo, hi) == 0
        np.testing.assert_array_equal(out[:hi], np.where(np.arange(10)[:hi, None, None, None] >= lo, want[:hi], out[:hi]))
    np.testing.assert_array_equal(out, want)
    assert np.all(guard[:32] == -1) and np.all(guard[32 + want.size:] == -1)


def test_avx2_form_equals_numpy_too(monkeypatch):
    """The kernel as an AVX2 host emits it (whole vectors stored plainly, the masked store only at an edge:
    llvm_text.masked_moves), compiled on this host whichever it is: equal to numpy bit for bit."""
    import dataclasses
    from ember.codegen.llvm import render
    host = render.host_target()
    monkeypatch.setattr(render, "host_target", lambda: dataclasses.replace(host, features="+avx2,+fma"))
    for shape, j in (((37, 21), 1), ((3, 17, 40), 2)):
        k = _rotation(shape, j, name=f"rot_avx2_{'_'.join(map(str, shape))}")
        assert "whole" in emit_module([k])                  # the plain-store branch is there
        src = np.random.default_rng(1).standard_normal(k.inputs[0].shape).astype(np.float32)
        out = np.full(shape, 7.0, np.float32)
        compile_kernels([k]).run(k.name, [src, out], threads=1)
        want = src.transpose([(i - j) % len(shape) for i in range(len(shape))])
        np.testing.assert_array_equal(out, want)
