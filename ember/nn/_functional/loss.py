"""Loss functions. cross_entropy = log_softmax + a gather-based nll_loss, so it fuses; the others are
elementwise composites followed by the reduction ('none' | 'mean' | 'sum').

Class targets are checked eagerly: a class out of range raises IndexError("Target 12 is out of
bounds.") instead of a wrong loss (compiled kernels check gather indices themselves).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ...frontend import math_ops as M
from ...frontend import autograd as ag
from ...frontend.tensor import _wrap
from ...frontend import shape_ops as S
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P, attach_node
from ...ir import dtypes as dt
from ._util import Tensor, check_reduction, const, eager_values, is_tracing, legacy_reduction, reduce_loss


def _check_targets(target, C, ignore_index):
    v = eager_values(target)
    if v is None or v.size == 0:
        return
    bad = (v < 0) | (v >= C)
    if ignore_index is not None:
        bad &= v != ignore_index
    if bad.any():
        raise IndexError(f"Target {int(v[bad].flat[0])} is out of bounds.")


def _class_target(input, target, op):
    if target.dtype.is_floating_point or target.dtype is dt.bool_:
        raise RuntimeError(f"{op}: expected target of dtype Long (class indices), but got {target.dtype.name}")
    if target.dtype is not dt.int64:
        target = M.cast(target, dt.int64)
    if input.ndim == 1:
        if target.ndim != 0:
            raise ValueError(f"Expected input batch_size (1) to match target batch_size ({target.shape[0]}).")
        return target
    if target.shape[0] != input.shape[0] or target.ndim != input.ndim - 1:
        if target.ndim == input.ndim - 1 and target.shape[0] != input.shape[0]:
            raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                             f"({target.shape[0]}).")
        raise RuntimeError(f"{op}: expected target of shape {[input.shape[0]] + list(input.shape[2:])}, got "
                           f"{list(target.shape)}")
    if tuple(target.shape[1:]) != tuple(input.shape[2:]):
        raise RuntimeError(f"{op}: expected target size {[input.shape[0]] + list(input.shape[2:])}, got "
                           f"{list(target.shape)}")
    return target


def _nll_eager(input, target, weight, ignore_index, reduction, cdim):
    """Eager nll_loss in one numpy pass and one autograd node (NllLossBackward0): the primitive composite
    below records ~11 ops and their gradients, ~190 us a call on [64, 10] against PyTorch's ~40.  The
    backward puts -g * weight / total at each row's target (numpy: one index per row, an assignment), or
    scatters it into zeros with ember ops when it is differentiated again.  Traced code keeps the composite
    (it fuses into the kernels)."""
    x, t = input._data, target._data
    valid = t != ignore_index
    safe = np.where(valid, t, 0)
    idx = np.expand_dims(safe, cdim)
    picked = np.take_along_axis(x, idx, cdim).squeeze(cdim)
    w = valid.astype(x.dtype)
    if weight is not None:
        w *= weight._data.astype(x.dtype)[safe]
    loss = -(picked * w)
    if reduction == "none":
        coef, out = -w, loss
    elif reduction == "sum":
        coef, out = -w, loss.sum(dtype=x.dtype)
    else:
        total = w.sum(dtype=x.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            # an ignored row gets no gradient even when every row is ignored (the loss is then 0/0 = NaN)
            coef, out = np.where(valid, -w / total, 0).astype(x.dtype), loss.sum(dtype=x.dtype) / total
    res = _wrap(np.asarray(out, dtype=x.dtype), input.device)
    if ag.is_grad_enabled() and input.requires_grad:
        shape = x.shape

        def vjp(g, o, x_):
            if g._xp is np and not ag.is_grad_enabled():
                dx = np.zeros(shape, x.dtype)
                np.put_along_axis(dx, idx, (g._data * coef).reshape(idx.shape), cdim)
                return (_wrap(dx, g.device),)
            src = P("reshape", P("mul", g, _wrap(coef, g.device)), shape=idx.shape)
            zeros = P("full", shape=shape, value=0, dtype=src.dtype, device=src.device)
            return (P("scatter_add", zeros, _wrap(idx, g.device), src, dim=cdim),)
        attach_node(res, "nll_loss", vjp, {}, (input,), "")
    return res


@autocast_op("nll_loss")
def nll_loss(input: Tensor, target: Tensor, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean") -> Tensor:
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction)
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    target = _class_target(input, target, "nll_loss")
    cdim = 0 if input.ndim == 1 else 1
    C = input.shape[cdim]
    if weight is not None and weight.numel() != C:
        raise RuntimeError(f"weight tensor should be defined either for all {C} classes or no classes but got "
                           f"weight tensor of shape: {list(weight.shape)}")
    _check_targets(target, C, ignore_index)
    if not is_tracing() and input.device.type == "cpu" and input.dtype in (dt.float32, dt.float64) \
            and (weight is None or weight.device.type == "cpu"):
        return _nll_eager(input, target, weight, int(ignore_index), reduction, cdim)
    valid = P("ne", target, int(ignore_index))
    safe = P("where", valid, target, 0)
    picked = P("gather", input, P("reshape", safe, shape=tuple(safe.shape[:cdim]) + (1,) + tuple(safe.shape[cdim:])),
               dim=cdim)
    picked = P("reshape", picked, shape=tuple(safe.shape))
    w = M.cast(valid, input.dtype)
    if weight is not None:
        w = P("mul", w, P("take", M.cast(weight, input.dtype), safe, dim=0))
    loss = P("neg", P("mul", picked, w))
    if reduction == "none":
        return loss
    total = P("sum", loss, dims=None, keepdim=False)
    if reduction == "sum":
        return total
    # every target ignored: the loss is NaN (0/0) but its gradient 0, as PyTorch's (total / 1 + NaN)
    count = P("sum", w, dims=None, keepdim=False)
    none = P("eq", count, 0.0)
    return P("add", P("div", total, P("where", none, 1.0, count)), P("where", none, float("nan"), P("mul", count, 0.0)))


@autocast_op("cross_entropy")
def cross_entropy(input: Tensor, target: Tensor, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    cdim = 0 if input.ndim == 1 else 1
    C = input.shape[cdim]
    logp = M.log_softmax(input, cdim)
    wshape = (C,) + (1,) * (input.ndim - cdim - 1)
    if target.dtype.is_floating_point:     # class probabilities
        if tuple(target.shape) != tuple(input.shape):
            raise RuntimeError(f"Expected target size {list(input.shape)}, got {list(target.shape)}")
        t = target
        if label_smoothing > 0:
            t = P("add", P("mul", t, 1.0 - label_smoothing), label_smoothing / C)
        prod = P("mul", logp, M.cast(t, logp.dtype))
        if weight is not None:
            prod = P("mul", prod, P("reshape", M.cast(weight, logp.dtype), shape=wshape))
        loss = P("neg", P("sum", prod, dims=(cdim,), keepdim=False))
        if reduction == "none":
            return loss
        total = P("sum", loss, dims=None, keepdim=False)
        if reduction == "sum":
            return total
        return P("mul", total, 1.0 / (input.numel() // C) if input.numel() else float("nan"))
    nll = nll_loss(logp, target, weight, None, ignore_index, None, reduction)
    if label_smoothing <= 0:
        return nll
    target = _class_target(input, target, "cross_entropy")
    valid = M.cast(P("ne", target, int(ignore_index)), logp.dtype)
    lw = logp if weight is None else P("mul", logp, P("reshape", M.cast(weight, logp.dtype), shape=wshape))
    smooth = P("mul", P("neg", P("sum", lw, dims=(cdim,), keepdim=False)), valid)
    if reduction == "none":
        ret = smooth
    elif reduction == "sum":
        ret = P("sum", smooth, dims=None, keepdim=False)
    else:
        if weight is None:
            denom = P("sum", valid, dims=None, keepdim=False)
        else:
            safe = P("where", P("ne", target, int(ignore_index)), target, 0)
            denom = P("sum", P("mul", P("take", M.cast(weight, logp.dtype), safe, dim=0), valid), dims=None,
                      keepdim=False)
        ret = P("div", P("sum", smooth, dims=None, keepdim=False), denom)
    return P("add", P("mul", nll, 1.0 - label_smoothing), P("mul", ret, label_smoothing / C))


def _same_shape(input, target, op):
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
                      "This will likely lead to incorrect results due to broadcasting. Please ensure they have "
                      "the same size.", stacklevel=3)


@autocast_op("mse_loss")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = legacy_reduction(size_average, reduce, reduction)
    _same_shape(input, target, "mse_loss")
    d = M.sub(input, target)
    loss = M.mul(d, d)
    if weight is not None:
        loss = M.mul(loss, weight)
    return reduce_loss(loss, reduction)


@autocast_op("l1_loss")
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = legacy_reduction(size_average, reduce, reduction)
    _same_shape(input, target, "l1_loss")
    loss = M.abs(M.sub(input, target))
    if weight is not None:
        loss = M.mul(loss, weight)
    return reduce_loss(loss, reduction)


@autocast_op("smooth_l1_loss")
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta: float = 1.0):
    reduction = legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    _same_shape(input, target, "smooth_l1_loss")
    d = M.sub(input, target)
    a = M.abs(d)
    if beta == 0:
        return reduce_loss(a, reduction)
    loss = M.where(M.lt(a, beta), M.mul(M.mul(d, d), 0.5 / beta), M.sub(a, 0.5 * beta))
    return reduce_loss(loss, reduction)


@autocast_op("huber_loss")
def huber_loss(input, target, reduction="mean", delta: float = 1.0, weight=None):
    _same_shape(input, target, "huber_loss")
    d = M.sub(input, target)
    a = M.abs(d)
    loss = M.where(M.lt(a, delta), M.mul(M.mul(d, d), 0.5), M.mul(M.sub(a, 0.5 * delta), delta))
    if weight is not None:
        loss = M.mul(loss, weight)
    return reduce_loss(loss, reduction)


@autocast_op("binary_cross_entropy")
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                         f"({input.shape}) is deprecated. Please ensure they have the same size.")
    v = eager_values(input)
    if v is not None and v.size and ((v < 0) | (v > 1)).any():
        raise RuntimeError("all elements of input should be between 0 and 1")
    # PyTorch clamps each log term at -100 so that 0 * log(0) stays finite, and its gradient is
    # (x - t) / max(x (1 - x), 1e-12): finite where the clamped logs' chain rule gives inf * 0 = nan (a
    # saturated sigmoid, x exactly 0 or 1).  The value comes from detached inputs; (x - x.detach()) * grad
    # adds exactly 0 to it and carries that gradient (treated as a constant: no second derivative).
    x, t = input.detach(), target.detach()
    logx = M.clamp_min(M.log(x), -100.0)
    log1mx = M.clamp_min(M.log(M.sub(1.0, x)), -100.0)
    loss = M.neg(M.add(M.mul(t, logx), M.mul(M.sub(1.0, t), log1mx)))
    if input.requires_grad:
        grad = M.div(M.sub(x, t), M.clamp_min(M.mul(x, M.sub(1.0, x)), 1e-12))
        loss = M.add(loss, M.mul(M.sub(input, x), grad))
    if target.requires_grad:
        loss = M.add(loss, M.mul(M.sub(target, t), M.sub(log1mx, logx)))   # (clamped: PyTorch's is inf at 0, 1)
    if weight is not None:
        loss = M.mul(loss, weight)
    return reduce_loss(loss, reduction)


@autocast_op("binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    reduction = legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    # (1 - t) * x + w_pos * softplus(-x), softplus(-x) = m + log(exp(-m) + exp(-x - m)) with m = max(-x, 0)
    # (PyTorch's form: its gradient is right at x = 0 too, where abs() and relu() have slope 0 -- a
    # zero-initialised head had got no gradient at all)
    m = M.clamp_min(M.neg(input), 0.0)
    sp = M.add(m, M.log(M.add(M.exp(M.neg(m)), M.exp(M.sub(M.neg(input), m)))))
    if pos_weight is not None:
        lw = M.add(M.mul(M.sub(pos_weight, 1.0), target), 1.0)
        loss = M.add(M.mul(M.sub(1.0, target), input), M.mul(lw, sp))
    else:
        loss = M.add(M.mul(M.sub(1.0, target), input), sp)
    if weight is not None:
        loss = M.mul(loss, weight)
    return reduce_loss(loss, reduction)


@autocast_op("kl_div")
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target: bool = False):
    reduction = legacy_reduction(size_average, reduce, reduction)
    if log_target:
        loss = M.mul(M.exp(target), M.sub(target, input))
    else:
        # xlogy: 0 * log 0 = 0
        pos = M.gt(target, 0)
        safe = M.where(pos, target, 1.0)
        loss = M.where(pos, M.mul(target, M.sub(M.log(safe), input)), M.mul(M.neg(input), 0.0))
        loss = M.where(M.isnan(target), target, loss)
    if reduction == "batchmean":
        if input.ndim == 0:
            return M.sum(loss)
        return M.div(M.sum(loss), input.shape[0])
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.")
    return reduce_loss(loss, reduction)


@autocast_op("poisson_nll_loss")
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    if log_input:
        loss = M.sub(M.exp(input), M.mul(target, input))
    else:
        loss = M.sub(input, M.mul(target, M.log(M.add(input, eps))))
    if full:
        t = target
        stirling = M.add(M.sub(M.mul(t, M.log(t)), t), M.mul(M.log(M.mul(t, 2 * math.pi)), 0.5))
        loss = M.add(loss, M.where(M.gt(t, 1), stirling, 0.0))
    return reduce_loss(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    if var.ndim == input.ndim - 1 or (var.ndim == input.ndim and var.shape[-1] == 1 and input.shape[-1] != 1):
        if var.ndim == input.ndim - 1:
            var = S.unsqueeze(var, -1)
    v = eager_values(var)
    if v is not None and (v < 0).any():
        raise ValueError("var has negative entry/entries")
    var = M.clamp_min(var.clone(), eps)
    d = M.sub(input, target)
    loss = M.mul(M.add(M.log(var), M.div(M.mul(d, d), var)), 0.5)
    if full:
        loss = M.add(loss, 0.5 * math.log(2 * math.pi))
    return reduce_loss(loss, reduction)


@autocast_op("soft_margin_loss")
def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    return reduce_loss(M.log1p(M.exp(M.neg(M.mul(target, input)))), reduction)


@autocast_op("margin_ranking_loss")
def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    return reduce_loss(M.relu(M.add(M.mul(M.neg(target), M.sub(input1, input2)), margin)), reduction)


@autocast_op("hinge_embedding_loss")
def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    pos = M.where(M.eq(target, 1), input, 0.0)
    neg = M.where(M.eq(target, -1), M.relu(M.sub(margin, input)), 0.0)
    return reduce_loss(M.add(pos, neg), reduction)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    from .activation import logsigmoid
    loss = M.neg(M.add(M.mul(target, logsigmoid(input)), M.mul(M.sub(1.0, target), logsigmoid(M.neg(input)))))
    if weight is not None:
        loss = M.mul(loss, weight)
    loss = M.mean(loss, dim=input.ndim - 1)
    return reduce_loss(loss, reduction)


@autocast_op("cosine_embedding_loss")
def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    from .distance import cosine_similarity
    cos = cosine_similarity(input1, input2, dim=-1, eps=1e-12)
    loss = M.where(M.eq(target, 1), M.sub(1.0, cos), M.relu(M.sub(cos, margin)))
    return reduce_loss(loss, reduction)


@autocast_op("triplet_margin_loss")
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    from .distance import pairwise_distance
    dp = pairwise_distance(anchor, positive, p, eps)
    dn = pairwise_distance(anchor, negative, p, eps)
    if swap:
        dn = M.minimum(dn, pairwise_distance(positive, negative, p, eps))
    return reduce_loss(M.relu(M.add(M.sub(dp, dn), margin)), reduction)


@autocast_op("multi_margin_loss")
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    reduction = legacy_reduction(size_average, reduce, reduction)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    x = input if input.ndim == 2 else S.unsqueeze(input, 0)
    t = S.reshape(target, (-1, 1))
    C = x.shape[1]
    _check_targets(target, C, None)
    xy = S.gather(x, 1, t)
    z = M.relu(M.add(M.sub(margin, xy), x))
    if p == 2:
        z = M.mul(z, z)
    if weight is not None:
        z = M.mul(z, S.gather(S.unsqueeze(weight, 0).expand(x.shape[0], C), 1, t))
    not_t = M.ne(S.unsqueeze(M.cast(S.reshape(t, (-1,)), dt.int64), 1),
                 S.unsqueeze(P("arange", n=C, start=0, step=1, dtype=dt.int64, device=x.device), 0))
    loss = M.div(M.sum(M.where(not_t, z, 0.0), 1), C)
    if input.ndim == 1:
        loss = S.reshape(loss, ())
    return reduce_loss(loss, reduction)



@autocast_op("multilabel_margin_loss")
def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """sum over target classes j and non-target classes i of max(0, 1 - (x[j] - x[i])) / C; each row of
    target lists class indices, ended by the first -1."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_reduction(reduction)
    if input.ndim not in (1, 2) or input.shape[-1] == 0:
        raise RuntimeError(f"Expected non-empty vector or matrix with optional 0-dim batch size, but got: "
                           f"{list(input.shape)}")
    if tuple(target.shape) != tuple(input.shape):
        raise RuntimeError(f"inconsistent target size: {list(target.shape)} for input of size: {list(input.shape)}")
    if target.dtype is not dt.int64:
        raise RuntimeError(f"expected scalar type Long but found {target.dtype.name}")
    v = eager_values(target)
    C = input.shape[-1]
    if v is not None and ((v < -1) | (v >= C)).any():
        raise RuntimeError("argument #2 'target' is out of range")
    x = input if input.ndim == 2 else S.unsqueeze(input, 0)
    t = target if target.ndim == 2 else S.unsqueeze(target, 0)
    # the listed targets: the positions before the row's first -1
    listed = M.eq(M.cumsum(M.cast(M.lt(t, 0), dt.int64), 1), 0)                       # [N, j]
    classes = P("arange", n=C, start=0, step=1, dtype=dt.int64, device=x.device)
    hit = M.logical_and(M.eq(S.unsqueeze(t, 2), classes), S.unsqueeze(listed, 2))      # [N, j, i]
    is_target = M.gt(M.sum(M.cast(hit, dt.int64), 1), 0)                                # [N, i]
    xj = S.gather(x, 1, M.clamp_min(t, 0))                                              # [N, j]
    z = M.relu(M.sub(1.0, M.sub(S.unsqueeze(xj, 2), S.unsqueeze(x, 1))))               # [N, j, i]
    pair = M.logical_and(S.unsqueeze(listed, 2), M.logical_not(S.unsqueeze(is_target, 1)))
    loss = M.div(M.sum(M.where(pair, z, 0.0), (1, 2)), C)
    if input.ndim == 1:
        loss = S.reshape(loss, ())
    return reduce_loss(loss, reduction)


def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None, margin=1.0,
                                      swap=False, reduction="mean"):
    """max(d(a, p) - d(a, n) + margin, 0) for any distance d (pairwise_distance by default); swap takes
    d(p, n) in place of d(a, n) where it is smaller."""
    check_reduction(reduction)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the same number of "
                           f"dimensions, but got: anchor {anchor.ndim}D, positive {positive.ndim}D, and negative "
                           f"{negative.ndim}D inputs")
    if distance_function is None:
        from .distance import pairwise_distance as distance_function
    dp = distance_function(anchor, positive)
    dn = distance_function(anchor, negative)
    if swap:
        dn = M.minimum(dn, distance_function(positive, negative))
    return reduce_loss(M.clamp_min(M.add(M.sub(dp, dn), margin), 0.0), reduction)


# ------------------------------------------------------------------------------------------ CTC
def _lengths(x):
    """Lengths given as a tensor or a tuple/list of ints, as a list of ints (they fix the recursion's shape)."""
    if isinstance(x, Tensor):
        v = eager_values(x)
        return [int(n) for n in np.asarray(x.tolist() if v is None else v).reshape(-1)]
    return [int(n) for n in x]


def _log_add(*terms):
    """log(sum(exp(terms))) elementwise, -inf where every term is -inf -- with a zero gradient there (a
    plain logsumexp's is NaN, and the unreachable CTC states would spread it)."""
    m = terms[0]
    for t in terms[1:]:
        m = M.maximum(m, t)
    dead = M.isinf(m)                     # every term -inf (the log-probabilities are finite or -inf)
    m = M.where(dead, 0.0, m.detach())   # any shift gives the same value: no gradient through it
    total = None
    for t in terms:
        e = M.exp(M.sub(t, m))
        total = e if total is None else M.add(total, e)
    total = M.where(dead, 1.0, total)
    return M.where(dead, float("-inf"), M.add(M.log(total), m))


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """Connectionist temporal classification: -log of the summed probability of every alignment of
    each target, by the forward (alpha) recursion in log space over time, in ember ops -- autograd
    gives the gradient.  log_probs [T, N, C] (or [T, C]); targets padded [N, S] or concatenated 1-D."""
    check_reduction(reduction)
    unbatched = log_probs.ndim == 2
    lp = S.unsqueeze(log_probs, 1) if unbatched else log_probs
    T, N, C = lp.shape
    il, tl = _lengths(input_lengths), _lengths(target_lengths)
    if not 0 <= blank < C:
        raise RuntimeError("blank must be in label range")
    if len(il) != N:
        raise RuntimeError(f"input_lengths must be of size batch_size ({N}), got {len(il)}")
    if len(tl) != N:
        raise RuntimeError(f"target_lengths must be of size batch_size ({N}), got {len(tl)}")
    for n in il:
        if n > T:
            raise RuntimeError(f"Expected input_lengths to have value at most {T}, but got value {n} (while "
                               "checking arguments for ctc_loss_allocate_outputs)")
    Smax = max(tl) if tl else 0
    tg = targets if targets.dtype is dt.int64 else M.cast(targets, dt.int64)
    if tg.ndim == 1 and not unbatched:          # concatenated: cut into rows of a padded [N, Smax]
        starts = np.cumsum([0] + tl[:-1])
        pos = np.minimum(starts[:, None] + np.arange(Smax)[None, :], max(tg.shape[0] - 1, 0))
        tg = S.take(tg, const(pos.astype(np.int64), tg)) if Smax else P(
            "full", shape=(N, 0), value=0, dtype=dt.int64, device=lp.device)
    else:
        tg = S.unsqueeze(tg, 0) if unbatched else tg
        if tg.shape[1] < Smax:
            raise RuntimeError(f"Expected tensor to have size at least {Smax} at dimension 1, but got size "
                               f"{tg.shape[1]} for argument #2 'targets' (while checking arguments for "
                               "ctc_loss_allocate_outputs)")
    tg = S.narrow(tg, 1, 0, Smax)
    L = 2 * Smax + 1
    # the extended labels blank, l1, blank, l2, ..., blank: [N, L]
    blanks = P("full", shape=(N, Smax, 1), value=blank, dtype=dt.int64, device=lp.device)
    ext = S.cat([S.reshape(S.cat([blanks, S.unsqueeze(tg, 2)], 2), (N, 2 * Smax)),
                 P("full", shape=(N, 1), value=blank, dtype=dt.int64, device=lp.device)], 1)
    # the skip s-2 -> s: onto a label that differs from the label two back
    prev2 = S.cat([P("full", shape=(N, 2), value=blank, dtype=dt.int64, device=lp.device), S.narrow(ext, 1, 0, L - 2)],
                  1) if L > 2 else ext
    skip = M.logical_and(M.ne(ext, blank), M.ne(ext, prev2))
    lpe = S.gather(lp, 2, S.expand(S.unsqueeze(ext, 0), (T, N, L)))                    # [T, N, L]
    steps = S.unbind(lpe, 0)
    neg_inf = float("-inf")
    first = np.full((1, L), neg_inf)
    first[0, :2] = 0.0
    alpha = M.add(steps[0], const(first.astype(lp.dtype.np), lp)) if T else None
    live = np.arange(T)[:, None] < np.asarray(il)[None, :]                            # [T, N]
    for t in range(1, T):
        a1 = P("pad", alpha, pads=((0, 0), (1, -1)), value=neg_inf)
        a2 = M.where(skip, P("pad", alpha, pads=((0, 0), (2, -2)), value=neg_inf), neg_inf)
        new = M.add(_log_add(alpha, a1, a2), steps[t])
        alpha = new if live[t].all() else M.where(const(live[t][:, None], lp), new, alpha)
    # end in the last label or the blank after it, at each sample's last frame
    ends = np.stack([2 * np.asarray(tl), np.maximum(2 * np.asarray(tl) - 1, 0)], 1)
    a_end = S.gather(alpha, 1, const(ends.astype(np.int64), lp))
    a_end = M.where(const(np.asarray(tl)[:, None] > np.array([[-1, 0]]), lp), a_end, neg_inf)
    nll = M.neg(_log_add(S.select(a_end, 1, 0), S.select(a_end, 1, 1)))
    # PyTorch's gradient w.r.t. log_probs is exp(log_probs) - posterior over the live frames (the
    # gradient through a log_softmax in front is the same either way): the exp term, with value 0
    mass = M.sum(M.mul(M.exp(lp), const(live[:, :, None].astype(lp.dtype.np), lp)), (0, 2))
    nll = M.add(nll, M.sub(mass, mass.detach()))
    if zero_infinity:
        nll = M.where(M.isinf(nll), 0.0, nll)
    if reduction == "mean":
        div = const(np.maximum(np.asarray(tl, dtype=lp.dtype.np), 1), lp)
        return M.mean(M.div(nll, div))
    if reduction == "sum":
        return M.sum(nll)
    return S.reshape(nll, ()) if unbatched else nll

