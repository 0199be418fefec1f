"""max_unpool1d/2d/3d: the inverse of max pooling -- each value scattered to its index in a zero plane
(the gradient gathers it back)."""
from __future__ import annotations

import math

from ...frontend import shape_ops as S
from ...ir import dtypes as dt
from ._util import eager_values, full, ntuple
from .pooling import _torch_name


def _unpool_size(input, k, s, p, output_size, nd):
    """The unpooled spatial size: max_pool's inverse size, or output_size when it is within a stride of it."""
    default = tuple((n - 1) * si + ki - 2 * pi for n, ki, si, pi in zip(input.shape[-nd:], k, s, p))
    if output_size is None:
        return default
    size = tuple(int(o) for o in output_size)
    if len(size) == nd + 2:
        size = size[2:]
    if len(size) != nd:
        raise ValueError(f"output_size should be a sequence containing {nd} or {nd + 2} elements, but it has a "
                         f"length of '{len(size)}'")
    for i, (o, dflt, si) in enumerate(zip(size, default, s)):
        if not dflt - si < o < dflt + si:
            raise ValueError(f"invalid output_size \"{output_size}\" (dim {i} must be between {dflt - si} and "
                             f"{dflt + si})")
    return size


def _max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, nd):
    """The inverse of max_pool: each value scattered to its index in a zero [*lead, *size] plane (the
    gradient gathers it back)."""
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"max_unpool{nd}d: Expected {nd + 1}D or {nd + 2}D input, but got "
                           f"{list(input.shape)}")
    if indices.dtype is not dt.int64:
        raise RuntimeError(f"elements in indices should be type int64 but got: {_torch_name(indices.dtype)}")
    if tuple(indices.shape) != tuple(input.shape):
        raise RuntimeError(f"Expected shape of indices to be same as that of the input tensor "
                           f"({list(input.shape)}) but got indices tensor with shape: {list(indices.shape)}")
    k = ntuple(kernel_size, nd)
    s = k if stride is None else ntuple(stride, nd)
    size = _unpool_size(input, k, s, ntuple(padding, nd), output_size, nd)
    plane = math.prod(size)
    v = eager_values(indices)
    if v is not None and v.size and (v.min() < 0 or v.max() >= plane):
        bad = v[(v < 0) | (v >= plane)].flat[0]
        raise RuntimeError(f"Found an invalid max index: {int(bad)} (output volumes are of size "
                           f"{'x'.join(map(str, size))})")
    lead = tuple(input.shape[:-nd])
    flat_shape = lead + (math.prod(input.shape[-nd:]),)
    zeros = full(lead + (plane,), 0, input.dtype, input.device)
    out = S.scatter(zeros, len(lead), S.reshape(indices, flat_shape), S.reshape(input, flat_shape))
    return S.reshape(out, lead + size)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, 1)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, 2)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpoolnd(input, indices, kernel_size, stride, padding, output_size, 3)
