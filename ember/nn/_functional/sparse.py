"""embedding (a `take` along dim 0, whose gradient is an index_add), embedding_bag and one_hot."""
from __future__ import annotations

from ...frontend import autograd as ag
import numpy as np

from ...frontend import math_ops as M
from ...frontend import shape_ops as S
from ...frontend.dispatch import apply as P
from ...ir import dtypes as dt
from ._util import Tensor, const, eager_values


def _index_dtype(input, op):
    if input.dtype not in (dt.int64, dt.int32, dt.int16, dt.int8, dt.uint8):
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {input.dtype.name} instead (while checking arguments for {op})")


def embedding(input: Tensor, weight: Tensor, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    _index_dtype(input, "embedding")
    n = weight.shape[0]
    if padding_idx is not None:
        if padding_idx > 0 and padding_idx >= n:
            raise AssertionError("Padding_idx must be within num_embeddings")
        if padding_idx < 0:
            if padding_idx < -n:
                raise AssertionError("Padding_idx must be within num_embeddings")
            padding_idx = n + padding_idx
    v = eager_values(input)
    if v is not None and v.size and (v.min() < 0 or v.max() >= n):
        bad = int(v.min()) if v.min() < 0 else int(v.max())
        raise IndexError(f"index out of range in self (index {bad} for an embedding of {n} rows)")
    if max_norm is not None:
        embedding_renorm_(weight, input, max_norm, norm_type)
    out = P("take", weight, input, dim=0)
    if scale_grad_by_freq and ag.is_grad_enabled() and out.requires_grad:
        # each row's gradient divided by how often its index occurs in the batch: the value unchanged
        # (x.detach() + (x - x.detach()) * s), the gradient scaled by s
        idx = M.cast(input, dt.int64)
        flat = P("reshape", idx, shape=(input.numel(),))
        counts = P("index_add", P("full", shape=(n,), value=0.0, dtype=out.dtype, device=input.device), flat,
                   P("full", shape=(input.numel(),), value=1.0, dtype=out.dtype, device=input.device), dim=0)
        scale = P("reshape", M.reciprocal(P("take", counts, idx, dim=0)), shape=tuple(input.shape) + (1,))
        out = M.add(out.detach(), M.mul(M.sub(out, out.detach()), scale))
    if padding_idx is not None and ag.is_grad_enabled() and out.requires_grad:
        # the padding row reads through, but receives no gradient
        keep = P("reshape", P("ne", input, int(padding_idx)), shape=tuple(input.shape) + (1,))
        out = P("where", keep, out, out.detach())
    return out


def embedding_renorm_(weight: Tensor, input: Tensor, max_norm: float, norm_type: float = 2.0):
    """Rescale, in place, the rows of weight that input refers to whose norm exceeds max_norm."""
    with ag.no_grad():
        idx = M.cast(P("reshape", input, shape=(input.numel(),)), dt.int64)
        rows = P("take", weight, idx, dim=0)
        norms = M.norm(rows, norm_type, dim=1, keepdim=True)
        scale = M.where(M.gt(norms, max_norm), M.div(max_norm, M.add(norms, 1e-7)), 1.0)
        # rows listed twice get the same value, so a plain write (last one wins) is exact
        new = M.mul(rows, scale)
        w = weight._data
        w[idx._data] = new._data
        weight._vc[0] += 1
    return weight


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                  mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                  padding_idx=None):
    """Bags of embeddings reduced by sum, mean or max: rows of a 2-D input, or the segments of a 1-D input
    that `offsets` starts (include_last_offset: its last entry ends the last bag).  Entries equal to
    padding_idx are left out of their bag (and of mean's count); an empty bag gives zeros;
    per_sample_weights scale each entry (mode "sum")."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, got {mode}")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                                  f"supported for mode='sum' (got mode='{mode}'). Please open a feature request "
                                  "on the Pytorch GitHub.")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated is a mini-batch "
                             "of fixed length sequences.")
        bags, length = input.shape
        seg = None
    elif input.ndim == 1:
        if offsets is None or offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor but got None" if offsets is None else
                             f"offsets has to be a 1D Tensor but got {offsets.ndim}D")
        starts = eager_values(offsets)
        if starts is None:
            raise RuntimeError("embedding_bag with offsets needs their values (a graph break when compiled)")
        starts = [int(v) for v in starts]
        n = input.shape[0]
        if starts and starts[0] != 0:
            raise RuntimeError(f"offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to start "
                               f"from position 0. However, got {starts[0]}")
        ends = starts[1:] + ([] if include_last_offset else [n])
        bags = len(ends) if include_last_offset else len(starts)
        if any(b < a for a, b in zip(starts, ends)) or (ends and ends[-1] > n):
            raise RuntimeError(f"embedding_bag: offsets {starts} do not split an input of {n} entries")
        seg = np.repeat(np.arange(bags), [b - a for a, b in zip(starts[:bags], ends)])
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}")
    e = embedding(input, weight, None, max_norm, norm_type, scale_grad_by_freq)
    keep = None if padding_idx is None else M.ne(input, int(padding_idx) % weight.shape[0])
    w = per_sample_weights
    if keep is not None:
        w = M.cast(keep, e.dtype) if w is None else M.mul(w, M.cast(keep, w.dtype))
    if seg is None:                             # [B, L, D]: reductions over dim 1
        if mode == "max":
            return _empty_to_zero(M.amax(e if keep is None else M.where(S.unsqueeze(keep, -1), e, float("-inf")), 1))
        total = M.sum(e if w is None else M.mul(e, S.unsqueeze(w, -1)), 1)
        if mode == "sum":
            return total
        count = float(length) if keep is None else S.unsqueeze(M.sum(M.cast(keep, e.dtype), 1), -1)
        return M.div(total, M.clamp_min(count, 1.0) if keep is not None else max(count, 1.0))
    index = const(seg.astype(np.int64), input)
    from ...frontend.creation import ones, zeros
    out = zeros(bags, weight.shape[1], dtype=e.dtype, device=e.device)
    if mode == "max":
        src = e if keep is None else M.where(S.unsqueeze(keep, -1), e, float("-inf"))
        init = M.sub(out, float("inf"))
        rows = S.unsqueeze(index, -1).expand(-1, weight.shape[1])
        return _empty_to_zero(P("scatter_reduce", init, rows, src, dim=0, reduce="amax", include_self=True))
    total = S.index_add(out, 0, index, e if w is None else M.mul(e, S.unsqueeze(w, -1)))
    if mode == "sum":
        return total
    each = ones(index.shape[0], dtype=e.dtype, device=e.device) if keep is None else M.cast(keep, e.dtype)
    count = S.index_add(zeros(bags, dtype=e.dtype, device=e.device), 0, index, each)
    return M.div(total, S.unsqueeze(M.clamp_min(count, 1.0), -1))


def _empty_to_zero(x):
    """A max over no entries (an empty or all-padding bag) is -inf: PyTorch gives zeros."""
    return M.where(M.isneginf(x), 0.0, x)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    if tensor.dtype is not dt.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        v = eager_values(tensor)
        if v is None:
            raise RuntimeError("one_hot: num_classes=-1 needs the values of the input; pass num_classes when "
                               "compiling")
        if v.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(v.max()) + 1
    v = eager_values(tensor)
    if v is not None and v.size:
        if v.min() < 0:
            raise RuntimeError("Class values must be non-negative.")
        if v.max() >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    classes = P("arange", n=num_classes, start=0, step=1, dtype=dt.int64, device=tensor.device)
    hit = P("eq", P("reshape", tensor, shape=tuple(tensor.shape) + (1,)), classes)
    return M.cast(hit, dt.int64)
