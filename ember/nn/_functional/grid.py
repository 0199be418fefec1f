"""grid_sample and affine_grid (spatial transformer networks), as torch.nn.functional spells them.

In: input [N, C, H, W] and a sampling grid [N, Ho, Wo, 2] of (x, y) in [-1, 1]; or theta [N, 2, 3]
(or [N, 3, 4] for 3-D) and an output size. Out: the sampled [N, C, Ho, Wo] / the grid.

grid_sample is a composite: the grid is unnormalised to pixel coordinates (with the padding mode's
clamping or reflection written with ember ops), the four corner values are gathered from the
flattened input and blended with the bilinear weights, so the gradient reaches both the input
(through gather's scatter-add) and the grid (through the weights), and it traces under ember.compile.
"""
from __future__ import annotations

import warnings

from ...frontend import math_ops as M
from ...frontend import shape_ops as S
from ...frontend.dispatch import apply as P
from ...frontend.linalg import matmul
from ...ir import dtypes as dt
from ._util import Tensor

__all__ = ["grid_sample", "affine_grid"]

_ALIGN_WARNING = ("Default grid_sample and affine_grid behavior has changed to align_corners=False since 1.3.0. "
                  "Please specify align_corners=True if the old behavior is desired. See the documentation of "
                  "grid_sample for details.")


def _unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    if align_corners:
        return M.mul(M.add(coord, 1.0), (size - 1) / 2.0)
    return M.mul(M.sub(M.mul(M.add(coord, 1.0), float(size)), 1.0), 0.5)


def _reflect(coord: Tensor, twice_low: int, twice_high: int) -> Tensor:
    """PyTorch's reflect_coordinates: fold coord into [low, high] by reflecting at the ends."""
    if twice_low == twice_high:
        return M.mul(coord, 0.0)
    low = twice_low / 2.0
    span = (twice_high - twice_low) / 2.0
    a = M.abs(M.sub(coord, low))
    flips = M.floor(M.div(a, span))
    extra = M.sub(a, M.mul(flips, span))           # fmod(a, span) for a >= 0
    even = M.eq(M.remainder(flips, 2.0), 0.0)
    return M.where(even, M.add(extra, low), M.add(M.sub(span, extra), low))


def _source_coord(coord: Tensor, size: int, padding_mode: str, align_corners: bool) -> Tensor:
    c = _unnormalize(coord, size, align_corners)
    if padding_mode == "border":
        c = M.clamp(c, 0.0, float(size - 1))
    elif padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (size - 1)) if align_corners else _reflect(c, -1, 2 * size - 1)
        c = M.clamp(c, 0.0, float(size - 1))
    return c


def _gather_corner(flat: Tensor, ix: Tensor, iy: Tensor, W: int, H: int):
    """flat [N, C, H*W]; ix, iy integer-valued float [N, Ho*Wo]: the values at (iy, ix) ([N, C, Ho*Wo])
    and whether (iy, ix) is inside the image."""
    inside = M.logical_and(M.logical_and(M.ge(ix, 0.0), M.le(ix, float(W - 1))),
                           M.logical_and(M.ge(iy, 0.0), M.le(iy, float(H - 1))))
    xs = M.clamp(ix, 0.0, float(W - 1))
    ys = M.clamp(iy, 0.0, float(H - 1))
    idx = M.cast(M.add(M.mul(ys, float(W)), xs), dt.int64)
    idx = S.expand(S.unsqueeze(idx, 1), (flat.shape[0], flat.shape[1], idx.shape[-1]))
    return P("gather", flat, idx, dim=2), inside


def grid_sample(input: Tensor, grid: Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                align_corners: bool | None = None) -> Tensor:
    """torch.nn.functional.grid_sample for 4-D input (modes bilinear / nearest; padding zeros / border /
    reflection)."""
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', 'nearest' or 'bicubic', "
                         f"but got: '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError("nn.functional.grid_sample(): expected padding_mode to be 'zeros', 'border', or "
                         f"'reflection', but got: '{padding_mode}'")
    if mode == "bicubic":
        raise NotImplementedError("nn.functional.grid_sample: mode='bicubic' is not supported by ember yet "
                                  "(use 'bilinear' or 'nearest')")
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING)
        align_corners = False
    if input.ndim != 4:
        raise NotImplementedError(f"nn.functional.grid_sample: ember supports 4-D input (N, C, H, W); got "
                                  f"{input.ndim}-D input")
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise RuntimeError(f"grid_sampler(): expected grid to have size 2 in last dimension, but got grid with "
                           f"sizes {list(grid.shape)}")
    if grid.shape[0] != input.shape[0]:
        raise RuntimeError(f"grid_sampler(): expected input and grid to have same batch size, but got input with "
                           f"sizes {list(input.shape)} and grid with sizes {list(grid.shape)}")
    if input.dtype is not grid.dtype:
        raise RuntimeError(f"grid_sampler(): expected input and grid to have the same dtype, but input has "
                           f"{input.dtype.name} and grid has {grid.dtype.name}")
    N, C, H, W = input.shape
    Ho, Wo = grid.shape[1], grid.shape[2]
    g = S.reshape(grid, (N, Ho * Wo, 2))
    ix = _source_coord(S.select(g, 2, 0), W, padding_mode, align_corners)
    iy = _source_coord(S.select(g, 2, 1), H, padding_mode, align_corners)
    flat = S.reshape(input, (N, C, H * W))

    def at(x, y, weight=None):
        v, inside = _gather_corner(flat, x, y, W, H)
        w = M.cast(inside, input.dtype) if weight is None else M.where(inside, weight, 0.0)
        return M.mul(v, S.unsqueeze(w, 1))

    if mode == "nearest":
        rx, ry = M.round(ix), M.round(iy)
        # a weight of 1 that depends on the grid through round (gradient zero): the grid's .grad is then
        # zeros, as PyTorch's, instead of None
        one = M.add(M.mul(M.add(rx, ry), 0.0), 1.0) if grid.requires_grad else None
        out = at(rx, ry, one)
    else:
        x0, y0 = M.floor(ix), M.floor(iy)
        x1, y1 = M.add(x0, 1.0), M.add(y0, 1.0)
        wx1, wy1 = M.sub(ix, x0), M.sub(iy, y0)
        wx0, wy0 = M.sub(x1, ix), M.sub(y1, iy)
        out = M.add(M.add(at(x0, y0, M.mul(wx0, wy0)), at(x1, y0, M.mul(wx1, wy0))),
                    M.add(at(x0, y1, M.mul(wx0, wy1)), at(x1, y1, M.mul(wx1, wy1))))
    return S.reshape(out, (N, C, Ho, Wo))


def _linspace_from_neg_one(n: int, align_corners: bool, like: Tensor) -> Tensor:
    from ...frontend.creation import linspace, zeros
    if n <= 1:
        return zeros(1, dtype=like.dtype, device=like.device)
    r = linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device)
    return r if align_corners else M.mul(r, (n - 1) / n)


def affine_grid(theta: Tensor, size, align_corners: bool | None = None) -> Tensor:
    """torch.nn.functional.affine_grid: the sampling grid of the affine maps theta [N, 2, 3] over an output
    of size (N, C, H, W) -> [N, H, W, 2] (or theta [N, 3, 4], size (N, C, D, H, W) -> [N, D, H, W, 3])."""
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING)
        align_corners = False
    if not theta.dtype.is_floating_point:
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    size = list(size)
    if len(size) == 4:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (2, 3):
            raise ValueError(f"Expected a batch of 2D affine matrices of shape Nx2x3 for size {size}. Got "
                             f"{list(theta.shape)}.")
        N, _, H, W = size
        spatial = [H, W]
    elif len(size) == 5:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (3, 4):
            raise ValueError(f"Expected a batch of 3D affine matrices of shape Nx3x4 for size {size}. Got "
                             f"{list(theta.shape)}.")
        N, _, D, H, W = size
        spatial = [D, H, W]
    else:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D affine transforms, "
                                  f"respectively. Got size {size}.")
    if min(spatial) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    if theta.shape[0] != N:
        raise ValueError(f"Expected theta batch size {theta.shape[0]} to match size[0] {N}")
    k = len(spatial)
    # base[..., i] is the normalised coordinate along axis x, y(, z), then a column of ones
    axes = [_linspace_from_neg_one(n, align_corners, theta) for n in reversed(spatial)]   # x, y(, z)
    cols = []
    for j, a in enumerate(axes):
        shape = [1] * k
        shape[k - 1 - j] = a.shape[0]
        cols.append(S.expand(S.reshape(a, tuple(shape)), tuple(spatial)))
    from ...frontend.creation import ones
    cols.append(ones(*spatial, dtype=theta.dtype, device=theta.device))
    base = S.reshape(S.stack(cols, -1), (1, -1, k + 1))
    grid = matmul(base, S.transpose(theta, 1, 2))      # [N, prod(spatial), k]
    return S.reshape(grid, (N, *spatial, k))
