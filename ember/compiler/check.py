"""Checking compiled code against a float64 reference, and finding what made it wrong.

    ember.compile(f, options={"check": "fp64"})        # or EMBER_CHECK=fp64 in the environment
    f(x)      # every compiled graph also runs on the reference interpreter in float64; a result
              # outside the dtype's tolerance raises CheckError naming what diverged first

In: a captured Graph, the executor the backend built for it, the arrays of each call.  Out: the
same results, or CheckError whose message names

  * the first pass after which the (float64-interpreted) graph no longer gives the captured
    graph's answer: a wrong rewrite;
  * else the first value of the compiled program that diverges from the float64 value of its node
    in the optimised graph, the graph node (with its source line) and the kernel that computed it,
    and whether the kernel-IR reference evaluator agrees (then the machine code is wrong) or not
    (then fusion built a wrong kernel).

On a mismatch the graph and the call's inputs are saved as a repro (`check_repro/<which>.ir` and
`<which>.npz`, in the dump folder when dumping, else in a fresh temporary folder) that
`ember-ir bisect DIR` re-runs with passes and fusion decisions switched off one by one
(`bisect()` below): it names the first pass, fusion decision or kernel that changes the answer.

Tolerances come from the compared dtype: |got - ref| <= sqrt(eps) * (|ref| + max(1, max|ref|)),
NaN where the reference has NaN, infinities equal; integers and bools exactly.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..ir import dtypes as dt
from ..ir.graph import Graph
from ..ir.ops import TType
from ..ir.text import format_node
from .interpreter import Interpreter

__all__ = ["CheckError", "CheckedExecutor", "float64_graph", "mismatch", "bisect", "save_repro", "load_repros",
           "check_mode"]

_LOW_FLOATS = (dt.float16, dt.float32)


class CheckError(RuntimeError):
    """A compiled graph disagrees with its float64 reference (check mode)."""


def check_mode(options: dict) -> str | None:
    """The check requested by compile options or EMBER_CHECK ("fp64" or None)."""
    mode = (options or {}).get("check") or os.environ.get("EMBER_CHECK") or None
    if mode not in (None, "fp64"):
        raise ValueError(f"ember.compile: unknown check {mode!r} (expected 'fp64')")
    return mode


# ========================================================================= the reference
def float64_graph(graph: Graph) -> tuple[Graph, dict]:
    """A copy of graph computing in float64 wherever it computed in float16/float32 (node types and
    dtype attributes), and the map old node -> new node."""
    g, mapping = graph.copy()
    for n in g.nodes():
        if n.type.dtype in _LOW_FLOATS:
            n.type = TType(n.type.shape, dt.float64)
        if n.attrs.get("dtype") in _LOW_FLOATS:
            n.attrs["dtype"] = dt.float64
    return g, mapping


def _to64(a):
    a = np.asarray(a)
    return a.astype(np.float64) if a.dtype in (np.float16, np.float32) else a


class Reference:
    """The float64 interpretation of one graph, built once."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.g64, self.mapping = float64_graph(graph)
        self.interp = Interpreter(self.g64, np)

    def results(self, arrays) -> list:
        return self.interp.run([_to64(a) for a in arrays])

    def values(self, arrays) -> dict:
        """{node of the original graph: float64 value}."""
        vals = self.interp.run_all([_to64(a) for a in arrays])
        return {n: vals[m] for n, m in self.mapping.items()}


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def mismatch(got, ref, dtype=None) -> str | None:
    """None when `got` matches the float64 reference `ref` within `dtype`'s tolerance (default:
    got's dtype), else a one-line description of the worst difference."""
    got, ref = _host(got), np.asarray(ref)
    if got.shape != ref.shape:
        return f"shape {got.shape} != reference {ref.shape}"
    d = np.dtype(dtype) if dtype is not None else got.dtype
    if d.kind not in "fc":
        bad = got != ref.astype(got.dtype)
        if bad.any():
            i = np.unravel_index(np.argmax(bad), bad.shape)
            return (f"{int(bad.sum())} of {bad.size} values differ (first at {tuple(map(int, i))}: "
                    f"{got[i].item()!r} vs {ref[i].item()!r})")
        return None
    g, r = got.astype(np.float64), ref.astype(np.float64)
    nan_r, nan_g = np.isnan(r), np.isnan(g)
    if (nan_r != nan_g).any():
        i = np.unravel_index(np.argmax(nan_r != nan_g), r.shape)
        return f"{float(g[i])} where the reference has {float(r[i])} at {tuple(map(int, i))}"
    fin = np.isfinite(r)
    if (np.isinf(r) != np.isinf(g)).any() or (r[~fin & ~nan_r] != g[~fin & ~nan_r]).any():
        return "an infinity differs from the reference"
    if not fin.any():
        return None
    tol = float(np.sqrt(np.finfo(d).eps))
    scale = max(1.0, float(np.abs(r[fin]).max()))
    err = np.where(fin, np.abs(g - r), 0.0)
    bound = tol * (np.abs(r) + scale)
    if (err > bound).any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        return (f"max abs error {float(err.max()):.3g} (tolerance {tol:.2g} x (|ref| + {scale:.3g}) for "
                f"{d.name}); at {tuple(map(int, i))}: {float(g[i]):.7g} vs reference {float(r[i]):.7g}")
    return None


def _first_output_mismatch(results, refs) -> tuple | None:
    for i, (a, r) in enumerate(zip(results, refs)):
        why = mismatch(a, r)
        if why is not None:
            return i, why
    return None


# ====================================================================== localisation
def _graph_after_passes(graph: Graph, passes):
    """(pass name, graph after it) for each pass of the pipeline, on one copy of graph."""
    from ..passes.manager import Pipeline
    g = graph.copy()[0]
    for p in Pipeline(passes).passes:
        p(g)
        yield p.name, g


def guilty_pass(graph: Graph, arrays, refs, passes=None) -> tuple | None:
    """(index, pass name, output index, why) of the first pass after which the float64 graph no
    longer reproduces `refs` (the captured graph's float64 results); None when all passes do."""
    from ..passes.manager import DEFAULT_PASSES
    for k, (name, g) in enumerate(_graph_after_passes(graph, passes or DEFAULT_PASSES), 1):
        out = Reference(g).results(arrays)
        for i, (a, r) in enumerate(zip(out, refs)):
            why = mismatch(a, r, _dtype_of(graph, i))
            if why is not None:
                return k, name, i, why
    return None


def _dtype_of(graph, i):
    nodes = list(graph.outputs) + [v for _, v in graph.mutations]
    return nodes[i].dtype.np


def guilty_value(executor, arrays) -> tuple | None:
    """(step, value, node, why) of the first value the compiled program computes that diverges
    from the float64 value of its node (steps in execution order); None when all agree."""
    prog = getattr(executor, "program", None)
    if prog is None or not hasattr(executor, "run_values"):
        return None
    got = executor.run_values(arrays)
    ref = Reference(prog.graph).values(arrays)
    for s in prog.steps:
        for w in s.writes:
            v = prog.values[w]
            if v.node is None or v.node not in ref:
                continue
            why = mismatch(got[w], ref[v.node])
            if why is not None:
                return s, v, v.node, why
    return None


def _executor(program, device: str):
    """An executor of program on device ("llvm" | "numpy"), eager steps through the eager kernels."""
    from ..frontend import dispatch
    from ..runtime.executor import Executor
    return Executor(program, device, eager_kernels=dispatch.KERNELS)


def _device_name(executor) -> str:
    """'llvm', 'numpy' or 'cuda': what ran the executor's kernels ('' for an interpreter)."""
    name = getattr(getattr(executor, "device", None), "name", "")
    return "llvm" if name == "cpu" else name


def _step_kind(step) -> str:
    from ..ir.program import EagerStep, ExternStep
    if isinstance(step, EagerStep):
        return "eager step"
    return "extern (matmul) with its epilogue" if isinstance(step, ExternStep) else "kernel"


def _node_line(node) -> str:
    src = node.meta.get("source")
    return f"{format_node(node).split('#')[0].rstrip()}" + (f" at {src}" if src else "")


def guilty_node(program, runner, arrays) -> tuple | None:
    """(node, why) of the first node of the program's graph, in topological order, whose compiled
    value diverges from float64: the graph is compiled again with every node an output (nothing
    stays inlined in a kernel), so values fused away become visible."""
    from ..passes import compile_graph
    g, mapping = program.graph.copy()
    nodes = [n for n in g.nodes() if not n.is_placeholder]
    g.set_outputs(nodes)
    g._mutations = []
    ex = _executor(compile_graph(g, passes=()), runner)
    got = ex.run(arrays)
    ref = Reference(g).results(arrays)
    back = {new: old for old, new in mapping.items()}
    for n, a, r in zip(nodes, got, ref):
        why = mismatch(a, r)
        if why is not None:
            return back[n], why
    return None


def explain_value(executor, arrays) -> list[str]:
    """Lines naming the first diverging graph node of a compiled program, the kernel that computed
    it, and whether the kernel-IR evaluator agrees with the machine code."""
    found = guilty_value(executor, arrays)
    if found is None:
        return []
    step, value, node, why = found
    runner = _device_name(executor)
    lines = []
    try:
        first = guilty_node(executor.program, runner or "numpy", arrays)
    except Exception:       # the instrumented compile is a refinement only
        first = None
    if first is not None and first[0] is not node:
        lines.append(f"first diverging node: {_node_line(first[0])}: {first[1]}")
        lines.append(f"  inside {_step_kind(step)} {step.name}, whose stored value {value.name} = "
                     f"{_node_line(node)} diverges")
    else:
        lines += [f"first diverging node: {_node_line(node)} (stored as {value.name})",
                  f"  computed by {_step_kind(step)} {step.name}: {why}"]
    if runner and runner != "numpy":
        ref_ex = _executor(executor.program, "numpy")
        again = guilty_value(ref_ex, arrays)
        if again is None:
            lines.append(f"  the kernel-IR evaluator computes {step.name} right: the {runner} code generated "
                         "for it is wrong")
        elif again[0].name == step.name:
            lines.append(f"  the kernel-IR evaluator agrees with {runner}: fusion lowered {step.name} wrong")
    return lines


# ========================================================================== check mode
class CheckedExecutor:
    """Wraps a backend's executor: every run is compared with the float64 reference (see module doc).
    Everything else (program, source, runner ...) is the wrapped executor's."""

    def __init__(self, graph: Graph, inner, which: str, fn_name: str, repro_dir=None):
        self.graph = graph
        self.inner = inner
        self.which = which
        self.fn_name = fn_name
        self.repro_dir = repro_dir
        self.reference = Reference(graph)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, arrays):
        ins = [np.array(_host(a)) for a in arrays]    # copies: the program may write inputs in place
        results = self.inner.run(arrays)
        refs = self.reference.results(ins)
        bad = _first_output_mismatch(results, refs)
        if bad is not None:
            raise CheckError(self._report(ins, refs, *bad))
        return results

    __call__ = run

    def _report(self, arrays, refs, out_index, why) -> str:
        lines = [f"ember.compile check (fp64): the {self.which} graph of {self.fn_name} differs from its float64 "
                 f"reference", f"  result {out_index}: {why}"]
        try:
            p = guilty_pass(self.graph, arrays, refs)
            if p is not None:
                k, name, i, pwhy = p
                lines.append(f"  the graph after pass {k} `{name}` already gives a different result {i} "
                             f"(a wrong rewrite): {pwhy}")
            else:
                lines += ["  " + x for x in explain_value(self.inner, arrays)]
        except Exception as e:    # the diagnosis must not hide the mismatch itself
            lines.append(f"  (localising failed: {type(e).__name__}: {e})")
        try:
            where = save_repro(self.repro_dir, self.which, self.graph, arrays)
            lines.append(f"  repro saved in {where}: `ember-ir bisect {where.parent}` names the first pass, "
                         "fusion decision or kernel that changes the answer")
        except OSError as e:
            lines.append(f"  (could not save a repro: {e})")
        return "\n".join(lines)


# ================================================================================ repros
REPRO = "check_repro"


def save_repro(directory, which: str, graph: Graph, arrays) -> Path:
    """Write `which`.ir (the captured graph) and `which`.npz (one array per graph input) into
    DIRECTORY/check_repro/ (a fresh temporary directory when None); returns the .ir path."""
    from ..ir.text import print_graph
    base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="ember_check_"))
    d = base / REPRO
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{which}.ir").write_text(print_graph(graph) + "\n")
    np.savez(d / f"{which}.npz", *[_host(a) for a in arrays])
    return d / f"{which}.ir"


def load_repros(directory) -> list[tuple[str, Graph, list]]:
    """[(name, graph, input arrays)] of the repros under DIRECTORY (a dump, a graph folder of a
    dump, or a check_repro folder), in a fixed order."""
    from ..ir.text import parse
    root = Path(directory)
    found = []
    for ir_file in sorted(root.rglob("*.ir")):
        if ir_file.parent.name != REPRO or not ir_file.with_suffix(".npz").is_file():
            continue
        if ir_file.is_symlink() or not ir_file.resolve().is_relative_to(root.resolve()):
            continue
        graph = parse(ir_file.read_text())
        with np.load(ir_file.with_suffix(".npz"), allow_pickle=False) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
        found.append((str(ir_file.relative_to(root)), graph, arrays))
    return found


# ================================================================================ bisect
_FUSION_DECISIONS = (("horizontal", "horizontal fusion (kernels over one domain merged)"),
                     ("epilogues", "matmul epilogue fusion"),
                     ("recompute_budget", "recomputing shared pointwise values in several kernels"))


def bisect(graph: Graph, arrays, runner: str = "llvm", passes=None) -> list[str]:
    """Re-run `graph` on `arrays` with passes and fusion decisions switched off one by one; lines
    naming the first pass, fusion decision or kernel that changes the answer (or saying that the
    compiled graph agrees with the reference)."""
    from ..passes import compile_graph
    from ..passes.fusion import FusionOptions
    from ..passes.manager import DEFAULT_PASSES
    passes = tuple(passes or DEFAULT_PASSES)
    refs = Reference(graph).results(arrays)

    def answer(fusion=None, run_passes=passes, run=runner):
        prog = compile_graph(graph, passes=run_passes, fusion=fusion)
        ex = _executor(prog, run)
        return ex, _first_output_mismatch(ex.run(arrays), refs)

    ex, bad = answer()
    if bad is None:
        return [f"{graph.name}: the compiled graph ({runner}) agrees with the float64 reference: nothing to bisect"]
    lines = [f"{graph.name}: result {bad[0]} differs from the float64 reference: {bad[1]}"]
    p = guilty_pass(graph, arrays, refs, passes)
    if p is not None:
        k, name, i, why = p
        lines.append(f"first pass that changes the answer: {k} `{name}` (result {i}: {why})")
        return lines
    lines.append("every pass keeps the answer (the float64 graph after each pass agrees)")
    for attr, what in _FUSION_DECISIONS:
        opts = FusionOptions()
        setattr(opts, attr, 0 if attr == "recompute_budget" else False)
        _, bad_off = answer(fusion=opts)
        if bad_off is None:
            lines.append(f"fusion decision that changes the answer: {what} (switched off, the result is right)")
            break
    value = explain_value(ex, arrays)
    lines += value or ["no single program value diverges: the difference comes from how the results are "
                       "assembled (aliasing or output order)"]
    return lines
