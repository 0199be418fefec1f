"""interpolate (nearest, nearest-exact, linear/bilinear/trilinear), pixel_shuffle, pixel_unshuffle.

Resampling indices and weights depend only on shapes, so they are computed in numpy once and enter
the graph as constants: nearest is one `take` per spatial dim, (bi/tri)linear two takes and a lerp
per dim (separable).
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend import shape_ops as S
from ...frontend.autocast import autocast_op
from ...frontend.dispatch import apply as P
from ._util import Tensor, const, static_sizes


def _src_nearest(o, n, scale, exact):
    i = np.arange(o, dtype=np.float64)
    s = (n / o) if scale is None else 1.0 / scale
    src = np.floor((i + 0.5) * s) if exact else np.floor(i * s)
    return np.minimum(src.astype(np.int64), n - 1)


def _src_linear(o, n, scale, align_corners):
    i = np.arange(o, dtype=np.float64)
    if align_corners:
        src = i * ((n - 1) / (o - 1)) if o > 1 else np.zeros(o)
    else:
        s = (n / o) if scale is None else 1.0 / scale
        src = np.maximum((i + 0.5) * s - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = src - i0
    return i0, i1, lam


@autocast_op("interpolate")
def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    nd = input.ndim - 2
    if nd < 1:
        raise ValueError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for the "
                         f"modes: nearest | linear | bilinear | bicubic | trilinear | area | nearest-exact "
                         f"(got {mode})")
    if mode in ("nearest", "area", "nearest-exact") and align_corners is not None:
        raise ValueError("align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined")
    spatial = static_sizes(input.shape[2:])
    if size is not None:
        out = tuple(size) if isinstance(size, (list, tuple)) else (size,) * nd
        scales = (None,) * nd
    else:
        sf = tuple(scale_factor) if isinstance(scale_factor, (list, tuple)) else (scale_factor,) * nd
        out = tuple(int(math.floor(n * s)) for n, s in zip(spatial, sf))
        scales = (None,) * nd if recompute_scale_factor else sf
    if len(out) != nd:
        raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                         f"spatial dimensions of {list(spatial)} and output size of {list(out)}.")
    if mode == "area":
        from .pooling import _adaptive_avg
        return _adaptive_avg(input, out, nd, "interpolate")
    x = input
    if mode in ("nearest", "nearest-exact"):
        for i, (n, o, s) in enumerate(zip(spatial, out, scales)):
            if n == o and s is None:
                continue
            idx = _src_nearest(o, n, s, mode == "nearest-exact")
            x = P("take", x, const(idx, input), dim=2 + i)
        return x if x is not input else input.clone()
    want = {"linear": 1, "bilinear": 2, "trilinear": 3}.get(mode)
    if want is None:
        raise NotImplementedError(f"interpolate: mode '{mode}' is not supported by ember")
    if want != nd:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {want + 2}D input")
    ac = bool(align_corners)
    for i, (n, o, s) in enumerate(zip(spatial, out, scales)):
        i0, i1, lam = _src_linear(o, n, s, ac)
        d = 2 + i
        a = P("take", x, const(i0, input), dim=d)
        b = P("take", x, const(i1, input), dim=d)
        shape = [1] * x.ndim
        shape[d] = o
        w = const(lam.astype(input.dtype.np).reshape(shape), input)
        x = P("add", a, P("mul", P("sub", b, a), w))
    return x


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    r = upscale_factor
    *lead, C, H, W = input.shape
    if C % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square "
                           f"of upscale_factor, but input.size(-3)={C} is not divisible by {r * r}")
    lead = tuple(lead)
    x = S.reshape(input, lead + (C // (r * r), r, r, H, W))
    n = len(lead)
    x = S.permute(x, tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
    return S.reshape(x, lead + (C // (r * r), H * r, W * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    r = downscale_factor
    *lead, C, H, W = input.shape
    lead = tuple(lead)
    x = S.reshape(input, lead + (C, H // r, r, W // r, r))
    n = len(lead)
    x = S.permute(x, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
    return S.reshape(x, lead + (C * r * r, H // r, W // r))

