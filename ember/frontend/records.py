"""Explain records: graph breaks, fallbacks, recompiles, specialisations, fusions not taken.

Every record has a stable code, a one-line reason, the user's file:line, the IR node (when there is
one) and a hint for the fix. They are collected per process (and per `collect()` context, which
ember.explain uses) and printed as they happen when EMBER_LOGS names their kind
(EMBER_LOGS=breaks,recompiles,fallbacks or EMBER_LOGS=all). This module is the one debug switch.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, asdict

KINDS = ("breaks", "recompiles", "fallbacks", "specializations", "fusions", "graphs", "guards")


@dataclass
class Record:
    kind: str            # one of KINDS
    code: str            # stable code, e.g. B001 (break), R001 (recompile), F001 (fallback)
    reason: str
    source: str = "?"    # user file:line
    node: str = ""       # IR node text, when there is one
    hint: str = ""
    fn: str = ""         # the compiled function's name
    extra: dict = field(default_factory=dict)

    def __str__(self):
        s = f"[{self.code}] {self.kind[:-1] if self.kind.endswith('s') else self.kind} in {self.fn or '?'} at {self.source}: {self.reason}"
        if self.node:
            s += f"\n    node: {self.node}"
        if self.hint:
            s += f"\n    hint: {self.hint}"
        return s

    def as_dict(self):
        return asdict(self)


_log: list = []
_collectors: list = []


def _enabled_kinds():
    v = os.environ.get("EMBER_LOGS", "")
    if not v:
        return ()
    parts = {p.strip() for p in v.split(",") if p.strip()}
    return KINDS if "all" in parts else tuple(parts)


def emit(rec: Record) -> Record:
    _log.append(rec)
    if len(_log) > 10000:
        del _log[:5000]
    for c in _collectors:
        c.append(rec)
    if rec.kind in _enabled_kinds():
        print(f"ember: {rec}", file=sys.stderr)
    return rec


def all_records() -> list:
    return list(_log)


def clear():
    _log.clear()


class collect:
    """with collect() as recs: ... -> the records emitted inside."""

    def __enter__(self):
        self.records = []
        _collectors.append(self.records)
        return self.records

    def __exit__(self, *exc):
        _collectors.remove(self.records)
        return False
