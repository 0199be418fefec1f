"""Hand-built kernels: compiled LLVM == kernel_eval == plain numpy, one kernel per test."""
import numpy as np
import pytest

from ember.ir import dtypes as dt
from ember.ir.kernel import (Binary, Buf, Cast, Const, IGather, IndexValue, Kernel, Load, Reduce, Store,
                             Unary, Where, binary, o, r)

F32, F64, I32, I64, B8, U8 = dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_, dt.uint8


def c(v, d=F32):
    return Const(v, d)


# ------------------------------------------------------------------------- pointwise + index maps
def test_pointwise_chain_broadcast(check, rng):
    x, b, y = Buf("x", (7, 33), F32), Buf("b", (33,), F32), Buf("y", (7, 33), F32)
    v = Load(x, (o(0), o(1))) * c(2.0) + Load(b, (o(1),))
    k = Kernel([x, b], [y], (7, 33), stores=[Store(y, (o(0), o(1)), Unary("tanh", v))])
    xa, ba = rng.standard_normal((7, 33), np.float32), rng.standard_normal(33).astype(np.float32)
    check(k, [xa, ba], [np.tanh(xa * 2 + ba)])


def test_permute(check, rng):
    x, y = Buf("x", (5, 6, 7), F32), Buf("y", (7, 5, 6), F32)
    k = Kernel([x], [y], (7, 5, 6), stores=[Store(y, (o(0), o(1), o(2)), Load(x, (o(1), o(2), o(0))))])
    xa = rng.standard_normal((5, 6, 7), np.float32)
    check(k, [xa], [xa.transpose(2, 0, 1)])


def test_slice_step_and_flip(check, rng):
    x, y = Buf("x", (20, 9), F32), Buf("y", (6, 9), F32)
    # y = x[2:20:3, ::-1]
    k = Kernel([x], [y], (6, 9), stores=[Store(y, (o(0), o(1)), Load(x, (o(0) * 3 + 2, 8 - o(1))))])
    xa = rng.standard_normal((20, 9), np.float32)
    check(k, [xa], [xa[2:20:3, ::-1]])


def test_reshape_divmod(check, rng):
    x, y = Buf("x", (4, 6), F32), Buf("y", (24,), F32)
    k = Kernel([x], [y], (24,), stores=[Store(y, (o(0),), Load(x, (o(0) // 6, o(0) % 6)))])
    xa = rng.standard_normal((4, 6), np.float32)
    check(k, [xa], [xa.reshape(24)])


def test_pad_constant(check, rng):
    x, y = Buf("x", (3, 4), F32), Buf("y", (5, 8), F32)
    v = Load(x, (o(0) - 1, o(1) - 2), fill=0.0)
    k = Kernel([x], [y], (5, 8), stores=[Store(y, (o(0), o(1)), v)])
    xa = rng.standard_normal((3, 4), np.float32)
    check(k, [xa], [np.pad(xa, ((1, 1), (2, 2)))])


def test_cat_two_stores_partial_domains(check, rng):
    # cat([a, b], dim=1) as one kernel with masked loads and a where
    a, b, y = Buf("a", (4, 3), F32), Buf("b", (4, 5), F32), Buf("y", (4, 8), F32)
    in_a = Binary("lt", IndexValue(o(1)), Const(3, I64))
    v = Where(in_a, Load(a, (o(0), o(1)), fill=0.0, masked=[1]), Load(b, (o(0), o(1) - 3), fill=0.0, masked=[1]))
    k = Kernel([a, b], [y], (4, 8), stores=[Store(y, (o(0), o(1)), v)])
    aa, ba = rng.standard_normal((4, 3), np.float32), rng.standard_normal((4, 5), np.float32)
    check(k, [aa, ba], [np.concatenate([aa, ba], 1)])


def test_multiple_outputs(check, rng):
    x, y1, y2 = Buf("x", (100,), F32), Buf("y1", (100,), F32), Buf("y2", (100,), B8)
    v = Load(x, (o(0),))
    k = Kernel([x], [y1, y2], (100,), stores=[Store(y1, (o(0),), Unary("exp", v)),
                                            Store(y2, (o(0),), Binary("gt", v, c(0.0)))])
    xa = rng.standard_normal(100).astype(np.float32)
    check(k, [xa], [np.exp(xa), xa > 0])


# -------------------------------------------------------------------------------- reductions
def softmax(n, m, log=False):
    x, y = Buf("x", (n, m), F32), Buf("y", (n, m), F32)
    v = Load(x, (o(0), r(0)))
    sh = v - Reduce("max", v)
    e = Unary("exp", sh)
    if log:
        out = sh - Unary("log", Reduce("sum", e))
    else:
        out = e / Reduce("sum", e)
    return Kernel([x], [y], (n,), (m,), [Store(y, (o(0), r(0)), out)])


def test_softmax(check, rng):
    xa = rng.standard_normal((9, 130), np.float32) * 5
    e = np.exp(xa - xa.max(1, keepdims=True))
    check(softmax(9, 130), [xa], [e / e.sum(1, keepdims=True)])


def test_log_softmax(check, rng):
    xa = rng.standard_normal((9, 77), np.float32) * 5
    sh = xa - xa.max(1, keepdims=True)
    check(softmax(9, 77, log=True), [xa], [sh - np.log(np.exp(sh).sum(1, keepdims=True))], atol=1e-5)


def test_softmax_nan_row_propagates(check):
    xa = np.ones((3, 16), np.float32)
    xa[1, 5] = np.nan
    out = check(softmax(3, 16), [xa])[0]
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


def test_layer_norm(check, rng):
    n, m = 6, 200
    x, w, b, y = Buf("x", (n, m), F32), Buf("w", (m,), F32), Buf("b", (m,), F32), Buf("y", (n, m), F32)
    v = Load(x, (o(0), r(0)))
    mean = Reduce("sum", v) * c(1.0 / m)
    d = v - mean
    var = Reduce("sum", d * d) * c(1.0 / m)
    out = d * Unary("rsqrt", var + c(1e-5)) * Load(w, (r(0),)) + Load(b, (r(0),))
    mean_out, rstd_out = Buf("mean", (n,), F32), Buf("rstd", (n,), F32)
    k = Kernel([x, w, b], [y, mean_out, rstd_out], (n,), (m,),
               [Store(y, (o(0), r(0)), out), Store(mean_out, (o(0),), mean),
                Store(rstd_out, (o(0),), Unary("rsqrt", var + c(1e-5)))])
    xa = rng.standard_normal((n, m), np.float32) * 3 + 1
    wa, ba = rng.standard_normal(m).astype(np.float32), rng.standard_normal(m).astype(np.float32)
    mu = xa.mean(1, keepdims=True)
    rs = 1 / np.sqrt(((xa - mu) ** 2).mean(1, keepdims=True) + 1e-5)
    check(k, [xa, wa, ba], [(xa - mu) * rs * wa + ba, mu[:, 0], rs[:, 0]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axes", [(0,), (1,), (0, 2), (1, 2)])
def test_sum_over_axes(check, rng, axes):
    shape = (4, 5, 6)
    keep = [a for a in range(3) if a not in axes]
    x = Buf("x", shape, F64)
    y = Buf("y", tuple(shape[a] for a in keep), F64)
    idx, oi, ri = [None] * 3, 0, 0
    for a in range(3):
        if a in axes:
            idx[a], ri = r(ri), ri + 1
        else:
            idx[a], oi = o(oi), oi + 1
    k = Kernel([x], [y], [shape[a] for a in keep], [shape[a] for a in axes],
               [Store(y, [o(i) for i in range(len(keep))], Reduce("sum", Load(x, idx)))])
    xa = rng.standard_normal(shape)
    check(k, [xa], [xa.sum(axis=axes)], rtol=1e-12)


@pytest.mark.parametrize("op", ["max", "min", "prod", "argmax", "argmin"])
def test_reduce_ops_float(check, rng, op):
    x = Buf("x", (5, 37), F32)
    y = Buf("y", (5,), I64 if op.startswith("arg") else F32)
    k = Kernel([x], [y], (5,), (37,), [Store(y, (o(0),), Reduce(op, Load(x, (o(0), r(0)))))])
    xa = rng.uniform(0.5, 1.5, (5, 37)).astype(np.float32)
    xa[2, 3] = xa[2, 30] = 9.0    # ties: the first index wins
    xa[4, 7] = np.nan             # NaN wins max/min/argmax
    ref = {"max": xa.max(1), "min": xa.min(1), "prod": xa.prod(1), "argmax": xa.argmax(1),
           "argmin": xa.argmin(1)}[op]
    check(k, [xa], [ref], rtol=1e-5)


@pytest.mark.parametrize("d", [I32, I64, U8, B8])
def test_reduce_ints_and_bools(check, rng, d):
    x = Buf("x", (6, 50), d)
    outs = [Buf("mx", (6,), d), Buf("mn", (6,), d)]
    v = Load(x, (o(0), r(0)))
    stores = [Store(outs[0], (o(0),), Reduce("max", v)), Store(outs[1], (o(0),), Reduce("min", v))]
    if d is not B8:
        outs.append(Buf("s", (6,), d))
        stores.append(Store(outs[2], (o(0),), Reduce("sum", v)))
    k = Kernel([x], outs, (6,), (50,), stores)
    xa = rng.integers(0, 2 if d is B8 else 100, (6, 50)).astype(d.np)
    ref = [xa.max(1), xa.min(1)] + ([xa.sum(1, dtype=d.np)] if d is not B8 else [])
    check(k, [xa], ref)


def test_maxpool_with_neg_inf_padding(check, rng):
    # 3x3 max pool, stride 2, padding 1 over [2, 3, 9, 9]
    N, C, H, W, K, S, P = 2, 3, 9, 9, 3, 2, 1
    OH = (H + 2 * P - K) // S + 1
    x, y = Buf("x", (N, C, H, W), F32), Buf("y", (N, C, OH, OH), F32)
    v = Load(x, (o(0), o(1), o(2) * S + r(0) - P, o(3) * S + r(1) - P), fill=-np.inf, masked=[2, 3])
    k = Kernel([x], [y], (N, C, OH, OH), (K, K), [Store(y, (o(0), o(1), o(2), o(3)), Reduce("max", v))])
    xa = rng.standard_normal((N, C, H, W), np.float32) - 5   # all negative: padding must not win
    xp = np.pad(xa, ((0, 0), (0, 0), (P, P), (P, P)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, (K, K), axis=(2, 3))[:, :, ::S, ::S]
    check(k, [xa], [win.max(axis=(4, 5))])


def test_avgpool_window_sum(check, rng):
    x, y = Buf("x", (1, 2, 8, 8), F32), Buf("y", (1, 2, 4, 4), F32)
    v = Load(x, (o(0), o(1), o(2) * 2 + r(0), o(3) * 2 + r(1)))
    k = Kernel([x], [y], (1, 2, 4, 4), (2, 2), [Store(y, (o(0), o(1), o(2), o(3)), Reduce("sum", v) * c(0.25))])
    xa = rng.standard_normal((1, 2, 8, 8), np.float32)
    check(k, [xa], [xa.reshape(1, 2, 4, 2, 4, 2).mean(axis=(3, 5))])


def test_conv_as_window_reduction_with_zero_padding(check, rng):
    # direct conv2d 1->1 channel, 3x3, padding 1: sum over r of x[window] * w[r]
    x, w, y = Buf("x", (6, 6), F64), Buf("w", (3, 3), F64), Buf("y", (6, 6), F64)
    v = Load(x, (o(0) + r(0) - 1, o(1) + r(1) - 1), fill=0.0) * Load(w, (r(0), r(1)))
    k = Kernel([x, w], [y], (6, 6), (3, 3), [Store(y, (o(0), o(1)), Reduce("sum", v))])
    xa, wa = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    xp = np.pad(xa, 1)
    ref = sum(xp[i:i + 6, j:j + 6] * wa[i, j] for i in range(3) for j in range(3))
    check(k, [xa, wa], [ref], rtol=1e-12)


def test_reduction_of_outer_only_value(check, rng):
    # sum over r of a value that does not depend on r: n * value
    x, y = Buf("x", (4,), F32), Buf("y", (4,), F32)
    k = Kernel([x], [y], (4,), (10,), [Store(y, (o(0),), Reduce("sum", Load(x, (o(0),))))])
    xa = rng.standard_normal(4).astype(np.float32)
    check(k, [xa], [xa * 10], rtol=1e-6)


def test_causal_mask_with_index_values(check, rng):
    x, y = Buf("x", (6, 6), F32), Buf("y", (6, 6), F32)
    v = Load(x, (o(0), r(0)))
    masked = Where(Binary("le", IndexValue(r(0)), IndexValue(o(0))), v, c(-np.inf))
    e = Unary("exp", masked - Reduce("max", masked))
    k = Kernel([x], [y], (6,), (6,), [Store(y, (o(0), r(0)), e / Reduce("sum", e))])
    xa = rng.standard_normal((6, 6), np.float32)
    m = np.where(np.tril(np.ones((6, 6), bool)), xa, -np.inf)
    ee = np.exp(m - m.max(1, keepdims=True))
    check(k, [xa], [ee / ee.sum(1, keepdims=True)])


# ------------------------------------------------------------------------------------ gather
def embedding(n_ids, vocab, dim, wrap=False):
    ids, w, y = Buf("ids", (n_ids,), I64), Buf("w", (vocab, dim), F32), Buf("y", (n_ids, dim), F32)
    v = Load(w, (IGather(ids, (o(0),), wrap=wrap), o(1)))
    return Kernel([ids, w], [y], (n_ids, dim), stores=[Store(y, (o(0), o(1)), v)])


def test_gather_embedding(check, rng):
    wa = rng.standard_normal((10, 16), np.float32)
    ids = rng.integers(0, 10, 12).astype(np.int64)
    check(embedding(12, 10, 16), [ids, wa], [wa[ids]])


def test_gather_wrap_negative(check, rng):
    wa = rng.standard_normal((10, 4), np.float32)
    ids = np.array([-1, 0, -10, 9], np.int64)
    check(embedding(4, 10, 4, wrap=True), [ids, wa], [wa[ids]])


@pytest.mark.parametrize("bad", [10, -1, 1 << 40])
@pytest.mark.parametrize("threads", [1, 2])
def test_gather_out_of_range_raises(bad, threads):
    from codegen_helpers import run_llvm
    from ember.ir.kernel_eval import run_kernel
    k = embedding(4, 10, 4)
    ids = np.array([1, 2, bad, 3], np.int64)
    wa = np.ones((10, 4), np.float32)
    msg = f"index {bad} is out of bounds for dimension 0 with size 10"
    with pytest.raises(IndexError, match=msg):
        run_kernel(k, [ids, wa])
    with pytest.raises(IndexError, match=msg):
        run_llvm(k, [ids, wa], threads=threads)


def test_gather_inside_inner_loop_int32_index(check, rng):
    # take_along_axis-like: y[i] = sum_j x[i, idx[i, j]]
    x, idx, y = Buf("x", (5, 8), F32), Buf("idx", (5, 3), I32), Buf("y", (5,), F32)
    v = Load(x, (o(0), IGather(idx, (o(0), r(0)))))
    k = Kernel([x, idx], [y], (5,), (3,), [Store(y, (o(0),), Reduce("sum", v))])
    xa = rng.standard_normal((5, 8), np.float32)
    ia = rng.integers(0, 8, (5, 3)).astype(np.int32)
    check(k, [xa, ia], [np.take_along_axis(xa, ia, 1).sum(1)], rtol=1e-5)


# ------------------------------------------------------------------------- dtypes and casts
def test_int_arithmetic_floor_rules(check):
    a = np.array([7, -7, 7, -7, 0, 5, -2147483648, 3], np.int32)
    b = np.array([2, 2, -2, -2, 3, 0, -1, -1], np.int32)
    x, z = Buf("a", (8,), I32), Buf("b", (8,), I32)
    ops = ["add", "sub", "mul", "remainder", "floor_divide", "maximum", "minimum"]
    outs = [Buf(f"y{i}", (8,), I32) for i in range(len(ops))]
    va, vb = Load(x, (o(0),)), Load(z, (o(0),))
    k = Kernel([x, z], outs, (8,), stores=[Store(ob, (o(0),), Binary(op, va, vb)) for ob, op in zip(outs, ops)])
    with np.errstate(all="ignore"):
        ref = [a + b, a - b, a * b, np.remainder(a, b), np.floor_divide(a, b), np.maximum(a, b), np.minimum(a, b)]
    check(k, [a, b], ref)


def test_float_remainder_floor_divide(check):
    a = np.array([7.5, -7.5, 7.5, -7.5, 0.0, 1.0, 5.0, -0.5], np.float64)
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, 0.0, 0.1, 3.0], np.float64)
    x, z, y1, y2 = Buf("a", (8,), F64), Buf("b", (8,), F64), Buf("y1", (8,), F64), Buf("y2", (8,), F64)
    va, vb = Load(x, (o(0),)), Load(z, (o(0),))
    k = Kernel([x, z], [y1, y2], (8,), stores=[Store(y1, (o(0),), Binary("remainder", va, vb)),
                                              Store(y2, (o(0),), Binary("floor_divide", va, vb))])
    with np.errstate(all="ignore"):
        check(k, [a, b], [np.remainder(a, b), np.floor_divide(a, b)], rtol=1e-15)


def test_int_pow_and_unary(check):
    a = np.array([2, -3, 0, 1, -1, 5, 7, -2], np.int64)
    e = np.array([10, 3, 0, -4, -3, 2, 1, 0], np.int64)
    x, z = Buf("a", (8,), I64), Buf("e", (8,), I64)
    outs = [Buf(n, (8,), I64) for n in ("p", "neg", "abs", "sign")]
    va = Load(x, (o(0),))
    k = Kernel([x, z], outs, (8,), stores=[
        Store(outs[0], (o(0),), Binary("pow", va, Load(z, (o(0),)))), Store(outs[1], (o(0),), Unary("neg", va)),
        Store(outs[2], (o(0),), Unary("abs", va)), Store(outs[3], (o(0),), Unary("sign", va))])
    pw = np.array([1024, -27, 1, 1, -1, 25, 7, 1])
    check(k, [a, e], [pw, -a, np.abs(a), np.sign(a)])


def test_casts(check):
    xa = np.array([-2.7, -0.5, 0.0, 0.5, 1.5, 2.5, 200.0, 3.9], np.float32)
    x = Buf("x", (8,), F32)
    targets = [I32, I64, U8, B8, F64, dt.int8, dt.int16]
    outs = [Buf(f"y{i}", (8,), d) for i, d in enumerate(targets)]
    v = Load(x, (o(0),))
    k = Kernel([x], outs, (8,), stores=[Store(ob, (o(0),), Cast(v, ob.dtype)) for ob in outs])
    with np.errstate(all="ignore"):
        ref = [xa.astype(d.np) for d in targets[:5]] + [xa.astype(np.int64).astype(d.np) for d in targets[5:]]
    ref[2] = xa.astype(np.int64).astype(np.uint8)   # float->uint8 of negatives: wraps
    check(k, [xa], ref)


def test_cast_f64_to_f16_rounds_once(check):
    """float64 -> float16 rounds the double directly (numpy), never through a float32 rounding; halfway
    cases one float32 rounding would break, overflow, underflow, signed zeros, inf and NaN."""
    h = 2.0 ** -11
    xa = np.array([1 + h, 1 + h + 2.0 ** -40, 1 + h - 2.0 ** -40, 1 + 3 * h, 65504.0, 65519.99, 65520.0, 1e300,
                   -1e-300, 2.0 ** -25, 2.0 ** -25 * (1 + 2.0 ** -30), -0.0, np.inf, -np.inf, np.nan, -2.7182818])
    x, y = Buf("x", (16,), F64), Buf("y", (16,), dt.float16)
    k = Kernel([x], [y], (16,), stores=[Store(y, (o(0),), Cast(Load(x, (o(0),)), dt.float16))])
    with np.errstate(all="ignore"):
        want = xa.astype(np.float16)
    got = check(k, [xa], [want], rtol=0, atol=0)[0]
    assert got.tobytes() == want.tobytes()


def test_int_to_float_and_bool_logic(check):
    ia = np.array([0, 1, -3, 255, 7], np.int32)
    ba = np.array([True, False, True, False, True])
    x, bb = Buf("x", (5,), I32), Buf("m", (5,), B8)
    outs = [Buf("f", (5,), F32), Buf("l", (5,), B8), Buf("n", (5,), B8), Buf("w", (5,), I32)]
    v, m = Load(x, (o(0),)), Load(bb, (o(0),))
    k = Kernel([x, bb], outs, (5,), stores=[
        Store(outs[0], (o(0),), Cast(v, F32)),
        Store(outs[1], (o(0),), Binary("logical_and", Cast(v, B8), m)),
        Store(outs[2], (o(0),), Binary("logical_or", Unary("logical_not", m), Binary("eq", v, Const(7, I32)))),
        Store(outs[3], (o(0),), Where(m, v, Cast(Cast(m, U8), I32)))])
    check(k, [ia, ba], [ia.astype(np.float32), (ia != 0) & ba, ~ba | (ia == 7), np.where(ba, ia, 0)])


@pytest.mark.parametrize("op", ["floor", "ceil", "round", "trunc", "abs", "sign", "neg", "sqrt", "rsqrt",
                                "reciprocal", "isnan", "isinf", "logical_not"])
def test_float_unary_specials(check, op):
    xa = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.0, -0.0, 3.7, -3.7, np.inf, -np.inf, np.nan, 1e-30],
                  np.float32)
    x = Buf("x", xa.shape, F32)
    node = Unary(op, Load(x, (o(0),)))
    y = Buf("y", xa.shape, node.dtype)
    k = Kernel([x], [y], xa.shape, stores=[Store(y, (o(0),), node)])
    from ember.ir.kernel_eval import UNARY_NP
    with np.errstate(all="ignore"):
        ref = UNARY_NP[op](xa)
    check(k, [xa], [ref])


@pytest.mark.parametrize("op", ["maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "pow", "div"])
def test_float_binary_specials(check, op):
    vals = np.array([0.0, -1.5, 2.0, np.inf, -np.inf, np.nan, 3.0], np.float32)
    a, b = np.meshgrid(vals, vals)
    a, b = a.ravel().copy(), b.ravel().copy()
    x, z = Buf("a", a.shape, F32), Buf("b", b.shape, F32)
    node = Binary(op, Load(x, (o(0),)), Load(z, (o(0),)))
    y = Buf("y", a.shape, node.dtype)
    k = Kernel([x, z], [y], a.shape, stores=[Store(y, (o(0),), node)])
    from ember.ir.kernel_eval import BINARY_NP
    with np.errstate(all="ignore"):
        ref = BINARY_NP[op](a, b)
    check(k, [a, b], [ref])


def test_float64_kernel(check, rng):
    x, y = Buf("x", (300,), F64), Buf("y", (300,), F64)
    v = Load(x, (o(0),))
    e = Unary("exp", v) + Unary("log1p", Unary("abs", v)) * Unary("tanh", v) - Unary("erf", v) + Unary("sin", v)
    k = Kernel([x], [y], (300,), stores=[Store(y, (o(0),), e)])
    xa = rng.standard_normal(300) * 3
    import math
    erf = np.vectorize(math.erf, otypes=[np.float64])
    check(k, [xa], [np.exp(xa) + np.log1p(np.abs(xa)) * np.tanh(xa) - erf(xa) + np.sin(xa)], rtol=1e-14, atol=1e-14)


def test_scalar_kernel_outer_one(check, rng):
    x, y = Buf("x", (50,), F32), Buf("y", (1,), F32)
    k = Kernel([x], [y], (1,), (50,), [Store(y, (o(0),), Reduce("sum", Load(x, (r(0),))))])
    xa = rng.standard_normal(50).astype(np.float32)
    check(k, [xa], [xa.sum(keepdims=True)], rtol=1e-5)


def test_binary_helper_scalar_promotion():
    x = Buf("x", (3,), F64)
    node = binary("mul", 2, Load(x, (o(0),)))
    assert node.a.dtype is F64 and node.a.value == 2.0


# ------------------------------------------- short rows: two rows per outer iteration (render.py)
@pytest.mark.parametrize("rows,width", [(1, 64), (2, 64), (7, 64), (33, 16), (4, 512), (5, 513)])
def test_short_row_softmax_two_rows_per_iteration(check, rng, rows, width):
    """Odd and even row counts, one row, and the widths around SHORT_ROW_POINTS; also cut into
    one chunk per row (as the thread pool cuts it), so chunks start and stop on odd rows."""
    from ember.codegen.llvm.render import SHORT_ROW_POINTS
    from ember.runtime.cpu import compile_kernels
    k = softmax(rows, width)
    xa = rng.standard_normal((rows, width), np.float32) * 5
    xa[rows // 2, width // 3] = -np.inf
    e = np.exp(xa - xa.max(1, keepdims=True))
    want = e / e.sum(1, keepdims=True)
    check(k, [xa], [want])
    mod = compile_kernels([k])
    fn, out = mod[k.name], np.zeros_like(xa)
    fn.parallel_ok, fn.max_chunks = True, rows          # every row a chunk of its own
    fn.launch([xa, out], threads=2)
    np.testing.assert_allclose(out, want, rtol=2e-6, atol=1e-6)
    assert ("llvm.loop.unroll.count" in mod.llvm_ir) == (rows > 1 and width <= SHORT_ROW_POINTS)
