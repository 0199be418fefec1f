"""Recording: `profile` swaps timed wrappers into every compiled executor's step functions and the
eager kernel table while it records, and puts the originals back when it stops; `record_function`
marks a range of user code.  Each call becomes a FunctionEvent (profiler.events).

Zero cost when off: nothing on any hot path checks for a profiler."""
from __future__ import annotations

import enum
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable

import numpy as np

from ..ir.sizes import evaluate
from .events import EventList, FunctionEvent, _sort_key
from .schedule import RECORDING, ProfilerAction, always_record


class ProfilerActivity(enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"


def supported_activities() -> set:
    """The activities this build can record (CUDA where CuPy sees a device; both record host times)."""
    from ..cuda import is_available
    return {ProfilerActivity.CPU} | ({ProfilerActivity.CUDA} if is_available() else set())


class _Recorder:
    """Events of one recording; a per-thread stack of open events gives self times and self memory."""

    def __init__(self, record_shapes: bool = False, profile_memory: bool = False, with_stack: bool = False):
        self.events: list[FunctionEvent] = []
        self.local = threading.local()
        self.t0 = time.perf_counter_ns()
        self.record_shapes, self.profile_memory, self.with_stack = record_shapes, profile_memory, with_stack

    def stack(self) -> list:
        s = getattr(self.local, "stack", None)
        if s is None:
            s = self.local.stack = []
        return s

    def open(self, kind: str = "") -> None:
        self.stack().append([0, 0, kind])     # time and memory of the events nested in this one, its kind

    def inside_program(self) -> bool:
        """An event of a compiled program is open on this thread (its library calls are its own rows)."""
        s = self.stack()
        return bool(s) and s[-1][2] in ("kernel", "extern")

    def close(self, name, kind, t0, t1, nbytes=0, flops=0, shapes=None, memory=0) -> None:
        stack = self.stack()
        child_ns, child_mem, _ = stack.pop()
        memory += child_mem
        if stack:
            stack[-1][0] += t1 - t0
            stack[-1][1] += memory
        where = _call_site() if self.with_stack else ()
        self.events.append(FunctionEvent(name, kind, (t0 - self.t0) / 1e3, (t1 - self.t0) / 1e3,
                                         (t1 - t0 - child_ns) / 1e3, nbytes, flops, threading.get_ident(),
                                         shapes, memory, memory - child_mem, where))


_active: _Recorder | None = None
_lock = threading.Lock()
_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _call_site(depth: int = 8) -> tuple:
    """The innermost `depth` frames outside ember itself: "file(line): function"."""
    out = []
    f = sys._getframe(2)
    while f is not None and len(out) < depth:
        path = f.f_code.co_filename
        if not os.path.abspath(path).startswith(_EMBER_DIR):
            out.append(f"{path}({f.f_lineno}): {f.f_code.co_name}")
        f = f.f_back
    return tuple(out)


def _timed(rec: _Recorder, name: str, kind: str, fn, nbytes: int = 0, flops: int = 0, measure_bytes: bool = False):
    """fn, timed into `rec` while it is the active recorder (a plain pass-through afterwards)."""
    def timed(*args, **kwargs):
        if _active is not rec:
            return fn(*args, **kwargs)
        rec.open(kind)
        t0 = time.perf_counter_ns()
        out = None
        try:
            out = fn(*args, **kwargs)
        finally:
            t1 = time.perf_counter_ns()
            nb, fl, shapes, memory = nbytes, flops, None, 0
            if measure_bytes:                   # an eager op: fn(xp, *arrays, **attrs)
                arrays = args[1:]
                nb = _nbytes(arrays) + _nbytes((out,))
                if name == "matmul":
                    fl = _matmul_flops(arrays)
                if rec.record_shapes:
                    shapes = [list(getattr(a, "shape", ())) for a in arrays]
                if rec.profile_memory:
                    memory = _nbytes((out,))
            rec.close(name, kind, t0, t1, nb, fl, shapes, memory)
        return out
    timed.__wrapped__ = fn
    timed.__name__ = getattr(fn, "__name__", name)
    return timed


def _timed_library(rec: _Recorder, name: str, fn, cost):
    """fn (a library routine eager ops call: a GEMM, a generated eager kernel's launch), timed as an eager
    row named `name` unless a compiled program's event is open (its extern row already covers it);
    cost(args) -> (bytes, flops)."""
    def timed(*args, **kwargs):
        if _active is not rec or rec.inside_program():
            return fn(*args, **kwargs)
        rec.open("eager")
        t0 = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            nb, fl = cost(args)
            rec.close(name, "eager", t0, time.perf_counter_ns(), nb, fl)
    timed.__wrapped__ = fn
    return timed


class _TimedRun:
    """A generated eager kernel (kernels/generated.py) whose launch is timed; everything else delegates."""

    def __init__(self, rec: _Recorder, name: str, run):
        self._run = run
        self.launch = _timed_library(rec, name, run.launch, lambda args: (_nbytes(args), 0))

    def __getattr__(self, attr):
        return getattr(self._run, attr)


def _eager_kernel_name(key) -> str:
    """A generated eager kernel's row: its op (the elementwise op's name, or the key's kind)."""
    if isinstance(key, tuple) and key:
        return str(key[1]) if key[0] == "elementwise" and len(key) > 1 else str(key[0])
    return str(key)


def _gemm_cost(args) -> tuple[int, int]:
    a, b = args[0], args[1]
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return 0, 0
    return a.nbytes + b.nbytes + 4 * a.shape[-2] * b.shape[-1] if a.ndim > 1 and b.ndim > 1 else 0, \
        _matmul_flops((a, b))


def _gathered_cost(args) -> tuple[int, int]:
    a, src, desc, out = args[:4]
    return a.nbytes + src.nbytes + out.nbytes, 2 * a.shape[0] * desc[0] * desc[1]


class _TimedLaunch:
    """A bound kernel whose `launch` is timed (an extern's epilogue, called by the extern)."""

    def __init__(self, rec: _Recorder, name: str, bound):
        self.kernel = bound.kernel
        self.launch = _timed(rec, name, "kernel", bound.launch, int(bound.kernel.bytes_moved),
                             int(bound.kernel.flops))


def _row_dict(r) -> dict:
    """One table row as plain numbers (report.json)."""
    return {"name": r.key, "kind": r.kind, "calls": r.count, "self_us": round(r.self_cpu_time_total, 3),
            "total_us": round(r.cpu_time_total, 3), "bytes": r.nbytes, "flops": r.flops,
            "gbps": None if r.gbps is None else round(r.gbps, 3),
            "gflops": None if r.gflops is None else round(r.gflops, 3)}


def _nbytes(values) -> int:
    n = 0
    for a in values:
        if isinstance(a, np.ndarray):
            n += a.nbytes
        elif isinstance(a, (tuple, list)):
            n += _nbytes(a)
    return n


def _matmul_flops(args) -> int:
    """2·M·N·K of an eager product (batch dimensions broadcast)."""
    a, b = args[0], args[1] if len(args) > 1 else None
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.ndim == 0 or b.ndim == 0:
        return 0
    k = a.shape[-1]
    m = a.shape[-2] if a.ndim > 1 else 1
    n = b.shape[-1] if b.ndim > 1 else 1
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) if a.ndim > 2 or b.ndim > 2 else ()
    return 2 * m * n * k * int(np.prod(batch, dtype=np.int64))


def _executor_module():
    """The one import of a runtime internal: executors register themselves there (LIVE, ON_CREATE)."""
    from ..runtime import executor
    return executor


def _cuda_modules():
    """(ember.runtime.cuda_graph, the CUDA launch counter): the CUDA runners register in the first;
    importing them needs no GPU."""
    from ..runtime import cuda, cuda_graph
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

    activities: ProfilerActivity.CPU and .CUDA both record host times (a GPU kernel's row is its
    launch).  record_shapes: eager ops keep their input shapes (key_averages(group_by_input_shape=
    True)); profile_memory: eager ops count the bytes of the arrays they return (CPU Mem columns);
    with_stack: every event keeps the user code that ran it (group_by_stack_n, export_stacks);
    with_flops: accepted, FLOPs are always counted for products.  schedule / on_trace_ready /
    step(): record only the schedule's active steps and hand each finished cycle to on_trace_ready
    (profiler.schedule).  with_modules, experimental_config, execution_trace_observer, acc_events
    and the deprecated use_cuda are accepted and change nothing."""

    def __init__(self, activities: Iterable[ProfilerActivity] | None = None, *,
                 schedule: Callable[[int], ProfilerAction] | None = None, on_trace_ready: Callable | None = None,
                 record_shapes: bool = False, profile_memory: bool = False, with_stack: bool = False,
                 with_flops: bool = False, with_modules: bool = False, experimental_config=None,
                 execution_trace_observer=None, acc_events: bool = False, use_cuda: bool | None = None,
                 enabled: bool = True):
        for a in activities or ():
            if not isinstance(a, ProfilerActivity):
                raise TypeError(f"activities must be ProfilerActivity values, got {a!r}")
        if schedule is not None and not callable(schedule):
            raise TypeError("schedule must be a callable step -> ProfilerAction (profiler.schedule(...)), "
                            f"got {schedule!r}")
        if on_trace_ready is not None and not callable(on_trace_ready):
            raise TypeError(f"on_trace_ready must be callable, got {on_trace_ready!r}")
        self.enabled = enabled
        self.record_shapes, self.profile_memory, self.with_stack = record_shapes, profile_memory, with_stack
        self.with_flops = with_flops
        self.schedule = schedule or always_record
        self.on_trace_ready = on_trace_ready
        self.step_num = 0
        self.current_action = self.schedule(0)
        self._rec: _Recorder | None = None
        self._restore: list = []
        self._wall_ns = 0
        self._names: dict = {}
        self._dumped: dict = {}
        self.launch_counts: dict = {}    # CUDA work the host issued while recording (see the module doc)

    # -------------------------------------------------------------------------- start / stop
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self) -> None:
        """Begin profiling: record now, or at the schedule's first active step."""
        if self.enabled and self.current_action in RECORDING:
            self._start_recording()

    def stop(self) -> None:
        """End profiling; a cycle still recording is handed to on_trace_ready."""
        if self._recording():
            self._stop_recording()
            if self.on_trace_ready is not None:
                self.on_trace_ready(self)

    def step(self) -> None:
        """Mark the end of a training step: move along the schedule (record, save, idle)."""
        prev = self.current_action
        self.step_num += 1
        self.current_action = self.schedule(self.step_num)
        if not self.enabled:
            return
        if self._recording() and (prev is ProfilerAction.RECORD_AND_SAVE or self.current_action not in RECORDING):
            self._stop_recording()
            if prev is ProfilerAction.RECORD_AND_SAVE and self.on_trace_ready is not None:
                self.on_trace_ready(self)
        if self.current_action in RECORDING and not self._recording():
            self._start_recording()

    def _recording(self) -> bool:
        return self._rec is not None and _active is self._rec

    def _start_recording(self) -> None:
        global _active
        with _lock:
            if _active is not None:
                raise RuntimeError("ember.profiler: another profile is already recording")
            rec = self._rec = _Recorder(self.record_shapes, self.profile_memory, self.with_stack)
            _active = rec
        self._names = {}
        self._dumped: dict = {}         # dump folder -> the event names of its executors
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
        self._hook_eager_library(rec)
        from ..frontend import dispatch
        table = dispatch._BASE          # what dispatch.apply calls (KERNELS wraps it for 16-bit inputs)
        originals = dict(table)
        for op, fn in originals.items():
            table[op] = _timed(rec, op, "eager", fn, measure_bytes=True)

        def put_back():
            for op, fn in originals.items():
                if table.get(op) is not None and getattr(table[op], "__wrapped__", None) is fn:
                    table[op] = fn
        self._restore.append(put_back)

    def _stop_recording(self) -> None:
        global _active
        self._wall_ns = time.perf_counter_ns() - self._t_start
        counter = _cuda_modules()[1]
        now = counter.snapshot()
        self.launch_counts = {k: b - a for k, a, b in zip(counter.__slots__, self._launch0, now)}
        while self._restore:
            self._restore.pop()()
        with _lock:
            _active = None
        self._write_dumps()

    def _write_dumps(self) -> None:
        """Each dumped graph's rows go into its dump folder (profile.txt, report.json, index.html)."""
        if not self._dumped:
            return
        from ..compiler.dump.writer import add_profile
        rows = self.key_averages()
        for folder, names in self._dumped.items():
            mine = EventList([r for r in rows if r.key in names], wall_us=rows.wall_us)
            if len(mine):
                add_profile(folder, mine.table(row_limit=-1), [_row_dict(r) for r in mine])

    def _hook_eager_library(self, rec: _Recorder) -> None:
        """Eager ops that are one autograd node (linear, relu, max pooling, the gathered convolution...)
        call the GEMMs and generated kernels directly, not through the primitive table: time those calls
        (`mm`, `mm_gathered`, and each generated kernel by its op) while recording."""
        from ..kernels import blas_threads, generated
        swaps = [(blas_threads, "matmul", _timed_library(rec, "mm", blas_threads.matmul, _gemm_cost))]
        if blas_threads.F32_GATHERED is not None:
            swaps.append((blas_threads, "F32_GATHERED",
                          _timed_library(rec, "mm_gathered", blas_threads.F32_GATHERED, _gathered_cost)))
        kernel, sized = generated.kernel, generated.sized

        def timed_kernel(key, build):
            run = kernel(key, build)
            return None if run is None else _TimedRun(rec, _eager_kernel_name(key), run)

        def timed_sized(key, build, n):
            run = sized(key, build, n)
            return None if run is None else _TimedRun(rec, _eager_kernel_name(key), run)
        # `sized` binds what `kernel` returns (a delegating _TimedRun: .at() is the kernel's own)
        swaps += [(generated, "kernel", timed_kernel), (generated, "sized", timed_sized)]
        for mod, attr, fn in swaps:
            old = getattr(mod, attr)
            setattr(mod, attr, fn)
            self._restore.append(lambda m=mod, a=attr, o=old: setattr(m, a, o))

    def _hook_executor(self, ex) -> None:
        """Swap ex's step functions (module-level names of its generated code) for timed ones."""
        env = getattr(ex, "env", None)
        program = getattr(ex, "program", None)
        if env is None or program is None:
            return
        graph = program.graph.name
        swapped = {}
        folder = getattr(ex, "dump_folder", None)       # set by ember.compile when it dumps this graph
        names = self._dumped.setdefault(folder, set()) if folder else set()
        for s in program.steps:
            key = "_" + s.name
            fn = env.get(key)
            if fn is None or getattr(fn, "__wrapped__", None) is not None:
                continue
            name = self._unique(f"{graph}.{s.name}", ex)
            names.update((name, name + ".epilogue"))
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
    def events(self) -> EventList:
        """The events of the last recording (a cycle, with a schedule)."""
        return EventList(self._rec.events if self._rec else (), wall_us=self._wall_ns / 1e3,
                         launches=self.launch_counts)

    def key_averages(self, group_by_input_shape: bool = False, group_by_stack_n: int = 0,
                     group_by_overload_name: bool = False) -> EventList:
        if group_by_input_shape and not self.record_shapes:
            raise RuntimeError("key_averages(group_by_input_shape=True) needs profile(record_shapes=True)")
        if group_by_stack_n > 0 and not self.with_stack:
            raise RuntimeError("key_averages(group_by_stack_n=...) needs profile(with_stack=True)")
        return self.events().key_averages(group_by_input_shape, group_by_stack_n, group_by_overload_name)

    def export_chrome_trace(self, path: str) -> None:
        """The events as a Chrome trace (chrome://tracing, Perfetto)."""
        self.events().export_chrome_trace(path)

    def export_stacks(self, path: str, metric: str = "self_cpu_time_total") -> None:
        """Collapsed stacks for flame graphs ("outer;...;inner;event value" per line, value in us);
        needs with_stack=True."""
        if not self.with_stack:
            raise RuntimeError("export_stacks needs profile(with_stack=True)")
        key = _sort_key(metric)
        with open(path, "w") as f:
            for e in self.events():
                frames = [s.split(": ", 1)[-1] for s in reversed(e.stack)] + [e.name]
                f.write(f"{';'.join(frames)} {int(getattr(e, key))}\n")


class record_function:
    """Mark a range of user code as one event (torch.profiler.record_function): a context manager or
    a decorator; a no-op when no profile is recording."""

    def __init__(self, name: str, args: str | None = None):
        self.name = name if args is None else f"{name}({args})"
        self._rec = None
        self._t0 = 0

    def __enter__(self):
        rec = _active
        if rec is not None:
            self._rec = rec
            rec.open("user")
            self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        rec = self._rec
        if rec is not None:
            rec.close(self.name, "user", self._t0, time.perf_counter_ns())
            self._rec = None
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with record_function(self.name):
                return fn(*args, **kwargs)
        return wrapped
