"""ember.testing: assert_close (torch.testing.assert_close's comparison, default tolerances and
messages) and make_tensor."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .frontend.tensor import Tensor
from .ir import dtypes as dt

__all__ = ["assert_close", "make_tensor"]

# PyTorch's default (rtol, atol) per dtype
_TOL = {dt.float16: (1e-3, 1e-5), dt.bfloat16: (1.6e-2, 1e-5), dt.float32: (1.3e-6, 1e-5),
        dt.float64: (1e-7, 1e-7)}


def _tolerances(d, rtol, atol):
    if (rtol is None) != (atol is None):
        missing = "rtol" if rtol is None else "atol"
        raise ValueError(f"Both 'rtol' and 'atol' must be either specified or omitted, but got no {missing}.")
    if rtol is not None:
        return rtol, atol
    return _TOL.get(d, (0.0, 0.0))


def _fail(msg, custom):
    raise AssertionError(custom if isinstance(custom, str) else custom(msg) if callable(custom) else msg)


def _compare_tensors(a: Tensor, e: Tensor, rtol, atol, equal_nan, check_dtype, check_device, msg, path):
    where = f" at {path}" if path else ""
    if tuple(a.shape) != tuple(e.shape):
        _fail(f"The values for attribute 'shape' do not match: {a.shape} != {e.shape}{where}.", msg)
    if check_device and a.device != e.device:
        _fail(f"The values for attribute 'device' do not match: {a.device} != {e.device}{where}.", msg)
    if check_dtype and a.dtype is not e.dtype:
        _fail(f"The values for attribute 'dtype' do not match: ember.{a.dtype.name} != ember.{e.dtype.name}{where}.",
              msg)
    d = dt.promote_types(a.dtype, e.dtype)
    rtol, atol = _tolerances(d, rtol, atol)
    x = a.detach().cpu().numpy().astype(np.float64 if d.is_floating_point else np.int64)
    y = e.detach().cpu().numpy().astype(np.float64 if d.is_floating_point else np.int64)
    if d is dt.bool_ or not d.is_floating_point:
        ok = x == y
    else:
        with np.errstate(invalid="ignore"):
            ok = np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan) | ((x == y) & np.isinf(x))
    if ok.all():
        return
    n, bad = ok.size, int((~ok).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        absd = np.where(ok, 0, np.abs(x - y))
        reld = np.where(ok, 0, absd / np.abs(y))
    absd = np.nan_to_num(absd, nan=np.inf)
    reld = np.nan_to_num(reld, nan=np.inf)
    ia, ir = np.unravel_index(int(np.argmax(absd)), x.shape), np.unravel_index(int(np.argmax(reld)), x.shape)
    kind = "Tensor-likes" if x.ndim else "Scalars"
    if x.ndim == 0:
        text = (f"{kind} are not close!\n\nExpected {y.item()} but got {x.item()}.\nAbsolute difference: "
                f"{absd.item():g} (up to {atol:g} allowed)\nRelative difference: {reld.item():g} (up to {rtol:g} "
                "allowed)")
    else:
        text = (f"{kind} are not close!\n\nMismatched elements: {bad} / {n} ({100.0 * bad / n:.1f}%)\n"
                f"Greatest absolute difference: {absd[ia]:g} at index {tuple(int(i) for i in ia)} (up to {atol:g} "
                f"allowed)\nGreatest relative difference: {reld[ir]:g} at index {tuple(int(i) for i in ir)} (up to "
                f"{rtol:g} allowed)")
    _fail(text + (f"\n\nThe failure occurred for item {path}" if path else ""), msg)


def _as_tensor(v):
    from .frontend.creation import tensor
    return v if isinstance(v, Tensor) else tensor(v)


def assert_close(actual, expected, *, allow_subclasses: bool = True, rtol: float | None = None,
                 atol: float | None = None, equal_nan: bool = False, check_device: bool = True,
                 check_dtype: bool = True, check_layout: bool = True, check_stride: bool = False, msg=None) -> None:
    """torch.testing.assert_close: tensors (or numbers, numpy arrays, and sequences / mappings of them)
    equal up to rtol * |expected| + atol, with PyTorch's defaults per dtype."""
    stack = [(actual, expected, "")]
    while stack:
        a, e, path = stack.pop()
        if isinstance(a, Mapping) and isinstance(e, Mapping):
            if set(a) != set(e):
                _fail(f"The keys of the mappings do not match: {sorted(map(str, a))} != {sorted(map(str, e))}", msg)
            stack.extend((a[k], e[k], f"{path}[{k!r}]") for k in a)
            continue
        if isinstance(a, Sequence) and isinstance(e, Sequence) and not isinstance(a, str):
            if len(a) != len(e):
                _fail(f"The length of the sequences mismatch: {len(a)} != {len(e)}", msg)
            stack.extend((x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, e)))
            continue
        if isinstance(a, (int, float, bool)) and isinstance(e, (int, float, bool)) and \
                not isinstance(a, Tensor) and not isinstance(e, Tensor):
            if type(a) is not type(e) and check_dtype:
                _fail(f"The values for attribute 'type' do not match: {type(a)} != {type(e)}.", msg)
            r, t = _tolerances(dt.float64 if isinstance(a, float) else dt.int64, rtol, atol)
            if not (a == e or (equal_nan and a != a and e != e) or abs(a - e) <= t + r * abs(e)):
                rel = abs(a - e) / abs(e) if e else math.inf
                _fail(f"Scalars are not close!\n\nExpected {e} but got {a}.\nAbsolute difference: {abs(a - e):g} "
                      f"(up to {t:g} allowed)\nRelative difference: {rel:g} (up to {r:g} allowed)", msg)
            continue
        if not isinstance(a, (Tensor, np.ndarray)) or not isinstance(e, (Tensor, np.ndarray)):
            if not (isinstance(a, (Tensor, np.ndarray, int, float, bool)) and
                    isinstance(e, (Tensor, np.ndarray, int, float, bool))):
                _fail(f"No comparison pair was able to handle inputs of type {type(a)} and {type(e)}.", msg)
        _compare_tensors(_as_tensor(a), _as_tensor(e), rtol, atol, equal_nan, check_dtype, check_device, msg,
                         path)


def make_tensor(*shape, dtype, device=None, low=None, high=None, requires_grad: bool = False,
                noncontiguous: bool = False, exclude_zero: bool = False, memory_format=None) -> Tensor:
    """torch.testing.make_tensor: uniform values in [low, high) ([-9, 9] by default; bool: coin flips),
    drawn from ember's global generator (reproducible under manual_seed)."""
    from .frontend.creation import rand, randint
    from .frontend import math_ops as M
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    lo = -9 if low is None else low
    hi = 9 if high is None else high
    if dtype is dt.bool_:
        t = M.lt(rand(*shape, dtype=dt.float64), 0.5)
    elif dtype.is_floating_point:
        t = M.cast(M.add(M.mul(rand(*shape, dtype=dt.float64), float(hi - lo)), float(lo)), dtype)
    else:
        t = randint(math.ceil(lo), math.floor(hi) + (1 if high is None else 0), tuple(shape), dtype=dtype)
    if exclude_zero:
        t = M.where(M.eq(t, 0), 1 if not dtype.is_floating_point else float(np.finfo(np.float32).tiny), t)
    t = t.to(device) if device is not None else t
    return t.requires_grad_(requires_grad) if requires_grad else t
