"""PyTorch's keyword names for ember's functions and Tensor methods.

In: a function (or method) and its public name.  Out: `accept_torch_names(fn, name, method)` -> fn itself, or
a thin wrapper that renames PyTorch's keywords to fn's own parameters before the call.

PyTorch's argument parser takes numpy's spellings everywhere (`axis=` for `dim=`, `keepdims=` for
`keepdim=`) and its own parameter names (`input=`, `other=`, `exponent=`...) as keywords:
`x.sum(axis=0)`, `torch.cat(xs, axis=1)`, `torch.pow(t, exponent=2)`, `torch.where(condition=c, input=a,
other=b)`.  ember's op functions name their parameters for reading (`a`, `b`, `x`, `cond`); rather than
rename them all, the names users pass are mapped here, at the public surface only -- the library's own
calls go straight to the functions.  A call without keywords pays one `if`.
"""
from __future__ import annotations

import functools
import inspect

__all__ = ["accept_torch_names"]

_NUMPY = {"axis": "dim", "keepdims": "keepdim"}
_PACKED = ("shape", "size", "dims", "sizes", "repeats")   # PyTorch's keyword for a *varargs parameter
_FIRST = ("a", "x", "t")          # ember's names for PyTorch's `input`
_SECOND = ("b", "y")              # ... and for its `other`
# PyTorch's other names, by function (method names alike)
_SPECIAL = {
    "where": {"condition": "cond", "input": "x", "other": "y"},
    "lerp": {"end": "b", "weight": "w"},
    "pow": {"exponent": "b", "self": "a"},
    "float_power": {"exponent": "b"},
    "split": {"split_size": "split_size_or_sections"},
}


def accept_torch_names(fn, name: str, method: bool = False):
    """fn, taking PyTorch's keyword names as well as its own (see the module docstring)."""
    try:
        sig = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn
    params = list(sig)
    # reshape(x, *shape) called as x.reshape(shape=(2, 3)), x.permute(dims=...), x.expand(size=...)
    packed = ()
    if any(p.kind is p.VAR_POSITIONAL for p in sig.values()):       # (zeros(*sizes, size=None) takes size= itself)
        packed = tuple(k for k in _PACKED if k not in sig or sig[k].kind is sig[k].VAR_POSITIONAL)
    alias = {k: v for k, v in _NUMPY.items() if v in params and k not in params}
    if params and not method and params[0] in _FIRST and "input" not in params:
        alias["input"] = params[0]
    if len(params) > 1 and params[1] in _SECOND and "other" not in params:
        alias["other"] = params[1]
    alias.update({k: v for k, v in _SPECIAL.get(name, {}).items() if v in params and k != v})
    if not alias and not packed:
        return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if kwargs:
            for k in [k for k in kwargs if k in alias or k in packed]:
                if k in packed:
                    args = args + (kwargs.pop(k),)
                else:
                    kwargs[alias[k]] = kwargs.pop(k)
        return fn(*args, **kwargs)
    return call
