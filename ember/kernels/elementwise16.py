"""Eager elementwise ops on float16 / bfloat16 arrays in one generated pass.

In: an op name and its eager arguments (numpy arrays, Python numbers).  Out: `run(op, args)` -> the result
array, or None where this path does not apply (the caller then casts to float32, runs numpy, rounds back).

A 16-bit op computes in float32 and rounds once, as PyTorch's kernels do.  Through numpy that is three
passes over memory -- widen each input, the float32 op, round the result -- each a new array; under
autocast they were a fifth of the eager GPT step (an attention score's scaling and mask, the gradients'
adds).  Here one loop of the code generator (kernels/generated.py) loads the 16-bit values, computes in
float32 and rounds as it stores: the same bits, since only ops whose float32 result is exact or
correctly rounded in both numpy and the generated code are taken (no transcendental: numpy's and ours
may differ by an ulp before the rounding).  Python numbers arrive as float32 constants in a small buffer
(numpy 2 makes `f32_array * 0.37` a float32 product), so one kernel serves every value.
"""
from __future__ import annotations

import numpy as np

from . import generated

__all__ = ["run", "OPS"]

# ops whose float32 result is exact or correctly rounded in numpy and in the generated code alike
_BINARY = ("add", "sub", "mul", "div", "eq", "ne", "lt", "le", "gt", "ge")
_UNARY = ("neg", "abs")
OPS = frozenset(_BINARY + _UNARY + ("where",))
_F32 = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)


def run(op: str, args) -> np.ndarray | None:
    """op over args (16-bit arrays of one dtype, bool conditions, Python numbers) in one pass, or None."""
    low = None
    shapes = []
    biggest = 0
    for a in args:
        if isinstance(a, np.ndarray):
            if a.size > biggest:
                biggest = a.size
            d = a.dtype
            if d == _BOOL and op == "where" and a is args[0]:
                pass
            elif d.itemsize == 2 and d.kind in "fV" and (low is None or d == low):
                low = d
            else:
                return None
            shapes.append(a.shape)
        elif type(a) not in (float, int):
            return None
    # (the loop walks a full-size 16-bit input: small ones, and broadcasts bigger than every input, stay
    # on the float32 path -- checked before any shape arithmetic, which costs more than their op)
    if low is None or biggest < generated.MIN_SIZE:
        return None
    shape = np.broadcast_shapes(*shapes)
    # the first full-size 16-bit array sets the memory order the loop walks
    first = next((a for a in args if isinstance(a, np.ndarray) and a.dtype == low and a.shape == shape), None)
    if first is None:
        return None
    perm, b0 = generated.memory_order(first)
    arrays, numbers, pattern = [], [], []
    for a in args:
        if a is first:
            arrays.append(b0)
            pattern.append("x")
        elif isinstance(a, np.ndarray):
            full = np.broadcast_to(a, shape).transpose(perm)
            arrays.append(np.ascontiguousarray(full))
            pattern.append("c" if a.dtype == _BOOL else "x")
        else:
            numbers.append(a)
            pattern.append("n")
    scal = np.array(numbers or [0], _F32)
    out_dtype = _BOOL if op in ("eq", "ne", "lt", "le", "gt", "ge") else low
    key = ("elementwise16", op, low.str, "".join(pattern))
    k = generated.sized(key, lambda: _build(op, low, pattern, len(scal), out_dtype), b0.size)
    if k is None:
        return None
    res = np.empty(b0.shape, out_dtype)
    k.launch([a.reshape(-1) for a in arrays] + [scal, res.reshape(-1)])
    return res.transpose(generated.inverse(perm))


def _build(op, low, pattern, n_numbers, out_dtype):
    from ..ir import dtypes as dt
    from ..ir import kernel as K
    n = generated.size_symbol()
    i = [K.o(0)]
    d16, f32 = dt.from_numpy(low), dt.float32
    ins, values, num_at = [], [], 0
    nums = K.Buf("numbers", (n_numbers,), f32)
    for j, p in enumerate(pattern):
        if p == "n":
            values.append(K.Load(nums, [num_at]))
            num_at += 1
            continue
        b = K.Buf(f"x{j}", (n,), dt.bool_ if p == "c" else d16)
        ins.append(b)
        v = K.Load(b, i)
        values.append(v if p == "c" else K.cast(v, f32))
    if op == "where":
        value = K.where(*values)
    elif op in _UNARY:
        value = K.unary(op, values[0])
    else:
        value = K.binary(op, *values)
    out = K.Buf("out", (n,), dt.from_numpy(out_dtype))
    return K.Kernel(ins + [nums], [out], [n], stores=[K.Store(out, i, K.cast(value, out.dtype))],
                    name=f"eager16_{op}_{''.join(pattern)}")
