"""The torch.nn pieces added together (max_unpool, lp_pool1d/3d, adaptive_max_pool3d and zero-size adaptive
outputs, channel_shuffle, multilabel_margin / triplet_margin_with_distance / CTC losses, skip_init,
parametrizations.orthogonal, integer pooling, Linear(0, n), circular pad with negative amounts,
grid_sample nearest's grid gradient), each compared against PyTorch."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ember  # noqa: E402
import ember.nn.functional as EF  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

RNG = np.random.default_rng(0)


def _pair(lib):
    return (torch, TF) if lib == "torch" else (ember, EF)


def _run(f, arrays, grad=True):
    """f(lib, F, *tensors) in both libraries: outputs (a tuple), and the inputs' gradients of a fixed
    random weighting of the first output."""
    res = {}
    for lib in ("torch", "ember"):
        m, F = _pair(lib)
        xs = [m.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
        out = f(m, F, *xs)
        out = out if isinstance(out, tuple) else (out,)
        grads = None
        if grad and out[0].numel():
            w = np.random.default_rng(1).standard_normal(tuple(out[0].shape)).astype(arrays[0].dtype)
            (out[0] * m.tensor(w)).sum().backward()
            grads = [x.grad.numpy() if x.grad is not None else None for x in xs if x.requires_grad]
        res[lib] = ([o.detach().numpy() for o in out], [str(o.dtype).split(".")[-1] for o in out], grads)
    return res


def _check(f, arrays, grad=True, atol=1e-5):
    r = _run(f, arrays, grad)
    (to, tdt, tg), (eo, edt, eg) = r["torch"], r["ember"]
    assert tdt == edt
    for a, b in zip(to, eo):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=atol)
    if tg is not None:
        for a, b in zip(tg, eg):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=atol)


def _raises_alike(f):
    errs = []
    for lib in ("torch", "ember"):
        m, F = _pair(lib)
        with pytest.raises(Exception) as e:
            f(m, F)
        errs.append(type(e.value))
    assert errs[0] is errs[1] or issubclass(errs[1], errs[0]), errs


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------ pooling
@pytest.mark.parametrize("nd,kw", [(1, dict(kernel_size=2)), (1, dict(kernel_size=3, stride=2, padding=1)),
                                   (2, dict(kernel_size=2)), (2, dict(kernel_size=(2, 3), stride=(1, 2), padding=1)),
                                   (3, dict(kernel_size=2))])
def test_max_unpool(nd, kw):
    shape = (2, 3) + (7, 6, 5)[:nd]

    def f(m, F, x):
        pool = getattr(F, f"max_pool{nd}d")
        y, i = pool(x, return_indices=True, **kw)
        return getattr(F, f"max_unpool{nd}d")(y, i, output_size=x.shape[2:], **kw)   # the input's size
    _check(f, [_randn(*shape)])


def test_max_unpool_output_size_module_and_errors():
    x = _randn(1, 2, 5, 5)

    def f(m, F, x, size=None):
        y, i = F.max_pool2d(x, 2, return_indices=True)
        return m.nn.MaxUnpool2d(2)(y, i, output_size=size)
    _check(lambda m, F, x: f(m, F, x, [1, 2, 5, 5]), [x])
    _check(lambda m, F, x: f(m, F, x, (5, 5)), [x])
    _raises_alike(lambda m, F: f(m, F, m.tensor(x), (7, 7)))          # ValueError: more than a stride away
    _raises_alike(lambda m, F: f(m, F, m.tensor(x), (1, 5, 5)))       # ValueError: wrong length
    y = _randn(1, 1, 2, 2)
    _raises_alike(lambda m, F: F.max_unpool2d(m.tensor(y), m.tensor([[[[0, 1], [2, 90]]]]), 2))   # bad index
    _raises_alike(lambda m, F: F.max_unpool2d(m.tensor(y), m.tensor([[[[0, 1], [2, 3]]]]).int(), 2))
    for nd in (1, 2, 3):
        assert repr(getattr(ember.nn, f"MaxUnpool{nd}d")(2, 1, 1)) == repr(getattr(torch.nn, f"MaxUnpool{nd}d")(2, 1, 1))


@pytest.mark.parametrize("p", [1, 2, 3.5, float("inf"), -float("inf")])
def test_lp_pool(p):
    for nd, kw in ((1, dict(kernel_size=3, stride=2)), (2, dict(kernel_size=(2, 3), ceil_mode=True)),
                   (3, dict(kernel_size=2))):
        x = _randn(2, 3, *(7, 6, 5)[:nd])
        x = np.abs(x) if p == 3.5 else x
        _check(lambda m, F, x: getattr(F, f"lp_pool{nd}d")(x, p, **kw), [x])
        _check(lambda m, F, x: getattr(m.nn, f"LPPool{nd}d")(p, **kw)(x), [x])
        assert repr(getattr(ember.nn, f"LPPool{nd}d")(2, 3)) == repr(getattr(torch.nn, f"LPPool{nd}d")(2, 3))


def test_adaptive_max_pool3d():
    x = _randn(2, 3, 5, 7, 6)
    _check(lambda m, F, x: F.adaptive_max_pool3d(x, (2, 3, 4), return_indices=True), [x])
    _check(lambda m, F, x: F.adaptive_max_pool3d(x, (5, None, 2), return_indices=True), [x])
    _check(lambda m, F, x: m.nn.AdaptiveMaxPool3d(3)(x[0]), [x])
    _check(lambda m, F, x: m.nn.AdaptiveMaxPool3d((1, 7, 3), return_indices=True)(x), [x])
    assert repr(ember.nn.AdaptiveMaxPool3d((2, None, 3))) == repr(torch.nn.AdaptiveMaxPool3d((2, None, 3)))


def test_adaptive_zero_output_size():
    x = _randn(1, 2, 4, 4)
    # PyTorch's backward refuses an empty grad_output, so the values and shapes alone
    _check(lambda m, F, x: m.nn.AdaptiveAvgPool2d(0)(x), [x], grad=False)
    _check(lambda m, F, x: F.adaptive_avg_pool2d(x, (0, 2)), [x], grad=False)
    _check(lambda m, F, x: F.adaptive_avg_pool1d(x[0], 0), [x], grad=False)
    _check(lambda m, F, x: F.adaptive_max_pool2d(x, (2, 0), return_indices=True), [x], grad=False)
    _raises_alike(lambda m, F: F.adaptive_avg_pool2d(m.zeros(1, 2, 0, 4), 2))


def test_integer_pooling():
    x = np.array([[[-3, -1, 2, -5, 7, -7]]])
    maxes = [lambda m, F, t: F.max_pool2d(t.unsqueeze(0), (1, 2), padding=(0, 1)),
             lambda m, F, t: F.max_pool2d(t.unsqueeze(0), (1, 2), return_indices=True),
             lambda m, F, t: F.max_pool1d(t, 2, return_indices=True),
             lambda m, F, t: F.max_pool3d(t.unsqueeze(0), (1, 1, 2)),
             lambda m, F, t: m.nn.MaxPool2d((1, 3), stride=1)(t)]
    avgs = [lambda m, F, t: F.avg_pool1d(t, 2, padding=1),
            lambda m, F, t: m.nn.AvgPool2d((1, 2))(t),
            lambda m, F, t: F.avg_pool2d(t, (1, 2), padding=(0, 1), count_include_pad=False),
            lambda m, F, t: F.avg_pool2d(t, (1, 2), divisor_override=3)]
    for dtype in ("int64", "int32", "uint8"):
        for f in maxes + (avgs if dtype == "int64" else []):     # truncating division on int64
            _check(lambda m, F, t: f(m, F, t.to(getattr(m, dtype))), [x], grad=False)
    # PyTorch: no max_pool1d without indices on integers, no bool, avg pooling on int64 alone
    _raises_alike(lambda m, F: F.max_pool1d(m.tensor(x), 2))
    _raises_alike(lambda m, F: F.max_pool2d(m.tensor(x).bool(), (1, 2)))
    _raises_alike(lambda m, F: F.avg_pool2d(m.tensor(x).int(), (1, 2)))
    _raises_alike(lambda m, F: F.adaptive_avg_pool1d(m.tensor(x), 2))


# ------------------------------------------------------------------------------------------ others
def test_channel_shuffle():
    x = _randn(2, 6, 3, 2)
    _check(lambda m, F, x: F.channel_shuffle(x, 3), [x])
    _check(lambda m, F, x: m.nn.ChannelShuffle(2)(x[:, :, 0]), [x])
    assert repr(ember.nn.ChannelShuffle(2)) == repr(torch.nn.ChannelShuffle(2)) == "ChannelShuffle(groups=2)"
    _raises_alike(lambda m, F: F.channel_shuffle(m.zeros(1, 6, 2), 4))
    _raises_alike(lambda m, F: F.channel_shuffle(m.zeros(6, 2), 2))


def test_linear_zero_in_features():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = []
        for m in (torch, ember):
            lin = m.nn.Linear(0, 3)
            x = m.zeros(2, 0, requires_grad=True)
            y = lin(x)
            y.sum().backward()
            outs.append((y.detach().numpy(), tuple(lin.weight.grad.shape), lin.bias.grad.numpy(), tuple(x.grad.shape)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1] and outs[0][3] == outs[1][3]
    np.testing.assert_array_equal(outs[0][2], outs[1][2])


@pytest.mark.parametrize("pad", [(1, -1), (-1, 2), (3, -2), (-3, -1), (0, -5), (5, 0), (2, 2)])
def test_circular_pad_negative(pad):
    _check(lambda m, F, x: F.pad(x, pad, mode="circular"), [np.arange(5, dtype=np.float32).reshape(1, 1, 5)])


def test_circular_pad_errors_and_2d():
    _raises_alike(lambda m, F: F.pad(m.arange(5.).reshape(1, 1, 5), (-2, 4), mode="circular"))
    _raises_alike(lambda m, F: F.pad(m.arange(5.).reshape(1, 1, 5), (6, 0), mode="circular"))
    _check(lambda m, F, x: F.pad(x, (1, -2, -1, 2), mode="circular"), [_randn(1, 2, 3, 4)])


def test_grid_sample_nearest_grid_grad_zeros():
    for m in (torch, ember):
        inp = m.tensor(_randn(1, 2, 3, 3))
        grid = m.tensor(RNG.uniform(-1, 1, (1, 2, 2, 2)).astype(np.float32), requires_grad=True)
        m.nn.functional.grid_sample(inp, grid, mode="nearest", align_corners=False).sum().backward()
        assert grid.grad is not None
        np.testing.assert_array_equal(grid.grad.numpy(), np.zeros((1, 2, 2, 2), np.float32))


# ------------------------------------------------------------------------------------------- losses
def test_multilabel_margin_loss():
    x = _randn(3, 5)
    y = np.array([[3, 0, -1, 1, 2], [1, 2, 3, 4, 0], [2, 2, -1, -1, -1]])
    for red in ("none", "mean", "sum"):
        _check(lambda m, F, x, y: F.multilabel_margin_loss(x, y, reduction=red), [x, y])
        _check(lambda m, F, x, y: m.nn.MultiLabelMarginLoss(reduction=red)(x[0], y[0]), [x, y])
    _raises_alike(lambda m, F: F.multilabel_margin_loss(m.tensor(x), m.tensor(y[0])))
    _raises_alike(lambda m, F: F.multilabel_margin_loss(m.tensor(x), m.tensor(y + 5)))
    _raises_alike(lambda m, F: F.multilabel_margin_loss(m.tensor(x), m.tensor(y).int()))
    assert repr(ember.nn.MultiLabelMarginLoss()) == "MultiLabelMarginLoss()"


def test_triplet_margin_with_distance_loss():
    a, p, n = _randn(4, 6), _randn(4, 6), _randn(4, 6)
    for kw in (dict(), dict(margin=0.5, swap=True), dict(reduction="none"), dict(reduction="sum", swap=True)):
        _check(lambda m, F, a, p, n: F.triplet_margin_with_distance_loss(a, p, n, **kw), [a, p, n])
        _check(lambda m, F, a, p, n: m.nn.TripletMarginWithDistanceLoss(
            distance_function=lambda u, v: 1.0 - F.cosine_similarity(u, v), **kw)(a, p, n), [a, p, n])
    assert repr(ember.nn.TripletMarginWithDistanceLoss()) == repr(torch.nn.TripletMarginWithDistanceLoss())
    _raises_alike(lambda m, F: m.nn.TripletMarginWithDistanceLoss(margin=0))
    _raises_alike(lambda m, F: F.triplet_margin_with_distance_loss(m.zeros(2, 3), m.zeros(3), m.zeros(2, 3)))
    _raises_alike(lambda m, F: F.triplet_margin_with_distance_loss(m.zeros(2, 3), m.zeros(2, 3), m.zeros(2, 3),
                                                                   reduction="foo"))


T, N, C, S = 12, 3, 5, 4
LOGITS = _randn(T, N, C)
TARGETS = RNG.integers(1, C, (N, S))
TARGETS[1, 2] = TARGETS[1, 1]          # a repeated label: no skip between them
IL, TL = [12, 9, 7], [4, 3, 0]


@pytest.mark.parametrize("case", ["none", "mean", "sum_blank", "concat", "tuples", "softmax", "zero_inf",
                                  "unbatched", "float64"])
def test_ctc_loss(case):
    lp = torch.tensor(LOGITS).log_softmax(-1).numpy()
    tg, il, tl, kw = TARGETS, IL, TL, {}
    lens = lambda m: (m.tensor(il), m.tensor(tl))   # noqa: E731
    if case == "none":
        kw = dict(reduction="none")
    elif case == "sum_blank":
        tg, kw = np.where(tg == 2, 0, tg), dict(reduction="sum", blank=2)
    elif case == "concat":
        tg = np.concatenate([TARGETS[i, :TL[i]] for i in range(N)])
        kw = dict(reduction="none")
    elif case == "tuples":
        lens = lambda m: (tuple(il), tuple(tl))   # noqa: E731
    elif case == "zero_inf":
        il, kw = [12, 2, 7], dict(reduction="none", zero_infinity=True)     # sample 1 cannot align
    elif case == "unbatched":
        lp, tg, kw = lp[:, 0], tg[0], dict(reduction="none")
        lens = lambda m: (m.tensor(12), m.tensor(4))   # noqa: E731
    elif case == "float64":
        lp = lp.astype(np.float64)

    def f(m, F, x, t):
        x_ = F.log_softmax(x, -1) if case == "softmax" else x
        return F.ctc_loss(x_, t, *lens(m), **kw)
    _check(f, [LOGITS if case == "softmax" else lp, tg], atol=1e-5)


def test_ctc_module_and_errors():
    lp = torch.tensor(LOGITS).log_softmax(-1).numpy()
    _check(lambda m, F, x, t: m.nn.CTCLoss(blank=0, zero_infinity=True)(x, t, m.tensor(IL), m.tensor(TL)),
           [lp, TARGETS])
    assert repr(ember.nn.CTCLoss(blank=1)) == repr(torch.nn.CTCLoss(blank=1)) == "CTCLoss()"
    _raises_alike(lambda m, F: F.ctc_loss(m.tensor(lp), m.tensor(TARGETS), m.tensor([13, 9, 7]), m.tensor(TL)))
    _raises_alike(lambda m, F: F.ctc_loss(m.tensor(lp), m.tensor(TARGETS), m.tensor(IL), m.tensor([5, 3, 0])))
    _raises_alike(lambda m, F: F.ctc_loss(m.tensor(lp), m.tensor(TARGETS), m.tensor(IL), m.tensor(TL), blank=5))
    _raises_alike(lambda m, F: F.ctc_loss(m.tensor(lp), m.tensor(TARGETS), m.tensor(IL), m.tensor(TL),
                                          reduction="foo"))


# -------------------------------------------------------------------------------------------- utils
def test_skip_init():
    m = ember.nn.utils.skip_init(ember.nn.Linear, 5, 2, bias=False)
    t = torch.nn.utils.skip_init(torch.nn.Linear, 5, 2, bias=False)
    assert repr(m) == repr(t) and tuple(m.weight.shape) == tuple(t.weight.shape)
    assert ember.nn.init.uniform_.__name__ == "uniform_"       # the initialisers are back afterwards
    _raises_alike(lambda m, F: m.nn.utils.skip_init(m.nn.ReLU))


@pytest.mark.parametrize("shape,omap,triv", [((4, 4), None, True), ((4, 4), "cayley", True),
                                             ((4, 4), "householder", False), ((4, 4), "matrix_exp", False),
                                             ((3, 5), None, True),
                                             ((5, 3), "matrix_exp", True), ((5, 3), None, False)])
def test_orthogonal(shape, omap, triv):
    w = _randn(*shape)
    x = _randn(2, shape[1])
    mods = []
    for m in (torch, ember):
        lin = m.nn.Linear(shape[1], shape[0])
        with m.no_grad():
            lin.weight.copy_(m.tensor(w))
            lin.bias.zero_()
        m.nn.utils.parametrizations.orthogonal(lin, orthogonal_map=omap, use_trivialization=triv)
        mods.append(lin)
    (tl, el) = mods
    np.testing.assert_allclose(el.weight.detach().numpy(), tl.weight.detach().numpy(), atol=1e-5)
    assert list(el.state_dict()) == list(tl.state_dict())
    opts = [torch.optim.SGD(tl.parameters(), lr=0.1), ember.optim.SGD(el.parameters(), lr=0.1)]
    for _ in range(3):
        for m, lin, opt in ((torch, tl, opts[0]), (ember, el, opts[1])):
            opt.zero_grad()
            lin(m.tensor(x)).pow(2).sum().backward()
            opt.step()
    W = el.weight.detach().numpy()
    np.testing.assert_allclose(W, tl.weight.detach().numpy(), atol=1e-4)
    G = W @ W.T if shape[0] <= shape[1] else W.T @ W
    np.testing.assert_allclose(G, np.eye(len(G)), atol=1e-5)


def test_orthogonal_errors():
    _raises_alike(lambda m, F: m.nn.utils.parametrizations.orthogonal(m.nn.Linear(3, 3), orthogonal_map="foo"))
    _raises_alike(lambda m, F: m.nn.utils.parametrizations.orthogonal(m.nn.Linear(3, 3), name="bias"))

    def assign(m, F):     # matrix_exp without the trivialization has no right inverse
        lin = m.nn.utils.parametrizations.orthogonal(m.nn.Linear(3, 3), use_trivialization=False)
        lin.weight = m.eye(3)
    _raises_alike(assign)
