"""Dump folders: everything ember.compile did for one graph, as text files plus report.json and index.html.

In:  a `DumpSession` per traced graph, opened by ember.compile when dumping is on
     (EMBER_DUMP=dir or ember.compile(..., dump=dir)). Compile, the pass manager and the code
     generators write into it through the hook methods below; they never import this module (they
     get the session as a `dump=` argument and call its methods), so the layers stay
     free of it.
Out: dir/<fn>_<n>/ per graph (n counts the graphs of that function in this process):

    00_captured.ir        the forward graph as traced (file:line per node); a break's partial graph
    01_<pass>.ir ...      the forward graph after each pass (DumpSession.after_pass)
    bwd_00_captured.ir    the backward graph, bwd_01_<pass>.ir ... after each pass
    fusion.txt            fusion groups and the fusions not taken, with reasons
    kernels.kir           kernel IR;  kernels.ll / kernels.opt.ll / kernels.s  LLVM IR before and
                          after optimisation, assembly;  kernels.cu  CUDA C
    executor.py           the generated executor;  memory_plan.txt  the buffer plan
    (bwd_ variants of all of these for the backward graph)
    guards.txt            the guards of this variant;  records.txt  its explain records
    timings.txt           seconds per stage;  report.json  all of the above;  index.html  the pictures

and dir/report.json + dir/index.html over all graphs of the run.

Hooks (all optional, all no-raise): graph / after_pass / pipeline (graphs after passes), program
(fusion + kernels + memory plan of a fused Program), fusion, kernels, llvm, cuda, executor,
memory_plan, text, time / timed, missing. A session is also a path (os.fspath) and prefix(which)
gives the file prefix, so `Pipeline.run(g, dump_dir=session, dump_prefix=session.prefix(which))`
writes straight into the folder; files found there at finish() are listed as stages too. A stage that was not written is
listed in report.json["missing"] with the reason: no silent gaps. Dump errors never break the
user's program: they are reported the same way.

Writing is deterministic (docs/style.md, rule 8): same program, same files, so two dumps can be diffed.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import time
from pathlib import Path

from ... import diagnostics as records

__all__ = ["DumpSession", "DumpRun", "open_session", "run_for", "add_profile", "DUMP_VERSION", "EXPECTED_STAGES"]

DUMP_VERSION = 1

# The stages a compiled (non-interpreter) graph should produce; what is absent is listed as missing.
EXPECTED_STAGES = ("passes", "fusion", "kernels", "llvm", "llvm_opt", "asm", "executor", "memory_plan")

# file name pieces per stage; backward files get the "bwd_" prefix
_STAGE_FILES = {
    "fusion": "fusion.txt", "kernels": "kernels.kir", "llvm": "kernels.ll", "llvm_opt": "kernels.opt.ll",
    "asm": "kernels.s", "cuda": "kernels.cu", "executor": "executor.py", "memory_plan": "memory_plan.txt",
}
# files this module writes (only these are cleared when a folder is reused)
_OWN_SUFFIXES = (".ir", ".kir", ".ll", ".s", ".cu", ".py", ".txt", ".json", ".html", ".dot", ".svg")

_RUNS: dict[Path, "DumpRun"] = {}

LAYOUT = "auto"      # how index.html pages draw graphs: "auto" (dot if installed), "dot", "networkx"


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_.") or "fn"
    return s[:60]


def _prefix(which: str) -> str:
    return "" if which == "forward" else "bwd_" if which == "backward" else _safe_name(which) + "_"


def run_for(root) -> "DumpRun":
    """The DumpRun writing into directory `root` in this process (created on first use)."""
    path = Path(os.fspath(root)).expanduser().resolve()
    run = _RUNS.get(path)
    if run is None:
        run = _RUNS[path] = DumpRun(path)
    return run


def open_session(root, fn: str) -> "DumpSession":
    """A new DumpSession for one graph of function `fn`, in root/<fn>_<n>/ (raises OSError when
    the directory cannot be created)."""
    return run_for(root).open(fn)


class DumpRun:
    """All graphs dumped into one directory by this process: folder numbering, the records of the
    run, and the top-level report.json / index.html (rewritten after each graph and at exit)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.counts: dict[str, int] = {}
        self.fns: set[str] = set()
        self.sessions: list[DumpSession] = []
        self.summaries: list[dict] = []
        self.records: list[list] = []     # [record, folder or None]
        records.listen(self._on_record)
        atexit.register(self.flush)

    def _on_record(self, rec) -> None:
        # G001 "captured" is noise in a report that lists the graphs; records of functions that
        # never dumped here belong to another run
        if rec.kind != "graphs" and (rec.fn in self.fns or any(not s.finished for s in self.sessions)):
            self.records.append([rec, None])

    def open(self, fn: str) -> "DumpSession":
        base = _safe_name(str(fn).rsplit("<locals>.", 1)[-1].replace("<", "").replace(">", ""))
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        s = DumpSession(self, fn, self.root / f"{base}_{n}", start=len(self.records))
        self.sessions.append(s)
        self.fns.add(fn)
        return s

    def claim(self, session: "DumpSession") -> list:
        """Records for a finished session: the ones emitted while it was open, and earlier unclaimed
        ones of the same function (the recompile record comes just before the session opens)."""
        out = []
        for i, entry in enumerate(self.records):
            rec, folder = entry
            if folder is None and (i >= session.start or rec.fn == session.fn):
                entry[1] = session.folder
                out.append(rec)
        return out

    def graph_done(self, summary: dict) -> None:
        self.summaries.append(summary)
        self.flush()

    def report(self) -> dict:
        from . import report as rp
        return rp.run_report(self)

    def flush(self) -> None:
        """Rewrite root/report.json and root/index.html (cheap: no graphs drawn at this level)."""
        try:
            data = self.report()
            _write(self.root / "report.json", json.dumps(data, indent=1, sort_keys=False) + "\n")
            from . import html
            _write(self.root / "index.html", html.run_page(data))
        except Exception as e:  # at exit nothing can be raised usefully: warn (never silent)
            import warnings
            warnings.warn(f"ember: could not write the dump index in {self.root}: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class DumpSession:
    """One graph's dump folder. The hook methods (graph, after_pass, fusion, kernels, llvm, cuda,
    executor, memory_plan, text, time, timed, missing) never raise: a failure is recorded as a
    missing stage with its reason."""

    def __init__(self, run: DumpRun, fn: str, path: Path, start: int = 0):
        self.run = run
        self.fn = fn
        self.path = path
        self.folder = path.name
        self.start = start
        self.t_open = time.perf_counter()
        self.stages: list[dict] = []          # in writing order
        self.timings: dict[str, float] = {}   # stage -> seconds
        self.missing_: dict[str, str] = {}    # stage -> why it was not written
        self.fusion_info: dict[str, dict] = {}
        self.kernel_names: dict[str, list] = {}
        self.graph_info: dict[str, dict] = {}  # which -> the captured graph's file and op counts
        self.cache_source: dict[str, str] = {}
        self._pending_llvm: dict[str, tuple] = {}
        self._module_times: set = set()  # which -> "disk" | "memory" when the code came from a cache
        self.records: list = []
        self.guards: list = []
        self.backend = None
        self.layout = None
        self.finished = False
        self._cache0 = _cache_stats()
        self._prepare()

    def __fspath__(self) -> str:
        """A session is also a path: code that only knows dump directories (the pass manager's
        `Pipeline.run(g, dump_dir=...)`) writes straight into this graph's folder."""
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    # ---------------------------------------------------------------------------- plumbing
    def _prepare(self) -> None:
        p = self.path
        if p.is_dir() and (p / "report.json").is_file():
            for f in sorted(p.iterdir()):   # a folder of an earlier run: clear what we wrote there
                if f.is_file() and f.name.endswith(_OWN_SUFFIXES):
                    f.unlink()
        p.mkdir(parents=True, exist_ok=True)

    def _file(self, stage: str, which: str, name: str, text: str, kind: str | None = None,
              seconds: float | None = None, **extra) -> str | None:
        """Write `name` and register it as a stage; a failure becomes a missing stage."""
        try:
            (self.path / name).write_text(text if text.endswith("\n") or not text else text + "\n",
                                          encoding="utf-8")
        except Exception as e:
            self.missing(f"{_prefix(which)}{stage}", f"could not write {name}: {type(e).__name__}: {e}")
            return None
        entry = {"stage": stage, "which": which, "file": name, "kind": kind or _kind_of(name),
                 "bytes": len(text.encode("utf-8"))}
        if seconds is not None:
            entry["seconds"] = seconds
        entry.update(extra)
        self.stages = [s for s in self.stages if s["file"] != name] + [entry]
        self.missing_.pop(f"{_prefix(which)}{stage}", None)
        return name

    def _scan(self) -> None:
        """Register files that others wrote into the folder directly (the pass manager's
        NN_<pass>.ir, Program.dump's fusion.kir, ...)."""
        known = {s["file"] for s in self.stages}
        try:
            files = sorted(f for f in self.path.iterdir() if f.is_file())
        except OSError:
            return
        for f in files:
            name = f.name
            if name in known or name in ("report.json", "index.html") or name.endswith(".tmp"):
                continue
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            entry = {"file": name, "kind": _kind_of(name), "bytes": len(text.encode("utf-8")), "external": True}
            m = _IR_NAME.match(name)
            if m:
                which = "backward" if m.group(1) in ("bwd_", "backward.") else "forward"
                if m.group(3) == "captured" and self._duplicate(which, text):
                    continue          # the pass manager's copy of the captured graph: listed once
                entry.update(stage=m.group(3), which=which, index=int(m.group(2)), ops=len(_OP_LINE.findall(text)))
            else:
                which = "backward" if name.startswith(("bwd_", "backward.")) else "forward"
                base = name.split(".", 1)[1] if name.startswith(("forward.", "backward.")) else \
                    name[4:] if which == "backward" else name
                stage = next((k for k, v in _STAGE_FILES.items() if v == base), None)
                if stage is None and base.endswith("fusion.kir"):
                    stage = "program"
                entry.update(stage=stage or Path(base).stem, which=which)
            self.stages.append(entry)

    def _duplicate(self, which: str, text: str) -> bool:
        for s in self.stages:
            if s["which"] == which and s["stage"] == "captured" and not s.get("external"):
                try:
                    return (self.path / s["file"]).read_text(encoding="utf-8") == text
                except OSError:
                    return False
        return False

    def has(self, stage: str, which: str = "forward") -> bool:
        return any(s["stage"] == stage and s["which"] == which for s in self.stages)

    def has_kind(self, kind: str, which: str = "forward") -> bool:
        return any(s["kind"] == kind and s["which"] == which for s in self.stages)

    # ------------------------------------------------------------------------- the hooks
    def time(self, stage: str, seconds: float) -> None:
        """Add `seconds` to stage `stage` (e.g. "trace", "passes", "codegen", "llvm")."""
        self.timings[stage] = self.timings.get(stage, 0.0) + float(seconds)

    @contextlib.contextmanager
    def timed(self, stage: str):
        """with dump.timed("codegen"): ...  adds the block's wall time to the stage."""
        t0 = time.perf_counter()
        try:
            yield self
        finally:
            self.time(stage, time.perf_counter() - t0)

    def graph(self, stage: str, graph, which: str = "forward", seconds: float | None = None) -> str | None:
        """Write a graph as NN_<stage>.ir (NN counts per `which`: 00 is the captured graph)."""
        self._scan()
        n = 1 + max((s.get("index", -1) for s in self.stages if s["kind"] == "ir" and s["which"] == which),
                    default=-1)
        name = f"{_prefix(which)}{n:02d}_{_safe_name(stage)}.ir"
        try:
            text = str(graph)
        except Exception as e:
            self.missing(f"{_prefix(which)}{stage}", f"the graph does not print: {type(e).__name__}: {e}")
            return None
        counts: dict[str, int] = {}
        for x in graph.nodes():
            if not x.is_placeholder:
                counts[x.op] = counts.get(x.op, 0) + 1
        ops = sum(counts.values())
        if stage == "captured":
            self.graph_info[which] = {"file": name, "inputs": len(graph.inputs), "ops": ops,
                                      "op_counts": dict(sorted(counts.items()))}
        return self._file(stage, which, name, text, "ir", seconds, ops=ops, index=n)

    def after_pass(self, name: str, graph, seconds: float | None = None, which: str = "forward") -> str | None:
        """The pass manager's hook: the graph after pass `name` took `seconds`."""
        if seconds is not None:
            self.time(f"pass:{name}", seconds)
        return self.graph(name, graph, which, seconds)

    def fusion(self, groups, graph=None, which: str = "forward", text: str | None = None) -> str | None:
        """Fusion groups of `graph` (the graph fusion ran on): a list of (name, kind, nodes) with kind
        'kernel' | 'extern' | 'eager' and nodes the graph's Nodes (or their printed names). Fusions
        not taken are Records (code U001) emitted through ember.diagnostics, not passed here.
        `text` (e.g. str(program)) is appended to fusion.txt."""
        try:
            rows = []
            for name, kind, nodes in groups:
                names = [x if isinstance(x, str) else x.name for x in nodes]
                rows.append({"name": str(name), "kind": str(kind), "nodes": names})
            graph_file = None
            self._scan()
            if graph is not None:
                graph_file = self.graph("fusion_input", graph, which) if not self._same_as_last(graph, which) \
                    else self._last_graph_file(which)
            self.fusion_info[which] = {"graph": graph_file, "groups": rows}
            lines = [f"fusion of {graph_file or 'the graph'}: {len(rows)} group(s)"]
            for r in rows:
                lines.append(f"  {r['kind']:<6} {r['name']}: {' '.join(r['nodes'])}")
            if text:
                lines += ["", text.rstrip("\n")]
            return self._file("fusion", which, _prefix(which) + _STAGE_FILES["fusion"], "\n".join(lines))
        except Exception as e:
            self.missing(f"{_prefix(which)}fusion", f"{type(e).__name__}: {e}")
            return None

    def program(self, program, which: str = "forward") -> None:
        """The fused Program (ember/ir/program.py): fusion groups + decisions (fusion.txt), kernel
        IR (kernels.kir) and the memory plan when there is one. Duck-typed."""
        try:
            groups = []
            for st in program.steps:
                kind = type(st).__name__.replace("Step", "").lower()          # kernel | extern | eager
                nodes = getattr(st, "nodes", None) or ([st.node] if getattr(st, "node", None) is not None else [])
                groups.append((st.name, kind, nodes))
            self.fusion(groups, program.graph, which, text=str(program))
            self.kernels(program.compiled_objects(), which)
            if getattr(program, "memory", None) is not None:
                self.memory_plan(program.memory, which)
            t = getattr(program, "timings", None) or {}
            for pt in t.get("passes", []):
                self.time(f"{_prefix(which)}pass:{pt.name}", pt.seconds)
            for k in ("fusion_s", "memory_s"):
                if k in t:
                    self.time(f"{_prefix(which)}{k[:-2]}", t[k])
        except Exception as e:
            self.missing(f"{_prefix(which)}fusion", f"{type(e).__name__}: {e}")

    def pipeline(self, pipeline, which: str = "forward") -> None:
        """After `Pipeline.run(g, dump_dir=session, dump_prefix=...)`: file its per-pass timings
        (the .ir files it wrote are picked up from the folder)."""
        for t in getattr(pipeline, "timings", []):
            self.time(f"{_prefix(which)}pass:{t.name}", t.seconds)
        self._scan()

    def kernels(self, kernels, which: str = "forward") -> str | None:
        """Kernel IR of the fused program (Kernel / ExternKernel objects, or their text)."""
        try:
            ks = list(kernels)
            self.kernel_names[which] = [getattr(k, "name", f"k{i}") for i, k in enumerate(ks)]
            text = "\n\n".join(str(k).rstrip("\n") for k in ks)
            return self._file("kernels", which, _prefix(which) + _STAGE_FILES["kernels"], text,
                              count=len(ks))
        except Exception as e:
            self.missing(f"{_prefix(which)}kernels", f"{type(e).__name__}: {e}")
            return None

    def llvm(self, ir_text: str, optimized: str | None = None, assembly: str | None = None,
             which: str = "forward") -> None:
        """LLVM IR as generated. The optimised IR and the assembly, when not given, are derived at
        finish() (after the compile time was taken: deriving them re-runs LLVM)."""
        self._file("llvm", which, _prefix(which) + _STAGE_FILES["llvm"], ir_text)
        if optimized is not None:
            self._file("llvm_opt", which, _prefix(which) + _STAGE_FILES["llvm_opt"], optimized)
        if assembly is not None:
            self._file("asm", which, _prefix(which) + _STAGE_FILES["asm"], assembly)
        if optimized is None or assembly is None:
            self._pending_llvm[which] = (ir_text, optimized, assembly)

    def _derive_llvm(self, which, ir_text, optimized, assembly) -> None:
        """The O3 module's text and the host assembly, from one optimisation of ir_text."""
        try:
            from ...codegen import llvm as cg
            from ...runtime import cpu
            with self.timed(f"dump:{_prefix(which)}llvm_opt+asm"):
                tm = cg.host_target_machine()
                mod = cpu.optimize_ir(ir_text, tm)
                if optimized is None:
                    optimized = str(mod)
                    self._file("llvm_opt", which, _prefix(which) + _STAGE_FILES["llvm_opt"], optimized)
                if assembly is None:
                    assembly = tm.emit_assembly(mod)
                    self._file("asm", which, _prefix(which) + _STAGE_FILES["asm"], assembly)
        except Exception as e:
            for st, have in (("llvm_opt", optimized), ("asm", assembly)):
                if have is None:
                    self.missing(f"{_prefix(which)}{st}", f"{type(e).__name__}: {_first_line(e)}")

    def cuda(self, source: str, which: str = "forward") -> str | None:
        return self._file("cuda", which, _prefix(which) + _STAGE_FILES["cuda"], source)

    def executor(self, source: str, which: str = "forward") -> str | None:
        """The generated executor's Python source."""
        return self._file("executor", which, _prefix(which) + _STAGE_FILES["executor"], source)

    def memory_plan(self, plan, which: str = "forward") -> str | None:
        """The buffer plan (any object; its str() is written)."""
        return self._file("memory_plan", which, _prefix(which) + _STAGE_FILES["memory_plan"], str(plan))

    def text(self, name: str, text: str, stage: str | None = None, which: str = "forward") -> str | None:
        """Any other artefact, written as `name` in the folder."""
        return self._file(stage or Path(name).stem, which, _safe_name(name), text)

    def prefix(self, which: str = "forward") -> str:
        """The file-name prefix of `which`'s stages ("" forward, "bwd_" backward): pass it as the pass
        manager's dump_prefix so its NN_<pass>.ir files line up with 00_captured.ir."""
        return _prefix(which)

    def missing(self, stage: str, reason: str) -> None:
        """Record that `stage` was not written, and why (listed in report.json and index.html)."""
        self.missing_[stage] = " ".join(str(reason).split())

    # -------------------------------------------------------------------- compile's calls
    def captured(self, cg) -> None:
        """ember.compile, after tracing and before the backend: the forward and backward graphs."""
        self.graph("captured", cg.graph, "forward")
        bw = getattr(cg, "backward", None)
        if bw:
            self.graph("captured", bw.graph, "backward")

    def finish(self, cg=None, cf=None, guards=None, status: str = "compiled", record=None, partial=None) -> None:
        """ember.compile, at the end: harvest what the backend left on `cg`, file the records,
        work out what is missing and why, write guards/records/timings/report.json/index.html.
        For a graph break: status="break", record=the break Record, partial=the graph traced so far."""
        if self.finished:
            return
        self.finished = True
        try:
            self._finish(cg, cf, guards, status, record, partial)
        except Exception as e:  # never break the user's program over a dump
            self.missing("report", f"{type(e).__name__}: {e}")
            try:
                _write(self.path / "report.json", json.dumps(
                    {"ember_dump": DUMP_VERSION, "fn": self.fn, "folder": self.folder, "status": status,
                     "missing": [{"stage": k, "reason": v} for k, v in self.missing_.items()]}, indent=1) + "\n")
            except Exception:
                pass
            self.run.graph_done({"folder": self.folder, "fn": self.fn, "status": status, "error": str(e)})

    def _finish(self, cg, cf, guards, status, record, partial):
        from . import html
        from . import report as rp
        self._scan()
        if status == "break":
            self.time("trace", time.perf_counter() - self.t_open)
            if partial is not None and not self.has("captured"):
                self.graph("captured", partial, "forward")
        if cg is not None:
            self._harvest(cg)
        for which, args in list(self._pending_llvm.items()):
            self._derive_llvm(which, *args)
        self._pending_llvm.clear()
        self.records = self.run.claim(self)
        if record is not None and record not in self.records:
            self.records.append(record)
        self.guards = list(guards or [])
        for t, (shape, dtype, device, rg), name in getattr(cg, "const_guards", None) or []:
            self.guards.append(f"captured tensor {name}: shape {tuple(shape)}, dtype {dtype.name}, device {device}, "
                               f"requires_grad {rg}")
        self.cache_delta = _cache_delta(self._cache0, _cache_stats())
        self.backend = getattr(cg, "backend", None) if cg is not None else None
        self._explain_missing(cg, status, self.backend)
        self._file("guards", "forward", "guards.txt", "\n".join(self.guards) if self.guards else "(no guards)")
        self._file("records", "forward", "records.txt", "\n".join(str(r) for r in self.records)
                   if self.records else "(no breaks, fallbacks, recompiles or fusion records)")
        compile_s = cg.stats.get("compile_time_s") if cg is not None else None
        self._file("timings", "forward", "timings.txt", rp.timings_text(self.timings, compile_s))
        try:
            page, self.layout = html.graph_page(self.path, rp.graph_report(self, cg, cf, status), LAYOUT)
            self._file("html", "forward", "index.html", page, "html")
        except Exception as e:
            self.missing("index.html", f"{type(e).__name__}: {e}")
        data = rp.graph_report(self, cg, cf, status)
        _write(self.path / "report.json", json.dumps(data, indent=1) + "\n")
        self.run.graph_done(rp.graph_summary(data))

    def _sorted_stages(self) -> list:
        rank = {"ir": 0, "txt": 1, "kir": 2, "ll": 3, "asm": 4, "cuda": 5, "py": 6, "json": 8, "html": 9}
        return sorted(self.stages, key=lambda s: (s["which"] != "forward", s["which"], rank.get(s["kind"], 7),
                                                  s.get("index", 0), s["file"]))

    def _harvest(self, cg) -> None:
        """Take what a backend left on the compiled graph when it did not write it itself
        (duck-typed: executors with .source / .module.llvm_ir / .program / .memory_plan)."""
        for which, ex in (("forward", getattr(cg, "forward_exec", None)),
                          ("backward", getattr(cg, "backward_exec", None))):
            if ex is None:
                continue
            src = getattr(ex, "source", None)
            if isinstance(src, str) and not self.has("executor", which):
                self.executor(src, which)
            prog = getattr(ex, "program", None)
            if prog is not None and not self.has("fusion", which) and hasattr(prog, "compiled_objects"):
                self.program(prog, which)
            plan = getattr(ex, "memory_plan", None) or getattr(prog, "memory_plan", None)
            if plan is not None and not self.has("memory_plan", which):
                self.memory_plan(plan, which)
            mod = getattr(ex, "module", None)
            if mod is None:
                continue
            if not self.has("llvm", which):
                try:
                    ir_text = mod.llvm_ir
                except Exception as e:
                    ir_text = None
                    self.missing(f"{_prefix(which)}llvm", f"{type(e).__name__}: {e}")
                if ir_text:
                    self.llvm(ir_text, which=which)
            if which not in self._module_times:
                self._module_times.add(which)
                for k, v in (getattr(mod, "times", None) or {}).items():
                    if k != "total_s":
                        self.time(f"{_prefix(which)}{k[:-2] if k.endswith('_s') else k}", v)
            if getattr(mod, "source", None) in ("disk", "memory"):
                self.cache_source[which] = mod.source

    def _explain_missing(self, cg, status, backend) -> None:
        """Every expected stage that is not there gets a reason."""
        if status == "break":
            return       # nothing was meant to be compiled: the break record says why
        if backend in ("eager", "interpreter"):
            reason = (f"backend {backend!r}: the graph runs on the reference interpreter "
                      "(no passes, kernels or generated code)")
        elif not _passes_available():
            reason = "ember.passes is not available in this build"
        else:
            reason = f"backend {backend!r} did not report this stage to the dump"
        whiches = ["forward"] + (["backward"] if cg is not None and getattr(cg, "backward", None) else [])
        for which in whiches:
            for stage in EXPECTED_STAGES:
                if stage == "passes":
                    present = any(s["kind"] == "ir" and s["which"] == which and s["stage"] != "captured"
                                  for s in self.stages)
                else:
                    present = self.has(stage, which)
                if not present:
                    self.missing_.setdefault(f"{_prefix(which)}{stage}", reason)
            if getattr(getattr(cg, "device", None), "type", "cpu") == "cuda" and not self.has("cuda", which):
                self.missing_.setdefault(f"{_prefix(which)}cuda", reason)

    def _last_graph_file(self, which):
        files = [s for s in self.stages if s["kind"] == "ir" and s["which"] == which]
        return max(files, key=lambda s: (s.get("index", 0), not s.get("external")))["file"] if files else None

    def _same_as_last(self, graph, which) -> bool:
        last = self._last_graph_file(which)
        if last is None:
            return False
        try:
            return (self.path / last).read_text(encoding="utf-8") == str(graph)
        except OSError:
            return False


# NN_<stage>.ir written here or by the pass manager: "01_cse.ir", "bwd_01_cse.ir", or with
# ember.passes.compile_graph's prefix "forward.01_cse.ir" / "backward.01_cse.ir"
_IR_NAME = re.compile(r"^(bwd_|backward\.|forward\.)?(\d\d)_(.+)\.ir$")
_OP_LINE = re.compile(r"^\s+%[^\s:]+ = ", re.M)


def add_profile(folder, table: str, rows: list[dict]) -> None:
    """ember.profiler, when it stops: the rows of this graph's kernels and library calls go into its
    dump folder as profile.txt and report.json["profile"], and index.html is drawn again with them.
    A later profile replaces an earlier one.  Never raises (a dump never breaks the user's program)."""
    from . import html
    path = Path(folder)
    try:
        _write(path / "profile.txt", table + "\n")
        data = json.loads((path / "report.json").read_text(encoding="utf-8"))
        data["profile"] = rows
        stages = [s for s in data.get("stages", []) if s.get("file") != "profile.txt"]
        stages.append({"stage": "profile", "which": "forward", "file": "profile.txt", "kind": "txt",
                       "bytes": (path / "profile.txt").stat().st_size})
        data["stages"] = stages
        _write(path / "report.json", json.dumps(data, indent=1) + "\n")
        page, _ = html.graph_page(path, data, data.get("layout") or LAYOUT)
        _write(path / "index.html", page)
    except Exception as e:              # a folder removed or damaged since: say so, carry on
        import warnings
        warnings.warn(f"ember.profiler: cannot add the profile to the dump {folder}: {_first_line(e)}", stacklevel=3)


def _first_line(e) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


def _kind_of(name: str) -> str:
    for suffix, kind in ((".opt.ll", "ll"), (".ir", "ir"), (".kir", "kir"), (".ll", "ll"), (".s", "asm"),
                         (".cu", "cuda"), (".py", "py"), (".html", "html"), (".json", "json")):
        if name.endswith(suffix):
            return kind
    return "txt"


def _passes_available() -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec("ember.passes") is not None and \
            any(Path(importlib.util.find_spec("ember.passes").submodule_search_locations[0]).glob("*.py"))
    except Exception:
        return False


def _cache_stats() -> dict:
    try:
        from ...runtime import cache
        return cache.stats()
    except Exception:
        return {}


def _cache_delta(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0) - a.get(k, 0) for k in ("hits", "misses", "damaged", "writes")
            if isinstance(b.get(k, 0), int)}
