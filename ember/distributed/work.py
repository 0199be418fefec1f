"""Work: the handle an async collective returns (torch.distributed.Work).

    work = dist.all_reduce(t, async_op=True)
    ...                       # overlap other work here
    work.wait()               # t now holds the result

A backend builds a Work from `poll` (True once the transfer is done; on MPI each call also drives
the transfer forward) and callbacks that finish the result (AVG's division, copies into output
lists, version counters) once, after completion. `wait` honours the process group's timeout: a
collective that never completes (a peer died or called something else) raises instead of hanging.
"""
from __future__ import annotations

import datetime
import time
from typing import Callable

__all__ = ["Work"]


def _seconds(timeout) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


class Work:
    """One in-flight (or finished) collective."""

    def __init__(self, what: str, poll: Callable[[], bool] | None, result=(), timeout=None, rank: int = 0):
        self._what = what
        self._poll = poll                 # None: already complete
        self._callbacks: list[Callable[[], None]] = []
        self._result = list(result)
        self._timeout = _seconds(timeout)
        self._rank = rank
        self._finished = poll is None
        self._exception: BaseException | None = None

    def then(self, fn: Callable[[], None]) -> "Work":
        """Run fn once the transfer has completed (immediately when it already has)."""
        if self._finished and not self._callbacks:
            fn()
        else:
            self._callbacks.append(fn)
        return self

    def _finish(self):
        self._finished = True
        self._poll = None
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()

    def is_completed(self) -> bool:
        """True once the result is in place (a non-blocking check that also drives MPI's progress)."""
        if self._poll is not None and self._poll():
            self._finish()
        elif self._poll is None and self._callbacks:
            self._finish()
        return self._finished

    def wait(self, timeout=None) -> bool:
        """Block until done; raises RuntimeError after `timeout` (default: the group's timeout)."""
        limit = _seconds(timeout) if timeout is not None else self._timeout
        if self._poll is not None:
            deadline = None if limit is None else time.monotonic() + limit
            spins = 0
            while not self._poll():
                spins += 1
                if spins > 2000:
                    # past ~1 ms of spinning, sleep between checks: the peers may share this CPU
                    time.sleep(5e-5)
                if deadline is not None and time.monotonic() > deadline:
                    self._exception = RuntimeError(
                        f"ember.distributed: {self._what} did not complete within {datetime.timedelta(seconds=limit)} "
                        f"on rank {self._rank}: another rank may have died, stopped calling collectives, or called "
                        f"a different one. (The timeout is init_process_group's `timeout`.)")
                    raise self._exception
        self._finish()
        return True

    def is_success(self) -> bool:
        return self._finished and self._exception is None

    def exception(self):
        return self._exception

    def result(self) -> list:
        """The tensors the collective wrote (PyTorch's Work.result())."""
        return list(self._result)

    def synchronize(self) -> None:
        self.wait()

    def __repr__(self):
        state = "completed" if self._finished else "pending"
        return f"<ember.distributed.Work {self._what} ({state})>"
