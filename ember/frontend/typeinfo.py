"""ember.finfo / ember.iinfo (the numeric limits of a dtype) and the memory_format constants.

    ember.finfo(ember.float16).max     # 65504.0
    ember.finfo().eps                  # of the default float dtype
    ember.iinfo(ember.int32).min
    model.to(memory_format=ember.channels_last)

The limits come from numpy (or ml_dtypes for the types numpy lacks). ember keeps every tensor
contiguous, so memory formats are accepted names that change no layout.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as dt

__all__ = ["finfo", "iinfo", "memory_format", "contiguous_format", "channels_last", "channels_last_3d",
           "preserve_format"]


def _np_finfo(d: dt.DType):
    try:
        return np.finfo(d.np)
    except ValueError:          # extension types (bfloat16, float8): ml_dtypes knows their limits
        import ml_dtypes
        return ml_dtypes.finfo(d.np)


class finfo:
    """Machine limits of a floating-point dtype: bits, eps, max, min, tiny (= smallest_normal), resolution."""

    def __init__(self, type: dt.DType | None = None):
        d = dt.default_float if type is None else type
        if not isinstance(d, dt.DType) or not d.is_floating_point:
            raise TypeError(f"ember.finfo() requires a floating point input type, got {d}. Use ember.iinfo to "
                            "handle integer types")
        f = _np_finfo(d)
        self.dtype = d.name
        self.bits = int(f.bits)
        self.eps = float(f.eps)
        self.max = float(f.max)
        self.min = float(f.min)
        self.tiny = self.smallest_normal = float(f.smallest_normal)
        self.resolution = 10.0 ** -int(f.precision)       # PyTorch: 10^-(decimal digits), not numpy's rounded value

    def __eq__(self, other):
        return isinstance(other, finfo) and other.dtype == self.dtype

    def __hash__(self):
        return hash(("finfo", self.dtype))

    def __repr__(self):
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, eps={self.eps:g}, "
                f"smallest_normal={self.smallest_normal:g}, tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:
    """Machine limits of an integer dtype: bits, min, max."""

    def __init__(self, type: dt.DType):
        if not isinstance(type, dt.DType) or type.is_floating_point:
            raise TypeError(f"ember.iinfo() requires an integer input type, got {type}. Use ember.finfo to handle "
                            "floating point types")
        if type is dt.bool_:
            raise TypeError("ember.bool is not supported by ember.iinfo")
        i = np.iinfo(type.np)
        self.dtype = type.name
        self.bits = int(i.bits)
        self.min = int(i.min)
        self.max = int(i.max)

    def __eq__(self, other):
        return isinstance(other, iinfo) and other.dtype == self.dtype

    def __hash__(self):
        return hash(("iinfo", self.dtype))

    def __repr__(self):
        return f"iinfo(min={float(self.min):g}, max={float(self.max):g}, dtype={self.dtype})"


class memory_format:
    """A memory layout name (ember.channels_last ...); accepted wherever PyTorch takes memory_format."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"ember.{self.name}"


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
preserve_format = memory_format("preserve_format")
