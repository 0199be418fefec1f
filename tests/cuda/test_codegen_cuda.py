"""CUDA generator facts that need no compiler: launch strategy per kernel shape (pins, like kernel-count
tests), index width, vector width, determinism, no headers, NaN-safe max, no fast math."""
import numpy as np
import pytest

from ember.codegen import cuda as cg
from ember.ir import dtypes as dt
from ember.ir.kernel import Buf, ExternKernel, Kernel, Load, Reduce, Store, Unary, o, r
from tests.cuda import cases as C


def spec(k):
    return cg.emit_program([k]).launches[k.name]


@pytest.mark.parametrize("kernel, strategy", [
    (C._pointwise_chain(1 << 20), "pointwise"),
    (C._softmax(8192, 1024), "warp"),
    (C._layer_norm(8192, 1024), "warp"),
    (C._softmax(64, 8192), "block"),
    (C._full_reduce(1 << 20, "sum"), "split"),
    (C._full_reduce(5000, "sum"), "block"),
    (C._full_reduce(1000, "sum"), "warp"),
    (C._full_reduce(100_000, "sum"), "split"),
    (C._column_sum(4096, 4096), "thread"),
    (C._conv_window(2, 16, 12, 3), "warp"),
])
def test_strategy(kernel, strategy):
    assert spec(kernel).strategy == strategy


def test_maxpool_window_is_thread_per_point():
    x, y = Buf("x", (2, 3, 9, 9), dt.float32), Buf("y", (2, 3, 5, 5), dt.float32)
    v = Load(x, (o(0), o(1), o(2) * 2 + r(0) - 1, o(3) * 2 + r(1) - 1), fill=-np.inf, masked=[2, 3])
    k = Kernel([x], [y], (2, 3, 5, 5), (3, 3), [Store(y, (o(0), o(1), o(2), o(3)), Reduce("max", v))])
    s = spec(k)
    assert s.strategy == "thread"
    src = cg.emit_program([k]).source
    assert "-EMBER_INFF" in src                      # the fill value
    assert ">= 0" in src and "< 9" in src            # both bounds checked: the window may start at -1


def test_vector_width_and_alignment_args():
    s = spec(C._pointwise_chain(1 << 20))
    assert (s.vec, s.vec_args, s.vec_bytes) == (4, (0, 1, 2), (16, 16, 16))
    s = spec(C._pointwise_chain(1 << 20, dt.float64))
    assert (s.vec, s.vec_bytes) == (2, (16, 16, 16))
    s = spec(C._f16_ops(1 << 20))                   # f16 in, f16/f32/bool out: 4 per step
    assert s.vec == 4 and s.vec_bytes == (8, 8, 8, 16, 4)
    assert spec(C._pointwise_chain(100)).vec == 1   # small: no vector path


def test_index_width():
    assert not spec(C._pointwise_chain(1 << 20)).idx64
    assert spec(C._huge_pointwise()).idx64
    assert spec(C._huge_rows()).idx64
    src = cg.emit_program([C._huge_pointwise()]).source
    assert "long long i =" in src


def test_split_spec():
    s = spec(C._full_reduce(1 << 20, "argmax"))
    assert s.strategy == "split" and s.partial.endswith("_partial") and s.parts == 512
    assert [t for _, t in s.scratch] == ["float32", "int64"]


def test_source_is_deterministic_and_headerless():
    ks1 = [C._softmax(64, 1000), C._pointwise_chain(5000), C._full_reduce(1 << 17, "sum")]
    ks2 = [C._softmax(64, 1000), C._pointwise_chain(5000), C._full_reduce(1 << 17, "sum")]
    a, b = cg.emit_program(ks1).source, cg.emit_program(ks2).source
    assert a == b
    assert "#include" not in a                     # NVRTC compiles it without include paths
    assert "fast" not in a.lower()                  # no fast-math intrinsics (__expf etc.)
    assert "__expf" not in a and "__fdividef" not in a


def test_readable_source_carries_the_ir():
    k = C._softmax(64, 1000)
    src = cg.emit_program([k]).source
    assert f"// kernel {k.name}(x: f32[64,1000])" in src
    assert "expf(v2);  // %3 = exp %2 : f32" in src


def test_nan_propagating_max_is_used():
    src = cg.emit_program([C._softmax(64, 1000)]).source
    assert "ember_max(acc1" in src and "(a != a || b != b) ? a + b : fmaxf(a, b)" in src


def test_extern_contributes_its_epilogue():
    a, b, t = Buf("a", (4, 8), dt.float32), Buf("b", (8, 3), dt.float32), Buf("t", (4, 3), dt.float32)
    y = Buf("y", (4, 3), dt.float32)
    ep = Kernel([t], [y], (4, 3), stores=[Store(y, (o(0), o(1)), Unary("tanh", Load(t, (o(0), o(1)))))], id=5)
    x = ExternKernel("matmul", [a, b], t, epilogue=ep, id=5)
    prog = cg.emit_program([x])
    assert list(prog.launches) == [ep.name] and "tanhf(" in prog.source


def test_duplicate_names_rejected():
    k = C._softmax(4, 40)
    with pytest.raises(ValueError, match="two kernels"):
        cg.emit_program([k, C._softmax(4, 40)])
