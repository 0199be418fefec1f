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

torch.profiler's options work the same way: record_shapes (+ key_averages(group_by_input_shape=
True)), profile_memory, with_stack (+ group_by_stack_n, export_stacks), schedule / on_trace_ready /
prof.step() with tensorboard_trace_handler, export_chrome_trace.

Modules: events (FunctionEvent, FunctionEventAvg, EventList and its table), recorder (profile,
record_function, the hooks), schedule (schedule, ProfilerAction, tensorboard_trace_handler),
machine (the copy bandwidth and GEMM rate the table compares with).
"""
from .events import SORT_KEYS, EventList, FunctionEvent, FunctionEventAvg
from .machine import copy_bandwidth_gbs, gemm_peak_gflops
from .recorder import ProfilerActivity, profile, record_function, supported_activities
from .schedule import ProfilerAction, schedule, tensorboard_trace_handler

__all__ = ["profile", "record_function", "ProfilerActivity", "ProfilerAction", "schedule", "tensorboard_trace_handler",
           "supported_activities", "FunctionEvent", "FunctionEventAvg", "EventList", "copy_bandwidth_gbs",
           "gemm_peak_gflops", "SORT_KEYS"]
