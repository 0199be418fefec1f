"""Compiled programs on CUDA: one CUDA graph per call (mode="reduce-overhead"), and launch accounting.

In: an `Executor` (ember/runtime/executor.py) of a Program on the CUDA device, the positions of its
static inputs (parameters and buffers: the caller promises their storage stays put, so a graph may
read them in place) and whether CUDA graphs are wanted.  Out: a `CudaProgramRunner`, a drop-in for
the executor (`run(arrays) -> [outputs..., mutation values...]`, `.program`, `.module`, `.source`):

    runner = CudaProgramRunner(executor, static=(1, 2), graphs=True, name="Net", which="forward")
    outs = runner.run([x, w, b])        # call 1 kernel by kernel (warm-up), then one graph replay

    plan_capture(program, static) -> CapturePlan   ember/runtime/capture_plan.py (pure): can the program
                                                   be captured, where every input and result lives

How a replay works (what PyTorch's cudagraph trees do, in the small):
  * Capture.  After one warm-up call (CuPy compiles its own kernels, cuBLAS makes its handle, the
    externs allocate their scratch), the executor's generated function runs once under CuPy stream
    capture on a private stream, with a private memory pool: its launches become one graph.  Every
    address is baked in: internal values live in the executor's memory-plan slots, outputs in
    buffers the capture allocated (the instance owns them), temporaries of library calls in the
    instance's private pool (kept alive with the graph, so nothing else is ever placed there).
  * Inputs.  Static inputs are read in place: the graph is keyed by their addresses, and a new
    address captures a new graph (a C003 record says which input moved; past RECAPTURE_LIMIT
    captures per graph slot the runner stops capturing, C007).  Other inputs are copied into static
    buffers before the launch (one device copy each); numpy inputs such as the random generator's
    key go through a ring of STAGING_DEPTH pinned host buffers, so the upload is asynchronous and
    the host may run that many calls ahead of the device.
  * Outputs are handed to the caller as they are: no copy.  A graph whose outputs someone still
    holds (a tensor of the previous step, saved activations not yet used by backward) is not
    replayed: first a young garbage collection runs (eager autograd nodes keep the last step's
    outputs in reference cycles), then another instance is captured with its own outputs (at most
    `max_graphs` per runner, evicting graphs keyed on addresses no longer used; else the call runs
    kernel by kernel, C005).  Outputs that are reshapes of inputs are made from the caller's arrays,
    never from the static copies.
  * No host synchronisation inside a step: gathers record an out-of-range index in the module's
    error slots (sticky), which are copied to pinned host memory after the call and read once that
    copy has landed (at a later call, without waiting; `synchronize()` waits), like CUDA's
    asynchronous device errors.  The IndexError says that an earlier call recorded it.
  * A program with an eager step other than a constant fill (CAPTURABLE_EAGER; the others may read
    device values on the host: index checks, sorting), or a library call not known to be capturable,
    runs kernel by kernel; a C001 record says why.  So does a capture that CUDA refuses (C006).

Launch accounting (graphs or not): each call counts what it issued through
ember.runtime.cuda.COUNTER (kernels, library launches, graph replays, copies; host waits apart)
and its host time; `runner.stats` holds the totals and the last call's figures, and the same
totals are added into the `stats` dicts the compile driver passes (the compiled function's
`stats`: cuda_calls, cuda_launches, cuda_host_s, cuda_graph_replays, cuda_graph_captures,
cuda_syncs).  The caller's write-back of mutated inputs (one copy each) is counted here too.
cuda_syncs counts the host waits ember itself makes (a full staging ring); an eager fallback kernel
may read device values too (C001 names such steps).
"""
from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
import weakref
from typing import Callable, Sequence

import numpy as np

from ember.ir.program import Program
from ember.runtime import cuda as rt
from ember.runtime.capture_plan import CAPTURABLE_EAGER, CAPTURABLE_EXTERNS, CapturePlan, plan_capture  # noqa: F401

__all__ = ["CapturePlan", "plan_capture", "CudaProgramRunner", "CAPTURABLE_EXTERNS", "CAPTURABLE_EAGER",
           "DEFAULT_MAX_GRAPHS", "STAT_KEYS", "synchronize_all", "LIVE", "ON_CREATE"]

DEFAULT_MAX_GRAPHS = 4
RECAPTURE_LIMIT = 4     # captures per graph slot before a runner stops capturing (inputs that never settle)
STAGING_DEPTH = 4       # pinned buffers per host input: how many calls the host may run ahead
FULL_GC_EVERY = 100     # calls between full garbage collections when every graph's outputs look held

# the keys a runner adds into the compile driver's stats dicts
STAT_KEYS = ("cuda_calls", "cuda_launches", "cuda_host_s", "cuda_graph_replays", "cuda_graph_captures",
             "cuda_syncs")


# ============================================================================= the runner
_CHECKED: "weakref.WeakSet[CudaProgramRunner]" = weakref.WeakSet()   # runners with deferred index checks
# For ember.profiler: every live runner, and callbacks run on each new one (it times `replay`)
LIVE: "weakref.WeakSet[CudaProgramRunner]" = weakref.WeakSet()
ON_CREATE: list = []


def synchronize_all() -> None:
    """Raise the first index error any live runner's calls recorded (ember.cuda.synchronize)."""
    for run in list(_CHECKED):
        run.synchronize()



class _Instance:
    """One captured graph: its output buffers, private pool, and the addresses it was keyed on."""

    def __init__(self, graph, pool, outputs: list, launches: int):
        self.graph, self.pool, self.outputs = graph, pool, outputs
        self.launches = launches          # launches the graph holds (what kernel-by-kernel would issue)
        self.replays = 0
        self.base = self._counts()

    def _counts(self) -> list:
        # references to each output, compared with the count when only this instance held it; a
        # view holds its base (numpy and CuPy set .base), so a live view counts too
        return [sys.getrefcount(a) for a in self.outputs]

    def busy(self) -> bool:
        """Does anyone but this instance (and the output pool's free list) hold an output?"""
        return any(now > was for now, was in zip(self._counts(), self.base))


class _PinnedSlot:
    """A pinned host buffer for asynchronous transfers, and the event of its last copy."""

    def __init__(self, cp, shape, dtype):
        self.cp = cp
        try:
            import cupyx
            self.host = cupyx.empty_pinned(shape, dtype)
        except Exception:   # noqa: BLE001 - no cupyx: pageable memory (the copy then waits for the host)
            self.host = np.empty(shape, dtype)
        self.ptr = ctypes.c_void_p(self.host.ctypes.data)   # what every CuPy version's copy_*_async takes
        self.event = None

    @property
    def in_flight(self) -> bool:
        return self.event is not None and not self.event.done

    def wait(self) -> None:
        """Block until the last copy through this buffer has landed (counted as a host wait)."""
        if self.in_flight:
            rt.COUNTER.syncs += 1
            self.event.synchronize()
        self.event = None

    def mark(self) -> None:
        self.event = self.cp.cuda.Event(block=False, disable_timing=True)
        self.event.record()


class _PinnedRing:
    """Pinned buffers used in turn for one input's uploads: the host may run STAGING_DEPTH calls
    ahead of the device before a buffer it wants is still being copied (then it waits)."""

    def __init__(self, cp, shape, dtype, depth: int):
        self.slots = [_PinnedSlot(cp, shape, dtype) for _ in range(depth)]
        self.turn = 0
        self.shape = tuple(shape)

    def next(self) -> _PinnedSlot:
        slot = self.slots[self.turn]
        self.turn = (self.turn + 1) % len(self.slots)
        slot.wait()
        return slot


class CudaProgramRunner:
    """An executor on the CUDA device run with launch accounting, and with CUDA graphs when asked
    and the program allows it (see the module docstring)."""

    def __init__(self, executor, static: Sequence[int] = (), graphs: bool = False, *, name: str = "",
                 which: str = "forward", stats: Sequence[dict] = (), max_graphs: int = DEFAULT_MAX_GRAPHS,
                 notify: Callable[[str, str], None] | None = None, persistent: Sequence[int] | None = None,
                 immutable: Sequence[int] = ()):
        self.executor = executor
        self.program: Program = executor.program
        self.module = executor.module
        self.source = executor.source
        self.device = executor.device
        self.cp = self.device.xp
        self.name, self.which = name or self.program.graph.name, which
        self.plan = plan_capture(self.program, static)
        self.graphs = bool(graphs) and self.plan.capturable
        self.max_graphs = max_graphs
        self._owner = threading.get_ident()
        self._full_gc_at = 0
        self._sinks = list(stats)
        self._notify = notify
        self._told: set = set()           # record codes said once per runner
        self.stats = {"calls": 0, "launches": 0, "host_s": 0.0, "replays": 0, "captures": 0, "syncs": 0,
                      "last_launches": 0, "last_host_us": 0.0, "graph_launches": [], "gc": 0}
        if graphs and not self.plan.capturable:
            self._record("C001", f"{which} program runs kernel by kernel: " + "; ".join(self.plan.reasons))
        if self.module is not None:
            # nothing in a compiled call waits for the device: gather errors are read asynchronously
            self.module.defer_checks = True
        self._errors = _PinnedSlot(self.cp, (4,), np.int64) if self.plan.deferred_checks else None
        if self._errors is not None:
            _CHECKED.add(self)
        LIVE.add(self)
        for hook in ON_CREATE:
            hook(self)
        self._errors_pending = False
        self._staging: dict = {}          # input position -> _PinnedSlot
        self._static_in: dict = {}        # input position -> the static buffer it is copied into
        self._static_mem: dict = {}       # input position -> that buffer's MemoryPointer
        self._instances: dict = {}        # static addresses -> [_Instance]
        self._warm = False
        self._stream = None
        # the caller's write-back of mutated inputs: one copy each, unless the result is the input
        # itself (the program wrote it in place; a replay writes a static input in place too)
        n_out, prog = self.program.n_outputs, self.program
        self._n_mut = sum(1 for name in prog.results[n_out:] if name not in prog.inputs)
        self._n_mut_replay = sum(1 for r in self.plan.results[n_out:] if r[0] != "input")
        self._uploaded: dict = {}         # input position -> the host value its static buffer holds
        self._copied_from: dict = {}      # immutable input position -> the array last copied in
        self._static_pos = [i for i, k in enumerate(self.plan.inputs) if k == "static"]
        self._copied_pos = [i for i, k in enumerate(self.plan.inputs) if k == "copied"]
        # copied inputs whose arrays are replaced, never written, when their value changes (an
        # optimizer's hyper-parameters): the same array as last call needs no copy
        self._immutable = set(immutable) & set(self._copied_pos)
        # inputs that live as long as the program (parameters, buffers; all static ones unless told):
        # the same array object as last call is taken without checks
        self._persistent = set(self._static_pos if persistent is None else persistent)
        self._static_set = set(self._static_pos)
        self._same_key, self._key = False, None
        self._seen: dict = {}             # persistent input position -> (the caller's array, its device array)
        handed_back = {r[1] for r in self.plan.results if r[0] in ("view", "input")}
        self._stage_direct = {i for i in self._copied_pos if i not in handed_back and i not in self.plan.written} \
            if self.graphs else set()

    # ---------------------------------------------------------------------- the executor's face
    def __getattr__(self, name):
        # anything public a tool reads off an executor (memory_bytes, slots, pool ...)
        if name.startswith("_") or name == "executor":
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self.executor, name)

    @property
    def graph_count(self) -> int:
        return sum(len(v) for v in self._instances.values())

    def run(self, arrays: Sequence) -> list:
        if len(arrays) != len(self.program.inputs):
            raise TypeError(f"program {self.program.graph.name} takes {len(self.program.inputs)} inputs, "
                            f"got {len(arrays)}")
        if threading.get_ident() != self._owner:
            # the graphs, static buffers and staging belong to the thread that built the runner;
            # another thread runs the executor (its own scratch per thread) kernel by kernel
            return self.executor.run(arrays)
        t0 = time.perf_counter()
        before = rt.COUNTER.snapshot()
        self._poll_errors()
        arrays = self._prepare(arrays)
        inst = self._instance(arrays) if self.graphs and self._warm else None
        if inst is None:
            results = self.executor.run(arrays)
            self._warm = True
        else:
            self.replay(inst, arrays)
            results = self._results(inst, arrays)
        if self._errors is not None:
            self._queue_error_read()
        after = rt.COUNTER.snapshot()
        launches = rt.COUNTER.launches(before, after) + (self._n_mut if inst is None else self._n_mut_replay)
        self._account(launches, after[4] - before[4], time.perf_counter() - t0, inst is not None)
        return results

    __call__ = run

    def replay(self, inst: "_Instance", arrays) -> None:
        """Copy the inputs in and launch the graph (one name for ember.profiler to time)."""
        for i in self._copied_pos:
            self._copy_in(i, arrays[i])
        inst.graph.launch()
        rt.COUNTER.graphs += 1
        inst.replays += 1
        self.stats["replays"] += 1

    # ------------------------------------------------------------------------------ inputs
    def _prepare(self, arrays) -> list:
        """The inputs as device arrays the program takes.  A static input that is the same array
        object as last call (a parameter updated in place) is taken as is: no checks to pay."""
        seen = self._seen
        out = list(arrays)
        misses = 0
        for i, a in enumerate(arrays):
            hit = seen.get(i)
            if hit is not None and hit[0] is a:
                out[i] = hit[1]
                continue
            d = self._device_array(a, i)
            out[i] = d
            if i in self._persistent:
                seen[i] = (a, d)     # holds a parameter's array, which lives on anyway
                misses += 1
        # the graph key (static addresses) is unchanged when every static input was such a hit
        self._same_key = not misses and self._persistent >= self._static_set
        return out

    def _device_array(self, a, i: int):
        """Input i as a contiguous device array of its program dtype: host arrays through pinned
        memory (asynchronous), other dtypes / layouts converted on the device."""
        cp = self.cp
        v = self.program.values[self.program.inputs[i]]
        want = v.dtype.np
        if not isinstance(a, cp.ndarray):
            host = np.ascontiguousarray(np.asarray(a, dtype=want))
            # straight into the static buffer, unless a result hands this input back to the caller
            dst = self._static_in.get(i) if i in self._stage_direct else None
            if dst is None or dst.shape != host.shape:
                dst = cp.empty(host.shape, dtype=want)
                self._stage(i, host, dst)
                return dst
            # the static buffer keeps what was uploaded (the program does not write it): an
            # unchanged host value (a learning rate, betas) needs no new upload
            last = self._uploaded.get(i)
            if last is None or not np.array_equal(last, host):
                self._stage(i, host, dst)
                self._uploaded[i] = host.copy()
            return dst
        if a.dtype != want:
            a = a.astype(want)
        if not a.flags.c_contiguous:
            a = cp.ascontiguousarray(a)
        return a

    def _stage(self, i: int, host: np.ndarray, dst) -> None:
        ring = self._staging.get(i)
        if ring is None or ring.shape != host.shape:
            ring = self._staging[i] = _PinnedRing(self.cp, host.shape, host.dtype, STAGING_DEPTH)
        slot = ring.next()
        slot.host[...] = host
        if host.nbytes:
            dst.data.copy_from_host_async(slot.ptr, host.nbytes)
        rt.COUNTER.copies += 1
        slot.mark()

    def _copy_in(self, i: int, a) -> None:
        dst = self._static_mem[i]              # the static buffer's MemoryPointer
        if i in self._immutable:
            if self._copied_from.get(i) is a:
                return
            self._copied_from[i] = a
        src = a.data
        if src.ptr == dst.ptr:                 # staged straight into it
            return
        if a.nbytes:
            dst.copy_from_device_async(src, a.nbytes)
        rt.COUNTER.copies += 1

    # ------------------------------------------------------------------------------ graphs
    def _instance(self, arrays):
        """A graph to replay for these static addresses: a free one, a new capture, or None (run
        kernel by kernel)."""
        key = self._key if self._same_key and self._key is not None else \
            tuple(arrays[i].data.ptr for i in self._static_pos)
        self._key = key
        mine = self._instances.get(key, ())
        for inst in mine:
            if not inst.busy():
                return inst
        if mine:
            # eager autograd graphs hold the outputs of the last call in reference cycles (node ->
            # output tensor -> grad_fn -> node) that only the cyclic collector frees: a young
            # collection is far cheaper than a new capture and its memory
            gc.collect(1)
            self.stats["gc"] += 1
            for inst in mine:
                if not inst.busy():
                    return inst
        if self.stats["captures"] >= RECAPTURE_LIMIT * self.max_graphs:
            self.graphs = False
            self._record("C007", f"{self.which} program captured {self.stats['captures']} times (its static inputs "
                         "keep moving): it runs kernel by kernel from now on")
            return None
        moved = self._moved_input(key) if self._instances and key not in self._instances else None
        if self.graph_count >= self.max_graphs and not self._evict(key):
            # cycles that outlived the young generations: one full collection, now and then
            if mine and self.stats["calls"] >= self._full_gc_at:
                self._full_gc_at = self.stats["calls"] + FULL_GC_EVERY
                gc.collect()
                self.stats["gc"] += 1
                for inst in mine:
                    if not inst.busy():
                        return inst
            self._record("C005", f"{self.which}: the outputs of all {self.graph_count} captured graphs are still "
                         "in use; such calls run kernel by kernel")
            return None
        inst = self._capture(arrays)
        if inst is not None:
            self._instances.setdefault(key, []).append(inst)
            if moved is not None:
                self._record("C003", f"{self.which} program captured again: static input {moved} has a new "
                             "address", once=False)
        return inst

    def _evict(self, key) -> bool:
        """Drop the oldest free graph keyed on other addresses (inputs that moved for good)."""
        for k, insts in self._instances.items():
            if k == key:
                continue
            for inst in insts:
                if not inst.busy():
                    insts.remove(inst)
                    if not insts:
                        del self._instances[k]
                    return True
        return False

    def _moved_input(self, key) -> str:
        """The first static input whose address differs from the last graph's key."""
        old = next(reversed(self._instances))
        for pos, a, b in zip(self._static_pos, old, key):
            if a != b:
                return self.program.inputs[pos]
        return "?"

    def _capture(self, arrays):
        cp = self.cp
        for i in self._copied_pos:
            buf = self._static_in.get(i)
            if buf is None:
                a = arrays[i]
                buf = self._static_in[i] = cp.empty(a.shape, dtype=a.dtype)
                self._static_mem[i] = buf.data
        feed = [arrays[i] if k == "static" else self._static_in[i] for i, k in enumerate(self.plan.inputs)]
        if self._stream is None:
            self._stream = cp.cuda.Stream(non_blocking=True)
        stream = self._stream
        private = cp.cuda.MemoryPool()
        snap = rt.COUNTER.snapshot()
        graph, results, error = None, None, None
        try:
            with cp.cuda.using_allocator(private.malloc), stream:
                stream.begin_capture()
                try:
                    results = self.executor.run(feed)
                finally:
                    graph = stream.end_capture()
        except Exception as e:   # noqa: BLE001 - CUDA refused the capture: run kernel by kernel from now on
            error = e
        held = rt.COUNTER.launches(snap, rt.COUNTER.snapshot())
        rt.COUNTER.restore(snap)       # captured launches were recorded, not issued
        if error is not None or graph is None:
            self.graphs = False
            why = f"{type(error).__name__}: {error}" if error is not None else "no graph came back"
            self._record("C006", f"{self.which} capture failed ({why}); runs kernel by kernel from now on")
            return None
        outputs = [None] * len(self.plan.outputs)
        for j, (kind, *where) in enumerate(self.plan.results):
            if kind == "output":
                outputs[where[0]] = results[j]
        del results
        inst = _Instance(graph, private, outputs, held)
        self.stats["captures"] += 1
        self.stats["graph_launches"].append(held)
        for s in self._sinks:
            s["cuda_graph_captures"] = s.get("cuda_graph_captures", 0) + 1
        self._record("C002", f"{self.which} program captured into a CUDA graph of {held} launches "
                     f"(graph {self.graph_count + 1} of at most {self.max_graphs})", once=False)
        return inst

    def _results(self, inst: _Instance, arrays) -> list:
        out = []
        for kind, *where in self.plan.results:
            if kind == "output":
                out.append(inst.outputs[where[0]])
            elif kind == "view":
                out.append(arrays[where[0]].reshape(where[1]))
            elif kind == "static_in":
                out.append(self._static_in[where[0]])
            elif kind == "static_in_copy":
                out.append(self._static_in[where[0]].copy())
                rt.COUNTER.copies += 1
            else:
                out.append(arrays[where[0]])
        return out

    # ------------------------------------------------------------------------------ errors
    def _queue_error_read(self) -> None:
        """Copy the error slots to pinned host memory behind this call's work, unless a read is
        still in flight (the slots are sticky: a later read still sees what this call recorded)."""
        slot = self._errors
        if slot.in_flight:
            return
        self.module.err.data.copy_to_host_async(slot.ptr, slot.host.nbytes)
        rt.COUNTER.copies += 1
        slot.mark()
        self._errors_pending = True

    def _poll_errors(self, wait: bool = False) -> None:
        """Raise the IndexError an earlier call recorded, once its copy has landed."""
        slot = self._errors
        if slot is None or not self._errors_pending:
            return
        if slot.in_flight:
            if not wait:
                return
            slot.wait()
        self._errors_pending = False
        self.module.raise_recorded(slot.host.copy(), f" (recorded on the GPU by an earlier call of the compiled "
                                                      f"{self.which} program {self.name}; CUDA reports such "
                                                      "errors asynchronously)")

    def synchronize(self) -> None:
        """Wait for this runner's work and raise any index error its calls recorded."""
        if self._errors is None:
            return
        self._poll_errors(wait=True)       # the read in flight (queued before later calls) ...
        self._queue_error_read()           # ... and one behind the last call
        self._poll_errors(wait=True)

    # ----------------------------------------------------------------------------- records
    def _account(self, launches: int, syncs: int, host_s: float, replayed: bool) -> None:
        st = self.stats
        st["calls"] += 1
        st["launches"] += launches
        st["host_s"] += host_s
        st["syncs"] += syncs
        st["last_launches"], st["last_host_us"] = launches, host_s * 1e6
        for s in self._sinks:
            s["cuda_calls"] = s.get("cuda_calls", 0) + 1
            s["cuda_launches"] = s.get("cuda_launches", 0) + launches
            s["cuda_host_s"] = s.get("cuda_host_s", 0.0) + host_s
            s["cuda_syncs"] = s.get("cuda_syncs", 0) + syncs
            if replayed:
                s["cuda_graph_replays"] = s.get("cuda_graph_replays", 0) + 1

    def _record(self, code: str, reason: str, once: bool = True) -> None:
        """Tell the compile driver (`notify(code, reason)`: it turns them into diagnostics records;
        the runtime sits below the diagnostics)."""
        if once and code in self._told:
            return
        self._told.add(code)
        if self._notify is not None:
            self._notify(code, reason)
