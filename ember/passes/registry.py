"""The pass registry: every Graph -> Graph pass by name.

A pass is a function `fn(graph) -> bool` that rewrites the Graph IN PLACE and returns whether it
changed anything (mutating in place keeps node identity, so a pass never has to rebuild the graph's
outputs / mutations bookkeeping).  A pass module registers its pass when it is imported:

    @register_pass("dce")
    def dce(g: Graph) -> bool: ...

ember/passes/__init__.py imports every built-in pass module, so PASSES is complete as soon as
`ember.passes` (or any module in it) is imported.  The pass manager (manager.py) looks passes up
here; this module imports no pass, so the passes and the manager do not import each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ember.ir.graph import Graph

__all__ = ["Pass", "PASSES", "register_pass", "get_pass"]


@dataclass(frozen=True)
class Pass:
    """A named graph rewrite: fn(graph) -> changed (mutates the graph in place)."""
    name: str
    fn: Callable[[Graph], bool]
    doc: str = ""

    def __call__(self, g: Graph) -> bool:
        return bool(self.fn(g))


PASSES: dict[str, Pass] = {}


def register_pass(name: str):
    """Decorator: register `fn(graph) -> bool` as pass `name`."""
    def deco(fn):
        PASSES[name] = Pass(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn
    return deco


def get_pass(p) -> Pass:
    """A Pass from a Pass, a function, or a registered name."""
    if isinstance(p, Pass):
        return p
    if callable(p):
        return Pass(getattr(p, "__name__", "pass"), p)
    try:
        return PASSES[p]
    except KeyError:
        raise KeyError(f"unknown pass {p!r} (known: {', '.join(sorted(PASSES))})") from None
