"""The legacy typed-tensor classes: ember.FloatTensor, LongTensor, ... and ember.cuda.FloatTensor, ...

    x = ember.FloatTensor(2, 3)          # uninitialised, shape (2, 3)
    y = ember.LongTensor([1, 2, 3])      # from data
    isinstance(x, ember.FloatTensor)     # True: a float32 tensor on the CPU
    x.type(ember.cuda.FloatTensor)       # convert (dtype and device)

They are not subclasses of Tensor: calling one builds an ordinary ember.Tensor, and isinstance
checks dtype and device, as PyTorch's do. `legacy_new` is the one parser of the legacy argument
forms (sizes, a Size, data, a tensor), shared with Tensor.new.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as dt
from .device import device as _device
from .tensor import _TYPE_NAMES, Size, Tensor

__all__ = ["CPU_TYPES", "CUDA_TYPES", "legacy_new"]


def legacy_new(dtype: dt.DType, device, args: tuple, type_name: str = "new") -> Tensor:
    """Tensor(*sizes) | Tensor(Size) | Tensor(data) | Tensor(tensor) | Tensor() with dtype and device."""
    from . import creation
    if len(args) == 0:
        return creation.empty(0, dtype=dtype, device=device)
    if all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args):
        return creation.empty(*(int(a) for a in args), dtype=dtype, device=device)
    if len(args) == 1:
        a = args[0]
        if isinstance(a, Size):
            return creation.empty(*a, dtype=dtype, device=device)
        if isinstance(a, Tensor):
            if a.dtype is not dtype:
                raise TypeError(f"{type_name}: expected a {dtype.name} tensor, got {a.dtype.name}")
            return a.detach()
        return creation.tensor(a, dtype=dtype, device=device)
    bad = next(a for a in args if not isinstance(a, (int, np.integer)) or isinstance(a, bool))
    raise TypeError(f"{type_name}(): expected sizes (ints) or one sequence of data, but got an argument of type "
                    f"{type(bad).__name__}")


class _LegacyTensorType(type):
    """The metaclass of ember.FloatTensor & co: calling builds a tensor; isinstance checks dtype and device."""

    dtype: dt.DType
    device_type: str

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, Tensor) and obj.dtype is cls.dtype and obj.device.type == cls.device_type

    def __call__(cls, *args, device=None):
        name = cls.__qualname__
        if device is not None and _device(device).type != cls.device_type:
            raise RuntimeError(f"legacy constructor expects device type: {cls.device_type} but device type: "
                               f"{_device(device).type} was passed")
        if cls.device_type == "cuda":
            from .device import cuda_available
            if not cuda_available():
                raise TypeError(f"type {name} not available: CUDA is not available (ember needs CuPy and an "
                                "NVIDIA GPU)")
        return legacy_new(cls.dtype, device or cls.device_type, args, name)

    def __repr__(cls) -> str:
        return f"<class '{cls.__qualname__}'>"

    @property
    def is_cuda(cls) -> bool:
        return cls.device_type == "cuda"


def _make(dtype: dt.DType, device_type: str) -> type:
    short = _TYPE_NAMES[dtype.name]
    qual = f"ember.{short}" if device_type == "cpu" else f"ember.cuda.{short}"
    cls = _LegacyTensorType(short, (), {"dtype": dtype, "device_type": device_type,
                                        "__doc__": f"{short}(*sizes) or {short}(data): a {dtype.name} tensor on "
                                                   f"{device_type}"})
    cls.__qualname__ = qual
    cls.__module__ = "ember" if device_type == "cpu" else "ember.cuda"
    return cls


_DTYPES = [dt.float32, dt.float64, dt.float16, dt.bfloat16, dt.int64, dt.int32, dt.int16, dt.int8, dt.uint8,
           dt.bool_]
CPU_TYPES = {_TYPE_NAMES[d.name]: _make(d, "cpu") for d in _DTYPES}
CUDA_TYPES = {_TYPE_NAMES[d.name]: _make(d, "cuda") for d in _DTYPES}


def legacy_type_target(t):
    """(device type, dtype) when `t` is one of these classes, else None (for Tensor.type(...))."""
    if isinstance(t, _LegacyTensorType):
        return t.device_type, t.dtype
    return None
