"""Explain records: graph breaks, fallbacks, recompiles, specialisations, fusions not taken.

Every record has a stable code, a one-line reason, the user's file:line, the IR node (when there is
one) and a hint for the fix. They are collected per process (and per `collect()` context, which
ember.explain uses) and printed as they happen when EMBER_LOGS names their kind
(EMBER_LOGS=breaks,recompiles,fallbacks or EMBER_LOGS=all). This module is the one debug switch.

CODES is the table of stable codes; emit_program_records turns a fused Program's decisions into
records; listen(fn) lets the dump writer (ember/compiler/dump) file every record under its graph.
BREAKS maps what the traced code asked for (item, bool, print ...) to its break code.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, asdict

from .ir.text import format_node

KINDS = ("breaks", "recompiles", "fallbacks", "specializations", "fusions", "graphs", "guards", "cudagraphs")

# The stable codes, in one table: code -> (kind, what it means, the default hint). emit() fills a
# record's empty hint from here; docs/inspect.md lists them. Add a code here before emitting it.
CODES = {
    "B001": ("breaks", "bool() / `if` on a tensor value",
             "use ember.where / masking instead of Python `if` on tensor values"),
    "B002": ("breaks", ".item() reads a tensor value",
             "keep values as tensors; read .item() outside the compiled function"),
    "B003": ("breaks", ".tolist() reads tensor values", "keep values as tensors inside the compiled function"),
    "B004": ("breaks", ".numpy() reads tensor values", "keep values as tensors inside the compiled function"),
    "B005": ("breaks", "printing a tensor's values", "print outside the compiled function"),
    "B006": ("breaks", "an op whose output shape depends on values (nonzero / boolean-mask indexing, unique, "
                       "bincount)",
             "use masked_fill/where with a fixed shape instead of boolean-mask indexing"),
    "B007": ("breaks", "sampling (multinomial) reads probability values", "sample outside the compiled function"),
    "B008": ("breaks", "code that leaves the dispatch (raw array access)",
             "the traced code used an array directly or hit an unsupported path; see the reason"),
    "B009": ("breaks", "a backward() / autograd.grad the graph cannot capture: create_graph=True (higher-order "
                       "gradients), or gradients that must flow into a tensor computed with grad outside the "
                       "compiled function",
             "compute higher-order gradients uncompiled; pass leaf tensors (x.detach().requires_grad_()) "
             "into the compiled function, or compile the code that builds them too"),
    "B010": ("breaks", "a call to Python-level randomness or a clock (random, numpy.random, time, os.urandom) "
                       "while tracing: the graph would replay its first value forever",
             "draw random numbers with ember ops (ember.rand, dropout) or outside the compiled function"),
    "B011": ("breaks", "a traced tensor escapes the function other than through its result or a module attribute",
             "return the tensor, or assign it to a module attribute (self.x = t), which compiled code replays"),
    "B012": ("breaks", "optimizer.step(closure) inside a compiled function: the closure re-runs the model "
                       "and its loss value steers the optimizer",
             "inside the compiled step: compute the loss, call loss.backward(), then optimizer.step() without "
             "a closure"),
    "B013": ("breaks", "lr_scheduler.step() inside a compiled function: its Python counters would advance "
                       "only while tracing",
             "call scheduler.step() outside the compiled function: the learning rate is a graph input, so "
             "scheduler steps never recompile"),
    "B014": ("breaks", "a custom autograd.Function that needs gradients inside a compiled function: its "
                       "Python backward() cannot run inside the graph",
             "compute the custom gradient with ember ops (detach tricks), or call the Function outside"),
    "B015": ("breaks", "linear algebra on LAPACK (linalg.inv, solve, det, svd, qr, cholesky, eigh ...) runs "
                       "eagerly",
             "call it outside the compiled function, or compile the code before and after it separately"),
    "B099": ("breaks", "another value read while tracing", "keep values as tensors inside the compiled function"),
    "R001": ("recompiles", "a guard changed: traced and compiled again",
             "keep shapes, dtypes and Python scalars fixed between calls"),
    "R002": ("recompiles", "recompile limit reached: runs eagerly from now on",
             "keep the changing guard fixed between calls"),
    "R004": ("recompiles", "a size changed: the dimension is compiled as a symbolic size from now on "
                           "(automatic dynamic)",
             "mark varying sizes up front (ember.mark_dynamic(x, 0) or ember.compile(..., dynamic=True))"),
    "R005": ("recompiles", "a shape guard of a dynamic variant failed: another variant is compiled",
             "see the guard: a size the program specialised on (int() of a size, a reshape's divisibility)"),
    "R006": ("recompiles", "the program with symbolic sizes could not be built: the function compiles fixed sizes",
             "report the F002 record that comes with it as an ember compiler bug"),
    "F001": ("fallbacks", "an op the backend cannot generate runs as an eager extern in the compiled graph",
             "the rest of the graph is still compiled; see the reason for what is missing"),
    "F002": ("fallbacks", "the whole graph runs on the reference interpreter",
             "pass backend='llvm' (CPU) or 'cuda' to require generated code"),
    "F003": ("fallbacks", "inputs overlap in memory and the graph writes one of them in place: the call runs eagerly",
             "pass tensors that do not overlap (clone one of them) to run the compiled code"),
    "S001": ("specializations", "specialised on the value of a Python scalar argument",
             "pass a 0-d tensor instead if the value changes between calls"),
    "U001": ("fusions", "fusion not taken", ""),
    "U002": ("fusions", "a value is realised in memory between kernels", ""),
    "L001": ("fusions", "an op runs as a fused library kernel of its own between the generated kernels", ""),
    "G001": ("graphs", "graph captured", ""),
    "C001": ("cudagraphs", "a compiled program on CUDA is not captured into a CUDA graph: it runs kernel by kernel",
             "eager fallback steps and library calls not known to be capturable keep a program out of a graph"),
    "C002": ("cudagraphs", "a compiled program was captured into a CUDA graph", ""),
    "C003": ("cudagraphs", "captured again: a parameter or buffer the graph reads in place has a new address",
             "update parameters in place (optimizers do) rather than assigning new tensors to them"),
    "C004": ("cudagraphs", "skipping cudagraphs due to cpu device", "CUDA graphs apply to tensors on 'cuda'"),
    "C005": ("cudagraphs", "the outputs of every captured graph are still in use: the call runs kernel by kernel",
             "drop references to outputs of earlier calls (or .clone() what you keep)"),
    "C006": ("cudagraphs", "CUDA refused the capture: the program runs kernel by kernel from now on",
             "report it with the reason: something in the program is not capturable"),
    "C007": ("cudagraphs", "captured too many times (static inputs keep moving): runs kernel by kernel from now on",
             "keep parameters and buffers in place between calls"),
}

# What traced code asked for -> its break code (ember/compiler/capture.py raises them).
BREAKS = {"bool": "B001", "item": "B002", "tolist": "B003", "numpy": "B004", "print": "B005",
          "nonzero": "B006", "unique": "B006", "bincount": "B006", "multinomial": "B007", "escape": "B008",
          "backward": "B009", "backward_outside": "B009", "backward_create_graph": "B009", "step_closure": "B012",
          "lr_scheduler": "B013", "custom_function": "B014", "linalg": "B015"}


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
_listeners: list = []    # callables fed every record (ember/tools/dump.py files them per graph)


def _enabled_kinds():
    v = os.environ.get("EMBER_LOGS", "")
    if not v:
        return ()
    parts = {p.strip() for p in v.split(",") if p.strip()}
    return KINDS if "all" in parts else tuple(parts)


def emit(rec: Record) -> Record:
    if not rec.hint and rec.code in CODES:
        rec.hint = CODES[rec.code][2]
    _log.append(rec)
    if len(_log) > 10000:
        del _log[:5000]
    for c in _collectors:
        c.append(rec)
    for fn in _listeners:
        fn(rec)
    if rec.kind in _enabled_kinds():
        print(f"ember: {rec}", file=sys.stderr)
    return rec


def all_records() -> list:
    return list(_log)


def clear():
    _log.clear()


def listen(fn) -> None:
    """Call fn(record) for every record emitted from now on (until unlisten(fn))."""
    if fn not in _listeners:
        _listeners.append(fn)


def unlisten(fn) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def from_dict(d: dict) -> Record:
    """The inverse of Record.as_dict (reading report.json back)."""
    return Record(**{k: d[k] for k in ("kind", "code", "reason", "source", "node", "hint", "fn", "extra") if k in d})


class collect:
    """with collect() as recs: ... -> the records emitted inside."""

    def __enter__(self):
        self.records = []
        _collectors.append(self.records)
        return self.records

    def __exit__(self, *exc):
        _collectors.remove(self.records)
        return False


# Fusion decisions (FusionRecord.kind of a fused Program) that become records.
FUSION_CODES = {"not_fused": "U001", "realized": "U002"}
# eager steps that are not fallbacks: ops with a fused kernel of their own (ember/runtime/attention.py) ...
LIBRARY_STEPS = ("attention", "attention_grad")
# ... and constants handed out as buffers (a saved `full`, a mask or key an attention step reads): np.full
CONSTANT_FILL = "constant output (filled by numpy)"


def emit_program_records(program, fn: str = "", which: str = "forward") -> list:
    """Emit the records of a fused Program (duck-typed: this module imports nothing of the passes):
    U001/U002 for fusions not taken, F001 for every op left to run eagerly (an EagerStep), L001 for an
    eager step that is a fused library kernel (LIBRARY_STEPS); nothing for a constant numpy fills.
    Node names refer to program.graph; extra["graph"] says which graph ("forward"/"backward")."""
    graph = program.graph
    out = []

    def node_text(name):
        try:
            return format_node(graph.find(name))
        except Exception:
            return ""

    for fr in getattr(program, "records", []):
        code = FUSION_CODES.get(getattr(fr, "kind", ""))
        if code is None:
            continue
        nodes = list(getattr(fr, "nodes", []))
        out.append(emit(Record("fusions", code, fr.message, fr.source or "?", node_text(nodes[0]) if nodes else "",
                               fn=fn, extra={"graph": which, "nodes": nodes})))
    for st in getattr(program, "eager_steps", []):
        if st.reason == CONSTANT_FILL:
            continue
        node = getattr(st, "node", None)
        src = node.meta.get("source", "?") if node is not None else "?"
        text = format_node(node) if node is not None else ""
        if st.op in LIBRARY_STEPS:
            rec = Record("fusions", "L001", st.reason, src, text, fn=fn, extra={"graph": which, "step": st.name})
        else:
            rec = Record("fallbacks", "F001", f"{st.op} runs eagerly: {st.reason}", src, text, fn=fn,
                         extra={"graph": which, "step": st.name})
        out.append(emit(rec))
    return out
