"""layout (internal buffers in their producer's loop order, transposed copies for strided window
reads) and unroll (short shared outer axes written once per point): the kernel IR they produce,
and values equal to the untransformed kernels (kernel-IR evaluator) and to eager (numpy and LLVM)."""
import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.ir.kernel_eval import run_kernel
from ember.ir.kernel_text import format_kernel, parse_kernel
from ember.passes.unroll import unroll_kernel

F = nn.functional

# the shape of a 2x2 max-pool's backward fused with the pooled gradient: everything but the final
# "is this the max" selection depends on the pooled position (o0, o1, o3, o5) alone
POOL_BACKWARD = """
kernel k0_pool_bwd(g: f32[3,8,5], x: f32[3,4,2,5,2,5]) -> (out: f32[3,4,2,5,2,5]) outer=[3,4,2,5,2,5] inner=[] {
  %0 = load g[o0, o1 + o3 % 4, o5] : f32
  %1 = load g[o0, o3, o5] : f32
  %2 = mul %0, %1 : f32
  %3 = exp %2 : f32
  %4 = add %3, %0 : f32
  %5 = mul %4, %4 : f32
  %6 = load x[o0, o1, o2, o3, o4, o5] : f32
  %7 = const 0.0 : f32
  %8 = gt %6, %7 : b8
  %9 = index o2 - 1 : i64
  %10 = const 0 : i64
  %11 = ge %9, %10 : b8
  %12 = logical_and %8, %11 : b8
  %13 = where %12, %5, %7 : f32
  store out[o0, o1, o2, o3, o4, o5] = %13
}
"""


def test_unroll_writes_each_short_axis_point_with_the_shared_work_once():
    k = parse_kernel(POOL_BACKWARD)
    u = unroll_kernel(k)
    assert u.outer == (3, 4, 5, 5)                    # both pool axes unrolled, the vector loop kept
    text = format_kernel(u)
    for i in (0, 1):
        for j in (0, 1):
            assert f"store out[o0, o1, {i}, o2, {j}, o3]" in text
    assert text.count("exp ") == 1                   # the shared chain is computed once per point
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal(b.shape).astype(np.float32) for b in k.inputs]
    np.testing.assert_array_equal(run_kernel(u, ins)[0], run_kernel(k, ins)[0])


def test_unroll_leaves_kernels_whose_work_varies_along_the_short_axis():
    k = parse_kernel("""
kernel k0_add(a: f32[4,2,8], b: f32[4,2,8]) -> (out: f32[4,2,8]) outer=[4,2,8] inner=[] {
  %0 = load a[o0, o1, o2] : f32
  %1 = load b[o0, o1, o2] : f32
  %2 = add %0, %1 : f32
  store out[o0, o1, o2] = %2
}
""")
    assert unroll_kernel(k) is k


class _Net(nn.Module):
    """conv -> relu -> max-pool -> conv: the relu mask and the pooled value are saved inside a
    whole training step, and the NCHW input is read by conv1's batch-last im2col."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3)
        self.c2 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.c1(x), 2))
        x = F.relu(self.c2(x))
        return self.fc(x.flatten(1))


def _whole_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _programs(cf):
    return [ex.program for v in cf.variants for ex in (v.forward_exec, v.backward_exec)
            if getattr(ex, "program", None) is not None]


@pytest.mark.parametrize("dynamic", [False, True])
def test_whole_step_with_relaid_masks_transposed_input_and_unrolled_pool_backward_matches_eager(dynamic):
    rng = np.random.default_rng(1)
    x = ember.tensor(rng.standard_normal((96, 1, 14, 14)).astype(np.float32))   # 75 KB: transposed once
    y = ember.tensor(rng.integers(0, 5, 96).astype(np.int64))
    ember.manual_seed(0)
    ref = _Net()
    ember.manual_seed(0)
    net = _Net()
    step_ref = _whole_step(ref, ember.optim.SGD(ref.parameters(), lr=0.05, momentum=0.5))
    step = ember.compile(_whole_step(net, ember.optim.SGD(net.parameters(), lr=0.05, momentum=0.5)),
                         dynamic=dynamic)
    for _ in range(3):
        l_ref, l = step_ref(x, y), step(x, y)
        np.testing.assert_allclose(l.item(), l_ref.item(), rtol=1e-5, atol=1e-6)
    for (n, p), p_ref in zip(net.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), p_ref.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=n)
    kernels = [s.kernel for p in _programs(step) for s in p.steps if hasattr(s.kernel, "stores")]
    kernels += [s.kernel.epilogue for p in _programs(step) for s in p.steps
                if getattr(s.kernel, "epilogue", None) is not None]
    # (Program.__str__ cannot print a dynamic program's byte count: the kernels' own text here)
    text = "\n".join(format_kernel(k) for k in kernels)
    assert "_copy(x: f32[" in text                          # the NCHW input transposed once
    # every b8 mask is stored in its producer's loop order: the innermost loop variable last
    for k in kernels:
        for s in k.stores:
            if s.buf.dtype.name == "bool":
                last = f"o{len(k.outer) - 1}"
                assert str(s.index[-1]) == last or k.inner, format_kernel(k)
    # the max-pool backward runs once per pooled point, the 2x2 window written by four stores
    assert any(sum(1 for s in k.stores if s.buf is k.stores[0].buf) == 4 for k in kernels if k.stores)


@pytest.mark.parametrize("runner", ["numpy", "llvm"])
def test_large_leading_sum_of_a_fused_product_is_a_product_with_ones(runner):
    """A layer norm's weight gradient, sum over (batch, seq) of dy * xhat: computed pointwise,
    written once, and summed by a GEMV with a row of ones (a kernel would reduce with a stride of
    a whole row in its innermost loop)."""
    from helpers import check_program, trace
    g, _, _ = trace(lambda a, b: (a * b.tanh()).sum(dim=(0, 1)), ember.randn(16, 64, 128), ember.randn(16, 64, 128))
    p = check_program(g, runner=runner, rtol=1e-4, atol=1e-4)
    assert [s.kernel.op for s in p.externs] == ["matmul"]
    assert all(not s.kernel.inner for s in p.kernels)       # no reduction kernel left


@pytest.mark.parametrize("cols,product", [(512, True), (128, False)])
def test_wide_bf16_leading_sum_is_a_product_with_ones(cols, product):
    """A bias gradient under autocast: a bf16 sum over (batch, seq), a product with a row of ones from
    BF16_LEADING_SUM_MIN_COLS columns (the bf16 GEMM sums in float32 and rounds once, as the sum does);
    narrower ones stay a reduction kernel.  Both equal eager within bf16's rounding."""
    from helpers import check_program, trace
    from ember.passes.decompose import BF16_LEADING_SUM_MIN_COLS
    assert (cols >= BF16_LEADING_SUM_MIN_COLS) is product
    x = ember.randn(16, 64, cols).bfloat16()
    g, _, _ = trace(lambda a: a.sum(dim=(0, 1)).float(), x)
    f = ember.compile(lambda a: a.sum(dim=(0, 1)).float())
    want = x.float().numpy().sum((0, 1))
    np.testing.assert_allclose(f(x).numpy(), want, rtol=2 ** -7, atol=1e-2)
    np.testing.assert_allclose(x.sum(dim=(0, 1)).float().numpy(), want, rtol=2 ** -7, atol=1e-2)
    p = check_program(g, runner="llvm", rtol=2 ** -7, atol=1e-2)
    assert ([s.kernel.op for s in p.externs] == ["matmul"]) is product


# the gradient of a fused qkv projection: three head-layout gradients padded into [B, T, 3*D]
QKV_GRAD = """
kernel k0_qkv_grad(gk: f32[2,4,8,5], gq: f32[2,4,5,8], gv: f32[2,4,5,8]) -> (out: f32[2,5,96]) outer=[2,5,96] inner=[] {
  %0 = index o2 - 64 : i64
  %1 = const 0 : i64
  %2 = ge %0, %1 : b8
  %3 = const 32 : i64
  %4 = lt %0, %3 : b8
  %5 = logical_and %2, %4 : b8
  %6 = load gv[o0, o2 % 32 // 8, o1, o2 % 8] : f32
  %7 = const 0.0 : f32
  %8 = where %5, %6, %7 : f32
  %9 = index o2 - 32 : i64
  %10 = ge %9, %1 : b8
  %11 = lt %9, %3 : b8
  %12 = logical_and %10, %11 : b8
  %13 = load gk[o0, o2 % 32 // 8, o2 % 8, o1] : f32
  %14 = where %12, %13, %7 : f32
  %15 = add %8, %14 : f32
  %16 = index o2 : i64
  %17 = lt %16, %3 : b8
  %18 = load gq[o0, o2 % 32 // 8, o1, o2 % 8] : f32
  %19 = where %17, %18, %7 : f32
  %20 = add %15, %19 : f32
  store out[o0, o1, o2] = %20
}
"""


def test_innermost_axis_split_at_its_cuts_loads_only_each_pieces_input():
    import ember.passes.unroll as U
    k = parse_kernel(QKV_GRAD)
    old = U.MIN_PIECE
    U.MIN_PIECE = 8            # the real pieces are 128 wide; small shapes keep the test fast
    try:
        u = unroll_kernel(k)
    finally:
        U.MIN_PIECE = old
    text = format_kernel(u)
    assert u.outer == (2, 5, 4, 8), text                     # 3 pieces unrolled, heads split out
    assert text.count("load ") == 3 and "where" not in text and "//" not in text and " % " not in text, text
    assert "store out[o0, o1, o2*8 + o3 + 64]" in text
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal(b.shape).astype(np.float32) for b in k.inputs]
    np.testing.assert_array_equal(run_kernel(u, ins)[0], run_kernel(k, ins)[0])


@pytest.mark.parametrize("runner", ["numpy", "llvm"])
def test_attention_qkv_gradient_with_split_pieces_matches_the_interpreter(runner):
    """q, k, v split from one projection (GPT's attention, 2 heads of 16): the backward's padded sum
    over [B, T, 96] is split into its three pieces (numpy evaluator and LLVM against the reference
    interpreter)."""
    from helpers import check_program, trace

    def f(x, w):
        q, k, v = [t.reshape(2, 8, 2, 16).transpose(1, 2) for t in (x @ w).split(32, dim=-1)]
        return ((q @ k.transpose(-1, -2)).tanh() @ v).sum()
    x, w = ember.randn(2, 8, 32), ember.randn(32, 96, requires_grad=True)
    _, bw, _ = trace(f, x, w)
    p = check_program(bw, runner=runner, rtol=1e-4, atol=1e-4)
    kernels = [s.kernel for s in p.kernels] + [s.kernel.epilogue for s in p.externs if s.kernel.epilogue]
    assert any(len({st.buf.name for st in k.stores}) == 1 and len(k.stores) == 3 for k in kernels), \
        "\n".join(format_kernel(k) for k in kernels)
