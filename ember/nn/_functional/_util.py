"""Helpers shared by the functional files: tuple arguments, reductions, small constants."""
from __future__ import annotations

import collections.abc
import warnings

from ...frontend import dispatch
from ...frontend import math_ops as M
from ...frontend.dispatch import apply as P
from ...frontend.tensor import Tensor, _wrap
from ...ir import dtypes as dt


def _ntuple(n, name="value"):
    def parse(x):
        if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
            t = tuple(int(v) for v in x)
            if len(t) == 1 and n > 1:
                t = t * n
            if len(t) != n:
                raise ValueError(f"expected {n} values for {name}, got {list(t)}")
            return t
        return (int(x),) * n
    return parse


_single, _pair, _triple = _ntuple(1), _ntuple(2), _ntuple(3)


def static_sizes(sizes) -> tuple:
    """Spatial sizes of a windowed op (conv, pool, interpolate) as plain ints: a symbolic one is
    pinned (a guard), since windows over a size that varies make every index symbolic -- slow to
    compile and to run; the batch stays symbolic."""
    return tuple(int(n) for n in sizes)


def ntuple(x, n):
    return _ntuple(n)(x)


def legacy_reduction(size_average, reduce, reduction):
    """Map the deprecated size_average/reduce flags onto reduction, as PyTorch does."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='"
                  + ("mean" if size_average and reduce else "sum" if reduce else "none") + "' instead.")
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return M.mean(loss)
    if reduction == "sum":
        return M.sum(loss)
    raise ValueError(f"{reduction} is not a valid value for reduction")


def check_reduction(reduction):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def const(array, like: Tensor) -> Tensor:
    """A constant tensor from a numpy array, on like's device."""
    dev = like.device
    return _wrap(array if dev.type == "cpu" else dev.xp.asarray(array), dev)


def full(shape, value, dtype, device):
    return P("full", shape=tuple(shape), value=value, dtype=dtype, device=device)


def is_tracing() -> bool:
    return dispatch.tracer is not None


def eager_values(t: Tensor):
    """The numpy values of t in eager mode (None while tracing: value checks are skipped there)."""
    if dispatch.tracer is not None or not hasattr(t, "_data"):
        return None
    d = t._data
    return d if t.device.type == "cpu" else d.get()


def floating(x: Tensor, op: str) -> None:
    if not x.dtype.is_floating_point:
        raise RuntimeError(f"{op}: expected a floating point input, but got {x.dtype.name}")


__all__ = ["P", "M", "Tensor", "dt", "_single", "_pair", "_triple", "ntuple", "legacy_reduction",
           "reduce_loss", "const", "full", "is_tracing", "eager_values"]
