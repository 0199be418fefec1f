"""ember.special: the torch.special functions ember has (composites of ember ops; see
ember/frontend/math_special.py for the elementwise ones)."""
from __future__ import annotations

import math

from .frontend import math_ops as _M
from .frontend.math_ops import exp2, expm1, log1p, log_softmax, logsumexp, round, softmax  # noqa: F401
from .frontend.math_ops import erf, sigmoid as expit  # noqa: F401
from .frontend.math_special import erfinv, logit, sinc, xlogy  # noqa: F401
from .frontend.math_extra import digamma, erfc, i0, lgamma as gammaln, log_ndtr, ndtr  # noqa: F401

__all__ = ["erf", "erfinv", "expit", "logit", "xlogy", "xlog1py", "exp2", "expm1", "log1p", "logsumexp",
           "softmax", "log_softmax", "sinc", "round", "entr", "ndtri",
           "erfc", "gammaln", "digamma", "psi", "i0", "ndtr", "log_ndtr"]

psi = digamma


def xlog1py(input, other):
    """torch.special.xlog1py: x * log1p(y), 0 where x == 0 (unless y is NaN)."""
    from .frontend.math_special import _float_pair, _safe, _const
    x, y, out = _float_pair(input, other)
    from .frontend.tensor import Tensor
    if not isinstance(x, Tensor):
        x = _const(y, x)
    if not isinstance(y, Tensor):
        y = _const(x, y)
    x0 = _M.eq(x, 0)
    r = _M.where(x0, 0.0, _M.mul(x, _M.log1p(_safe(x0, 0.0, y))))
    return _M.cast(_M.where(_M.isnan(y), y, r), out)


def entr(input):
    """torch.special.entr: -x log(x) for x > 0, 0 at 0, -inf for x < 0."""
    from .frontend.math_special import _as_float, _safe, _const
    x, out = _as_float(input)
    pos = _M.gt(x, 0)
    r = _M.where(pos, _M.neg(_M.mul(x, _M.log(_safe(pos, x, 1.0)))), 0.0)
    r = _M.where(_M.lt(x, 0), _const(x, -math.inf), r)
    return _M.cast(_M.where(_M.isnan(x), x, r), out)


def ndtri(input):
    """torch.special.ndtri: the standard normal quantile, sqrt(2) erfinv(2p - 1)."""
    return _M.mul(erfinv(_M.sub(_M.mul(input, 2.0), 1.0)), math.sqrt(2.0))
