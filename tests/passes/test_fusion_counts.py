"""Kernel-count tests (STYLE #4): typical subgraphs traced from ember code fuse into the number of
kernels they should, forward and backward -- and the fused programs compute what the reference
interpreter computes (numpy runner), with the backward run on the forward's saved values.

`fused(p)` counts what launches a loop nest: kernels plus extern epilogues; `externs(p)` the
matmul calls.  Constant outputs (np.full) and eager fallbacks are counted separately."""
import pytest

import ember as torch
import models as M
from helpers import check_program, check_train_step, trace

from ember.diagnostics import CONSTANT_FILL, LIBRARY_STEPS


def fused(p):
    return len(p.kernels) + sum(1 for s in p.externs if s.kernel.epilogue is not None)


def externs(p):
    return len(p.externs)


def fallbacks(p):
    """Eager steps that are fallbacks (not the fused attention kernels: a library step, L001)."""
    return [s for s in p.eager_steps if not s.reason.startswith("constant") and s.op not in LIBRARY_STEPS]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def x2(requires_grad=True):
    return torch.randn(8, 16, requires_grad=requires_grad)


def test_softmax():
    pf, pb = check_train_step(lambda x: torch.softmax(x, -1), [x2()])
    assert fused(pf) <= 1 and fused(pb) <= 1
    assert not pf.externs and not fallbacks(pf) and not fallbacks(pb)


def test_softmax_dim0_and_log_softmax():
    pf, pb = check_train_step(lambda x: torch.softmax(x, 0) + torch.log_softmax(x, 1), [x2()])
    assert fused(pf) <= 2 and fused(pb) <= 3


def test_layer_norm():
    w, b = torch.randn(16, requires_grad=True), torch.randn(16, requires_grad=True)
    pf, pb = check_train_step(M.layer_norm, [x2(), w, b])
    assert fused(pf) == 1
    assert fused(pb) <= 2           # dx (one kernel, two reduction passes) + dw/db (over the batch)


def test_layer_norm_weight_gradient_product_joins_the_dx_kernel():
    # at this size the weight gradient sum over the 512 rows is a GEMV with a row of ones (passes/decompose.py),
    # which reads the product g * x_hat from memory: the dx kernel (one row per outer point, reading g and
    # x_hat already) stores it instead of a pointwise kernel of its own (fusion/merge.py into_reductions)
    w, b = torch.randn(128, requires_grad=True), torch.randn(128, requires_grad=True)
    pf, pb = check_train_step(M.layer_norm, [torch.randn(8, 64, 128, requires_grad=True), w, b])
    assert fused(pf) == 1
    assert [(list(k.kernel.outer), list(k.kernel.inner)) for k in pb.kernels] == [([8, 64], [128])]
    assert externs(pb) == 2                             # the dw and db GEMVs


def test_layer_norm_inference_is_one_kernel():
    w, b = torch.randn(16), torch.randn(16)
    g, _, _ = trace(M.layer_norm, x2(False), w, b)
    p = check_program(g)
    assert fused(p) == 1 and p.kernels[0].kernel.n_passes == 2


def test_gelu_mul_add():
    w, b = torch.randn(16, requires_grad=True), torch.randn(16, requires_grad=True)
    pf, pb = check_train_step(lambda x, w, b: M.gelu_tanh(x) * w + b, [x2(), w, b])
    assert fused(pf) == 1
    assert fused(pb) <= 2           # dx pointwise + dw/db reductions over the batch


def test_gelu_mul_add_inference():
    g, _, _ = trace(lambda x, w, b: M.gelu_tanh(x) * w + b, x2(False), torch.randn(16), torch.randn(16))
    p = check_program(g)
    assert fused(p) == 1 and len(p.steps) == 1


def test_linear_bias_gelu():
    W, b = torch.randn(32, 16, requires_grad=True), torch.randn(32, requires_grad=True)
    pf, pb = check_train_step(lambda x, W, b: M.gelu_tanh(M.linear(x, W, b)), [x2(), W, b])
    ext = pf.externs
    assert len(ext) == 1 and ext[0].kernel.epilogue is not None
    assert ext[0].kernel.attrs.get("transpose_b")          # W.t() is a free operand flag
    assert len(pf.kernels) <= 1                            # (+ a copy of W.t() saved for backward)
    assert externs(pb) == 2 and fused(pb) <= 2


def test_linear_bias_gelu_inference():
    W, b = torch.randn(32, 16), torch.randn(32)
    g, _, _ = trace(lambda x, W, b: M.gelu_tanh(M.linear(x, W, b)), x2(False), W, b)
    p = check_program(g, rtol=1e-4, atol=1e-5)
    assert len(p.steps) == 1 and externs(p) == 1 and fused(p) == 1


def test_cross_entropy():
    t = torch.randint(0, 16, (8,))
    pf, pb = check_train_step(M.cross_entropy, [x2(), t])
    assert fused(pf) <= 2 and not fallbacks(pf)
    assert fused(pb) <= 1 and not fallbacks(pb)  # the gather VJP became a one-hot sum


def test_mnist_cnn():
    p = M.mnist_params()
    x, t = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    pf, pb = check_train_step(M.mnist_loss, [x, t] + list(p.values()))
    assert externs(pf) == 4 and all(s.kernel.epilogue is not None for s in pf.externs)
    assert fused(pf) <= 10
    # the backward rebuilds the convolutions' columns from their inputs instead of the forward saving them
    # (compiler/joint.py _im2col: at batch 64 the products then gather them in place, passes/implicit_gemm.py;
    # at batch 4 the runs are too short, so here they are two kernels)
    assert externs(pb) <= 7 and fused(pb) <= 13
    assert not any(tuple(v.shape) in ((26, 2304), (251, 256)) for v in pf.values.values()
                   if v.name in pf.results)      # no columns saved
    assert not fallbacks(pb)          # fold (max-pool and conv-input backward) is lowered to kernels


def test_gpt_block():
    gp = M.gpt_params(32)
    x = torch.randn(2, 8, 32)
    pf, pb = check_train_step(M.gpt_loss, [x] + list(gp.values()))
    assert externs(pf) == 4 and fused(pf) <= 12 and not fallbacks(pf)
    assert externs(pb) <= 8 and fused(pb) <= 10 and not fallbacks(pb)
    # attention (masked_fill, softmax, two batched products) is one fused op each way (passes/attention.py)
    ops = [[s.op for s in p.eager_steps if s.reason != CONSTANT_FILL] for p in (pf, pb)]
    assert ops == [["attention"], ["attention_grad"]]


def test_gpt_block_attention_unfused():
    """The same block with the attention left as ops (the form other devices and dtypes compile): the
    softmax is the epilogue of the q @ k^T product."""
    gp = M.gpt_params(32)
    pf, pb = check_train_step(M.gpt_loss, [torch.randn(2, 8, 32)] + list(gp.values()),
                              options={"fuse_attention": False})
    assert externs(pf) == 6 and fused(pf) <= 12 and not fallbacks(pf)
    assert externs(pb) <= 12 and fused(pb) <= 10 and not fallbacks(pb)
    assert any("max_sub_exp_sum" in s.name for s in pf.externs)


def test_fused_bytes_less_than_unfused():
    gp = M.gpt_params(32)
    pf, pb = check_train_step(M.gpt_loss, [torch.randn(2, 8, 32)] + list(gp.values()))
    for p in (pf, pb):
        st = p.stats()
        assert st["bytes"] < st["unfused_bytes"] / 1.5


# ------------------------------------------------------------------ dropout: random numbers fuse
def test_dropout_fuses_with_its_neighbours():
    """random -> ge -> mul is computed inside the kernel that uses the mask: no eager step."""
    import ember.nn.functional as F
    w, b = torch.randn(16, requires_grad=True), torch.randn(16, requires_grad=True)
    pf, pb = check_train_step(lambda x, w, b: F.dropout(x * w + b, 0.3).relu(), [x2(), w, b])
    assert fused(pf) == 1 and len(pf.steps) == 1 and not pf.eager_steps
    assert "rand" in pf.kernels[0].name
    assert fused(pb) <= 2 and not pb.eager_steps


def test_softmax_dropout_is_one_kernel():
    import ember.nn.functional as F
    pf, pb = check_train_step(lambda x: F.dropout(torch.softmax(x, -1), 0.2), [x2()])
    assert fused(pf) == 1 and fused(pb) == 1 and not pf.eager_steps and not pb.eager_steps


def test_mnist_cnn_dropout_has_no_eager_step():
    p = M.mnist_params()
    x, t = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    pf, pb = check_train_step(M.mnist_dropout_loss, [x, t] + list(p.values()))
    assert not pf.eager_steps and not pb.eager_steps
    assert externs(pf) == 4 and all(s.kernel.epilogue is not None for s in pf.externs)
    assert fused(pf) <= 11            # + the Dropout2d mask [4,20,1,1] saved for backward
    assert externs(pb) <= 7 and fused(pb) <= 13      # + the rebuilt columns (see test_mnist_cnn)
    assert sum("rand" in s.name for s in pf.steps) == 2


def test_gpt_block_dropout_has_no_eager_step():
    gp = M.gpt_params(32)
    pf, pb = check_train_step(M.gpt_dropout_loss, [torch.randn(2, 8, 32)] + list(gp.values()))
    assert not fallbacks(pf) and not fallbacks(pb)
    # attention dropout joins the fused attention op: it draws the same numbers in its kernels
    assert [s.op for s in pf.eager_steps if s.reason != CONSTANT_FILL] == ["attention"]
    assert [s.op for s in pb.eager_steps if s.reason != CONSTANT_FILL] == ["attention_grad"]
    assert externs(pf) == 4 and fused(pf) <= 12
    assert externs(pb) <= 8 and fused(pb) <= 10


def test_gpt_block_dropout_unfused_has_no_eager_step():
    gp = M.gpt_params(32)
    pf, pb = check_train_step(M.gpt_dropout_loss, [torch.randn(2, 8, 32)] + list(gp.values()),
                              options={"fuse_attention": False})
    assert not pf.eager_steps and not pb.eager_steps
    assert externs(pf) == 6 and fused(pf) <= 12          # the same counts as without dropout
    assert externs(pb) <= 12 and fused(pb) <= 10
    # attention dropout rides in the softmax epilogue of q @ k^T
    from ember.ir.kernel import Random
    assert any("max_sub_exp_sum" in s.name and any(isinstance(n, Random) for n in s.kernel.epilogue.nodes)
               for s in pf.externs)


# ------------------------------------------------- products read a transposed sibling with a flag
def _heads_both_layouts(qkv):
    """K read as K^T (scores) and as K (a second product), both from one head split of qkv: after
    canonicalize these are two different permutes of the same slice."""
    q, k = qkv[..., :16], qkv[..., 16:]
    q = q.reshape(2, 8, 4, 4).transpose(1, 2)
    k = k.reshape(2, 8, 4, 4).transpose(1, 2)
    s = q @ k.transpose(-2, -1)
    return (s @ k).sum() + s.sum()


def _stored(p, pred):
    """Shapes of the values the program's kernels (and extern epilogues) store that satisfy pred(shape)."""
    ks = [st.kernel for st in p.kernels] + [st.kernel.epilogue for st in p.externs if st.kernel.epilogue]
    return [b.shape for k in ks for b in k.outputs if pred(tuple(b.shape))]


def test_transposed_sibling_is_read_with_a_flag():
    g, _, _ = trace(_heads_both_layouts, torch.randn(2, 8, 32))
    p = check_program(g)
    assert externs(p) == 2
    # one product reads K as the other stores it, through a transpose flag: K is stored once
    flags = [bool(s.kernel.attrs.get("transpose_a") or s.kernel.attrs.get("transpose_b")) for s in p.externs]
    assert sum(flags) == 1
    assert len(_stored(p, lambda s: s in ((2, 4, 8, 4), (2, 4, 4, 8)))) == 2      # q and k, once each


def test_gpt_block_train_step_stores_each_head_layout_once():
    """The joint graph of a step (forward and gradients in one graph) reads q, k, v and their
    transposes: each is stored in one layout, the products take transpose flags."""
    gp = M.gpt_params(32)
    x = torch.randn(2, 16, 32)                          # heads [2,4,16,8], transposed [2,4,8,16]

    def step(x, *ps):
        return torch.autograd.grad(M.gpt_loss(x, *ps), ps)
    g, _, _ = trace(step, x, *gp.values())
    p = check_program(g, rtol=1e-3, atol=1e-3)         # gradients of size ~300 from random weights
    heads = _stored(p, lambda s: s in ((2, 4, 16, 8), (2, 4, 8, 16)))
    # q, k, v in one layout, rows kept, and the head split of the attention output's gradient
    # (before: 7 values, q^T, k^T, v^T stored besides q, k, v)
    assert heads == [(2, 4, 16, 8)] * 4, heads


def test_positional_embedding_has_no_gather_or_scatter():
    """embedding(arange(T), wpe) is a slice and its gradient (index_add through the arange) an add,
    where the arange is in the graph (a whole step: forward and gradients traced together)."""
    import ember.nn.functional as F

    def step(x, wpe):
        y = (x + F.embedding(torch.arange(6), wpe)).tanh().sum()
        return torch.autograd.grad(y, [wpe])
    g, _, _ = trace(step, torch.randn(3, 6, 8), torch.randn(10, 8, requires_grad=True))
    assert {"take", "index_add"} <= {n.op for n in g.nodes()}
    p = check_program(g)
    assert not fallbacks(p)
    assert not any("index_add" in s.name or "take" in s.name for s in p.steps)
