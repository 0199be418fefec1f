"""Dropout family: a mask from the counter-based RNG (ember.rand), kept where u >= p, scaled by 1/(1-p).

Eagerly (numpy arrays) the scaled mask is made in numpy and the product is one autograd node (MulBackward0,
g * mask): the same random numbers and values as the composite the tracer records, without its four ops,
and the product keeps the input's memory order (a convolution's batch-last result stays batch-last for
the pooling after it)."""
from __future__ import annotations

import numpy as np

from ...frontend import autograd as ag
from ...frontend import math_ops as M
from ...frontend.creation import rand
from ...frontend.dispatch import apply as P, attach_node
from ...frontend.tensor import _wrap
from ...kernels import generated
from ._util import Tensor, const, is_tracing
from .activation import _maybe_inplace


def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _masked(input: Tensor, p: float, mask_shape) -> Tensor:
    if p == 1.0:
        return P("mul", input, 0.0)
    u = rand(*mask_shape, dtype=input.dtype, device=input.device)
    if input._xp is np and input.dtype.np in (np.float32, np.float64) and not is_tracing():
        return _masked_eager(input, u, p)
    keep = P("mul", M.cast(P("ge", u, float(p)), input.dtype), 1.0 / (1.0 - p))
    return P("mul", input, keep)


def _masked_eager(input: Tensor, u: Tensor, p: float) -> Tensor:
    keep = (u._data >= p).astype(input.dtype.np) * (1.0 / (1.0 - p))     # the composite's values, op for op
    out = _wrap(_times(input._data, keep), input.device)
    if ag.is_grad_enabled() and input.requires_grad:
        def vjp(g, o, x):
            if g._xp is np and not ag.is_grad_enabled():
                return (_wrap(_times(g._data, keep), g.device),)
            return (P("mul", g, const(keep, g)),)
        attach_node(out, "mul", vjp, {}, (input,), "")
    return out


def _times(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """a * keep (keep broadcast) laid out like a, computed in a's memory order with the (small) mask copied
    into that order too: numpy left to choose walks a batch-last a against a [N, C, 1, 1] mask in a strided
    order (~10x slower), and a mask read with a stride in the inner loop costs ~2x."""
    perm, am = generated.memory_order(a)
    km = np.ascontiguousarray(keep.reshape((1,) * (a.ndim - keep.ndim) + keep.shape).transpose(perm))
    return np.multiply(am, km).transpose(generated.inverse(perm))


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    _check_p(p)
    if not training or p == 0.0:
        return input
    return _maybe_inplace(input, _masked(input, p, tuple(input.shape)), inplace)


def _feature_dropout(input, p, training, inplace, batched_ndim, op):
    _check_p(p)
    if not training or p == 0.0:
        return input
    if input.ndim not in (batched_ndim - 1, batched_ndim):
        import warnings
        warnings.warn(f"{op}: Received a {input.ndim}-D input; expected {batched_ndim - 1}-D or {batched_ndim}-D.")
    unbatched = input.ndim == batched_ndim - 1
    lead = 1 if unbatched else 2
    shape = tuple(input.shape[:lead]) + (1,) * (input.ndim - lead)
    return _maybe_inplace(input, _masked(input, p, shape), inplace)


def dropout1d(input, p=0.5, training=True, inplace=False):
    return _feature_dropout(input, p, training, inplace, 3, "dropout1d")


def dropout2d(input, p=0.5, training=True, inplace=False):
    return _feature_dropout(input, p, training, inplace, 4, "dropout2d")


def dropout3d(input, p=0.5, training=True, inplace=False):
    return _feature_dropout(input, p, training, inplace, 5, "dropout3d")


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    _check_p(p)
    if not training or p == 0.0:
        return input
    alpha_p = -1.7580993408473766
    a = (1.0 / ((1 - p) * (1 + p * alpha_p ** 2))) ** 0.5
    b = -a * alpha_p * p
    u = rand(*input.shape, dtype=input.dtype, device=input.device)
    keep = M.ge(u, p)
    r = M.add(M.mul(M.where(keep, input, alpha_p), a), b)
    return _maybe_inplace(input, r, inplace)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    return alpha_dropout(input, p, training, inplace)
