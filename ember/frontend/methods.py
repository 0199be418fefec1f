"""Tensor methods and Python operators, bound to the op functions (one place for the mapping)."""
from __future__ import annotations

import math

from ..ir import dtypes as dt
from . import composites as C
from . import indexing_ops as I
from . import lapack as LA
from . import linalg_composites as LC
from . import linalg as L
from . import math_ops as M
from . import math_extra as X
from . import math_special as MS
from . import shape_ops as S
from .tensor import Tensor, _wrap
from .torch_names import accept_torch_names


def _r(fn):
    """Reflected operator: 2 - t -> sub(2, t)."""
    return lambda self, other: fn(other, self)


def _inplace(fn):
    def method(self, *args, **kwargs):
        return self._set_(fn(self, *args, **kwargs), (self, *args, *kwargs.values()))
    method.__name__ = fn.__name__ + "_"
    return method


def _rdiv(self, other):
    """other / self as PyTorch's Tensor.__rdiv__ computes it: self.reciprocal() * other (the rounding
    differs from a division in the last bit)."""
    return M.mul(M.reciprocal(self), other)


_OPERATORS = {
    "__add__": M.add, "__radd__": _r(M.add), "__sub__": M.sub, "__rsub__": _r(M.sub),
    "__mul__": M.mul, "__rmul__": _r(M.mul), "__truediv__": M.div, "__rtruediv__": _rdiv,
    "__floordiv__": M.floor_divide, "__rfloordiv__": _r(M.floor_divide),
    "__mod__": M.remainder, "__rmod__": _r(M.remainder), "__pow__": M.pow, "__rpow__": _r(M.pow),
    "__matmul__": L.matmul, "__rmatmul__": _r(L.matmul),
    "__eq__": M.eq, "__ne__": M.ne, "__lt__": M.lt, "__le__": M.le, "__gt__": M.gt, "__ge__": M.ge,
    "__and__": M.bitwise_and, "__or__": M.bitwise_or, "__xor__": M.bitwise_xor,
    "__rand__": _r(M.bitwise_and), "__ror__": _r(M.bitwise_or), "__rxor__": _r(M.bitwise_xor),
    "__lshift__": X.bitwise_left_shift, "__rshift__": X.bitwise_right_shift,
    "__rlshift__": _r(X.bitwise_left_shift), "__rrshift__": _r(X.bitwise_right_shift),
    "__neg__": M.neg, "__abs__": M.abs, "__invert__": M.bitwise_not, "__pos__": lambda x: x,
    "__getitem__": S.getitem, "__setitem__": lambda x, k, v: (S.setitem(x, k, v), None)[1],
}
_INPLACE_OPERATORS = {
    "__iadd__": M.add, "__isub__": M.sub, "__imul__": M.mul, "__itruediv__": M.div,
    "__ifloordiv__": M.floor_divide, "__imod__": M.remainder, "__ipow__": M.pow,
    "__iand__": M.bitwise_and, "__ior__": M.bitwise_or, "__ixor__": M.bitwise_xor,
    "__ilshift__": X.bitwise_left_shift, "__irshift__": X.bitwise_right_shift,
}

_METHODS = {
    # elementwise
    "add": M.add, "sub": M.sub, "subtract": M.sub, "mul": M.mul, "multiply": M.mul, "div": M.div,
    "divide": M.div, "true_divide": M.div, "floor_divide": M.floor_divide, "remainder": M.remainder,
    "pow": M.pow, "float_power": M.float_power, "maximum": M.maximum, "minimum": M.minimum,
    "eq": M.eq, "ne": M.ne, "lt": M.lt, "le": M.le, "gt": M.gt, "ge": M.ge,
    "greater": M.gt, "less": M.lt, "greater_equal": M.ge, "less_equal": M.le, "not_equal": M.ne,
    "logical_and": M.logical_and, "logical_or": M.logical_or, "logical_not": M.logical_not,
    "logical_xor": M.logical_xor, "bitwise_not": M.bitwise_not, "bitwise_and": M.bitwise_and,
    "bitwise_or": M.bitwise_or, "bitwise_xor": M.bitwise_xor,
    "exp": M.exp, "exp2": M.exp2, "log": M.log, "log2": M.log2, "log10": M.log10, "log1p": M.log1p,
    "expm1": M.expm1, "sqrt": M.sqrt, "rsqrt": M.rsqrt, "sin": M.sin, "cos": M.cos, "tan": M.tan,
    "tanh": M.tanh, "sigmoid": M.sigmoid, "erf": M.erf, "abs": M.abs, "absolute": M.abs, "neg": M.neg,
    "negative": M.neg, "sign": M.sign, "reciprocal": M.reciprocal, "floor": M.floor, "ceil": M.ceil,
    "round": M.round, "trunc": M.trunc, "fix": M.trunc, "frac": M.frac, "clamp": M.clamp, "clip": M.clamp,
    "clamp_min": M.clamp_min, "clamp_max": M.clamp_max, "where": lambda self, c, y: M.where(c, self, y),
    "isnan": M.isnan, "isinf": M.isinf, "isfinite": M.isfinite, "isposinf": M.isposinf,
    "isneginf": M.isneginf, "nan_to_num": M.nan_to_num, "lerp": M.lerp, "addcmul": M.addcmul,
    "addcdiv": M.addcdiv, "square": M.square, "relu": M.relu,
    "isclose": M.isclose, "allclose": M.allclose, "equal": M.equal,
    "softmax": M.softmax, "log_softmax": M.log_softmax,
    # elementwise composites (math_special.py)
    "atan": MS.atan, "arctan": MS.atan, "atan2": MS.atan2, "arctan2": MS.atan2, "asin": MS.asin,
    "arcsin": MS.asin, "acos": MS.acos, "arccos": MS.acos, "sinh": MS.sinh, "cosh": MS.cosh, "asinh": MS.asinh,
    "arcsinh": MS.asinh, "acosh": MS.acosh, "arccosh": MS.acosh, "atanh": MS.atanh, "arctanh": MS.atanh,
    "erfinv": MS.erfinv, "hypot": MS.hypot, "logaddexp": MS.logaddexp, "logaddexp2": MS.logaddexp2,
    "xlogy": MS.xlogy, "copysign": MS.copysign, "deg2rad": MS.deg2rad, "rad2deg": MS.rad2deg, "sinc": MS.sinc,
    "logit": MS.logit, "signbit": MS.signbit,
    # composites.py
    "trace": C.trace, "diff": C.diff, "kron": C.kron, "nansum": C.nansum, "nanmean": C.nanmean, "rot90": C.rot90,
    "cov": C.cov, "corrcoef": C.corrcoef, "aminmax": C.aminmax, "cummax": C.cummax, "cummin": C.cummin,
    "logcumsumexp": C.logcumsumexp, "quantile": C.quantile, "nanquantile": C.nanquantile, "diagflat": C.diagflat,
    "fill_diagonal_": C.fill_diagonal_, "diag_embed": S.diag_embed,
    # math_extra.py
    "sgn": X.sgn, "positive": X.positive, "erfc": X.erfc, "lgamma": X.lgamma, "digamma": X.digamma, "i0": X.i0,
    "gcd": X.gcd, "lcm": X.lcm, "heaviside": X.heaviside, "bitwise_left_shift": X.bitwise_left_shift,
    "bitwise_right_shift": X.bitwise_right_shift, "msort": X.msort, "mode": X.mode, "nanmedian": X.nanmedian,
    "masked_scatter": X.masked_scatter,
    # reductions
    "sum": M.sum, "mean": M.mean, "var": M.var, "std": M.std, "prod": M.prod, "max": M.max, "min": M.min,
    "amax": M.amax, "amin": M.amin, "argmax": M.argmax, "argmin": M.argmin, "logsumexp": M.logsumexp,
    "cumsum": M.cumsum, "cumprod": M.cumprod, "norm": M.norm, "all": M.all, "any": M.any,
    "count_nonzero": M.count_nonzero, "dist": M.dist,
    # shape
    "view": S.view, "view_as": S.view_as, "reshape": S.reshape, "reshape_as": S.reshape_as,
    "permute": S.permute, "transpose": S.transpose, "swapaxes": S.transpose, "swapdims": S.transpose,
    "t": S.t, "adjoint": S.adjoint, "movedim": S.movedim, "moveaxis": S.movedim, "squeeze": S.squeeze,
    "unsqueeze": S.unsqueeze, "flatten": S.flatten, "ravel": S.ravel, "unflatten": S.unflatten,
    "expand": S.expand, "expand_as": S.expand_as, "broadcast_to": S.broadcast_to, "repeat": S.repeat,
    "tile": S.tile, "repeat_interleave": S.repeat_interleave, "split": S.split, "tensor_split": S.tensor_split,
    "chunk": S.chunk, "narrow": S.narrow, "select": S.select, "unbind": S.unbind, "flip": S.flip,
    "fliplr": S.fliplr, "flipud": S.flipud, "roll": S.roll, "tril": S.tril, "triu": S.triu,
    "diagonal": S.diagonal, "diag": S.diag, "masked_fill": S.masked_fill, "gather": S.gather,
    "scatter": S.scatter, "scatter_add": S.scatter_add, "index_select": S.index_select,
    "index_add": S.index_add, "index_fill": S.index_fill, "take": S.take, "take_along_dim": S.take_along_dim,
    "nonzero": S.nonzero, "argwhere": S.argwhere, "masked_select": S.masked_select,
    # indexing_ops.py
    "index_put": I.index_put, "index_copy": I.index_copy, "scatter_reduce": I.scatter_reduce, "unfold": I.unfold,
    "unique": I.unique, "unique_consecutive": I.unique_consecutive, "bincount": I.bincount, "histc": I.histc,
    # linear algebra
    "matmul": L.matmul, "mm": L.mm, "bmm": L.bmm, "mv": L.mv, "dot": L.dot, "inner": L.inner,
    "outer": L.outer, "addmm": L.addmm, "baddbmm": L.baddbmm, "addbmm": L.addbmm, "addmv": L.addmv, "addr": L.addr, "sort": L.sort, "argsort": L.argsort,
    "topk": L.topk, "kthvalue": L.kthvalue, "median": L.median,
    "inverse": LA.inv, "det": LA.det, "logdet": LA.logdet, "slogdet": LA.slogdet, "pinverse": LC.pinverse,
    "svd": LC.svd_old, "qr": LC.qr_old, "cholesky": LC.cholesky_old, "matrix_power": LC.matrix_power,
    "cross": LC.cross_old,
}

_INPLACE_METHODS = ("add", "sub", "mul", "div", "pow", "clamp", "clip", "clamp_min", "clamp_max", "exp",
                    "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "abs", "neg", "floor", "ceil",
                    "round", "trunc", "reciprocal", "masked_fill", "scatter", "scatter_add", "index_add",
                    "index_fill", "lerp", "addcmul", "addcdiv", "remainder", "floor_divide", "sign", "erf",
                    "log1p", "expm1", "square", "relu", "fmod", "maximum", "minimum", "logical_not",
                    "log2", "nan_to_num", "true_divide", "subtract", "multiply", "divide", "frac",
                    "tril", "triu", "squeeze", "unsqueeze", "transpose", "t", "fix", "exp2", "log10",
                    "atan", "arctan", "atan2", "arctan2", "asin", "arcsin", "acos", "arccos", "sinh", "cosh",
                    "asinh", "arcsinh", "acosh", "arccosh", "atanh", "arctanh", "erfinv", "hypot", "xlogy",
                    "copysign", "deg2rad", "rad2deg", "sinc", "logit", "index_put", "index_copy", "scatter_reduce",
                    "sgn", "erfc", "lgamma", "digamma", "i0", "gcd", "lcm", "heaviside", "bitwise_left_shift",
                    "bitwise_right_shift", "masked_scatter")


def _cmp(fn):
    def op(self, other):
        if not isinstance(other, (Tensor, int, float, bool)) and not hasattr(other, "dtype"):
            return NotImplemented
        return fn(self, other)
    return op


def bind():
    for name, fn in _OPERATORS.items():
        setattr(Tensor, name, fn)
    for name, fn in _INPLACE_OPERATORS.items():
        setattr(Tensor, name, _inplace(fn))
    methods = {name: accept_torch_names(fn, name, method=True) for name, fn in _METHODS.items()}
    for name, fn in methods.items():
        setattr(Tensor, name, fn)
    for name in _INPLACE_METHODS:
        fn = methods.get(name)
        if fn is None:
            continue
        if name in ("squeeze", "unsqueeze", "transpose", "t"):
            setattr(Tensor, name + "_", _shape_inplace(fn))
        else:
            setattr(Tensor, name + "_", _inplace(fn))
    Tensor.__hash__ = lambda self: id(self)
    Tensor.__eq__ = _cmp(M.eq)
    Tensor.__ne__ = _cmp(M.ne)
    Tensor.masked_fill_ = _inplace(S.masked_fill)
    Tensor.H = property(_conj_transpose)
    Tensor.mH = property(lambda self: S.transpose(self, -2, -1))   # real tensors: mT
    Tensor.clamp_ = _inplace(M.clamp)
    _bind_legacy()


def _conj_transpose(self):
    """Tensor.H: the (conjugate) transpose of a matrix; real tensors only here, so a transpose."""
    if self.ndim > 2:
        raise RuntimeError(f"tensor.H is only supported on matrices (2-D tensors). Got {self.ndim}-D tensor.")
    return S.t(self) if self.ndim == 2 else self


def _shape_inplace(fn):
    """t_, squeeze_, unsqueeze_, transpose_: self becomes the view (same storage, new shape)."""
    def method(self, *a, **k):
        self._check_inplace()
        src = self
        if self.requires_grad and self.grad_fn is not None:
            # the view's node must see the tensor as it was (its VJP reads the old shape)
            src = _wrap(self._data, self.device)
            src.grad_fn, src.requires_grad, src._vc = self.grad_fn, True, self._vc
        r = fn(src, *a, **k)
        self._data = r._data
        if r.requires_grad:
            self.grad_fn = r.grad_fn
        return self
    return method


@M.in_float32
def _fmod(a, b):
    a, b, d = M.promote(a, b)
    r = M.remainder(a, b)
    # C fmod keeps the dividend's sign
    fix = M.logical_and(M.ne(r, 0), M.ne(M.lt(r, 0), M.lt(a, 0) if isinstance(a, Tensor) else a < 0))
    r = M.where(fix, M.sub(r, b), r)
    if d.is_floating_point and isinstance(b, Tensor):    # C fmod(x, +-inf) = x for finite x
        r = M.where(M.logical_and(M.isinf(b), M.isfinite(a) if isinstance(a, Tensor) else math.isfinite(a)), a, r)
    return r


def _fmax(a, b):
    """PyTorch's fmax/fmin: like maximum/minimum, but a NaN loses to a number."""
    return _nan_loses(a, b, M.maximum)


def _fmin(a, b):
    return _nan_loses(a, b, M.minimum)


def _nan_loses(a, b, op):
    a, b, d = M.promote(a, b)
    if not d.is_floating_point:
        return op(a, b)
    # a where a wins, ties and b is NaN (its gradient too, as PyTorch), else b
    wins = M.ge(a, b) if op is M.maximum else M.le(a, b)
    if isinstance(b, Tensor):
        wins = M.logical_or(wins, M.isnan(b))
    return M.where(wins, a, b)


_METHODS["fmod"] = _fmod
_METHODS["fmax"] = _fmax
_METHODS["fmin"] = _fmin


def _multinomial(self, num_samples, replacement=False, *, generator=None):
    from .creation import multinomial
    return multinomial(self, num_samples, replacement, generator=generator)


_METHODS["multinomial"] = _multinomial


# ------------------------------------------------------------------- legacy and device queries
def _new(self, *args, **kwargs):
    """x.new(*sizes) / x.new(data): a tensor with x's dtype and device (the pre-1.0 spelling of new_empty /
    new_tensor, still common in older code)."""
    from .legacy import legacy_new
    if kwargs:
        raise TypeError(f"new() got unexpected keyword arguments {list(kwargs)}")
    return legacy_new(self.dtype, self.device, args)


def _get_device(self) -> int:
    """The CUDA device index, or -1 on the CPU (torch.Tensor.get_device)."""
    return -1 if self.device.type == "cpu" else (self.device.index or 0)


def _bind_legacy():
    # devices and layouts ember does not have: the queries answer False, as on a CPU/CUDA PyTorch build
    for name in ("is_xpu", "is_mps", "is_meta", "is_quantized", "is_sparse", "is_mkldnn", "is_nested"):
        setattr(Tensor, name, property(lambda self: False))
    Tensor.new = _new
    Tensor.get_device = _get_device
    # x.type(ember.FloatTensor) / x.type(ember.cuda.LongTensor): the legacy classes name a dtype and a
    # device; every other argument goes to Tensor.type as before
    plain_type = Tensor.type
    if getattr(plain_type, "_accepts_legacy", False):
        return

    def type(self, dtype=None, non_blocking=False, **kwargs):
        from .legacy import legacy_type_target
        target = legacy_type_target(dtype)
        if target is not None:
            return self.to(device=target[0], dtype=target[1])
        return plain_type(self, dtype)
    type.__doc__ = plain_type.__doc__
    type._accepts_legacy = True
    Tensor.type = type
_ = dt
