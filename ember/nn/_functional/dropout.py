"""Dropout family: a mask from the counter-based RNG (ember.rand), kept where u >= p, scaled by 1/(1-p)."""
from __future__ import annotations

from ...frontend import math_ops as M
from ...frontend.creation import rand
from ...frontend.dispatch import apply as P
from ._util import Tensor
from .activation import _maybe_inplace


def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _masked(input: Tensor, p: float, mask_shape) -> Tensor:
    if p == 1.0:
        return P("mul", input, 0.0)
    u = rand(*mask_shape, dtype=input.dtype, device=input.device)
    keep = P("mul", M.cast(P("ge", u, float(p)), input.dtype), 1.0 / (1.0 - p))
    return P("mul", input, keep)


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
