"""ember.finfo / ember.iinfo: the numeric limits of a dtype (torch.finfo, torch.iinfo).

In: an ember dtype (finfo() without one uses the default float type). Out: an object with PyTorch's
fields (bits, eps, max, min, tiny, smallest_normal, resolution, dtype) and repr. The values come from
numpy's finfo, or ml_dtypes' for bfloat16, which numpy does not know.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ..ir import dtypes as dt

__all__ = ["finfo", "iinfo"]


class finfo:
    """Limits of a floating-point dtype: finfo(ember.bfloat16).eps == 0.0078125."""

    def __init__(self, type: dt.DType | None = None):
        d = dt.default_float if type is None else type
        if not isinstance(d, dt.DType) or not d.is_floating_point:
            raise TypeError(f"ember.finfo() requires a floating point input type. Use ember.iinfo to handle "
                            f"'{d!r}'")
        info = ml_dtypes.finfo(d.np) if d is dt.bfloat16 else np.finfo(d.np)
        self.bits = int(info.bits)
        self.eps = float(info.eps)
        self.max = float(info.max)
        self.min = float(info.min)
        self.tiny = self.smallest_normal = float(info.smallest_normal)
        self.resolution = 10.0 ** -int(info.precision)   # PyTorch: 10^-precision (0.01 for bfloat16)
        self.dtype = d.name

    def __repr__(self) -> str:
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, eps={self.eps:g}, "
                f"smallest_normal={self.smallest_normal:g}, tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype: iinfo(ember.int8).max == 127."""

    def __init__(self, type: dt.DType):
        if not isinstance(type, dt.DType) or type.category != 1:
            raise TypeError(f"ember.iinfo() requires an integer input type. Use ember.finfo to handle '{type!r}'")
        info = np.iinfo(type.np)
        self.bits = int(info.bits)
        self.max = int(info.max)
        self.min = int(info.min)
        self.dtype = type.name

    def __repr__(self) -> str:
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"
