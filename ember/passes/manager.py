"""The pass manager: named Graph passes, pipelines that verify, time and dump between passes.

A pass is a function `fn(graph) -> bool` that rewrites the Graph IN PLACE and returns whether it
changed anything (mutating in place keeps node identity, so a pass never has to rebuild the
graph's outputs / mutations bookkeeping). Passes are registered by name in `PASSES`:

    @register_pass("dce")
    def dce(g: Graph) -> bool: ...

    Pipeline(["decompose", "canonicalize", "dce"]).run(g, verify=True, dump_dir="/tmp/dump")

`Pipeline.run` runs the passes in order, re-runs `ember.ir.verify` after each one when asked
(tests always ask), keeps per-pass wall times in `pipeline.timings` (a list of PassTiming, read by
the inspect tool) and, when a dump directory is given (argument, or the EMBER_DUMP environment
variable), writes the graph text before the first pass and after every pass:
00_captured.ir, 01_decompose.ir, 02_canonicalize.ir, ...  A failed verification names the pass.

Graph outputs, their order and the mutation list are never changed by a pass (the frontend binds
them by position); a rewrite that would turn a graph output into a graph input is skipped, so an
output is never the caller's input array by accident.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ember.ir.graph import Graph, Node
from ember.ir.verify import VerifyError, verify as verify_graph

__all__ = ["Pass", "PASSES", "register_pass", "Pipeline", "PassTiming", "PassError",
           "DEFAULT_PASSES", "get_pass", "run_passes", "replace_node", "dump_dir_from_env"]


@dataclass(frozen=True)
class Pass:
    """A named graph rewrite: fn(graph) -> changed (mutates the graph in place)."""
    name: str
    fn: Callable[[Graph], bool]
    doc: str = ""

    def __call__(self, g: Graph) -> bool:
        return bool(self.fn(g))


PASSES: dict[str, Pass] = {}

# The baseline pipeline (DESIGN.md "Passes"): cleanup to a fixed point, then fusion (which is not a
# Graph -> Graph pass: see ember/passes/fusion/) and memory planning.
DEFAULT_PASSES = ("decompose", "canonicalize", "movement", "constant_fold", "canonicalize", "cse", "dce")


def register_pass(name: str):
    """Decorator: register `fn(graph) -> bool` as pass `name`."""
    def deco(fn):
        PASSES[name] = Pass(name, fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn
    return deco


def get_pass(p) -> Pass:
    if isinstance(p, Pass):
        return p
    if callable(p):
        return Pass(getattr(p, "__name__", "pass"), p)
    _load_builtin_passes()
    try:
        return PASSES[p]
    except KeyError:
        raise KeyError(f"unknown pass {p!r} (known: {', '.join(sorted(PASSES))})") from None


def _load_builtin_passes() -> None:
    # importing the modules registers their passes
    from . import canonicalize, constant_fold, cse, dce, decompose, movement  # noqa: F401


class PassError(RuntimeError):
    """A pass raised, or left a graph the verifier rejects; names the pass."""


@dataclass
class PassTiming:
    name: str
    seconds: float
    changed: bool
    nodes_before: int
    nodes_after: int

    def __str__(self) -> str:
        return (f"{self.name:<14} {self.seconds * 1e3:8.2f} ms  nodes {self.nodes_before} -> {self.nodes_after}"
                f"{'' if self.changed else '  (no change)'}")


def dump_dir_from_env() -> str | None:
    return os.environ.get("EMBER_DUMP") or None


class Pipeline:
    """An ordered list of passes. `run(g)` mutates g in place and returns it."""

    def __init__(self, passes: Iterable = DEFAULT_PASSES):
        self.passes: list[Pass] = [get_pass(p) for p in passes]
        self.timings: list[PassTiming] = []

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def run(self, g: Graph, verify: bool = True, dump_dir: str | os.PathLike | None = None,
            dump_prefix: str = "") -> Graph:
        dump_dir = dump_dir if dump_dir is not None else dump_dir_from_env()
        self.timings = []
        out = Path(dump_dir) if dump_dir else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{dump_prefix}00_captured.ir").write_text(str(g))
        if verify:
            _verify(g, "the input graph")
        for i, p in enumerate(self.passes, 1):
            before = len(g)
            t0 = time.perf_counter()
            try:
                changed = p(g)
            except Exception as e:
                raise PassError(f"pass {p.name} failed on graph {g.name}: {type(e).__name__}: {e}") from e
            dt_s = time.perf_counter() - t0
            self.timings.append(PassTiming(p.name, dt_s, bool(changed), before, len(g)))
            if verify:
                _verify(g, f"pass {p.name}")
            if out is not None:
                (out / f"{dump_prefix}{i:02d}_{p.name}.ir").write_text(str(g))
        return g

    def report(self) -> str:
        return "\n".join(str(t) for t in self.timings)


def _verify(g: Graph, after: str) -> None:
    try:
        verify_graph(g)
    except VerifyError as e:
        raise PassError(f"{after} left an invalid graph:\n{e}") from e


def run_passes(g: Graph, names: Sequence[str] | str, verify: bool = True, dump_dir=None) -> Graph:
    """Run passes by name ("a,b" or a list) on g in place (what `ember-ir opt --passes` calls)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    return Pipeline(names).run(g, verify=verify, dump_dir=dump_dir)


# ------------------------------------------------------------------------ rewrite helpers
def replace_node(g: Graph, old: Node, new: Node) -> bool:
    """replace_all_uses(old, new) unless that would make a graph output / mutation value a graph
    input (outputs handed to the user must not alias their inputs) or change its type.
    Returns whether the rewrite happened. `old` is left for DCE."""
    if old is new:
        return False
    if old.type != new.type or old.device != new.device:
        return False
    if new.is_placeholder and (any(o is old for o in g.outputs) or any(v is old for _, v in g.mutations)):
        return False
    g.replace_all_uses(old, new)
    return True
