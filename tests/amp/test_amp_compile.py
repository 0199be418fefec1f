"""Mixed precision in compiled code: ember.compile under autocast equals eager autocast (forward and
gradients), the autocast state is a guard, casts fold into the neighbouring kernels, the IR text form
carries bf16, and the generated LLVM / CUDA C load bfloat16, compute in float32 rounding every op like
eager, and store bfloat16 (the CUDA C compiles with nvcc and runs in the host emulation)."""
import shutil
import subprocess

import ml_dtypes
import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from ember.codegen import cuda as cuda_cg
from ember.ir.text import parse, print_graph
from ember.passes import compile_graph
from ember.runtime.cpu import compile_kernels
from tests.passes.helpers import random_inputs, run_both, trace

BF = np.dtype(ml_dtypes.bfloat16)


def check_program(g):
    """The fused program against the eager interpreter: bfloat16 results within one unit of the last
    place (a fused reduction sums in another order before its one rounding)."""
    prog, got, want = run_both(g, random_inputs(g))
    for a, b in zip(got, want):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        if a.dtype in (BF, np.float32):
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=2 ** -7, atol=1e-5)
        else:
            np.testing.assert_array_equal(a, b)
    return prog


def _mlp():
    return nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 5))


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5))


def _step(model, x, y, compiled):
    model.zero_grad()

    def loss_fn(x, y):
        with ember.autocast("cpu"):
            out = model(x)
            return F.cross_entropy(out, y), out
    fn = ember.compile(loss_fn) if compiled else loss_fn
    loss, out = fn(x, y)
    loss.backward()
    return loss, out, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("make,shape", [(_mlp, (6, 12)), (_cnn, (3, 1, 8, 8))], ids=["mlp", "cnn"])
def test_compiled_equals_eager_under_autocast(make, shape):
    ember.manual_seed(0)
    model = make()
    x, y = ember.randn(*shape), ember.tensor([0, 1, 2, 3, 4, 0][:shape[0]])
    le, oe, ge = _step(model, x, y, compiled=False)
    lc, oc, gc = _step(model, x, y, compiled=True)
    assert oc.dtype is ember.bfloat16 and lc.dtype is ember.float32
    # the same bf16 products (one rounding each); float32 sums in another order at most
    np.testing.assert_allclose(oc.detach().float().numpy(), oe.detach().float().numpy(), rtol=2 ** -7, atol=2 ** -7)
    np.testing.assert_allclose(lc.item(), le.item(), rtol=1e-3)
    for a, b in zip(gc, ge):
        assert a.dtype is ember.float32
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.02, atol=0.02 * float(b.abs().max()))


def test_autocast_state_is_a_guard():
    ember.manual_seed(0)
    m = _mlp()
    cf = ember.compile(m)
    x = ember.randn(4, 12)
    assert cf(x).dtype is ember.float32
    with ember.autocast("cpu"):
        assert cf(x).dtype is ember.bfloat16
        with ember.autocast("cpu", enabled=False):
            assert cf(x).dtype is ember.float32
    assert cf(x).dtype is ember.float32
    assert len(cf._compiled.variants if hasattr(cf, "_compiled") else cf.variants) == 2


def test_traced_graph_carries_the_casts_and_they_fuse():
    w = ember.randn(16, 16)

    def f(x):
        with ember.autocast("cpu"):
            return F.softmax((x @ w) * 2.0, -1).float().sum(-1)
    g, _, _ = trace(f, ember.randn(8, 16))
    casts = [n for n in g.nodes() if n.op == "cast"]
    assert {n.attrs["dtype"] for n in casts} >= {ember.bfloat16, ember.float32}
    mm = next(n for n in g.nodes() if n.op == "matmul")
    assert mm.dtype is ember.bfloat16
    p = check_program(g)
    assert len(p.externs) == 1 and p.externs[0].kernel.epilogue is not None   # softmax fused as epilogue
    # the casts feeding the product fold into it (the GEMM rounds the float32 operands as it packs them)
    assert not p.kernels and p.externs[0].kernel.attrs == {"cast_a": "bfloat16", "cast_b": "bfloat16"}
    assert [b.dtype for b in p.externs[0].kernel.inputs] == [ember.float32, ember.float32]


def _bits(t):
    return np.asarray(t.detach().numpy()).view(np.uint16)


@pytest.mark.parametrize("shape", [(8, 32), (2, 48, 320)], ids=["2d", "3d-small-gemm"])
def test_cast_feeding_a_linear_layer_folds_into_the_gemm(shape):
    """Under autocast a Linear layer's input and weight casts cost no kernel: the extern reads the float32
    buffers and rounds as it packs, and the compiled product equals eager's bit for bit."""
    ember.manual_seed(0)
    w = ember.randn(64, shape[-1])

    def f(x):
        with ember.no_grad(), ember.autocast("cpu"):
            return F.linear(x, w)
    x = ember.randn(*shape)
    g, _, _ = trace(f, x)
    p = compile_graph(g)
    assert not p.kernels and len(p.externs) == 1
    ext = p.externs[0].kernel
    assert ext.attrs == {"cast_a": "bfloat16", "cast_b": "bfloat16", "transpose_b": True}
    assert "cast_a='bfloat16'" in str(p) and "= cast" not in str(p)      # no cast left in any kernel
    assert any("cast of matmul operand 1 to bfloat16 folded" in r.message for r in p.records)
    want = f(x)
    got = ember.compile(f)(x)
    assert got.dtype is ember.bfloat16
    np.testing.assert_array_equal(_bits(got), _bits(want))
    check_program(g)                       # the numpy runner agrees too


def test_cast_of_a_parameter_is_recomputed_for_backward_not_saved():
    """The weight's bf16 cast (and its transpose) that backward reads is recomputed there from the
    float32 parameter (ember/compiler/joint.py), so the forward stores no copy of it: its product folds
    the cast into the packing; the cast of a value a kernel computes stays in that kernel."""
    ember.manual_seed(0)
    lin = nn.Linear(32, 16)

    def f(x):
        with ember.autocast("cpu"):
            return lin(F.layer_norm(x, (32,))).float().sum()
    g, _, _ = trace(f, ember.randn(8, 32, requires_grad=True))
    p = compile_graph(g)
    assert not [st for st in p.kernels if "lin.weight" in [b.name for b in st.kernel.inputs]]
    assert any(ext.kernel.attrs.get("cast_b") for ext in p.externs)
    check_program(g)


def test_casts_never_cost_a_kernel_of_their_own():
    g, _, _ = trace(lambda x: ((x.bfloat16() * 2 + 1).exp().float() * 3).sum(-1), ember.randn(8, 16))
    p = check_program(g)
    assert len(p.kernels) == 1 and not p.externs


def test_ir_text_prints_bf16_and_round_trips():
    g, _, _ = trace(lambda x: (x.bfloat16() * 2).float(), ember.randn(3, 4))
    text = print_graph(g)
    assert "bf16[3,4]" in text and "dtype=bf16" in text
    assert print_graph(parse(text)) == text


# ------------------------------------------------------------------------------- generated code
def _bf16_kernels():
    """Kernels of a traced bf16 program: elementwise with a scalar, a row reduction, casts both ways."""
    def f(x, y):
        s = (x * y + 0.5) * 3.0
        return s, s.sum(-1), (s.float() * 1.5).bfloat16(), x.float() + 1.0
    x = ember.randn(4, 37).bfloat16()
    y = ember.randn(4, 37).bfloat16()
    g, _, _ = trace(f, x, y)
    prog = compile_graph(g)
    return g, prog, [x, y]


def test_llvm_kernels_round_like_eager():
    g, prog, (x, y) = _bf16_kernels()
    assert check_program(g).kernels           # the compiled program against the eager interpreter
    cf = ember.compile(lambda x, y: ((x * y + 0.5) * 3.0, (x * 3.0).exp()))
    for got, want in zip(cf(x, y), ((x * y + 0.5) * 3.0, (x * 3.0).exp())):
        np.testing.assert_array_equal(got.float().numpy(), want.float().numpy())   # elementwise: same bits
    ir = compile_kernels([st.kernel for st in prog.kernels]).llvm_ir
    assert "i16" in ir and "bfloat" not in ir    # bf16 lives as i16 in memory, float in registers


def test_llvm_bf16_store_rounds_to_nearest_even_and_keeps_nan():
    # ties go to the even neighbour: 1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6
    vals = np.array([1.0, 2.0 ** -8, 3 * 2.0 ** -8, np.nan, -0.0, 3.0e38], np.float32)
    x = ember.tensor(vals)
    cf = ember.compile(lambda t: (t + 1.0).bfloat16())
    got = cf(x).float().numpy()
    want = (x + 1.0).bfloat16().float().numpy()
    np.testing.assert_array_equal(got, want)
    assert got[1] == 1.0 and got[2] == 1.0 + 2 ** -6 and np.isnan(got[3])


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
def test_cuda_c_for_bf16_kernels_compiles(tmp_path):
    _, prog, _ = _bf16_kernels()
    ks = [st.kernel for st in prog.kernels]
    cp = cuda_cg.emit_program(ks)
    assert "ember_f2bf(" in cp.source and "ember_bf2f(" in cp.source
    src = tmp_path / "bf16.cu"
    src.write_text(cp.source)
    cmd = [NVCC, "-c", "-x", "cu", "-std=c++17", "-Werror", "all-warnings",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90",
           "-o", str(tmp_path / "bf16.o"), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")
def test_cuda_bf16_kernels_emulated_equal_the_cpu_kernels(tmp_path):
    from tests.cuda import emulator
    _, prog, (x, y) = _bf16_kernels()
    ks = [st.kernel for st in prog.kernels]
    lib = emulator.build(ks, tmp_path)
    mod = compile_kernels(ks)
    rng = np.random.default_rng(0)
    for k in ks:
        ins = [rng.standard_normal(b.shape).astype(np.float32).astype(b.dtype.np) for b in k.inputs]
        got = emulator.run(lib, k, ins)
        outs = [np.zeros(b.shape, b.dtype.np) for b in k.outputs]
        mod.run(k.name, ins + outs)
        for a, b in zip(got, outs):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a.astype(np.float32), b.astype(np.float32))


def test_bf16_draws_and_dropout_under_autocast_compile_and_equal_eager():
    """rand in bfloat16 and dropout of bfloat16 activations (MNIST's dropout under autocast) run in
    compiled kernels -- no fallback to the interpreter -- and equal eager bit for bit."""
    from ember import diagnostics as records
    w = ember.randn(12, 40)

    def f(x):
        with ember.autocast("cpu"):
            h = F.dropout(x @ w, 0.3)
        return ember.rand(7, 33, dtype=ember.bfloat16), h, F.dropout(x.bfloat16(), 0.5)
    cf = ember.compile(f)
    x = ember.randn(9, 12)
    for seed in (0, 7):
        with records.collect() as recs:
            ember.manual_seed(seed)
            got = cf(x)
        ember.manual_seed(seed)
        want = f(x)
        assert not [r for r in recs if r.code in ("F001", "F002")], [str(r) for r in recs]
        for g, e in zip(got, want):
            assert g.dtype is e.dtype is ember.bfloat16
            assert np.array_equal(g.numpy().view(np.uint16), e.numpy().view(np.uint16))
    r = got[0].float().numpy()
    assert ((r >= 0) & (r < 1)).all() and (r * 256 == np.floor(r * 256)).all()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_cast_fold_is_cpu_only_and_kept_for_other_readers(device):
    """The fold is the CPU GEMM's (cuBLAS takes its operands as stored: a CUDA graph keeps its cast
    kernels), and a cast that a kernel also reads is not folded (its bf16 value is computed once)."""
    from ember.ir.graph import Graph
    g = Graph("f")
    x = g.placeholder("x", ([8, 16], ember.float32), device=device)
    w = g.placeholder("w", ([16, 4], ember.float32), device=device)
    xb = g.add("cast", [x], {"dtype": ember.bfloat16})
    wb = g.add("cast", [w], {"dtype": ember.bfloat16})
    g.set_outputs([g.add("matmul", [xb, wb]), g.add("sum", [xb], {"dims": None, "keepdim": False})])
    p = compile_graph(g)
    assert p.externs[0].kernel.attrs == ({"cast_b": "bfloat16"} if device == "cpu" else {})
    # x's cast is computed with the sum (and stored for the product); w's has a kernel only on CUDA
    assert [[n.op for n in st.nodes] for st in p.kernels] == \
        ([["cast", "sum"]] if device == "cpu" else [["cast", "sum"], ["cast"]])


@pytest.mark.parametrize("form", ["written-out", "sdpa"])
def test_attention_under_autocast_runs_the_fused_kernels(form):
    """bf16 products around a float32 softmax (autocast's form of attention, written out or
    scaled_dot_product_attention) compile to the fused float32 attention on upcast copies, rounded once:
    equal to eager within bf16's rounding of the scores and probabilities, gradients too."""
    import math
    B, H, T, D = 2, 4, 16, 8
    ember.manual_seed(0)
    qkv, proj = nn.Linear(H * D, 3 * H * D), nn.Linear(H * D, H * D)
    mask = ember.tril(ember.ones(T, T)).view(1, 1, T, T)

    def f(x):
        with ember.autocast("cpu"):
            q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in qkv(x).split(H * D, dim=2))
            if form == "sdpa":
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
                att = F.softmax(att.masked_fill(mask == 0, float("-inf")), dim=-1)
                y = att @ v
            return proj(y.transpose(1, 2).reshape(B, T, H * D)).float().pow(2).mean()
    x = ember.randn(B, T, H * D)
    params = list(qkv.parameters()) + list(proj.parameters())
    results = []
    for fn in (f, ember.compile(f)):
        for p in params:
            p.grad = None
        loss = fn(x)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in params]))
    (le, ge), (lc, gc) = results
    np.testing.assert_allclose(lc, le, rtol=2e-2)
    for a, b in zip(gc, ge):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.05, atol=0.02 * float(b.abs().max()))
    text = str(ember.explain(f, x))
    assert "attention×1" in text and "attention's gradient runs as one fused kernel" in text, text


def test_widening_cast_saves_the_narrow_value():
    """A float32 op under autocast (layer norm, GELU) reads the float32 cast of a bf16 activation; its
    backward needs that float32 value: the forward saves the bf16 value (half the bytes) and the backward
    casts it again (ember/compiler/joint.py), with the gradients of eager's."""
    ember.manual_seed(0)
    lin1, lin2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def f(x):
        with ember.autocast("cpu"):
            return lin2(F.gelu(F.layer_norm(lin1(x), (32,)))).float().pow(2).sum()
    x = ember.randn(4, 16, requires_grad=True)
    _, _, cf = trace(f, x)
    saved = cf.variants[-1].backward.saved
    assert not [n for n in saved if n.op == "cast" and n.dtype is ember.float32
                and n.inputs[0].dtype is ember.bfloat16 and not n.inputs[0].is_placeholder], saved
    assert [n for n in saved if n.dtype is ember.bfloat16 and not n.is_placeholder]
    grads = []
    for fn in (f, ember.compile(f)):
        for t in (x, *lin1.parameters(), *lin2.parameters()):
            t.grad = None
        fn(x).backward()
        grads.append([t.grad.clone() for t in (x, *lin1.parameters(), *lin2.parameters())])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0.02, atol=0.02 * float(b.abs().max()))


@pytest.mark.parametrize("form", ["fold", "conv_input_grad"])
def test_bf16_fold_sums_in_float32_and_rounds_once_like_eager(form):
    """A bf16 fold (F.fold, a convolution's input gradient) sums its overlapping terms in float32 and rounds
    once -- eager's float32 kernel on upcast copies -- so compiled equals eager bit for bit (bf16 adds had
    rounded every term: 25 roundings per element of conv2's input gradient, and half the speed)."""
    rng = np.random.default_rng(0)
    if form == "fold":
        x = ember.tensor(rng.standard_normal((4, 10 * 9, 64)).astype(np.float32)).to(ember.bfloat16)

        def f(x):
            return F.fold(x, (10, 10), 3)
        np.testing.assert_array_equal(ember.compile(f)(x).view(ember.int16).numpy(), f(x).view(ember.int16).numpy())
        return
    w = ember.tensor(rng.standard_normal((6, 5, 5, 5)).astype(np.float32)).to(ember.bfloat16)
    g = ember.tensor(rng.standard_normal((8, 6, 8, 8)).astype(np.float32)).to(ember.bfloat16)

    def dx(fn):
        x = ember.tensor(rng.standard_normal((8, 5, 12, 12)).astype(np.float32)).to(ember.bfloat16)
        x.requires_grad_()
        fn(x).backward(g)
        return x.grad

    def conv(x):
        return F.conv2d(x, w)
    state = rng.bit_generator.state
    want = dx(conv)
    rng.bit_generator.state = state
    got = dx(ember.compile(conv))
    assert got.dtype is ember.bfloat16
    np.testing.assert_array_equal(got.view(ember.int16).numpy(), want.view(ember.int16).numpy())


def test_bf16_sum_over_few_leading_rows_rounds_once_like_eager():
    """A sum over <= 16 leading rows becomes explicit adds (passes/decompose.py); for bf16 they run in float32
    and round once, as the sum kernel and eager do (bf16 adds had differed from eager in ~half the elements)."""
    x = ember.tensor(np.random.default_rng(0).standard_normal((8, 300, 500)).astype(np.float32)).to(ember.bfloat16)

    def f(x):
        return x.sum(0)
    np.testing.assert_array_equal(ember.compile(f)(x).view(ember.int16).numpy(), f(x).view(ember.int16).numpy())


_BF16_OPS = {
    "x * 0.37": lambda x, y, p: x * 0.37, "x / 3": lambda x, y, p: x / 3.0, "2 / p": lambda x, y, p: 2.0 / p,
    "x * 1001": lambda x, y, p: x * 1001, "x > 0.37": lambda x, y, p: x > 0.37, "x <= 0.1": lambda x, y, p: x <= 0.1,
    "leaky_relu": lambda x, y, p: F.leaky_relu(x, 0.1), "x - 0.3": lambda x, y, p: x - 0.3,
    "x + y": lambda x, y, p: x + y, "x * y": lambda x, y, p: x * y, "x / p": lambda x, y, p: x / p,
    "p ** 0.7": lambda x, y, p: p ** 0.7, "p ** 0.01": lambda x, y, p: p ** 0.01, "x.sum(0)": lambda x, y, p: x.sum(0), "x.sum(-1)": lambda x, y, p: x.sum(-1),
    "x.mean((0, 1))": lambda x, y, p: x.mean((0, 1)), "x.var(-1)": lambda x, y, p: x.var(-1),
    "cumsum": lambda x, y, p: x.cumsum(-1), "x @ y^T": lambda x, y, p: x @ y.transpose(1, 2),
    "where": lambda x, y, p: ember.where(x > 0, x, y), "clamp": lambda x, y, p: x.clamp(-0.5, 0.5),
    "avg_pool2d": lambda x, y, p: F.avg_pool2d(x[None], 3, stride=2, padding=1),
    "sdpa": lambda x, y, p: F.scaled_dot_product_attention(x[:, None], y[:, None], x[:, None], is_causal=True),
    "gelu": lambda x, y, p: F.gelu(x), "relu": lambda x, y, p: F.relu(x), "exp": lambda x, y, p: x.exp(),
    "linear + bias": lambda x, y, p: F.linear(x, y[0, :20], p[0, 0, :20]),
    "addmm": lambda x, y, p: ember.addmm(p[0, 0, :32], x[0], y[0].t()),
}


@pytest.mark.parametrize("name", list(_BF16_OPS))
def test_compiled_bf16_ops_equal_eager_bit_for_bit(name):
    """Compiled code computes what eager computes on bf16 tensors, to the bit: a Python number bf16 cannot
    hold meets the tensor as float32 (x * 0.37: eager's float32 kernel), sums and pools round once, the
    attention of bf16 tensors runs the float32 kernels on upcast copies in both, a linear layer's bias is
    added before the product rounds (the `addmm` primitive: the bf16 GEMM's epilogue in both)."""
    rng = np.random.default_rng(0)
    x, y = (ember.tensor(rng.standard_normal((8, 32, 48)).astype(np.float32)).to(ember.bfloat16) for _ in range(2))
    p = ember.tensor(np.abs(rng.standard_normal((8, 32, 48))).astype(np.float32) + 0.1).to(ember.bfloat16)
    f = _BF16_OPS[name]
    want, got = f(x, y, p), ember.compile(f)(x, y, p)
    assert got.dtype is want.dtype and got.shape == want.shape
    as_bits = (lambda t: t.view(ember.int16).numpy()) if want.dtype is ember.bfloat16 else (lambda t: t.numpy())
    np.testing.assert_array_equal(as_bits(got), as_bits(want))


def test_kernel_work_weights_transcendentals_and_roundings():
    """The CPU runtime splits a kernel across threads by its bytes or its `work`: a bf16 GELU moves half of
    float32's bytes and counted as plain flops (erf = 1) it stayed on one thread, 2.8x slower than
    float32's; weighted (erf ~16 instructions, a bf16 rounding ~4) it crosses the threshold."""
    from ember.ir import kernel as K
    from ember.runtime import cpu
    x = ember.tensor(np.random.default_rng(0).standard_normal((16, 64, 512)).astype(np.float32)).to(ember.bfloat16)
    f = ember.compile(lambda x: F.gelu(x))
    f(x)
    (step,) = f.variants[-1].forward_exec.program.kernels
    k = step.kernel
    assert k.bytes_moved < cpu.PARALLEL_MIN_BYTES and k.flops < cpu.PARALLEL_MIN_FLOPS <= k.work
    n = 16 * 64 * 512
    assert k.work == n * (4 + K.WORK_EXPENSIVE + K.WORK_ROUNDING)     # mul, mul, add, mul; erf; the rounding


# (avg pooling's input gradient is a float32 fold summed in another order: 1 unit apart in ~0.02% of elements)
@pytest.mark.parametrize("name", ["p ** 0.01", "x * 0.37", "2 / p", "leaky_relu", "linear + bias", "sdpa"])
def test_compiled_bf16_gradients_equal_eager_bit_for_bit(name):
    """The backward too: a VJP gets a Python number as the number, as in eager (joint.py `_vjp_input`: pow's
    exponent - 1 had been computed on a bf16 0-d tensor, rounded, and 15% of the gradient differed)."""
    rng = np.random.default_rng(1)
    x, y = (ember.tensor(rng.standard_normal((8, 32, 48)).astype(np.float32)).to(ember.bfloat16) for _ in range(2))
    p = ember.tensor(np.abs(rng.standard_normal((8, 32, 48))).astype(np.float32) + 0.1).to(ember.bfloat16)
    f = _BF16_OPS[name]

    def grads(fn):
        args = [t.detach().requires_grad_() for t in (x, y, p)]
        out = fn(*args)
        g = ember.tensor(np.random.default_rng(2).standard_normal(tuple(out.shape)).astype(np.float32))
        (out.float() * g).sum().backward()
        return [a.grad for a in args]
    for want, got in zip(grads(f), grads(ember.compile(f))):
        assert (want is None) == (got is None)
        if want is not None:
            np.testing.assert_array_equal(got.view(ember.int16).numpy(), want.view(ember.int16).numpy())
