"""Kernel cases for the CUDA generator: every hand-built kernel of tests/codegen/test_kernels.py
(harvested by calling its tests with a recording `check`), every kernel the fusion pass produces for
the fusion tests' programs (when ember/passes has one), and GPU-specific shapes that exercise each
launch strategy (vector loads with a tail, warp / block / split reductions, column reductions,
float16, gathers, 64-bit indexing).

    all_cases() -> [Case(name, kernel, inputs, rtol, atol, run)]

`inputs` are numpy arrays in kernel.inputs order; `run=False` marks compile-only cases (too big
to execute in a test).  Kernel names are made unique (prefix c<i>_) so every case fits in one
translation unit.
"""
from __future__ import annotations

import importlib.util
import inspect
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ember.ir import dtypes as dt
from ember.ir.kernel import (Binary, Buf, Cast, Const, IGather, IndexValue, Kernel, Load, Random, Reduce,
                             Store, Unary, cast, o, r)
from ember.ir.kernel_eval import run_kernel

REPO = Path(__file__).resolve().parents[2]
F16, F32, F64, I32, I64, B8, U8 = dt.float16, dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_, dt.uint8


@dataclass
class Case:
    name: str
    kernel: Kernel
    inputs: list
    rtol: float = 2e-6
    atol: float = 1e-6
    run: bool = True


def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _param_combos(fn):
    """Keyword combinations of a test's @pytest.mark.parametrize marks."""
    axes = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = [v if len(names) > 1 else (v,) for v in values]
        axes.append([dict(zip(names, row)) for row in rows])
    for combo in itertools.product(*axes):
        kw = {}
        for d in combo:
            kw.update(d)
        yield kw


def harvested_cases() -> list[Case]:
    """Every kernel the LLVM backend's kernel tests build, with the inputs they use."""
    path = REPO / "tests" / "codegen" / "test_kernels.py"
    if not path.exists():
        return []
    mod = _load_module(path, "_ember_cuda_harvest_test_kernels")
    cases: list[Case] = []
    for name, fn in sorted(vars(mod).items()):
        if not name.startswith("test_") or not callable(fn):
            continue
        params = inspect.signature(fn).parameters
        if "check" not in params:
            continue
        for kw in _param_combos(fn):
            label = name[5:] + "".join(f"[{getattr(v, 'name', v)}]" for v in kw.values())
            got = []

            def record(kernel, inputs, expected=None, rtol=2e-6, atol=1e-6, threads=1, _got=got):
                _got.append((kernel, [np.asarray(a) for a in inputs], rtol, atol))
                return run_kernel(kernel, inputs)

            kw = dict(kw)
            kw["check"] = record
            if "rng" in params:
                kw["rng"] = np.random.default_rng(1234)
            try:
                with np.errstate(all="ignore"):
                    fn(**kw)
            except AssertionError:
                pass   # a test's own assertion on the (oracle) result; the kernel is recorded
            for i, (k, ins, rt, at) in enumerate(got):
                cases.append(Case(label + (f"#{i}" if i else ""), k, ins, rt, at))
    return cases


def _fusion_programs():
    """(name, fn, args) traced forward + backward through ember.compile and compiled by the fusion
    pass: the subgraphs of tests/passes/test_fusion_counts.py (softmax, layer_norm, gelu, linear,
    cross_entropy, the MNIST CNN loss, a GPT block loss, both also with dropout)."""
    import ember as E
    M = _load_module(REPO / "tests" / "passes" / "models.py", "_ember_cuda_fusion_models")
    E.manual_seed(0)
    x2 = lambda: E.randn(8, 16, requires_grad=True)   # noqa: E731
    W, b = E.randn(24, 16, requires_grad=True), E.randn(24, requires_grad=True)
    w16, b16 = E.randn(16, requires_grad=True), E.randn(16, requires_grad=True)
    progs = [
        ("softmax", lambda x: E.softmax(x, -1), [x2()]),
        ("log_softmax0", lambda x: E.log_softmax(x, 0), [x2()]),
        ("layer_norm", M.layer_norm, [x2(), w16, b16]),
        ("gelu_mul_add", lambda x, w, b: M.gelu_tanh(x) * w + b, [x2(), w16, b16]),
        ("linear_gelu", lambda x, W, b: M.gelu_tanh(M.linear(x, W, b)), [x2(), W, b]),
        ("cross_entropy", M.cross_entropy, [x2(), E.randint(0, 16, (8,))]),
    ]
    mp = M.mnist_params()
    progs.append(("mnist", M.mnist_loss, [E.randn(4, 1, 28, 28), E.randint(0, 10, (4,))] + list(mp.values())))
    gp = M.gpt_params(32)
    progs.append(("gpt_block", M.gpt_loss, [E.randn(2, 8, 32)] + list(gp.values())))
    # dropout: random numbers inside the fused kernels (the attention one in a matmul epilogue)
    progs.append(("mnist_dropout", M.mnist_dropout_loss,
                  [E.randn(4, 1, 28, 28), E.randint(0, 10, (4,))] + list(mp.values())))
    progs.append(("gpt_dropout", M.gpt_dropout_loss, [E.randn(2, 8, 32)] + list(gp.values())))
    # window lowerings (batch-last convolution, per-offset pooling, fold as wrapped-index terms) with
    # strides, dilations, padding and overlapping windows
    F = E.nn.functional
    progs.append(("windows", lambda x, w: F.avg_pool2d(F.max_pool2d(F.conv2d(x, w, stride=2, padding=1, dilation=2),
                                                                    3, 2, 1), 2, 1, 1, count_include_pad=False),
                  [E.randn(2, 3, 11, 11, requires_grad=True), E.randn(4, 3, 3, 3, requires_grad=True)]))
    return progs


def fusion_cases() -> list[Case]:
    """Every kernel (and extern epilogue) the fusion pass produces for the fusion tests' programs,
    forward and backward, with random inputs (integer buffers get small indices; a kernel whose
    random indices fall out of range is kept compile-only).  Empty when the passes are missing."""
    try:
        import ember as E
        from ember.ir.kernel import ExternKernel
        from ember.passes import compile_graph
        progs = _fusion_programs()
    except Exception:   # the passes are still being written: never break the CUDA tests over it
        return []
    rng = np.random.default_rng(5)
    out: list[Case] = []
    for name, fn, args in progs:
        try:
            cf = E.compile(fn, backend="eager")
            cf(*args)
            v = cf.variants[-1]
            graphs = [("fw", v.graph)] + ([("bw", v.backward.graph)] if v.backward else [])
            for tag, g in graphs:
                for obj in compile_graph(g).compiled_objects():
                    k = obj.epilogue if isinstance(obj, ExternKernel) else obj
                    if k is None:
                        continue
                    ins = []
                    for bf in k.inputs:
                        if bf.dtype.is_floating_point:
                            ins.append(rng.standard_normal(bf.shape).astype(bf.dtype.np))
                        elif bf.dtype is dt.bool_:
                            ins.append(rng.random(bf.shape) < 0.5)
                        else:
                            ins.append(rng.integers(0, 2, bf.shape).astype(bf.dtype.np))
                    try:
                        with np.errstate(all="ignore"):
                            run_kernel(k, ins)
                        ok = True
                    except IndexError:
                        ok = False
                    out.append(Case(f"fusion_{name}_{tag}_{k.name}", k, ins, 1e-5, 1e-5, run=ok))
        except Exception:   # noqa: BLE001 - one program the passes cannot take yet: skip it
            continue
    return out


# ----------------------------------------------------------------------- GPU-specific shapes
def _rng():
    return np.random.default_rng(7)


def _pointwise_chain(n, d=F32):
    x, z, y = Buf("x", (n,), d), Buf("z", (n,), d), Buf("y", (n,), d)
    v, u = Load(x, (o(0),)), Load(z, (o(0),))
    t = Unary("tanh", v * Const(1.5, d) + u) * Unary("sigmoid", u) - Unary("exp", -Unary("abs", v))
    return Kernel([x, z], [y], (n,), stores=[Store(y, (o(0),), t)])


def _softmax(n, m, d=F32):
    x, y = Buf("x", (n, m), d), Buf("y", (n, m), d)
    v = Load(x, (o(0), r(0)))
    e = Unary("exp", v - Reduce("max", v))
    return Kernel([x], [y], (n,), (m,), [Store(y, (o(0), r(0)), e / Reduce("sum", e))])


def _layer_norm(n, m):
    x, w, b, y = Buf("x", (n, m), F32), Buf("w", (m,), F32), Buf("b", (m,), F32), Buf("y", (n, m), F32)
    v = Load(x, (o(0), r(0)))
    mean = Reduce("sum", v) * Const(1.0 / m, F32)
    dd = v - mean
    var = Reduce("sum", dd * dd) * Const(1.0 / m, F32)
    out = dd * Unary("rsqrt", var + Const(1e-5, F32)) * Load(w, (r(0),)) + Load(b, (r(0),))
    return Kernel([x, w, b], [y], (n,), (m,), [Store(y, (o(0), r(0)), out)])


def _full_reduce(m, op, d=F32):
    x = Buf("x", (m,), d)
    y = Buf("y", (1,), I64 if op.startswith("arg") else d)
    return Kernel([x], [y], (1,), (m,), [Store(y, (o(0),), Reduce(op, Load(x, (r(0),))))])


def _full_mean_and_sumsq(m):
    x, s, q = Buf("x", (m,), F32), Buf("s", (1,), F32), Buf("q", (1,), F32)
    v = Load(x, (r(0),))
    return Kernel([x], [s, q], (1,), (m,), [Store(s, (o(0),), Reduce("sum", v) * Const(1.0 / m, F32)),
                                           Store(q, (o(0),), Reduce("sum", v * v))])


def _column_sum(n, m):
    x, y = Buf("x", (n, m), F32), Buf("y", (m,), F32)
    return Kernel([x], [y], (m,), (n,), [Store(y, (o(0),), Reduce("sum", Load(x, (r(0), o(0)))))])


def _embedding(n_ids, vocab, dim, wrap=False):
    ids, w, y = Buf("ids", (n_ids,), I64), Buf("w", (vocab, dim), F32), Buf("y", (n_ids, dim), F32)
    v = Load(w, (IGather(ids, (o(0),), wrap=wrap), o(1)))
    return Kernel([ids, w], [y], (n_ids, dim), stores=[Store(y, (o(0), o(1)), v)])


def _f16_ops(n):
    x, z = Buf("x", (n,), F16), Buf("z", (n,), F16)
    y, s, b = Buf("y", (n,), F16), Buf("s", (n,), F32), Buf("b", (n,), B8)
    v, u = Load(x, (o(0),)), Load(z, (o(0),))
    t = Unary("exp", v) * u + Binary("maximum", v, u)
    return Kernel([x, z], [y, s, b], (n,), stores=[Store(y, (o(0),), t), Store(s, (o(0),), Cast(t, F32)),
                                                  Store(b, (o(0),), Binary("gt", v, u))])


def _f16_rowsum(n, m):
    x, y = Buf("x", (n, m), F16), Buf("y", (n,), F16)
    return Kernel([x], [y], (n,), (m,), [Store(y, (o(0),), Reduce("sum", Load(x, (o(0), r(0)))))])


def _row_argmax(n, m):
    x, a, mx = Buf("x", (n, m), F32), Buf("a", (n,), I64), Buf("mx", (n,), F32)
    v = Load(x, (o(0), r(0)))
    return Kernel([x], [a, mx], (n,), (m,), [Store(a, (o(0),), Reduce("argmax", v)),
                                            Store(mx, (o(0),), Reduce("max", v))])


def _int_pointwise(n):
    a, b = Buf("a", (n,), I32), Buf("b", (n,), I32)
    ys = [Buf(f"y{i}", (n,), I32) for i in range(4)]
    va, vb = Load(a, (o(0),)), Load(b, (o(0),))
    ops = ["floor_divide", "remainder", "mul", "maximum"]
    return Kernel([a, b], ys, (n,), stores=[Store(y, (o(0),), Binary(op, va, vb)) for y, op in zip(ys, ops)])


def _transpose_2d(n, m):
    x, y = Buf("x", (n, m), F32), Buf("y", (m, n), F32)
    return Kernel([x], [y], (m, n), stores=[Store(y, (o(0), o(1)), Load(x, (o(1), o(0))))])


def _huge_pointwise():
    # 3 * 2^30 elements: needs 64-bit indexing (compile-only: 12 GiB per buffer)
    n = 3 << 30
    x, y = Buf("x", (n,), F32), Buf("y", (n,), F32)
    return Kernel([x], [y], (n,), stores=[Store(y, (o(0),), Unary("exp", Load(x, (o(0),))))])


def _huge_rows():
    x, y = Buf("x", (1 << 21, 1 << 10), F32), Buf("y", (1 << 21, 1 << 10), F32)
    v = Load(x, (o(0), r(0)))
    return Kernel([x], [y], (1 << 21,), (1 << 10,), [Store(y, (o(0), r(0)), v - Reduce("max", v))])


def _conv_window(n, c, h, kk):
    # direct conv as a window reduction: inner (C, kh, kw), zero padding 1
    x, w, y = Buf("x", (n, c, h, h), F32), Buf("w", (8, c, kk, kk), F32), Buf("y", (n, 8, h, h), F32)
    v = Load(x, (o(0), r(0), o(2) + r(1) - 1, o(3) + r(2) - 1), fill=0.0, masked=[2, 3]) * \
        Load(w, (o(1), r(0), r(1), r(2)))
    return Kernel([x, w], [y], (n, 8, h, h), (c, kk, kk), [Store(y, (o(0), o(1), o(2), o(3)), Reduce("sum", v))])


def _random_value(key, index, dist, d):
    vd = F64 if dist == "normal" else d
    counter = Binary("add", Load(key, (1,)), IndexValue(index))
    return cast(Random(dist, Load(key, (0,)), counter, vd), d)


def _random_draw(n, dist, d=F32):
    """A pointwise draw of n values (dropout's mask source): vector stores with a tail."""
    key, y = Buf("key", (2,), I64), Buf("y", (n,), d)
    return Kernel([key], [y], (n,), stores=[Store(y, (o(0),), _random_value(key, o(0), dist, d))])


def _random_full_sum(m, dist):
    """The sum of m random values: a split reduction whose operand is computed, not loaded."""
    key, y = Buf("key", (2,), I64), Buf("y", (1,), F64)
    return Kernel([key], [y], (1,), (m,), [Store(y, (o(0),), Reduce("sum", _random_value(key, r(0), dist, F64)))])


def _random_rows(n, m):
    """Per row of uniform values u: u - max(u) over the row (two passes) and max(u)."""
    key, d, mx = Buf("key", (2,), I64), Buf("d", (n, m), F32), Buf("mx", (n,), F32)
    u = _random_value(key, o(0) * m + r(0), "uniform", F32)
    return Kernel([key], [d, mx], (n,), (m,), [Store(d, (o(0), r(0)), Binary("sub", u, Reduce("max", u))),
                                             Store(mx, (o(0),), Reduce("max", u))])


def gpu_cases() -> list[Case]:
    g = _rng()
    f32 = lambda *s: g.standard_normal(s).astype(np.float32)   # noqa: E731
    cases = [
        Case("chain_vec_tail", _pointwise_chain(1_000_003), [f32(1_000_003), f32(1_000_003)], 1e-5, 1e-6),
        Case("chain_vec_exact", _pointwise_chain(1 << 20), [f32(1 << 20), f32(1 << 20)], 1e-5, 1e-6),
        Case("chain_small", _pointwise_chain(1000), [f32(1000), f32(1000)], 1e-5, 1e-6),
        Case("chain_f64", _pointwise_chain(5000, F64), [g.standard_normal(5000), g.standard_normal(5000)],
             1e-13, 1e-14),
        Case("softmax_warp", _softmax(1024, 1000), [f32(1024, 1000) * 4], 1e-5, 1e-7),
        Case("softmax_block", _softmax(64, 8192), [f32(64, 8192) * 4], 1e-5, 1e-8),
        Case("softmax_block_big", _softmax(8, 40000), [f32(8, 40000)], 1e-5, 1e-9),
        Case("layer_norm_warp", _layer_norm(2048, 1024), [f32(2048, 1024) * 3 + 1, f32(1024), f32(1024)],
             1e-4, 1e-4),
        Case("full_sum_split", _full_reduce(1 << 20, "sum"), [f32(1 << 20)], 1e-4, 1e-2),
        Case("full_max_split", _full_reduce(300_001, "max"), [f32(300_001)], 0, 0),
        Case("full_argmin_split", _full_reduce(300_001, "argmin"), [f32(300_001)], 0, 0),
        Case("full_sum_f64_split", _full_reduce(1 << 18, "sum", F64), [g.standard_normal(1 << 18)], 1e-10, 1e-9),
        Case("full_sum_i64_split", _full_reduce(1 << 17, "sum", I64),
             [g.integers(-1000, 1000, 1 << 17).astype(np.int64)], 0, 0),
        Case("full_mean_sumsq_split", _full_mean_and_sumsq(1 << 19), [f32(1 << 19)], 1e-4, 1e-3),
        Case("full_sum_block", _full_reduce(5000, "sum"), [f32(5000)], 1e-5, 1e-4),
        Case("column_sum_thread", _column_sum(3000, 1100), [f32(3000, 1100)], 1e-4, 1e-3),
        Case("row_argmax_warp", _row_argmax(600, 700), [f32(600, 700)], 0, 0),
        Case("embedding_large", _embedding(4096, 1000, 64), [g.integers(0, 1000, 4096).astype(np.int64),
                                                             f32(1000, 64)], 0, 0),
        Case("f16_pointwise", _f16_ops(4099), [f32(4099).astype(np.float16), f32(4099).astype(np.float16)],
             2e-3, 2e-3),
        Case("f16_rowsum_warp", _f16_rowsum(600, 300), [(f32(600, 300) * 0.1).astype(np.float16)], 1e-2, 1e-2),
        Case("int32_floor_rules", _int_pointwise(10_007),
             [g.integers(-1000, 1000, 10_007).astype(np.int32), g.integers(-9, 9, 10_007).astype(np.int32)], 0, 0),
        Case("transpose", _transpose_2d(300, 500), [f32(300, 500)], 0, 0),
        Case("conv_window_warp", _conv_window(2, 16, 12, 3), [f32(2, 16, 12, 12), f32(8, 16, 3, 3)], 1e-4, 1e-4),
        Case("random_uniform_vec_tail", _random_draw(1_000_003, "uniform"), [np.array([42, 7], np.int64)], 0, 0),
        Case("random_normal_f16", _random_draw(100_001, "normal", F16), [np.array([1 << 62, 3], np.int64)], 0, 0),
        Case("random_rows_warp", _random_rows(600, 700), [np.array([5, 0], np.int64)], 0, 0),
        Case("random_rows_block", _random_rows(8, 9000), [np.array([6, 1], np.int64)], 0, 0),
        Case("random_normal_sum_split", _random_full_sum(1 << 20, "normal"), [np.array([9, 0], np.int64)],
             1e-10, 1e-8),
        Case("huge_pointwise_idx64", _huge_pointwise(), [], run=False),
        Case("huge_rows_idx64", _huge_rows(), [], run=False),
    ]
    # NaN propagation through the split and warp reductions
    xa = f32(300_001)
    xa[123_456] = np.nan
    cases.append(Case("full_max_nan_split", _full_reduce(300_001, "max"), [xa], 0, 0))
    xs = f32(1024, 1000)
    xs[17, 999] = np.nan
    cases.append(Case("softmax_nan_row_warp", _softmax(1024, 1000), [xs], 1e-5, 1e-7))
    return cases


def all_cases(unique_names: bool = True) -> list[Case]:
    cases = harvested_cases() + fusion_cases() + gpu_cases()
    if unique_names:
        for i, c in enumerate(cases):
            c.kernel.name = f"c{i}_{c.kernel.name}"
    return cases


def emulation_cases() -> list[Case]:
    """Harvested cases plus small versions of each GPU launch strategy (the host emulation runs
    every CUDA thread as an OS thread, so sizes stay small)."""
    g = np.random.default_rng(11)
    f32 = lambda *s: g.standard_normal(s).astype(np.float32)   # noqa: E731
    small = [
        Case("emu_chain_vec_tail", _pointwise_chain(4099), [f32(4099), f32(4099)], 1e-5, 1e-6),
        Case("emu_chain_f64", _pointwise_chain(2000, F64), [g.standard_normal(2000), g.standard_normal(2000)],
             1e-13, 1e-14),
        Case("emu_softmax_warp", _softmax(40, 300), [f32(40, 300) * 4], 1e-5, 1e-7),
        Case("emu_softmax_block", _softmax(3, 5000), [f32(3, 5000) * 4], 1e-5, 1e-8),
        Case("emu_layer_norm_warp", _layer_norm(20, 256), [f32(20, 256) * 3 + 1, f32(256), f32(256)], 1e-4, 1e-4),
        Case("emu_full_sum_split", _full_reduce(1 << 16, "sum"), [f32(1 << 16)], 1e-4, 1e-3),
        Case("emu_full_argmin_split", _full_reduce(70_001, "argmin"), [f32(70_001)], 0, 0),
        Case("emu_full_mean_sumsq_split", _full_mean_and_sumsq(1 << 16), [f32(1 << 16)], 1e-4, 1e-3),
        Case("emu_full_sum_block", _full_reduce(3000, "sum"), [f32(3000)], 1e-5, 1e-4),
        Case("emu_column_sum_thread", _column_sum(50, 1100), [f32(50, 1100)], 1e-5, 1e-5),
        Case("emu_row_argmax_warp", _row_argmax(30, 200), [f32(30, 200)], 0, 0),
        Case("emu_embedding", _embedding(100, 50, 16), [g.integers(0, 50, 100).astype(np.int64), f32(50, 16)], 0, 0),
        Case("emu_f16_pointwise", _f16_ops(1031), [f32(1031).astype(np.float16), f32(1031).astype(np.float16)],
             2e-3, 2e-3),
        Case("emu_f16_rowsum_warp", _f16_rowsum(20, 300), [(f32(20, 300) * 0.1).astype(np.float16)], 1e-2, 1e-2),
        Case("emu_int32_floor_rules", _int_pointwise(3001),
             [g.integers(-1000, 1000, 3001).astype(np.int32), g.integers(-9, 9, 3001).astype(np.int32)], 0, 0),
        Case("emu_transpose", _transpose_2d(30, 50), [f32(30, 50)], 0, 0),
        Case("emu_conv_window_warp", _conv_window(1, 4, 6, 3), [f32(1, 4, 6, 6), f32(8, 4, 3, 3)], 1e-4, 1e-4),
    ]
    xa = f32(70_001)
    xa[4_567] = np.nan
    small.append(Case("emu_full_max_nan_split", _full_reduce(70_001, "max"), [xa], 0, 0))
    cases = harvested_cases() + fusion_cases() + small
    for i, c in enumerate(cases):
        c.kernel.name = f"e{i}_{c.kernel.name}"
    return cases
