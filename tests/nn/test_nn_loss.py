"""Loss functions against PyTorch: reductions, class weights, ignore_index, label smoothing,
probability targets, N-d inputs, and the errors (a class out of range names the target)."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F
from nn_helpers import rand, run_fn, torch

TF = torch.nn.functional


def targets(shape, C, seed=3, ignore=None):
    t = np.random.default_rng(seed).integers(0, C, size=shape).astype(np.int64)
    if ignore is not None:
        t.flat[::3] = ignore
    return t


W = rand((5,), 4, low=0.1, high=2.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kw", [{}, {"weight": W}, {"ignore_index": 2}, {"label_smoothing": 0.1},
                                {"weight": W, "ignore_index": 2, "label_smoothing": 0.2}])
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4), (2, 5, 3, 2)])
def test_cross_entropy_class_targets(reduction, kw, shape):
    x = rand(shape)
    tshape = (shape[0],) + shape[2:]
    t = targets(tshape, 5, ignore=kw.get("ignore_index"))
    kw = dict(kw)
    w = kw.pop("weight", None)
    ekw = dict(kw, weight=ember.tensor(w)) if w is not None else kw
    tkw = dict(kw, weight=torch.tensor(w)) if w is not None else kw
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    e = F.cross_entropy(ex, ember.tensor(t), reduction=reduction, **ekw)
    tt = TF.cross_entropy(tx, torch.tensor(t), reduction=reduction, **tkw)
    np.testing.assert_allclose(e.detach().numpy(), tt.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rand(tuple(tt.shape), 9)
    e.backward(ember.tensor(g))
    tt.backward(torch.tensor(g))
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.3])
def test_cross_entropy_probability_targets(reduction, ls):
    p = np.random.default_rng(1).dirichlet(np.ones(5), size=(4, 3)).astype(np.float32).transpose(0, 2, 1).copy()
    run_fn(lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=ls, weight=ember.tensor(W)),
           lambda x, t: TF.cross_entropy(x, t, reduction=reduction, label_smoothing=ls, weight=torch.tensor(W)),
           rand((4, 5, 3)), p, grtol=1e-4, gatol=1e-6)


def test_cross_entropy_unbatched_and_module():
    x = rand((5,))
    run_fn(lambda a, t: F.cross_entropy(a, t), lambda a, t: TF.cross_entropy(a, t), x, np.array(3))
    m, tm = nn.CrossEntropyLoss(label_smoothing=0.1), torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    run_fn(m, tm, rand((4, 5)), targets((4,), 5))


def test_cross_entropy_all_ignored_is_nan_like_torch():
    t = np.full((3,), -100)
    e = F.cross_entropy(ember.tensor(rand((3, 4))), ember.tensor(t))
    assert np.isnan(e.item()) and np.isnan(TF.cross_entropy(torch.tensor(rand((3, 4))), torch.tensor(t)).item())


def test_target_out_of_range_raises():
    x = ember.tensor(rand((4, 10)))
    with pytest.raises(IndexError, match="Target 12 is out of bounds."):
        F.cross_entropy(x, ember.tensor([1, 12, 3, 4]))
    with pytest.raises(IndexError, match="Target -3 is out of bounds."):
        F.nll_loss(x, ember.tensor([1, -3, 3, 4]))
    F.nll_loss(x, ember.tensor([1, -100, 3, 4]))    # ignore_index is fine
    with pytest.raises(ValueError, match="batch_size"):
        F.cross_entropy(x, ember.tensor([1, 2]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(reduction):
    lp = TF.log_softmax(torch.tensor(rand((6, 5))), 1).numpy()
    run_fn(lambda a, t: F.nll_loss(a, t, weight=ember.tensor(W), ignore_index=1, reduction=reduction),
           lambda a, t: TF.nll_loss(a, t, weight=torch.tensor(W), ignore_index=1, reduction=reduction),
           lp, targets((6,), 5))


@pytest.mark.parametrize("name,kw", [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}),
                                     ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0}),
                                     ("huber_loss", {}), ("huber_loss", {"delta": 0.3}),
                                     ("soft_margin_loss", {})])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(name, kw, reduction):
    run_fn(getattr(F, name), getattr(TF, name), rand((4, 3)), rand((4, 3), 2), reduction=reduction,
           grad_of=(0,) if name == "soft_margin_loss" else None, **kw)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce(reduction):
    p = rand((4, 3), low=0.01, high=0.99)
    t = (rand((4, 3), 2) > 0).astype(np.float32)
    run_fn(F.binary_cross_entropy, TF.binary_cross_entropy, p, t, reduction=reduction)
    w = rand((3,), 5, low=0.1, high=1)
    run_fn(lambda a, b: F.binary_cross_entropy(a, b, weight=ember.tensor(w), reduction=reduction),
           lambda a, b: TF.binary_cross_entropy(a, b, weight=torch.tensor(w), reduction=reduction), p, t)
    # saturated inputs: log is clamped at -100, as PyTorch
    run_fn(F.binary_cross_entropy, TF.binary_cross_entropy, np.array([0.0, 1.0, 0.5], np.float32),
           np.array([1.0, 0.0, 1.0], np.float32), grad=False)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(ember.tensor([1.5]), ember.tensor([1.0]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(reduction):
    x = rand((4, 3), low=-30, high=30)
    t = rand((4, 3), 2, low=0, high=1)
    pw = rand((3,), 3, low=0.5, high=3)
    w = rand((4, 1), 4, low=0.1, high=1)
    run_fn(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, x, t, reduction=reduction)
    run_fn(lambda a, b: F.binary_cross_entropy_with_logits(a, b, ember.tensor(w), reduction=reduction,
                                                           pos_weight=ember.tensor(pw)),
           lambda a, b: TF.binary_cross_entropy_with_logits(a, b, torch.tensor(w), reduction=reduction,
                                                            pos_weight=torch.tensor(pw)), x, t)


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    inp = TF.log_softmax(torch.tensor(rand((4, 5))), 1).numpy()
    tgt = TF.softmax(torch.tensor(rand((4, 5), 2)), 1).numpy()
    tgt[0, 0] = 0.0
    if log_target:
        tgt = np.log(tgt + 1e-3).astype(np.float32)
    with pytest.warns(UserWarning) if reduction == "mean" else _nullcontext():
        run_fn(F.kl_div, TF.kl_div, inp, tgt, reduction=reduction, log_target=log_target, grad_of=(0,))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_other_losses():
    a, b = rand((4, 3)), rand((4, 3), 2)
    y = np.array([1, -1, 1, -1], np.float32)
    run_fn(F.margin_ranking_loss, TF.margin_ranking_loss, rand((4,)), rand((4,), 2), y, margin=0.2, grad_of=(0, 1))
    run_fn(F.cosine_embedding_loss, TF.cosine_embedding_loss, a, b, y, margin=0.1, grad_of=(0, 1))
    run_fn(F.triplet_margin_loss, TF.triplet_margin_loss, a, b, rand((4, 3), 3))
    run_fn(F.hinge_embedding_loss, TF.hinge_embedding_loss, a, np.sign(b).astype(np.float32), grad_of=(0,))
    run_fn(F.poisson_nll_loss, TF.poisson_nll_loss, a, np.abs(b))
    run_fn(F.gaussian_nll_loss, TF.gaussian_nll_loss, a, b, np.abs(rand((4, 3), 4)) + 0.1)
    run_fn(F.multilabel_soft_margin_loss, TF.multilabel_soft_margin_loss, a, (b > 0).astype(np.float32),
           grad_of=(0,))
    run_fn(F.multi_margin_loss, TF.multi_margin_loss, a, np.array([0, 2, 1, 1]))


def test_loss_modules_hold_options():
    for e, t, args in [(nn.MSELoss(reduction="sum"), torch.nn.MSELoss(reduction="sum"), (rand((3,)), rand((3,), 2))),
                       (nn.L1Loss(), torch.nn.L1Loss(), (rand((3,)), rand((3,), 2))),
                       (nn.SmoothL1Loss(beta=0.5), torch.nn.SmoothL1Loss(beta=0.5), (rand((3,)), rand((3,), 2))),
                       (nn.HuberLoss(delta=0.5), torch.nn.HuberLoss(delta=0.5), (rand((3,)), rand((3,), 2))),
                       (nn.NLLLoss(), torch.nn.NLLLoss(), (rand((3, 4)), np.array([0, 1, 3]))),
                       (nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss(), (rand((3,)), rand((3,), 2, 0, 1))),
                       (nn.BCELoss(), torch.nn.BCELoss(), (rand((3,), 1, 0.1, 0.9), rand((3,), 2, 0, 1))),
                       (nn.KLDivLoss(reduction="batchmean"), torch.nn.KLDivLoss(reduction="batchmean"),
                        (rand((2, 3)), rand((2, 3), 2, 0.1, 1)))]:
        run_fn(e, t, *args)
        assert repr(e) == repr(t)
    w = ember.ones(3)
    m = nn.CrossEntropyLoss(weight=w)
    assert m.weight is w and "weight" in dict(m.named_buffers())
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(ember.ones(2), ember.ones(2), reduction="avg")


def test_mse_broadcast_warns():
    with pytest.warns(UserWarning, match="target size"):
        F.mse_loss(ember.ones(3, 1), ember.ones(3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(7, 5), (4, 3, 6)])
def test_eager_nll_fast_path_matches_torch_incl_double_backward(reduction, shape):
    """Eager nll_loss runs as one numpy pass (_nll_eager): values, gradients, weights, ignore_index and the
    gradient of a gradient (through cross_entropy's log_softmax) equal PyTorch's."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    t.flat[1] = -100
    w = rng.random(shape[1]) + 0.5
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    el = ember.nn.functional.cross_entropy(ex, ember.tensor(t), weight=ember.tensor(w), reduction=reduction)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), weight=torch.tensor(w), reduction=reduction)
    np.testing.assert_allclose(el.detach().numpy(), tl.detach().numpy(), rtol=1e-12, atol=1e-12)
    (eg,) = ember.autograd.grad(el.sum(), ex, create_graph=True)
    (tg,) = torch.autograd.grad(tl.sum(), tx, create_graph=True)
    np.testing.assert_allclose(eg.detach().numpy(), tg.detach().numpy(), rtol=1e-10, atol=1e-12)
    (egg,) = ember.autograd.grad((eg * eg).sum(), ex)
    (tgg,) = torch.autograd.grad((tg * tg).sum(), tx)
    np.testing.assert_allclose(egg.numpy(), tgg.numpy(), rtol=1e-8, atol=1e-12)
