"""Image transforms for ember.datasets, shaped like torchvision.transforms (no PIL needed).

Images arrive as uint8 ember tensors [H, W] (or numpy arrays [H, W] / [H, W, C]); ToTensor turns
them into float32 [C, H, W] in [0, 1], Normalize standardises per channel, Compose chains, Lambda
wraps a function.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..frontend.tensor import Tensor

__all__ = ["Compose", "ToTensor", "Normalize", "Lambda", "PILToTensor", "ConvertImageDtype"]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


def _as_array(img):
    if isinstance(img, Tensor):
        return img.detach().cpu().numpy()
    return np.asarray(img)


class ToTensor:
    """uint8 image [H, W] or [H, W, C] -> float32 tensor [C, H, W] scaled to [0, 1] (torchvision's
    ToTensor; float inputs are only rearranged, not scaled)."""

    def __call__(self, img):
        from ..frontend.creation import from_numpy
        a = _as_array(img)
        if a.ndim == 2:
            a = a[None]
        elif a.ndim == 3:
            a = a.transpose(2, 0, 1)
        else:
            raise ValueError(f"ToTensor: expected an image of 2 or 3 dimensions, got shape {a.shape}")
        if a.dtype == np.uint8:
            out = a.astype(np.float32)
            out *= np.float32(1 / 255)
        else:
            out = np.ascontiguousarray(a)
        return from_numpy(np.ascontiguousarray(out))

    def __repr__(self):
        return "ToTensor()"


class PILToTensor:
    """Image -> uint8 tensor [C, H, W], without scaling."""

    def __call__(self, img):
        from ..frontend.creation import from_numpy
        a = _as_array(img)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return from_numpy(np.ascontiguousarray(a))

    def __repr__(self):
        return "PILToTensor()"


class ConvertImageDtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __call__(self, t):
        if t.dtype.is_floating_point or not self.dtype.is_floating_point:
            return t.to(self.dtype)
        return t.to(self.dtype) / float(np.iinfo(t.dtype.np).max)


class Normalize:
    """(x - mean[c]) / std[c] per channel of a float tensor [C, H, W] (or [..., C, H, W])."""

    def __init__(self, mean, std, inplace=False):
        self.mean = tuple(float(m) for m in (mean if isinstance(mean, (list, tuple)) else [mean]))
        self.std = tuple(float(s) for s in (std if isinstance(std, (list, tuple)) else [std]))
        if any(s == 0 for s in self.std):
            raise ValueError("std evaluated to zero after conversion to float32, leading to division by zero.")
        self.inplace = inplace

    def __call__(self, t):
        from ..frontend.creation import tensor
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            raise TypeError(f"Input tensor should be a float tensor. Got {getattr(t, 'dtype', type(t))}.")
        if len(self.mean) == 1:
            out = (t - self.mean[0]) / self.std[0]
        else:
            shape = (-1, 1, 1)
            m = tensor(self.mean, dtype=t.dtype, device=t.device).reshape(shape)
            s = tensor(self.std, dtype=t.dtype, device=t.device).reshape(shape)
            out = (t - m) / s
        if self.inplace:
            return t.copy_(out)
        return out

    def __repr__(self):
        return f"Normalize(mean={list(self.mean)}, std={list(self.std)})"


class Lambda:
    """Wrap a function as a transform."""

    def __init__(self, lambd: Callable):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, x):
        return self.lambd(x)

    def __repr__(self):
        return "Lambda()"
