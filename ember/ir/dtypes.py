"""Data types: the IR's scalar types, with PyTorch's names and promotion rules.

Dtypes live in the IR layer because shape/dtype rules need them and the IR knows nothing of
Tensor. The frontend re-exports them as ember.float32, ember.long, ...

bfloat16 arrays are numpy arrays of the `ml_dtypes` extension type (numpy has no bfloat16; JAX uses
the same package). numpy sees that type as kind "V", so code asks `DType.is_floating_point` or
`DType.is_reduced_float`, never `array.dtype.kind`, to tell a float.
"""
from __future__ import annotations

from enum import IntEnum

import ml_dtypes
import numpy as np

__all__ = ["Category", "DType", "bfloat16", "float16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "bool_", "ALL", "by_name", "from_numpy", "promote_types", "result_type", "default_float"]


class Category(IntEnum):
    """PyTorch's promotion categories, ordered: a higher category wins (bool < integer < floating)."""
    BOOL = 0
    INTEGER = 1
    FLOATING = 2


class DType:
    """A scalar type. `short` is the IR text spelling (f32, i64, b8 ...)."""

    __slots__ = ("name", "short", "np", "itemsize", "is_floating_point", "is_integer", "is_bool", "is_signed",
                 "category", "is_reduced_float")

    def __init__(self, name: str, short: str, np_dtype, category: Category):
        self.name = name
        self.short = short
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.category = Category(category)
        self.is_floating_point = self.category is Category.FLOATING
        self.is_integer = self.category is Category.INTEGER      # bool is not an integer type here
        self.is_bool = self.category is Category.BOOL
        self.is_signed = self.is_floating_point or self.np.kind == "i"   # (numpy calls bfloat16 kind "V")
        # 16-bit floats: CPU kernels compute them in float32 and round the result (as PyTorch's do)
        self.is_reduced_float = self.is_floating_point and self.itemsize == 2

    @property
    def is_complex(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):  # pickling/copying keeps the singleton
        return (by_name, (self.name,))

    def to_numpy(self):
        return self.np


bool_ = DType("bool", "b8", np.bool_, Category.BOOL)
uint8 = DType("uint8", "u8", np.uint8, Category.INTEGER)
int8 = DType("int8", "i8", np.int8, Category.INTEGER)
int16 = DType("int16", "i16", np.int16, Category.INTEGER)
int32 = DType("int32", "i32", np.int32, Category.INTEGER)
int64 = DType("int64", "i64", np.int64, Category.INTEGER)
float16 = DType("float16", "f16", np.float16, Category.FLOATING)
bfloat16 = DType("bfloat16", "bf16", ml_dtypes.bfloat16, Category.FLOATING)
float32 = DType("float32", "f32", np.float32, Category.FLOATING)
float64 = DType("float64", "f64", np.float64, Category.FLOATING)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({d.short: d for d in ALL})
_BY_NP = {d.np: d for d in ALL}

default_float = float32


def by_name(name: str) -> DType:
    """'float32' or 'f32' -> DType."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise TypeError(f"unknown dtype {name!r}") from None


def from_numpy(np_dtype) -> DType:
    try:
        return _BY_NP[np.dtype(np_dtype)]
    except KeyError:
        raise TypeError(f"can't convert np.ndarray of type {np.dtype(np_dtype)}. The only supported types are: "
                        "float64, float32, float16, bfloat16, int64, int32, int16, int8, uint8, and bool.") from None


# Promotion within a category follows numpy except where PyTorch differs (uint8 with int8 -> int16 in
# both, so numpy's table is right for the integers). Floats by PyTorch's lattice: neither 16-bit type
# holds the other, so float16 with bfloat16 is float32; otherwise the wider one.
_FLOAT_RANK = {float16: 1, bfloat16: 1, float32: 2, float64: 3}
_promo_cache: dict = {}


def promote_types(a: DType, b: DType) -> DType:
    """torch.promote_types for two tensor dtypes of equal standing."""
    if a is b:
        return a
    key = (a, b)
    r = _promo_cache.get(key)
    if r is None:
        if a is bool_:
            r = b
        elif b is bool_:
            r = a
        elif a.category != b.category:   # int with float: the float type (numpy would widen it)
            r = a if a.category > b.category else b
        elif a.is_floating_point:
            ra, rb = _FLOAT_RANK[a], _FLOAT_RANK[b]
            r = a if ra > rb else b if rb > ra else float32
        else:
            r = _BY_NP[np.promote_types(a.np, b.np)]
        _promo_cache[key] = r
    return r


def result_type(tensor_dtypes, scalar_kinds=(), zero_dim_dtypes=()) -> DType:
    """PyTorch's result_type: dimensioned tensors decide, then 0-d tensors, then Python scalars, each
    only when it is of a higher category (bool < int < float) than what is already decided."""
    res = None
    for d in tensor_dtypes:
        res = d if res is None else promote_types(res, d)
    zres = None
    for d in zero_dim_dtypes:
        zres = d if zres is None else promote_types(zres, d)
    if zres is not None:
        if res is None:
            res = zres
        elif zres.category > res.category:
            res = zres
    for k in scalar_kinds:  # k is bool, int or float
        cat = 0 if k is bool else 1 if k is int else 2
        if res is None:
            res = bool_ if cat == 0 else int64 if cat == 1 else default_float
        elif cat > res.category:
            res = int64 if cat == 1 else default_float
    return res
