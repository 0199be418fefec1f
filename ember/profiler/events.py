"""What a profile recorded: one FunctionEvent per timed call, FunctionEventAvg per name (and input
shapes / call site when grouped by them), and EventList, which renders either as torch.profiler's
text table plus bytes moved, GB/s and GFLOP/s against this machine's figures (profiler.machine).

Times are microseconds and memory is bytes, as in torch.profiler.  Field names follow torch's
(`key`, `count`, `cpu_time_total`, `self_cpu_time_total`, `cpu_memory_usage`, `input_shapes`, ...);
`device_time_total` (alias `cuda_time_total`) is 0: every time ember records is a host time."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .machine import copy_bandwidth_gbs, gemm_peak_gflops


@dataclass
class FunctionEvent:
    """One timed call."""
    name: str
    kind: str
    start_us: float
    end_us: float
    self_cpu_time_total: float      # end - start - time of events nested inside it
    nbytes: int = 0
    flops: int = 0
    thread: int = 0
    input_shapes: list | None = None       # with record_shapes: one list per array input ([] for scalars)
    cpu_memory_usage: int = 0              # with profile_memory: bytes of the arrays it returned (and its children's)
    self_cpu_memory_usage: int = 0
    stack: tuple = ()                      # with with_stack: "file(line): function", innermost first
    device_time_total: float = field(default=0.0)

    @property
    def key(self) -> str:
        return self.name

    @property
    def count(self) -> int:
        return 1

    @property
    def cpu_time_total(self) -> float:
        return self.end_us - self.start_us

    cpu_time = cpu_time_total
    cuda_time_total = property(lambda self: self.device_time_total)


class FunctionEventAvg:
    """All calls of one name (and shapes / call site when grouped by them): totals in microseconds."""

    def __init__(self, key: str, kind: str, input_shapes: list | None = None, stack: tuple = ()):
        self.key, self.kind = key, kind
        self.input_shapes = input_shapes
        self.stack = stack
        self.count = 0
        self.self_cpu_time_total = 0.0
        self.cpu_time_total = 0.0
        self.nbytes = 0                 # summed over calls
        self.flops = 0
        self.cpu_memory_usage = 0
        self.self_cpu_memory_usage = 0
        self.device_time_total = 0.0

    def add(self, e) -> None:
        self.count += e.count
        self.self_cpu_time_total += e.self_cpu_time_total
        self.cpu_time_total += e.cpu_time_total
        self.nbytes += e.nbytes
        self.flops += e.flops
        self.cpu_memory_usage += e.cpu_memory_usage
        self.self_cpu_memory_usage += e.self_cpu_memory_usage

    @property
    def cpu_time(self) -> float:
        """Mean time per call (us)."""
        return self.cpu_time_total / self.count if self.count else 0.0

    @property
    def self_cpu_time(self) -> float:
        return self.self_cpu_time_total / self.count if self.count else 0.0

    cuda_time_total = property(lambda self: self.device_time_total)

    @property
    def gbps(self) -> float | None:
        """Bytes moved per second of self time (GB/s); None when nothing was counted."""
        return self.nbytes / (self.self_cpu_time_total * 1e3) if self.nbytes and self.self_cpu_time_total else None

    @property
    def gflops(self) -> float | None:
        return self.flops / (self.self_cpu_time_total * 1e3) if self.flops and self.self_cpu_time_total else None

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} kind={self.kind} "
                f"self_cpu_time_total={self.self_cpu_time_total:.1f}us count={self.count}>")


SORT_KEYS = ("self_cpu_time_total", "cpu_time_total", "cpu_time", "count", "nbytes", "flops",
             "cpu_memory_usage", "self_cpu_memory_usage")


def _sort_key(sort_by: str) -> str:
    """torch's device spellings (cuda_time_total, self_device_time_total, ...) sort by the host
    times, the only ones ember records."""
    key = sort_by.replace("cuda", "cpu").replace("device", "cpu")
    if key not in SORT_KEYS:
        raise ValueError(f"sort_by must be one of {', '.join(SORT_KEYS)} (or their cuda_/device_ "
                         f"spellings), got {sort_by!r}")
    return key


class EventList(list):
    """FunctionEvent or FunctionEventAvg rows; `table()` renders them as torch.profiler does (plus
    bytes and bandwidth), `key_averages()` groups events into averages."""

    def __init__(self, rows: Iterable = (), wall_us: float = 0.0, launches: dict | None = None):
        super().__init__(rows)
        self.wall_us = wall_us
        self.launches = launches or {}

    @property
    def self_cpu_time_total(self) -> float:
        return sum(r.self_cpu_time_total for r in self)

    def key_averages(self, group_by_input_shape: bool = False, group_by_stack_n: int = 0,
                     group_by_overload_name: bool = False) -> EventList:
        """One FunctionEventAvg per name; with group_by_input_shape also per input shapes (needs
        record_shapes), with group_by_stack_n > 0 also per the innermost n frames of the call site
        (needs with_stack).  group_by_overload_name is accepted: ember ops have no overloads."""
        rows: dict = {}
        for e in self:
            shapes = e.input_shapes if group_by_input_shape else None
            stack = tuple(e.stack[:group_by_stack_n]) if group_by_stack_n > 0 else ()
            k = (e.key, repr(shapes), stack)
            r = rows.get(k)
            if r is None:
                r = rows[k] = FunctionEventAvg(e.key, e.kind, shapes, stack)
            r.add(e)
        return EventList(rows.values(), wall_us=self.wall_us, launches=self.launches)

    def total_average(self) -> FunctionEventAvg:
        """Every row summed into one ("Total")."""
        total = FunctionEventAvg("Total", "total")
        for r in self:
            total.add(r)
        return total

    def export_chrome_trace(self, path: str) -> None:
        """The events as a Chrome trace (chrome://tracing, Perfetto, TensorBoard's trace viewer)."""
        trace = [{"name": e.name, "cat": e.kind, "ph": "X", "ts": e.start_us, "dur": e.cpu_time_total,
                  "pid": 0, "tid": e.thread,
                  "args": {"bytes": e.nbytes, "flops": e.flops,
                           **({"Input Dims": e.input_shapes} if e.input_shapes is not None else {})}}
                 for e in self if isinstance(e, FunctionEvent)]
        with open(path, "w") as f:
            json.dump({"traceEvents": trace, "displayTimeUnit": "ms"}, f)

    def table(self, sort_by: str | None = "self_cpu_time_total", row_limit: int = 100,
              max_name_column_width: int = 55, max_shapes_column_width: int = 80, header: str | None = None,
              top_level_events_only: bool = False) -> str:
        """Text table, heaviest first.  sort_by: one of SORT_KEYS (torch's `cpu_time_total` etc.;
        the cuda_/device_ spellings sort by host time); row_limit < 0 shows every row."""
        rows = list(self)
        if sort_by is not None:
            key = _sort_key(sort_by)
            rows.sort(key=lambda r: getattr(r, key), reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        total = self.self_cpu_time_total or 1.0
        bw = copy_bandwidth_gbs() if any(r.nbytes for r in rows) else None
        peak = gemm_peak_gflops() if any(r.flops for r in rows) else None
        memory = any(r.cpu_memory_usage for r in rows)
        shapes = any(r.input_shapes is not None for r in rows)
        stacks = any(r.stack for r in rows)
        heads = ["Name", "Kind", "Self CPU %", "Self CPU", "CPU total", "CPU time avg"]
        heads += ["CPU Mem", "Self CPU Mem"] if memory else []
        heads += ["# of Calls", "KB/call", "GB/s", "% copy BW", "GFLOP/s", "% GEMM peak"]
        heads += ["Input Shapes"] if shapes else []
        heads += ["Source Location"] if stacks else []
        body = []
        for r in rows:
            name = r.key if len(r.key) <= max_name_column_width else r.key[:max_name_column_width - 3] + "..."
            gb, gf = _rate(r.nbytes, r.self_cpu_time_total), _rate(r.flops, r.self_cpu_time_total)
            compute = r.flops > 0 and r.kind != "kernel"        # a library call or an eager product
            cells = [name, r.kind, f"{100 * r.self_cpu_time_total / total:.2f}%", _fmt_us(r.self_cpu_time_total),
                     _fmt_us(r.cpu_time_total), _fmt_us(r.cpu_time)]
            if memory:
                cells += [_fmt_bytes(r.cpu_memory_usage), _fmt_bytes(r.self_cpu_memory_usage)]
            cells += [str(r.count), f"{r.nbytes / r.count / 1e3:.1f}" if r.nbytes else "",
                      f"{gb:.2f}" if gb else "", f"{100 * gb / bw:.0f}%" if gb and bw and not compute else "",
                      f"{gf:.2f}" if gf and compute else "",
                      f"{100 * gf / peak:.0f}%" if gf and peak and compute else ""]
            if shapes:
                s = str(r.input_shapes) if r.input_shapes is not None else ""
                cells.append(s if len(s) <= max_shapes_column_width else s[:max_shapes_column_width - 3] + "...")
            if stacks:
                cells.append(" <- ".join(r.stack))
            body.append(cells)
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
        rule = "  ".join("-" * w for w in widths)
        left = {0, 1, len(heads) - 1} if shapes or stacks else {0, 1}

        def line(cells):
            return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

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


def _rate(amount: int, us: float) -> float | None:
    """amount per second of `us` microseconds, in giga-units; None when nothing was counted."""
    return amount / (us * 1e3) if amount and us else None


def _fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("Gb", 1 << 30), ("Mb", 1 << 20), ("Kb", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} b"
