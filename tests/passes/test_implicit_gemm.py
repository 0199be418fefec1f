"""passes/implicit_gemm.py: an im2col that only products read is gathered by them, never stored.

The pass on traced convolutions (which kernels go, what the externs read), gather_map on hand-built
kernels (a plain copy is found; arithmetic, a second input or masked borders are not), the gathered
GEMM kernels against the materialized matrix, and compiled == eager on random convolution shapes,
strides, paddings and dilations -- values and gradients, on the numpy runner and on LLVM."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ember
import ember.nn.functional as F
from ember.ir import dtypes as dt
from ember.ir.kernel import Binary, Buf, Const, IndexValue, Kernel, Load, Store, Where, o
from ember.ir.kernel_eval import evaluate
from ember.kernels.blas import gathered
from ember.passes.implicit_gemm import gather_map
from ember.runtime import gemm_f32

from helpers import check_program, check_train_step, trace


def _conv_net(x, w1, b1, w2):
    y = F.max_pool2d(F.relu(F.conv2d(x, w1, b1)), 2)
    return F.conv2d(y, w2).sum()


def _conv_args(seed=0):
    rng = np.random.default_rng(seed)
    t = lambda *s: ember.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)  # noqa: E731
    return t(64, 1, 28, 28), t(10, 1, 5, 5), t(10), t(20, 10, 5, 5)       # the MNIST CNN's convolutions


def test_conv_columns_are_gathered_not_stored():
    fw, bw, _ = trace(_conv_net, *_conv_args())
    prog = check_program(fw)
    gathered_externs = [s for s in prog.externs if "gather_b" in s.kernel.attrs]
    assert gathered_externs, "the first convolution's product should gather its columns"
    for s in gathered_externs:
        K, J, L, koff, starts, consts = s.kernel.attrs["gather_b"]
        assert s.kernel.inputs[1].shape != (K, J)          # it reads the source, not a [K, J] matrix
        assert J % L == 0 and len(starts) == J // L and len(koff) == K
        assert consts == (((K - 1, 1.0),) if K == 26 else ())   # conv1's bias as a row of ones; conv2 has none
    # no kernel writes a value of the columns' shape any more
    shapes = {tuple(b.shape) for k in prog.kernels for b in k.kernel.outputs}
    K, J = gathered_externs[0].kernel.attrs["gather_b"][:2]
    assert not any(np.prod(s) == K * J and len(s) > 2 for s in shapes)


def test_training_step_gathers_forward_and_weight_gradient():
    # gradients of size ~1e4 summed over 36864 products: float32 order differences of ~1e-4 absolute
    fw, bw = check_train_step(_conv_net, _conv_args(1), atol=1e-2)
    gathers = [s.kernel.attrs for p in (fw, bw) for s in p.externs if "gather_b" in s.kernel.attrs]
    assert any(not a.get("transpose_b") for a in gathers)      # the forward product
    assert any(a.get("transpose_b") for a in gathers)          # the weight gradient, dY @ columns^T


def _copy_kernel(src_shape, out_shape, value, extra=()):
    """A kernel y = value(x, *extra) over y's shape (value builds the expression from the input Bufs)."""
    x, y = Buf("x", src_shape, dt.float32), Buf("y", out_shape, dt.float32)
    ins = [x] + [Buf(f"z{i}", s, dt.float32) for i, s in enumerate(extra)]
    return Kernel(ins, [y], list(out_shape), stores=[Store(y, [o(i) for i in range(len(out_shape))], value(*ins))],
                  name="k_copy")


def _window(x):
    return Load(x, [o(1), o(2) + o(0)])       # y[kw, oh, ow] = x[oh, ow + kw]


def test_gather_map_finds_a_plain_window_copy():
    # runs of 4 (one output row of 4 positions) are shorter than MIN_RUN: refused
    assert gather_map(_copy_kernel((4, 6), (3, 4, 4), _window), (3, 16)) is None
    k = _copy_kernel((4, 40), (3, 4, 32), _window)
    desc = gather_map(k, (3, 128))
    assert desc == (3, 128, 32, (0, 1, 2), (0, 40, 80, 120), ())
    src = np.arange(160, dtype=np.float32).reshape(4, 40)
    want = np.empty((3, 4, 32), np.float32)
    evaluate(k, [src, want])
    np.testing.assert_array_equal(gathered(np, src, desc), want.reshape(3, 128))


def test_gather_map_reads_a_bf16_copy_through_a_float32_twin():
    """bf16 would round the position codes (8 bits): the map of a bf16 copy is its float32 twin's, a bf16
    constant row (the bias row of ones) included."""
    x, y = Buf("x", (4, 40), dt.bfloat16), Buf("y", (4, 4, 32), dt.bfloat16)
    value = Where(Binary("lt", IndexValue(o(0)), Const(3)), Load(x, [o(1), o(2) + o(0)]), Const(1.0, dt.bfloat16))
    k = Kernel([x], [y], [4, 4, 32], stores=[Store(y, [o(0), o(1), o(2)], value)], name="k_copy")
    assert gather_map(k, (4, 128)) == (4, 128, 32, (0, 1, 2, -1), (0, 40, 80, 120), ((3, 1.0),))


def test_bf16_columns_are_gathered_under_autocast():
    """Under autocast the columns are bf16: the forward product and the weight gradient gather them too (the
    bf16 forms of the gathered kernels); compiled == eager within bf16's rounding."""
    args = _conv_args(2)

    def f(x, w1, b1, w2):
        with ember.autocast("cpu"):
            return _conv_net(x, w1, b1, w2).float()
    want = f(*args)
    gw = ember.autograd.grad(want, args)
    cf = ember.compile(f)
    got = cf(*args)
    gg = ember.autograd.grad(got, args)
    np.testing.assert_allclose(got.item(), want.item(), rtol=2e-2)
    # (x's gradient is left out: a conv1 output one bf16 unit apart between the two changes which element of
    # a max-pool window wins, and so where a gradient goes -- the same in the materialized product)
    for a_, b_ in zip(gg[1:], gw[1:]):
        assert a_.dtype is b_.dtype
        np.testing.assert_allclose(a_.numpy(), b_.numpy(), atol=3e-2 * float(np.abs(b_.numpy()).max()))
    v = cf.variants[-1]
    progs = (v.forward_exec.program, v.backward_exec.program)
    gathers = [s for p in progs for s in p.externs if "gather_b" in s.kernel.attrs]
    assert {bool(s.kernel.attrs.get("transpose_b")) for s in gathers} == {False, True}
    assert all(s.kernel.inputs[1].dtype is dt.bfloat16 for s in gathers)
    # no kernel stores conv1's bf16 columns ([26, 24, 24, 64]) any more
    assert not any(np.prod(b.shape) == 26 * 36864 for p in progs for k in p.kernels for b in k.kernel.outputs)


def test_eager_bf16_convolution_gathers_and_equals_compiled():
    """An eager bf16 convolution (autocast's) runs the same gathered kernels (frontend/conv_gathered.py: no
    im2col copy; the input gradient folded in float32, rounded once): values and every gradient equal the
    compiled convolution's bit for bit, and lie within bf16's rounding of a float64 reference."""
    rng = np.random.default_rng(5)
    bf = lambda *s: ember.tensor(rng.standard_normal(s).astype(np.float32)).to(ember.bfloat16)  # noqa: E731
    x, w, b, g = bf(16, 3, 12, 12), bf(8, 3, 5, 5), bf(8), bf(16, 8, 8, 8)

    def run(fn):
        args = [t.detach().requires_grad_() for t in (x, w, b)]
        y = fn(*args)
        y.backward(g)
        return [y.detach()] + [a.grad for a in args]

    def conv(x, w, b):
        return F.conv2d(x, w, b)
    eager, compiled = run(conv), run(ember.compile(conv))
    assert conv(x, w.detach().requires_grad_(), b).grad_fn.name() == "_GatheredConvBackward"
    for e, c in zip(eager, compiled):
        assert e.dtype is c.dtype is ember.bfloat16
        np.testing.assert_array_equal(e.view(ember.int16).numpy(), c.view(ember.int16).numpy())
    import torch
    t64 = lambda a: torch.tensor(a.float().numpy(), dtype=torch.float64, requires_grad=True)  # noqa: E731
    tx, tw, tb = t64(x), t64(w), t64(b)
    ty = torch.nn.functional.conv2d(tx, tw, tb)
    ty.backward(torch.tensor(g.float().numpy(), dtype=torch.float64))
    for e, r in zip(eager, (ty, tx.grad, tw.grad, tb.grad)):
        r = r.detach().numpy()
        # one rounding of float32 sums (the input gradient: of a bf16 product, then of the fold)
        np.testing.assert_allclose(e.float().numpy(), r, rtol=2 ** -7, atol=2 ** -6 * np.abs(r).max())


def test_gather_map_refuses_what_is_not_a_copy():
    scaled = _copy_kernel((4, 40), (3, 4, 32), lambda x: Binary("mul", _window(x), Const(2.0, dt.float32)))
    assert gather_map(scaled, (3, 128)) is None
    two = _copy_kernel((4, 40), (3, 4, 32), lambda x, z: Binary("add", _window(x), Load(z, [o(1), o(2)])),
                       extra=[(4, 40)])
    assert gather_map(two, (3, 128)) is None
    transposed = _copy_kernel((32, 32), (32, 32), lambda x: Load(x, [o(1), o(0)]))   # no contiguous runs
    assert gather_map(transposed, (32, 32)) is None
    # arithmetic that leaves the position codes (positive odd integers) as they are is refused too
    zero = Const(0.0, dt.float32)
    relu = _copy_kernel((4, 40), (3, 4, 32), lambda x: Binary("maximum", _window(x), zero))
    assert gather_map(relu, (3, 128)) is None
    keep = _copy_kernel((4, 40), (3, 4, 32), lambda x: Where(Binary("gt", _window(x), zero), _window(x), zero))
    assert gather_map(keep, (3, 128)) is None


@pytest.mark.parametrize("threads", [1, 2])
def test_gathered_kernels_equal_the_materialized_product(threads):
    from numpy.lib.stride_tricks import sliding_window_view as swv
    rng = np.random.default_rng(3)
    for C, H, N, O in [(1, 28, 64, 10), (3, 9, 5, 7), (2, 11, 16, 30)]:
        x = rng.standard_normal((C, H, H, N)).astype(np.float32)       # batch-last input
        OH = H - 4
        K, J, L = C * 25 + 1, OH * OH * N, OH * N
        koff = tuple(c * H * H * N + kh * H * N + kw * N for c in range(C) for kh in range(5) for kw in range(5))
        desc = (K, J, L, koff + (-1,), tuple(oh * H * N for oh in range(OH)), ((K - 1, 1.0),))
        G = gathered(np, x, desc)
        cols = swv(x, (5, 5), axis=(1, 2)).transpose(0, 4, 5, 1, 2, 3).reshape(C * 25, J)
        np.testing.assert_array_equal(G[:-1], cols)
        w = rng.standard_normal((O, K)).astype(np.float32)
        out = np.full((O, J), np.nan, np.float32)
        assert gemm_f32.matmul_gathered(w, x, desc, out, threads=threads) is out
        np.testing.assert_allclose(out, w.astype(np.float64) @ G, rtol=1e-4, atol=1e-4)
        dy = rng.standard_normal((O, J)).astype(np.float32)
        dw = np.full((O, K), np.nan, np.float32)
        assert gemm_f32.matmul_gathered(dy, x, desc, dw, transposed=True, threads=threads) is dw
        np.testing.assert_allclose(dw, dy.astype(np.float64) @ G.T.astype(np.float64), rtol=1e-4, atol=1e-3)


@settings(max_examples=10, deadline=None)
@given(c=st.integers(1, 3), o_=st.integers(1, 5), hw=st.integers(6, 11), k=st.integers(1, 4),
       stride=st.integers(1, 2), padding=st.integers(0, 1), dilation=st.integers(1, 2), n=st.integers(16, 20),
       bias=st.booleans(), seed=st.integers(0, 1000))
def test_gathered_convolutions_equal_eager(c, o_, hw, k, stride, padding, dilation, n, bias, seed):
    """Random windows, the input handed over batch-last (so every window offset reads runs of at least N
    contiguous values and the columns are gathered): compiled values and gradients == eager's."""
    if hw + 2 * padding - dilation * (k - 1) - 1 < 0:
        return
    rng = np.random.default_rng(seed)
    xb = ember.tensor(rng.standard_normal((c, hw, hw, n)).astype(np.float32), requires_grad=True)
    w = ember.tensor(rng.standard_normal((o_, c, k, k)).astype(np.float32), requires_grad=True)
    b = ember.tensor(rng.standard_normal(o_).astype(np.float32), requires_grad=True) if bias else None
    args = [xb, w] + ([b] if bias else [])

    def f(xb, w, b):
        y = F.conv2d(xb.permute(3, 0, 1, 2), w, b, stride=stride, padding=padding, dilation=dilation)
        return (y * y).sum()
    want = f(xb, w, b)
    gw = ember.autograd.grad(want, args)
    cf = ember.compile(f)
    got = cf(xb, w, b)
    gg = ember.autograd.grad(got, args)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-4)
    for a_, b_ in zip(gg, gw):
        scale = float(np.abs(b_.numpy()).max()) + 1.0
        np.testing.assert_allclose(a_.numpy(), b_.numpy(), rtol=1e-3, atol=1e-4 * scale)
    v = cf.variants[-1]
    externs = v.forward_exec.program.externs + (v.backward_exec.program.externs if getattr(v, "backward_exec", None)
                                                  else [])
    # (a 1x1 kernel's columns are its input: nothing to gather; a padded input this small is stored in its
    # logical layout and read strided, see test_padded_convolutions_gather_at_cifar_size)
    assert any("gather_b" in s.kernel.attrs for s in externs) or k == 1 or padding


def test_padded_convolutions_gather_at_cifar_size():
    """padding=1 3x3 convolutions on a CIFAR-sized batch: fusion stores the padded input
    (decide._find_window_bases), so forward products and weight gradients gather; values and gradients
    equal eager's."""
    rng = np.random.default_rng(0)
    t = lambda *s: ember.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)  # noqa: E731
    x, w, w2 = t(64, 3, 32, 32), t(16, 3, 3, 3), t(16, 16, 3, 3)

    def f(x, w, w2):
        y = F.conv2d(F.relu(F.conv2d(x, w, None, padding=1)), w2, None, padding=1)
        return (y * y).mean()
    want = f(x, w, w2)
    gw = ember.autograd.grad(want, [x, w, w2])
    cf = ember.compile(f)
    got = cf(x, w, w2)
    gg = ember.autograd.grad(got, [x, w, w2])
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-4)
    for a_, b_ in zip(gg, gw):
        np.testing.assert_allclose(a_.numpy(), b_.numpy(), rtol=1e-3, atol=1e-4 * (np.abs(b_.numpy()).max() + 1))
    v = cf.variants[-1]
    fwd = [s for s in v.forward_exec.program.externs if "gather_b" in s.kernel.attrs]
    bwd = [s for s in v.backward_exec.program.externs if "gather_b" in s.kernel.attrs]
    assert len(fwd) == 2 and len(bwd) == 2          # both forward products, both weight gradients
