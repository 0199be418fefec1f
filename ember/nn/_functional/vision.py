"""interpolate (nearest, nearest-exact, linear/bilinear/trilinear, bicubic, antialiased), pixel_shuffle,
pixel_unshuffle.

Resampling indices and weights depend only on shapes, so they are computed in numpy once and enter
the graph as constants: nearest is one `take` per spatial dim, (bi/tri)linear two takes and a lerp
per dim (separable), bicubic and the antialiased modes one product with a weight matrix per dim.
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
    want = {"linear": 1, "bilinear": 2, "trilinear": 3, "bicubic": 2}.get(mode)
    if want is None:
        raise NotImplementedError(f"interpolate: mode '{mode}' is not supported by ember")
    if want != nd:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {want + 2}D input")
    if antialias and mode not in ("bilinear", "bicubic"):
        raise NotImplementedError("Anti-alias option is restricted to bilinear and bicubic modes and requires a "
                                  "4-D tensor as input")
    ac = bool(align_corners)
    if mode == "bicubic" or antialias:
        return _resample(input, spatial, out, scales, mode, ac, antialias)
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


def _resample(x, spatial, out, scales, mode, align_corners, antialias):
    """Separable resampling by constant weight matrices, one product per spatial dim (H: W_h @ x, W:
    x @ W_w^T): bicubic (PyTorch's cubic convolution, A = -0.75, taps clamped at the border) and the
    antialiased modes (a filter widened by the downsampling factor, as PIL and PyTorch's _aa kernels)."""
    from ...frontend import linalg as LA
    for i, (n, o, s) in enumerate(zip(spatial, out, scales)):
        w = _aa_weights(o, n, s, mode, align_corners) if antialias else _cubic_weights(o, n, s, align_corners)
        w = const(w.astype(x.dtype.np), x)
        if i == len(spatial) - 1:
            x = LA.matmul(x, S.transpose(w, 0, 1))
        else:       # H of [N, C, H, W]: W_h @ x along dim 2
            x = S.transpose(LA.matmul(S.transpose(x, -1, 2 + i), S.transpose(w, 0, 1)), -1, 2 + i)
    return x


def _source_scale(o, n, scale, align_corners):
    if align_corners:
        return (n - 1) / (o - 1) if o > 1 else 0.0
    return (n / o) if scale is None else 1.0 / scale


def _cubic_weights(o, n, scale, align_corners, A=-0.75):
    """[o, n]: bicubic interpolation weights of each output position (PyTorch's upsample_bicubic2d)."""
    s = _source_scale(o, n, scale, align_corners)
    i = np.arange(o, dtype=np.float64)
    src = i * s if align_corners else (i + 0.5) * s - 0.5          # (not clamped, unlike linear)
    i0 = np.floor(src)
    t = src - i0
    taps = [((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A,
            ((A + 2) * t - (A + 3)) * t * t + 1,
            ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1,
            ((A * (2 - t) - 5 * A) * (2 - t) + 8 * A) * (2 - t) - 4 * A]
    w = np.zeros((o, n))
    for k, tap in enumerate(taps):
        np.add.at(w, (np.arange(o), np.clip(i0.astype(np.int64) - 1 + k, 0, n - 1)), tap)
    return w


def _aa_weights(o, n, scale, mode, align_corners):
    """[o, n]: antialiased resampling weights (PIL's, as PyTorch's _upsample_*_aa): the filter -- triangle
    for bilinear, cubic with A = -0.5 for bicubic -- stretched by the scale when downsampling, each row
    normalised to sum 1."""
    s = _source_scale(o, n, scale, align_corners)
    half = 1.0 if mode == "bilinear" else 2.0
    support = half * s if s >= 1.0 else half
    inv = 1.0 / s if s >= 1.0 else 1.0
    w = np.zeros((o, n))
    for i in range(o):
        center = s * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n)
        x = (np.arange(lo, hi) - center + 0.5) * inv
        f = _triangle(x) if mode == "bilinear" else _cubic_filter(x, -0.5)
        total = f.sum()
        w[i, lo:hi] = f / total if total != 0 else f
    return w


def _triangle(x):
    return np.maximum(1.0 - np.abs(x), 0.0)


def _cubic_filter(x, A):
    x = np.abs(x)
    return np.where(x < 1, ((A + 2) * x - (A + 3)) * x * x + 1,
                    np.where(x < 2, ((A * x - 5 * A) * x + 8 * A) * x - 4 * A, 0.0))


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



def channel_shuffle(input: Tensor, groups: int) -> Tensor:
    """[N, g*c, *] -> [N, c*g, *]: the channels regrouped (ShuffleNet), by a reshape + transpose."""
    if input.ndim <= 2:
        raise RuntimeError(f"channel_shuffle expects input with > 2 dims, but got input with sizes "
                           f"{list(input.shape)}")
    if groups <= 0:
        raise RuntimeError(f"Number of groups to divide channels in must be positive. Value of groups:{groups}")
    N, C, *rest = input.shape
    if C % groups:
        raise RuntimeError(f"Number of channels must be divisible by groups. Got {C} channels and {groups} groups.")
    x = S.reshape(input, (N, groups, C // groups, *rest))
    return S.reshape(S.transpose(x, 1, 2), tuple(input.shape))
