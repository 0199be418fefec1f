"""ember.profiler: where a step's time goes, per compiled kernel, library call and eager op
(shaped like torch.profiler).

    with ember.profiler.profile() as prof:
        for _ in range(10):
            train_step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))

In: whatever runs inside the `with` block.  Out: events (name, kind, start/end, bytes, flops) and
their per-name averages as a table.  Kinds:
  kernel   a generated (fused) kernel of a compiled program: `<graph>.<kernel name>`; bytes are what
           it reads and writes, each buffer once (Kernel.bytes_moved)
  extern   a library call of a compiled program (GEMM, convolution); GFLOP/s.  Its fused epilogue
           (bias, activation, ...) is a kernel row of its own, `<graph>.<extern name>.epilogue`,
           nested inside it (the extern's self time is the library call alone)
  eager    a compiled program's eager fallback step, or an eager op (ember.frontend.dispatch);
           bytes are its input and output arrays
  user     a range marked with `record_function(name)`
  graph    a CUDA graph replay of a compiled program (mode="reduce-overhead", whole steps on CUDA):
           `<graph>.cuda_graph`, the copies of its inputs and the one launch
On CUDA, `prof.launch_counts` says what the host issued while recording (ember.runtime.cuda.COUNTER:
kernels, library launches, graph replays, copies, host waits) and the table's footer sums it up.
GB/s is compared with the copy bandwidth of this machine (a numpy copy measured once per process,
on one and on all threads, the larger figure), GFLOP/s with a numpy float32 GEMM measured the same way.

Zero cost when off: nothing on any hot path checks for a profiler.  While one records it swaps the
step functions in every compiled executor's generated code (their module-level names) and the
entries of the eager kernel table for timed wrappers, and puts the originals back when it stops.
Times are host wall-clock times: on a GPU they cover the launch, not the kernel.
"""
from __future__ import annotations

import enum
import json
import math
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .ir.sizes import evaluate

__all__ = ["profile", "record_function", "ProfilerActivity", "FunctionEvent", "FunctionEventAvg", "EventList",
           "copy_bandwidth_gbs", "gemm_peak_gflops"]


class ProfilerActivity(enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"


@dataclass
class FunctionEvent:
    """One timed call.  Times in microseconds, like torch.profiler's events."""
    name: str
    kind: str
    start_us: float
    end_us: float
    self_cpu_time_total: float      # end - start - time of events nested inside it
    nbytes: int = 0
    flops: int = 0
    thread: int = 0

    @property
    def cpu_time_total(self) -> float:
        return self.end_us - self.start_us


class FunctionEventAvg:
    """All calls of one name: totals in microseconds (torch.profiler's field names)."""

    def __init__(self, key: str, kind: str):
        self.key, self.kind = key, kind
        self.count = 0
        self.self_cpu_time_total = 0.0
        self.cpu_time_total = 0.0
        self.nbytes = 0                 # summed over calls
        self.flops = 0

    def add(self, e: FunctionEvent) -> None:
        self.count += 1
        self.self_cpu_time_total += e.self_cpu_time_total
        self.cpu_time_total += e.cpu_time_total
        self.nbytes += e.nbytes
        self.flops += e.flops

    @property
    def cpu_time(self) -> float:
        """Mean time per call (us)."""
        return self.cpu_time_total / self.count if self.count else 0.0

    @property
    def self_cpu_time(self) -> float:
        return self.self_cpu_time_total / self.count if self.count else 0.0

    @property
    def gbps(self) -> float | None:
        """Bytes moved per second of self time (GB/s); None when nothing was counted."""
        return self.nbytes / (self.self_cpu_time_total * 1e3) if self.nbytes and self.self_cpu_time_total else None

    @property
    def gflops(self) -> float | None:
        return self.flops / (self.self_cpu_time_total * 1e3) if self.flops and self.self_cpu_time_total else None

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} kind={self.kind} self_cpu_time_total={self.self_cpu_time_total:.1f}us "
                f"count={self.count}>")


SORT_KEYS = ("self_cpu_time_total", "cpu_time_total", "cpu_time", "count", "nbytes", "flops")


class EventList(list):
    """FunctionEventAvg rows; `table()` renders them as torch.profiler does (plus bytes and bandwidth)."""

    def __init__(self, rows: Iterable = (), wall_us: float = 0.0, launches: dict | None = None):
        super().__init__(rows)
        self.wall_us = wall_us
        self.launches = launches or {}

    @property
    def self_cpu_time_total(self) -> float:
        return sum(r.self_cpu_time_total for r in self)

    def table(self, sort_by: str | None = "self_cpu_time_total", row_limit: int = 100,
              max_name_column_width: int = 55, header: str | None = None, top_level_events_only: bool = False) -> str:
        """Text table, heaviest first.  sort_by: one of self_cpu_time_total, cpu_time_total, cpu_time,
        count, nbytes, flops (torch's `cpu_time_total` etc.); row_limit < 0 shows every row."""
        rows = list(self)
        if sort_by is not None:
            key = sort_by.replace("cuda", "cpu").replace("device", "cpu")   # accept torch's device spellings
            if key not in SORT_KEYS:
                raise ValueError(f"sort_by must be one of {', '.join(SORT_KEYS)}, got {sort_by!r}")
            rows.sort(key=lambda r: getattr(r, key), reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        total = self.self_cpu_time_total or 1.0
        bw = copy_bandwidth_gbs() if any(r.nbytes for r in rows) else None
        peak = gemm_peak_gflops() if any(r.kind == "extern" and r.flops for r in rows) else None
        heads = ["Name", "Kind", "Self CPU %", "Self CPU", "CPU total", "CPU time avg", "# of Calls",
                 "KB/call", "GB/s", "% copy BW", "GFLOP/s", "% GEMM peak"]
        body = []
        for r in rows:
            name = r.key if len(r.key) <= max_name_column_width else r.key[:max_name_column_width - 3] + "..."
            gb, gf = r.gbps, r.gflops
            compute = r.kind == "extern"
            body.append([name, r.kind, f"{100 * r.self_cpu_time_total / total:.2f}%", _fmt_us(r.self_cpu_time_total),
                         _fmt_us(r.cpu_time_total), _fmt_us(r.cpu_time), str(r.count),
                         f"{r.nbytes / r.count / 1e3:.1f}" if r.nbytes else "",
                         f"{gb:.2f}" if gb else "", f"{100 * gb / bw:.0f}%" if gb and bw and not compute else "",
                         f"{gf:.2f}" if gf and compute else "",
                         f"{100 * gf / peak:.0f}%" if gf and peak and compute else ""])
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
        rule = "  ".join("-" * w for w in widths)

        def line(cells):
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        out = ([header] if header else []) + [rule, line(heads), rule] + [line(b) for b in body] + [rule]
        out.append(f"Self CPU time total: {_fmt_us(self.self_cpu_time_total)}")
        if self.wall_us:
            out.append(f"Wall time inside the profiler: {_fmt_us(self.wall_us)} "
                       f"({100 * self.self_cpu_time_total / self.wall_us:.0f}% of it in the events above; the rest "
                       "is Python around them: guards, autograd, the executor's own code)")
        n = self.launches
        if any(n.values()):
            out.append(f"CUDA work issued: {n['kernels'] + n['library'] + n['graphs'] + n['copies']} launches "
                       f"({n['kernels']} kernels, {n['library']} in library calls, {n['graphs']} graph replays, "
                       f"{n['copies']} copies); {n['syncs']} host waits")
        if bw:
            out.append(f"Copy bandwidth (numpy copy, best of 1 and all threads): {bw:.1f} GB/s" +
                       (f"; numpy float32 GEMM peak: {peak:.0f} GFLOP/s" if peak else ""))
        return "\n".join(out)

    def __str__(self):
        return self.table()


def _fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


# ======================================================================= the recorder
class _Recorder:
    """Events of one profile; a per-thread stack of open events gives self times."""

    def __init__(self):
        self.events: list[FunctionEvent] = []
        self.local = threading.local()
        self.t0 = time.perf_counter_ns()

    def stack(self) -> list:
        s = getattr(self.local, "stack", None)
        if s is None:
            s = self.local.stack = []
        return s

    def close(self, name, kind, t0, t1, child_ns, nbytes=0, flops=0) -> None:
        self.events.append(FunctionEvent(name, kind, (t0 - self.t0) / 1e3, (t1 - self.t0) / 1e3,
                                         (t1 - t0 - child_ns) / 1e3, nbytes, flops, threading.get_ident()))


_active: _Recorder | None = None
_lock = threading.Lock()


def _timed(rec: _Recorder, name: str, kind: str, fn, nbytes: int = 0, flops: int = 0, measure_bytes: bool = False):
    """fn, timed into `rec` while it is the active recorder (a plain pass-through afterwards)."""
    def timed(*args, **kwargs):
        if _active is not rec:
            return fn(*args, **kwargs)
        stack = rec.stack()
        stack.append(0)                       # time spent in events nested in this one
        t0 = time.perf_counter_ns()
        try:
            out = fn(*args, **kwargs)
        finally:
            t1 = time.perf_counter_ns()
            child = stack.pop()
            if stack:
                stack[-1] += t1 - t0
        nb = nbytes
        if measure_bytes:
            nb = _nbytes(args) + _nbytes((out,))
        rec.close(name, kind, t0, t1, child, nb, flops)
        return out
    timed.__wrapped__ = fn
    timed.__name__ = getattr(fn, "__name__", name)
    return timed


class _TimedLaunch:
    """A bound kernel whose `launch` is timed (an extern's epilogue, called by the extern)."""

    def __init__(self, rec: _Recorder, name: str, bound):
        self.kernel = bound.kernel
        self.launch = _timed(rec, name, "kernel", bound.launch, int(bound.kernel.bytes_moved),
                             int(bound.kernel.flops))


def _nbytes(values) -> int:
    n = 0
    for a in values:
        if isinstance(a, np.ndarray):
            n += a.nbytes
        elif isinstance(a, (tuple, list)):
            n += _nbytes(a)
    return n


# ======================================================================= hooks
def _executor_module():
    """The one import of a runtime internal: executors register themselves there (LIVE, ON_CREATE)."""
    from .runtime import executor
    return executor


def _cuda_modules():
    """(ember.runtime.cuda_graph, the CUDA launch counter): the CUDA runners register in the first;
    importing them needs no GPU."""
    from .runtime import cuda, cuda_graph
    return cuda_graph, cuda.COUNTER


def _step_costs(step, sizes: dict) -> tuple[str, int, int, bool]:
    """(kind, bytes, flops, measure bytes at run time?) of a program step; `sizes`: the values of a
    dynamic program's size symbols in the calls being recorded."""
    k = getattr(step, "kernel", None)
    if k is None:
        return "eager", 0, 0, True
    at = lambda n: evaluate(n, sizes)  # noqa: E731
    if hasattr(k, "epilogue"):              # ExternKernel: the library call (its epilogue is timed apart)
        ext = k.inputs + [k.output]
        flops = at(k.flops) - (at(k.epilogue.flops) if k.epilogue is not None else 0)
        return "extern", sum(at(b.nbytes) for b in ext), flops, False
    return "kernel", at(k.bytes_moved), at(k.flops), False


class profile:
    """Record kernels, externs and eager ops while the context is open (torch.profiler.profile).

    `activities` is accepted for compatibility (ProfilerActivity.CPU and .CUDA both record host
    times); the other torch options that change what is recorded are not implemented."""

    def __init__(self, activities: Iterable[ProfilerActivity] | None = None, *, record_shapes: bool = False,
                 enabled: bool = True):
        for a in activities or ():
            if not isinstance(a, ProfilerActivity):
                raise TypeError(f"activities must be ProfilerActivity values, got {a!r}")
        self.enabled = enabled
        self.record_shapes = record_shapes
        self._rec: _Recorder | None = None
        self._restore: list = []
        self._wall_ns = 0
        self._names: dict = {}
        self.launch_counts: dict = {}    # CUDA work the host issued while recording (see the module doc)

    # -------------------------------------------------------------------------- start / stop
    def __enter__(self):
        if self.enabled:
            self.start()
        return self

    def __exit__(self, *exc):
        if self.enabled and self._rec is not None and _active is self._rec:
            self.stop()
        return False

    def start(self) -> None:
        global _active
        with _lock:
            if _active is not None:
                raise RuntimeError("ember.profiler: another profile is already recording")
            rec = self._rec = _Recorder()
            _active = rec
        self._t_start = time.perf_counter_ns()
        ex = _executor_module()
        for e in list(ex.LIVE):
            self._hook_executor(e)
        ex.ON_CREATE.append(self._hook_executor)
        self._restore.append(lambda: ex.ON_CREATE.remove(self._hook_executor))
        graphs, counter = _cuda_modules()
        for r in list(graphs.LIVE):
            self._hook_runner(r)
        graphs.ON_CREATE.append(self._hook_runner)
        self._restore.append(lambda: graphs.ON_CREATE.remove(self._hook_runner))
        self._launch0 = counter.snapshot()
        from .frontend import dispatch
        table = dispatch._BASE          # what dispatch.apply calls (KERNELS wraps it for 16-bit inputs)
        originals = dict(table)
        for op, fn in originals.items():
            table[op] = _timed(rec, op, "eager", fn, measure_bytes=True)

        def put_back():
            for op, fn in originals.items():
                if table.get(op) is not None and getattr(table[op], "__wrapped__", None) is fn:
                    table[op] = fn
        self._restore.append(put_back)

    def stop(self) -> None:
        global _active
        self._wall_ns = time.perf_counter_ns() - self._t_start
        counter = _cuda_modules()[1]
        now = counter.snapshot()
        self.launch_counts = {k: b - a for k, a, b in zip(counter.__slots__, self._launch0, now)}
        while self._restore:
            self._restore.pop()()
        with _lock:
            _active = None

    def _hook_executor(self, ex) -> None:
        """Swap ex's step functions (module-level names of its generated code) for timed ones."""
        env = getattr(ex, "env", None)
        program = getattr(ex, "program", None)
        if env is None or program is None:
            return
        graph = program.graph.name
        swapped = {}
        for s in program.steps:
            key = "_" + s.name
            fn = env.get(key)
            if fn is None or getattr(fn, "__wrapped__", None) is not None:
                continue
            name = self._unique(f"{graph}.{s.name}", ex)
            kind, nbytes, flops, measure = _step_costs(s, getattr(ex, "sizes", {}))
            env[key] = _timed(self._rec, name, kind, fn, nbytes, flops, measure)
            swapped[key] = fn
            bound = ex.module[s.name] if kind == "extern" and getattr(ex, "module", None) is not None else None
            ep = getattr(bound, "epilogue", None)       # an extern's fused epilogue: a row of its own
            # (a dynamic program binds its callables per size: there the epilogue stays in the extern's row)
            if ep is not None and not isinstance(ep, _TimedLaunch) and not getattr(ex, "sizes", None):
                bound.epilogue = _TimedLaunch(self._rec, name + ".epilogue", ep)
                self._restore.append(lambda b=bound, e=ep: setattr(b, "epilogue", e))
        ref = weakref.ref(ex)

        def put_back():
            e = ref()
            if e is None:
                return
            for k, fn in swapped.items():
                if getattr(e.env.get(k), "__wrapped__", None) is fn:
                    e.env[k] = fn
        self._restore.append(put_back)

    def _hook_runner(self, run) -> None:
        """Time a CUDA program runner's graph replays (its `replay` method, swapped on the object)."""
        fn = run.replay
        if getattr(fn, "__wrapped__", None) is not None:
            return
        run.replay = _timed(self._rec, self._unique(f"{run.program.graph.name}.cuda_graph", run), "graph", fn)
        ref = weakref.ref(run)

        def put_back():
            r = ref()
            if r is not None and getattr(r.__dict__.get("replay"), "__wrapped__", None) is fn:
                del r.replay
        self._restore.append(put_back)

    def _unique(self, name: str, ex) -> str:
        """Two executors with the same graph and kernel names (two compiled functions) keep two rows."""
        owner = self._names.setdefault(name, id(ex))
        if owner == id(ex):
            return name
        k = 2
        while self._names.setdefault(f"{name}#{k}", id(ex)) != id(ex):
            k += 1
        return f"{name}#{k}"

    # -------------------------------------------------------------------------- results
    def events(self) -> list[FunctionEvent]:
        return list(self._rec.events) if self._rec else []

    def key_averages(self) -> EventList:
        rows: dict[str, FunctionEventAvg] = {}
        for e in self.events():
            r = rows.get(e.name)
            if r is None:
                r = rows[e.name] = FunctionEventAvg(e.name, e.kind)
            r.add(e)
        return EventList(rows.values(), wall_us=self._wall_ns / 1e3, launches=self.launch_counts)

    def export_chrome_trace(self, path: str) -> None:
        """The events as a Chrome trace (chrome://tracing, Perfetto)."""
        trace = [{"name": e.name, "cat": e.kind, "ph": "X", "ts": e.start_us, "dur": e.cpu_time_total,
                  "pid": 0, "tid": e.thread, "args": {"bytes": e.nbytes, "flops": e.flops}} for e in self.events()]
        with open(path, "w") as f:
            json.dump({"traceEvents": trace}, f)


class record_function:
    """Mark a range of user code as one event (torch.profiler.record_function); a no-op when no
    profile is recording."""

    def __init__(self, name: str):
        self.name = name
        self._rec = None

    def __enter__(self):
        rec = _active
        if rec is not None:
            self._rec = rec
            rec.stack().append(0)
            self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        rec = self._rec
        if rec is not None:
            t1 = time.perf_counter_ns()
            stack = rec.stack()
            child = stack.pop()
            if stack:
                stack[-1] += t1 - self._t0
            rec.close(self.name, "user", self._t0, t1, child)
            self._rec = None
        return False


# ======================================================================= machine figures
_BW: float | None = None
_PEAK: float | None = None


def _threads() -> int:
    from .runtime.cpu import num_threads
    return num_threads()


def copy_bandwidth_gbs(nbytes: int = 32 << 20) -> float:
    """Bytes read + written per second by a numpy copy of `nbytes` into a reused buffer, the best
    of 5 on one thread and on all of ember's threads (measured once per process)."""
    global _BW
    if _BW is None:
        from concurrent.futures import ThreadPoolExecutor
        n = nbytes // 4
        src = np.ones(n, np.float32)
        dst = np.zeros_like(src)
        nt = max(1, _threads())
        parts = [(i * n // nt, (i + 1) * n // nt) for i in range(nt)]
        best = math.inf
        with ThreadPoolExecutor(max_workers=nt) as pool:
            for threads in (1, nt):
                for _ in range(5):
                    t0 = time.perf_counter()
                    if threads == 1:
                        np.copyto(dst, src)
                    else:
                        list(pool.map(lambda ab: np.copyto(dst[ab[0]:ab[1]], src[ab[0]:ab[1]]), parts))
                    best = min(best, time.perf_counter() - t0)
        _BW = 2 * nbytes / best / 1e9
    return _BW


def gemm_peak_gflops(n: int = 512) -> float:
    """GFLOP/s of a numpy float32 n^3 GEMM, best of 5 (measured once per process)."""
    global _PEAK
    if _PEAK is None:
        a = np.ones((n, n), np.float32)
        out = np.empty_like(a)
        best = math.inf
        for _ in range(6):
            t0 = time.perf_counter()
            np.matmul(a, a, out=out)
            best = min(best, time.perf_counter() - t0)
        _PEAK = 2 * n ** 3 / best / 1e9
    return _PEAK
