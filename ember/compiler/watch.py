"""What a trace touched besides its tensors: the Python functions it ran, and calls a graph cannot replay.

    with TraceWatch() as w:          # around the traced call, on the tracing thread
        fn(*symbolic_args)
    w.frames       {code object: its globals dict}: every function of the user's own code that ran
                   (not ember, not the standard library, not installed packages)
    w.unreplayable (what, file:line) of the first call into Python-level randomness or clocks
                   ("call to random.randint()", "model.py:12")

A compiled graph replays tensor operations only. The globals those functions read (a global tensor,
a module, a flag) become guards (ember/compiler/guards.py); a call to `random`, `numpy.random`,
`time`, `os.urandom` ... returns a value the trace would bake in forever, so the trace must break
(torch.compile graph-breaks on them too).

It works through sys.setprofile on the tracing thread only (other threads are not slowed). When
another profiler is installed, the watch stays off: guards then cover the compiled function's own
globals and closure, and randomness goes unnoticed.
"""
from __future__ import annotations

import os
import random
import sys
import time

import numpy as np

_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Builtins whose result changes from call to call (the clocks), by function object.
_CLOCKS = {getattr(time, n) for n in (
    "time", "time_ns", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "process_time",
    "process_time_ns", "thread_time", "thread_time_ns", "localtime", "gmtime", "ctime", "asctime",
    "strftime") if hasattr(time, n)}
_ENTROPY = {f for f in (getattr(os, "urandom", None), getattr(os, "getrandom", None)) if f is not None}
_RANDOM_STATES = (random.Random, np.random.RandomState, np.random.Generator, np.random.BitGenerator)
_RANDOM_FILE = random.__file__


def unreplayable(fn) -> str | None:
    """'random.randint'-style name when calling builtin `fn` gives a fresh value each time, else None."""
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, _RANDOM_STATES):
        mod = "numpy.random" if not isinstance(owner, random.Random) else "random"
        return f"{mod}.{getattr(fn, '__name__', '?')}"
    try:
        if fn in _CLOCKS:
            return f"time.{fn.__name__}"
        if fn in _ENTROPY:
            return f"os.{fn.__name__}"
    except TypeError:       # an unhashable callable
        return None
    if getattr(fn, "__module__", None) == "numpy.random.mtrand" or (
            isinstance(owner, type) and owner.__module__ == "datetime" and fn.__name__ in ("now", "utcnow", "today")):
        return f"{getattr(owner, '__name__', 'numpy.random')}.{fn.__name__}"
    return None


def _global_generators() -> list:
    """(name, generator) of the process-wide generators behind random.* and numpy.random.*."""
    out = [("random's global generator", random._inst)]
    legacy = getattr(getattr(np.random, "mtrand", None), "_rand", None)
    if legacy is not None:
        out.append(("numpy.random's global generator", legacy))
    return out


def _state(r):
    if isinstance(r, random.Random):
        return r.getstate()
    if isinstance(r, np.random.RandomState):
        return r.get_state(legacy=False)
    bg = r.bit_generator if isinstance(r, np.random.Generator) else r
    return bg.state


def _same_state(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def _user_file(filename: str) -> bool:
    return not filename.startswith(_EMBER_DIR)


class TraceWatch:
    """Context manager: records the functions run and the first unreplayable call (see module doc)."""

    def __init__(self):
        self.frames: dict = {}
        self.unreplayable: tuple | None = None
        self.active = False             # the watch ran (no other profiler was installed)
        self._installed = False

    def __enter__(self):
        # numpy.random's methods are compiled (Cython): they raise no profiler events, so the
        # generators' states are compared before and after instead
        self.states = {id(r): (name, r, _state(r)) for name, r in _global_generators()}
        self._prev = sys.getprofile()
        if self._prev is None:          # never displace a profiler the user installed
            self.active = self._installed = True
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        if self._installed:
            sys.setprofile(self._prev)
            self._installed = False
        if self.unreplayable is None:
            for name, r, before in self.states.values():
                if not _same_state(before, _state(r)):
                    # the draw itself is not seen: point at the first user function traced
                    code = next(iter(self.frames), None)
                    where = f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}" if code else "?"
                    self.unreplayable = (f"a draw from {name}", where)
                    break
        self.states = {}
        return False

    def _profile(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code not in self.frames and _users_code(code.co_filename):
                self.frames[code] = g = frame.f_globals
                for name in code.co_names:       # generators this code can reach by name
                    r = g.get(name)
                    if isinstance(r, _RANDOM_STATES) and id(r) not in self.states:
                        self.states[id(r)] = (f"{type(r).__name__} {name!r}", r, _state(r))
            elif (code.co_filename == _RANDOM_FILE and self.unreplayable is None and frame.f_back is not None
                    and _users_code(frame.f_back.f_code.co_filename)):
                self.unreplayable = (f"call to random.{code.co_name}()", _first_user_line(frame))
        elif event == "c_call" and self.unreplayable is None:
            what = unreplayable(arg)
            # only calls made by the user's own code: a garbage-collector callback of some library
            # (hypothesis times its GC pauses) may run in the middle of a trace
            if what is not None and _users_code(frame.f_code.co_filename):
                self.unreplayable = (f"call to {what}()", _first_user_line(frame))


_STDLIB = os.path.dirname(os.__file__)


def _users_code(filename: str) -> bool:
    """Not ember, not the standard library, not an installed package: the user's script or project."""
    return (_user_file(filename) and not filename.startswith(_STDLIB) and "site-packages" not in filename
            and "dist-packages" not in filename)


def _first_user_line(frame) -> str:
    """file:line of the innermost frame in user code (not in random.py & co. nor in ember)."""
    f = frame
    while f is not None:
        if _users_code(f.f_code.co_filename):
            return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
        f = f.f_back
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
