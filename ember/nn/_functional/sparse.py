"""embedding (a `take` along dim 0, whose gradient is an index_add) and one_hot."""
from __future__ import annotations

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.dispatch import apply as P
from ...ir import dtypes as dt
from ._util import Tensor, eager_values


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
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq=True is not supported by ember")
    out = P("take", weight, input, dim=0)
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
    if input.ndim != 2 or offsets is not None:
        raise NotImplementedError("embedding_bag: only 2-D input without offsets is supported by ember")
    e = embedding(input, weight, padding_idx, max_norm, norm_type)
    if per_sample_weights is not None:
        e = M.mul(e, per_sample_weights.unsqueeze(-1))
    if mode == "sum":
        return M.sum(e, 1)
    if mode == "mean":
        return M.mean(e, 1)
    if mode == "max":
        return M.amax(e, 1)
    raise ValueError(f"mode has to be one of sum, mean or max, got {mode}")


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
