"""What the tracer records for a 16-bit tensor meeting a Python number: what eager computes.

Eager runs an op with a float16 / bfloat16 input on float32 copies and rounds the result once
(frontend/dispatch.py `_reduced_kernel`), so `x * 0.37` multiplies by float32(0.37).  A trace that turned the
number into a `full` of the tensor's dtype would round it first (0.369140625 in bf16: 45% of x * 0.37 on
bf16 differed from eager).  Such an op is recorded as cast(op(cast(x, float32), number), low) instead; the
casts fuse into the kernel, which computes in float32 anyway.  Numbers the dtype holds exactly (2.0, 0.5,
small integers) keep the plain form: both give the same bits -- so do the numbers the composites round to the
tensor's dtype first, as PyTorch does (frontend/math_ops.py `_round_scalar`: x + 0.1); any other number that
reaches a primitive, from a composite or a VJP (pow(x, -0.99) in pow's gradient), is float32 in eager.
"""
from __future__ import annotations

import numpy as np

from ..frontend.tensor import Tensor
from ..ir import dtypes as dt

__all__ = ["needs_float32", "record_in_float32"]


def needs_float32(inputs, low: dt.DType) -> bool:
    """Is one of the op's inputs a Python number the 16-bit dtype low would round?"""
    for v in inputs:
        if v.__class__ is float or v.__class__ is int:
            f = np.float32(v)
            if f.astype(low.np) != f:
                return True
    return False


def record_in_float32(record, op: str, inputs, attrs: dict, low: dt.DType):
    """cast(op(cast(x, float32), number), low) through the tracer's `record` (a comparison stays bool)."""
    wide = [record("cast", (t,), {"dtype": dt.float32}) if isinstance(t, Tensor) and t.dtype is low else t
            for t in inputs]
    r = record(op, wide, dict(attrs))
    return record("cast", (r,), {"dtype": low}) if r.dtype is dt.float32 else r
