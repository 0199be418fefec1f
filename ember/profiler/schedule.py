"""When a long-running profile records (torch.profiler.schedule) and what is done with each recorded
cycle (on_trace_ready handlers such as tensorboard_trace_handler).

    with profile(schedule=schedule(wait=1, warmup=1, active=3, repeat=2),
                 on_trace_ready=tensorboard_trace_handler("./log")) as prof:
        for batch in loader:
            train_step(batch)
            prof.step()

A schedule maps the step number (0, 1, ...) to a ProfilerAction; the profile records during
RECORD and RECORD_AND_SAVE steps and hands itself to on_trace_ready after each RECORD_AND_SAVE step."""
from __future__ import annotations

import enum
import os
import socket
import time
import warnings
from collections.abc import Callable


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


RECORDING = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)


def schedule(*, wait: int, warmup: int, active: int, repeat: int = 0, skip_first: int = 0,
             skip_first_wait: int = 0) -> Callable[[int], ProfilerAction]:
    """Skip `skip_first` steps, then cycle: `wait` idle steps, `warmup` steps, `active` recorded steps
    (the last one RECORD_AND_SAVE), `repeat` times (0: until the profile ends).  skip_first_wait=1
    drops the wait phase of the first cycle."""
    for name, v in (("wait", wait), ("warmup", warmup), ("skip_first", skip_first), ("repeat", repeat)):
        if v < 0:
            raise ValueError(f"schedule: {name} must be >= 0, got {v}")
    if active <= 0:
        raise ValueError(f"schedule: active must be > 0, got {active}")
    if warmup == 0:
        warnings.warn("Profiler won't be using warmup, this can skew profiler results", stacklevel=2)

    def action(step: int) -> ProfilerAction:
        if step < 0:
            raise ValueError(f"schedule: step must be >= 0, got {step}")
        if step < skip_first:
            return ProfilerAction.NONE
        step -= skip_first
        if skip_first_wait:         # the first cycle has no wait phase: shift every cycle by `wait`
            step += wait
        cycle = wait + warmup + active
        if repeat > 0 and step // cycle >= repeat:
            return ProfilerAction.NONE
        at = step % cycle
        if at < wait:
            return ProfilerAction.NONE
        if at < wait + warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if at < cycle - 1 else ProfilerAction.RECORD_AND_SAVE
    return action


def always_record(step: int) -> ProfilerAction:
    """The schedule of a profile without one: record everything, save when it stops."""
    return ProfilerAction.RECORD


def tensorboard_trace_handler(dir_name: str, worker_name: str | None = None, use_gzip: bool = False):
    """An on_trace_ready handler writing each recorded cycle as a Chrome trace
    `<dir_name>/<worker_name>.<time ns>.pt.trace.json[.gz]` (what TensorBoard's profiler plugin
    and Perfetto read).  worker_name defaults to `<host>_<pid>`."""
    def handler(prof) -> None:
        os.makedirs(dir_name, exist_ok=True)
        name = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        path = os.path.join(dir_name, f"{name}.{time.time_ns()}.pt.trace.json")
        if not use_gzip:
            prof.export_chrome_trace(path)
            return
        import gzip
        import shutil
        prof.export_chrome_trace(path)
        with open(path, "rb") as src, gzip.open(path + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.remove(path)
    return handler
