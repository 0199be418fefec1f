"""The pass manager: pipelines that run named passes, verifying, timing and dumping between them.

Passes are functions `fn(graph) -> bool` registered by name (ember/passes/registry.py):

    Pipeline(["decompose", "canonicalize", "dce"]).run(g, verify=True, dump_dir="/tmp/dump")

`Pipeline.run` runs the passes in order, re-runs `ember.ir.verify` after each one when asked
(tests always ask), keeps per-pass wall times in `pipeline.timings` (a list of PassTiming, read by
the inspect tool) and, when a dump directory is given (argument, or the EMBER_DUMP environment
variable: `dump_dir_from_env`, the one place ember.passes reads it), writes the graph text before
the first pass and after every pass: 00_captured.ir, 01_decompose.ir, 02_canonicalize.ir, ...
A failed verification names the pass.

Graph outputs, their order and the mutation list are never changed by a pass (the frontend binds
them by position); a rewrite that would turn a graph output into a graph input is skipped, so an
output is never the caller's input array by accident (ember/passes/rewrite.py replace_node).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ember.ir.graph import Graph
from ember.ir.verify import VerifyError, verify as verify_graph

from .registry import Pass, get_pass

__all__ = ["Pipeline", "PassTiming", "PassError", "DEFAULT_PASSES", "run_passes", "dump_dir_from_env"]


# The baseline pipeline (docs/passes.md): cleanup to a fixed point, then fusion (which is not a
# Graph -> Graph pass: see ember/passes/fusion/) and memory planning.
DEFAULT_PASSES = ("decompose", "canonicalize", "movement", "constant_fold", "canonicalize", "cse", "dce")


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
