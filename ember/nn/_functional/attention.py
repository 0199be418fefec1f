"""scaled_dot_product_attention and multi_head_attention_forward: the fused `attention` op where it applies
(ember/runtime/attention.py), else the math path (two batched matmuls around a softmax)."""
from __future__ import annotations

import math

import numpy as np

from ...frontend import linalg as LA
from ...frontend import math_ops as M
from ...frontend import shape_ops as S
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P
from ...ir import dtypes as dt
from ._util import Tensor, const, is_tracing
from .dropout import dropout
from .linear import linear


def _causal_mask(L, S_, like):
    return const(np.tril(np.ones((L, S_), dtype=bool)), like)


@autocast_op("scaled_dot_product_attention")
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale=None,
                                 enable_gqa: bool = False) -> Tensor:
    L, S_ = query.shape[-2], key.shape[-2]
    E = query.shape[-1]
    scale_factor = 1.0 / math.sqrt(E) if scale is None else scale
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key = S.repeat_interleave(key, rep, dim=-3)
        value = S.repeat_interleave(value, rep, dim=-3)
    attended = None
    if attn_mask is not None:
        attn_mask, attended = _unmask_empty_rows(attn_mask)
    out = _sdpa(query, key, value, attn_mask, dropout_p, is_causal, L, S_, scale_factor)
    return out if attended is None else M.where(attended, out, 0.0)


def _unmask_empty_rows(attn_mask):
    """PyTorch's sdpa gives a query that may attend to nothing (its mask row all False, or all -inf) a zero
    result and zero gradients, where a softmax over -inf alone is NaN and poisons every gradient.  Returns
    (the mask with such rows let through -- any finite softmax: its result is replaced --, the bool
    [..., L, 1] of rows that attend to something) or (attn_mask, None) when an eager mask has no empty row."""
    open_ = attn_mask if attn_mask.dtype is dt.bool_ else M.gt(attn_mask, float("-inf"))
    attended = M.any(open_, -1, keepdim=True)
    if not is_tracing() and bool(M.all(attended)):
        return attn_mask, None
    if attn_mask.dtype is dt.bool_:
        return M.logical_or(attn_mask, M.logical_not(attended)), attended
    return M.where(attended, attn_mask, 0.0), attended


def _sdpa(query, key, value, attn_mask, dropout_p, is_causal, L, S_, scale_factor):
    fused = _fused(query, key, value, attn_mask, dropout_p, is_causal, L, S_, scale_factor)
    if fused is not None:
        return fused
    scores = LA.matmul(M.mul(query, scale_factor), S.transpose(key, -2, -1))
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        scores = P("where", _causal_mask(L, S_, query), scores, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype is dt.bool_:
            scores = M.where(attn_mask, scores, float("-inf"))
        else:
            scores = M.add(scores, attn_mask)
    attn = M.softmax(scores, -1)
    if dropout_p > 0.0:
        attn = dropout(attn, dropout_p, training=True)
    return LA.matmul(attn, value)


def _bool_masks(attn_mask, key_padding_mask, N, L, S_):
    """multi-head attention's masks as one bool `masked` (True: not attended), broadcastable to [N, H, L, S];
    None for none; False when a mask is a float (added to the scores: the unfused path)."""
    masked = None
    for m, shape in ((attn_mask, None), (key_padding_mask, (N, 1, 1, S_))):
        if m is None:
            continue
        if m.dtype is not dt.bool_:
            return False
        if shape is None:
            if m.ndim == 3:
                return False            # per-head masks [N * H, L, S]: the unfused path reshapes them
            shape = (1, 1, L, S_)
        m = S.reshape(m, shape)
        masked = m if masked is None else M.logical_or(masked, m)
    return masked


def _fused(query, key, value, attn_mask, dropout_p, is_causal, L, S_, scale, masked=None):
    """The fused `attention` op (one kernel forward, one backward: ember/runtime/attention.py) for what its
    kernels take -- float32 CPU tensors, equal batch dims, no dropout, a bool mask or none -- else None.
    bfloat16 / float16 tensors (autocast's) run it on float32 copies and round the result once, as
    PyTorch's fused CPU attention accumulates in float32: eager and compiled code then compute the same
    bits (the compiler fuses the casts into the neighbouring kernels), where the composite rounded the
    scores, the probabilities and the result.
    `masked`: the mask already in the op's sense (True: not attended)."""
    low = query.dtype if query.dtype.is_reduced_float else None
    if (dropout_p > 0.0 or query.device.type != "cpu" or (query.dtype is not dt.float32 and low is None)
            or not query.dtype is key.dtype is value.dtype or query.ndim < 2
            or not query.ndim == key.ndim == value.ndim or tuple(query.shape[:-2]) != tuple(key.shape[:-2])
            or tuple(query.shape[:-2]) != tuple(value.shape[:-2]) or key.shape[-1] != query.shape[-1]
            or (attn_mask is not None and (attn_mask.dtype is not dt.bool_ or is_causal))):
        return None
    if masked is None:
        if is_causal:
            masked = const(np.triu(np.ones((L, S_), dtype=bool), 1), query)
        elif attn_mask is not None:
            masked = M.logical_not(attn_mask)
        else:
            masked = const(np.zeros((1, 1), dtype=bool), query)
    no_key = const(np.zeros(2, dtype=np.int64), query)        # no dropout: never read
    if low is not None:
        query, key, value = (M.cast(t, dt.float32) for t in (query, key, value))
    out = P("attention", query, key, value, masked, no_key, scale=float(scale), fill=float("-inf"), p=0.0, keep=1.0)
    return out if low is None else M.cast(out, low)


def _merge_masks(attn_mask, key_padding_mask, N, H, L, S_, dtype):
    """One additive float mask of shape broadcastable to [N, H, L, S]."""
    def as_float(m):
        if m is None:
            return None
        if m.dtype is dt.bool_:
            return M.where(m, float("-inf"), M.cast(P("full", shape=(), value=0.0, dtype=dtype, device=m.device),
                                                     dtype))
        return M.cast(m, dtype)
    mask = None
    if attn_mask is not None:
        am = as_float(attn_mask)
        if am.ndim == 2:
            if tuple(am.shape) != (L, S_):
                raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(am.shape)}, but should be {(L, S_)}.")
            mask = S.reshape(am, (1, 1, L, S_))
        elif am.ndim == 3:
            if tuple(am.shape) != (N * H, L, S_):
                raise RuntimeError(f"The shape of the 3D attn_mask is {tuple(am.shape)}, but should be "
                                   f"{(N * H, L, S_)}.")
            mask = S.reshape(am, (N, H, L, S_))
        else:
            raise RuntimeError(f"attn_mask's dimension {am.ndim} is not supported")
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (N, S_):
            raise AssertionError(f"expecting key_padding_mask shape of {(N, S_)}, but got "
                                 f"{tuple(key_padding_mask.shape)}")
        kpm = S.reshape(as_float(key_padding_mask), (N, 1, 1, S_))
        mask = kpm if mask is None else M.add(mask, kpm)
    return mask


def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """Inputs are sequence-first: query [L, N, E], key/value [S, N, E] (or unbatched [L, E])."""
    unbatched = query.ndim == 2
    if unbatched:
        query, key, value = (S.unsqueeze(t, 1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = S.unsqueeze(key_padding_mask, 0)
    L, N, E = query.shape
    S_ = key.shape[0]
    if E != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {E}")
    H = num_heads
    hd = E // H
    if hd * H != E:
        raise AssertionError(f"embed_dim {E} not divisible by num_heads {H}")
    if is_causal and (attn_mask is None or (key_padding_mask is None and not need_weights)):
        # is_causal is PyTorch's hint that attn_mask is the causal mask: without weights to return or a padding
        # mask to merge it stands in for the mask (a float one too), as PyTorch's scaled-dot-product path does
        attn_mask = const(~np.tril(np.ones((L, S_), dtype=bool)), query)
    if not use_separate_proj_weight:
        if query is key and key is value:
            qkv = linear(query, in_proj_weight, in_proj_bias)
            q, k, v = S.chunk(qkv, 3, -1)
        else:
            wq, wk, wv = S.chunk(in_proj_weight, 3, 0)
            bq = bk = bv = None
            if in_proj_bias is not None:
                bq, bk, bv = S.chunk(in_proj_bias, 3, 0)
            q, k, v = linear(query, wq, bq), linear(key, wk, bk), linear(value, wv, bv)
    else:
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = S.chunk(in_proj_bias, 3, 0)
        q, k, v = linear(query, q_proj_weight, bq), linear(key, k_proj_weight, bk), linear(value, v_proj_weight, bv)
    if bias_k is not None and bias_v is not None:
        k = S.cat([k, S.expand(S.reshape(bias_k, (1, 1, E)), (1, N, E))], 0)
        v = S.cat([v, S.expand(S.reshape(bias_v, (1, 1, E)), (1, N, E))], 0)
        if attn_mask is not None:
            from .conv import pad
            attn_mask = pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            from .conv import pad
            key_padding_mask = pad(key_padding_mask, (0, 1))
        S_ += 1
    # [T, N, E] -> [N, H, T, hd]
    q = S.permute(S.reshape(q, (L, N, H, hd)), (1, 2, 0, 3))
    k = S.permute(S.reshape(k, (k.shape[0], N, H, hd)), (1, 2, 0, 3))
    v = S.permute(S.reshape(v, (v.shape[0], N, H, hd)), (1, 2, 0, 3))
    if add_zero_attn:
        k = S.cat([k, M.mul(k[:, :, :1], 0.0)], 2)
        v = S.cat([v, M.mul(v[:, :, :1], 0.0)], 2)
        if attn_mask is not None:
            from .conv import pad
            attn_mask = pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            from .conv import pad
            key_padding_mask = pad(key_padding_mask, (0, 1))
        S_ += 1
    if not need_weights and not (dropout_p > 0.0 and training):
        masked = _bool_masks(attn_mask, key_padding_mask, N, L, S_)
        if masked is not False:
            fused = _fused(q, k, v, None, 0.0, False, L, S_, 1.0 / math.sqrt(hd), masked=masked)
            if fused is not None:
                out = S.reshape(S.permute(fused, (2, 0, 1, 3)), (L, N, E))
                out = linear(out, out_proj_weight, out_proj_bias)
                return (S.squeeze(out, 1) if unbatched else out), None
    mask = _merge_masks(attn_mask, key_padding_mask, N, H, L, S_, q.dtype)
    scores = LA.matmul(M.mul(q, 1.0 / math.sqrt(hd)), S.transpose(k, -2, -1))    # [N, H, L, S]
    if mask is not None:
        scores = M.add(scores, mask)
    attn = M.softmax(scores, -1)
    if dropout_p > 0.0 and training:
        attn = dropout(attn, dropout_p, training=True)
    out = LA.matmul(attn, v)                                                       # [N, H, L, hd]
    out = S.reshape(S.permute(out, (2, 0, 1, 3)), (L, N, E))
    out = linear(out, out_proj_weight, out_proj_bias)
    weights = None
    if need_weights:
        weights = M.mean(attn, 1) if average_attn_weights else attn
        if unbatched:
            weights = S.squeeze(weights, 0)
    if unbatched:
        out = S.squeeze(out, 1)
    return out, weights
