"""Which classes and functions `ember.load(..., weights_only=True)` may use (PyTorch 2.6 semantics).

A checkpoint names the classes of whole objects it holds (a Module, an optimizer, an argparse
Namespace). With weights_only=True (the default) such a name is resolved only when it is allowed:
a few built-in data types, or what the user trusts with `add_safe_globals([...])` /
`with safe_globals([...]):`. Nothing else is imported or called, so a file cannot run code.
Entries are objects (a class or function; its name is module + qualname) or (object, "full.name").
"""
from __future__ import annotations

import collections
import pickle
from collections.abc import Callable
from typing import Any

_user: set = set()


def add_safe_globals(safe_globals: list) -> None:
    """Trust these classes/functions in weights_only loads (torch.serialization.add_safe_globals)."""
    global _user
    for g in safe_globals:
        _full_name(g)                            # check the entry now, not at the next load
    _user = _user | set(safe_globals)


def get_safe_globals() -> list:
    """The user's allow-list (torch.serialization.get_safe_globals)."""
    return list(_user)


def clear_safe_globals() -> None:
    """Forget every add_safe_globals entry (torch.serialization.clear_safe_globals)."""
    global _user
    _user = set()


class safe_globals:
    """`with safe_globals([Net, nn.Linear]): ember.load(f)`: trust these only inside the block."""

    def __init__(self, safe_globals: list):
        self.safe_globals = list(safe_globals)

    def __enter__(self):
        self._added = set(self.safe_globals) - _user
        add_safe_globals(self.safe_globals)
        return self

    def __exit__(self, *exc):
        global _user
        _user = _user - self._added
        return False


def _full_name(g) -> str:
    if isinstance(g, tuple):
        if len(g) != 2:
            raise ValueError(f"Expected tuple of length 2 (global, str of callable full path), but got tuple "
                             f"of length: {len(g)}")
        if type(g[1]) is not str:
            raise TypeError(f"Expected second item in tuple to be str of callable full path, but got: {type(g[1])}")
        return g[1]
    return f"{g.__module__}.{g.__qualname__}"


def _defaults() -> dict[str, Any]:
    """Data-only types allowed without asking, as PyTorch allows them (plus ember's hook dict, the
    OrderedDict subclass every Module holds, so a Module needs only its own classes allow-listed)."""
    from ..nn.modules.module import _HookDict
    return {f"{g.__module__}.{g.__qualname__}": g for g in
            (collections.OrderedDict, collections.Counter, set, frozenset, complex, bytearray, _HookDict)}


def allowed() -> dict[str, Callable]:
    """Full dotted name -> object, for everything a weights_only load may use now."""
    out = _defaults()
    for g in _user:
        out[_full_name(g)] = g[0] if isinstance(g, tuple) else g
    return out


def refusal(names: list[str]) -> pickle.UnpicklingError:
    """PyTorch's weights_only error, naming every refused global and both ways to load the file."""
    # builtins are written as Python spells them (dict, not builtins.dict), as PyTorch does
    names = [n.removeprefix("builtins.") for n in names]
    shown = ", ".join(names)
    first = names[0]
    more = "" if len(names) == 1 else f" (the file also needs: {', '.join(names[1:])})"
    return pickle.UnpicklingError(
        "Weights only load failed. This file can still be loaded, to do so you have two options, do those "
        "steps only if you trust the source of the checkpoint.\n"
        "\t(1) Re-running `ember.load` with `weights_only` set to `False` will likely succeed, but it can "
        "result in arbitrary code execution. Do it only if you got the file from a trusted source.\n"
        "\t(2) Alternatively, to load with `weights_only=True` allowlist the classes and functions the file "
        "names, if you trust them.\n"
        f"\tWeightsUnpickler error: Unsupported global: GLOBAL {first} was not an allowed global by default"
        f"{more}. Please use `ember.serialization.add_safe_globals([{shown}])` or the "
        f"`ember.serialization.safe_globals([{shown}])` context manager to allowlist these globals if you "
        "trust these classes/functions.")
