"""Flatten nested call arguments into leaves and rebuild them (tuples, lists, namedtuples, dicts).

    spec = flatten(obj, leaves)      # appends the leaves in order; spec rebuilds the structure
    obj  = unflatten(spec, iter(leaves))
    spec_key(spec)                   # a hashable key of the structure (a guard)

The common compiled call passes only tensors: `flat_spec(n)` is its spec, built once per n.
"""
from __future__ import annotations

from ..frontend.tensor import Tensor


def flatten(obj, leaves: list):
    """Flatten nested tuples/lists/dicts into `leaves`; returns a spec to rebuild the structure."""
    if isinstance(obj, (list, tuple)) and not isinstance(obj, Tensor):
        return ("seq", type(obj), [flatten(o, leaves) for o in obj])
    if isinstance(obj, dict):
        keys = list(obj.keys())
        return ("dict", type(obj), keys, [flatten(obj[k], leaves) for k in keys])
    leaves.append(obj)
    return ("leaf",)


def unflatten(spec, it):
    tag = spec[0]
    if tag == "leaf":
        return next(it)
    if tag == "seq":
        items = [unflatten(s, it) for s in spec[2]]
        kind = spec[1]
        if kind in (list, tuple):
            return kind(items)
        try:
            return kind(*items)     # namedtuples
        except TypeError:
            return kind(items)
    keys, specs = spec[2], spec[3]
    d = spec[1]()
    for k, s in zip(keys, specs):
        d[k] = unflatten(s, it)
    return d


_FLAT_SPECS: dict = {}
_SPEC_KEYS: dict = {}


def flat_spec(n: int):
    """flatten()'s spec of ((t0, ..., tn-1), {}) with n tensor leaves, built once per n."""
    spec = _FLAT_SPECS.get(n)
    if spec is None:
        spec = _FLAT_SPECS[n] = flatten((tuple(range(n)), {}), [])
    return spec


def _spec_key(spec):
    tag = spec[0]
    if tag == "leaf":
        return "L"
    if tag == "seq":
        return (spec[1].__name__, tuple(_spec_key(s) for s in spec[2]))
    return ("dict", tuple(spec[2]), tuple(_spec_key(s) for s in spec[3]))


def spec_key(spec, n_leaves: int):
    """A hashable key of the structure; the tensors-only spec's key is computed once."""
    shared = spec is _FLAT_SPECS.get(n_leaves)
    key = _SPEC_KEYS.get(id(spec)) if shared else None
    if key is None:
        key = _spec_key(spec)
        if shared:
            _SPEC_KEYS[id(spec)] = key
    return key
