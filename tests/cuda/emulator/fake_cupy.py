"""A stand-in `cupy` module for testing ember/runtime/cuda.py without a GPU: arrays are numpy arrays
(a subclass with .data.ptr and .get()), and RawModule compiles the CUDA source through the host
emulation (emulator.build) so `get_function(name)(grid, block, args)` really runs the kernel.

    with fake_cupy.installed(tmp_path) as cp:   # sys.modules["cupy"] = the fake, restored after
        mod = ember.runtime.cuda.compile_kernels([k])
        mod.run(k.name, [cp.asarray(x), cp.zeros(...)])

Besides what ember/runtime/cuda.py and ember/kernels/gpu.py touch, it models CUDA stream capture
as CUDA does it, strictly, so tests catch what a GPU would reject or get wrong:
  * `Stream.begin_capture()` .. `end_capture()` -> a `Graph`: while a stream captures, device work
    (kernel launches, ufuncs on device arrays, copies, fills, matmul, pad) is recorded, not run,
    with the addresses it had at capture; `Graph.launch()` runs the records in order.
  * Inside a capture: host synchronisation (`get`, `set`, `synchronize`), host<->device copies, an
    event record, and work issued on another stream than the capturing one raise, as on a GPU;
    allocations must come from an allocator installed with `using_allocator` (a private pool):
    memory from the shared pool would go back to others after the capture while the graph keeps
    writing it.  Arrays allocated in a capture are poisoned (NaN / 0x5A bytes): the capture did
    not compute them.
  * `COUNTS` counts what the host issued: kernels (generated kernels), graphs (replays), copies,
    ops (other device work: CuPy ufuncs, matmul, fills); work replayed by a graph is not counted.
Attributes numpy has and the fake does not define fall back to numpy (results as device arrays),
so ember's eager ops run on "cuda" tensors too; `cupyx.scatter_add` and `cupyx.empty_pinned` exist."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import sys
import types
from pathlib import Path

import numpy as np

from tests.cuda import emulator


class _State:
    """Process-wide state of the fake device (reset by `installed`)."""

    def __init__(self):
        self.capture = None          # list of recorded closures while a stream captures
        self.capturing = None        # the Stream that captures
        self.streams = []            # the `with stream:` stack (current stream on top)
        self.allocator = None        # the pool whose malloc `using_allocator` installed
        self.slow_device = False     # events stay "not done" until synchronized: a device behind the host


STATE = _State()
COUNTS = {"kernels": 0, "graphs": 0, "copies": 0, "ops": 0}


class CaptureError(RuntimeError):
    """What CUDA reports for an operation a capturing stream does not allow."""


def _no_sync(what: str) -> None:
    if STATE.capture is not None:
        raise CaptureError(f"{what}: operation not permitted when stream is capturing "
                           "(cudaErrorStreamCaptureUnsupported)")


def _issue(kind: str, fn) -> None:
    """Run device work now, or record it when the current stream captures."""
    if STATE.capture is not None:
        current = STATE.streams[-1] if STATE.streams else None
        if current is not STATE.capturing:
            raise CaptureError("work issued on another stream than the capturing one "
                               "(cudaErrorStreamCaptureImplicit)")
        STATE.capture.append(fn)
        return
    COUNTS[kind] += 1
    fn()


def _alloc(shape, dtype) -> "ndarray":
    a = np.empty(shape, dtype).view(ndarray)
    _register(a)
    return a


def _register(a) -> None:
    """An array allocated while a stream captures: from the private pool, and poisoned."""
    if STATE.capture is None:
        return
    pool = STATE.allocator
    if pool is None:
        raise CaptureError("allocation from the shared memory pool while a stream captures: after the "
                           "capture it would be handed to others while the graph still writes it")
    pool.blocks.append(a)
    base = np.asarray(a)
    if base.dtype.kind in "fc":
        base[...] = np.nan
    else:
        base.view(np.uint8)[...] = 0x5A


class _MemoryPointer:
    """`ndarray.data`: the device address and the copies CuPy offers on it."""

    def __init__(self, arr):
        self._arr = arr
        self.ptr = arr.__array_interface__["data"][0]

    def copy_from_device_async(self, src, size, stream=None):
        dst, s = self.ptr, src.ptr
        _issue("copies", lambda: ctypes.memmove(dst, s, size))

    def copy_from_host_async(self, mem, size, stream=None):
        if STATE.capture is not None:
            raise CaptureError("the current stream is capturing, so H2D transfers are disallowed")
        COUNTS["copies"] += 1
        ctypes.memmove(self.ptr, mem.value, size)    # mem: a ctypes.c_void_p (older CuPy takes only that)

    def copy_to_host_async(self, mem, size, stream=None):
        if STATE.capture is not None:
            raise CaptureError("the current stream is capturing, so D2H transfers are disallowed")
        COUNTS["copies"] += 1
        ctypes.memmove(mem.value, self.ptr, size)


def _plain(x):
    return np.asarray(x) if isinstance(x, ndarray) else x


def _detach(x):
    """What a recorded operation keeps of an operand: for an array only its address, shape, strides
    and dtype (a CUDA graph holds no reference to the arrays it was captured on), rebuilt as a
    numpy view when the graph runs."""
    if not isinstance(x, np.ndarray):
        return lambda: x
    shape, strides, dtype = x.shape, x.strides, x.dtype
    ptr = x.__array_interface__["data"][0]
    lo = sum(st * (n - 1) for st, n in zip(strides, shape) if st < 0 and n)
    hi = sum(st * (n - 1) for st, n in zip(strides, shape) if st > 0 and n) + dtype.itemsize
    extent = hi - lo if x.size else 0

    def rebuild():
        if not extent:
            return np.empty(shape, dtype)
        buf = (ctypes.c_char * extent).from_address(ptr + lo)
        return np.ndarray(shape, dtype, buffer=buf, offset=-lo, strides=strides)
    return rebuild


def _record(kind: str, fn, *operands) -> None:
    """Issue fn(*operands) as device work: operands are detached when it is recorded."""
    if STATE.capture is None:
        _issue(kind, lambda: fn(*[_plain(o) for o in operands]))
        return
    getters = [_detach(_plain(o)) for o in operands]
    _issue(kind, lambda: fn(*[g() for g in getters]))


class ndarray(np.ndarray):
    """numpy array posing as a device array."""

    @property
    def data(self):
        return _MemoryPointer(self)

    def get(self, stream=None, order="C", out=None):
        _no_sync("ndarray.get")
        r = np.array(self)
        if out is not None:
            out[...] = r
            return out
        return r

    def set(self, arr, stream=None):
        _no_sync("ndarray.set")
        np.ndarray.__setitem__(self, Ellipsis, arr)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        call = getattr(ufunc, method)
        kw = {k: v for k, v in kwargs.items() if k != "out"}
        outs = kwargs.get("out")
        n_in = len(inputs)
        if outs is not None or method == "at":
            outs = tuple(outs or ())

            def run(*ops):
                return call(*ops[:n_in], **kw, **({"out": ops[n_in:]} if outs else {}))
            _record("ops", run, *inputs, *outs)
            return outs[0] if len(outs) == 1 else (outs or None)
        if STATE.capture is None:
            COUNTS["ops"] += 1
            return _as_device(call(*[_plain(x) for x in inputs], **kw))
        r = call(*[_plain(x) for x in inputs], **kw)   # for the result's shape and dtype only
        if not isinstance(r, np.ndarray):
            raise CaptureError(f"{ufunc.__name__}.{method} gave a host scalar while a stream captures")
        r = r.view(ndarray)
        _register(r)
        _record("ops", lambda *ops: call(*ops[:n_in], out=ops[n_in:], **kw), *inputs, r)
        return r

    def __setitem__(self, key, value):
        _record("ops", lambda dst, v: np.ndarray.__setitem__(dst, key, v), self, value)

    def fill(self, value):
        _record("ops", lambda dst: np.ndarray.fill(dst, value), self)

    def copy(self, order="C"):
        r = _alloc(self.shape, self.dtype)
        _record("ops", lambda dst, src: np.copyto(dst, src), r, self)
        return r

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        r = _alloc(self.shape, dtype)
        _record("ops", lambda dst, src: np.copyto(dst, src, casting="unsafe"), r, self)
        return r


def _wrap(a):
    return np.asarray(a).view(ndarray)


def asarray(a, dtype=None):
    if isinstance(a, ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    if isinstance(a, ndarray):
        return a.astype(dtype)
    _no_sync("cupy.asarray of host data")
    COUNTS["copies"] += 1
    return _wrap(np.ascontiguousarray(np.asarray(a, dtype=dtype)) if not isinstance(a, np.ndarray) or dtype
                 else np.array(a))


def zeros(shape, dtype=float):
    if STATE.capture is None:
        return _wrap(np.zeros(shape, dtype))
    r = _alloc(shape, dtype)
    r.fill(0)
    return r


def empty(shape, dtype=float):
    if STATE.capture is None:
        return _wrap(np.empty(shape, dtype))
    return _alloc(shape, dtype)


def ascontiguousarray(a):
    if STATE.capture is None:
        return _wrap(np.ascontiguousarray(a))
    if a.flags.c_contiguous:
        return a
    r = _alloc(a.shape, a.dtype)
    _record("ops", lambda dst, src: np.copyto(dst, src), r, a)
    return r


def pad(a, width, mode="constant", constant_values=0):
    if STATE.capture is None:
        COUNTS["ops"] += 1
        return _wrap(np.pad(np.asarray(a), width, mode=mode, constant_values=constant_values))
    if mode != "constant" or constant_values != 0:
        raise CaptureError("fake cupy: only zero padding is recorded while capturing")
    width = [tuple(w) for w in width]
    shape = tuple(n + lo + hi for n, (lo, hi) in zip(a.shape, width))
    r = _alloc(shape, a.dtype)
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(a.shape, width))

    def run(dst, src):
        dst[...] = 0
        dst[inner] = src
    _record("ops", run, r, a)
    return r


def matmul(a, b, out=None):
    if out is None:
        if STATE.capture is not None:
            raise CaptureError("fake cupy: matmul without out= while capturing")
        COUNTS["ops"] += 1
        return _wrap(np.matmul(np.asarray(a), np.asarray(b)))
    def run(pa, pb, po):
        po[...] = np.matmul(pa, pb)
    _record("ops", run, a, b, out)
    return out


class _StrideTricks:
    """Views (no device work): numpy's, as device arrays."""

    @staticmethod
    def as_strided(a, shape, strides):
        return np.lib.stride_tricks.as_strided(a, shape=shape, strides=strides).view(ndarray)

    def __getattr__(self, name):
        f = getattr(np.lib.stride_tricks, name)
        return lambda *a, **k: _as_device(f(*a, **k))


lib = types.SimpleNamespace(stride_tricks=_StrideTricks())


class Device:
    def __init__(self, i=None):
        self.id = 0 if i is None else i
        self.compute_capability = "90"
        self.attributes = {"MultiProcessorCount": 4}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def synchronize(self):
        _no_sync("Device.synchronize")


# ------------------------------------------------------------------------ streams, graphs
_stream_ids = itertools.count(16)


class Stream:
    null = None   # set below

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else next(_stream_ids)

    def __enter__(self):
        STATE.streams.append(self)
        return self

    def __exit__(self, *a):
        STATE.streams.pop()
        return False

    def begin_capture(self, mode=None):
        if self.ptr in (0, 1):
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if STATE.capture is not None:
            raise CaptureError("a stream is already capturing")
        STATE.capture, STATE.capturing = [], self

    def end_capture(self):
        if STATE.capturing is not self:
            raise CaptureError("end_capture on a stream that does not capture")
        ops = STATE.capture
        STATE.capture, STATE.capturing = None, None
        return Graph(ops)

    def is_capturing(self):
        return STATE.capturing is self

    def synchronize(self):
        _no_sync("Stream.synchronize")


Stream.null = Stream(null=True)


def get_current_stream(device_id=-1):
    return STATE.streams[-1] if STATE.streams else Stream.null


class Graph:
    """The recorded work of one capture."""

    def __init__(self, ops):
        self.ops = ops

    def launch(self, stream=None):
        _no_sync("Graph.launch inside a capture")
        COUNTS["graphs"] += 1
        for op in self.ops:
            op()

    def upload(self, stream=None):
        pass


class Event:
    syncs = 0     # Event.synchronize calls (host waits), for tests

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.recorded = False
        self.waited = False

    def record(self, stream=None):
        if STATE.capture is not None:
            raise CaptureError("fake cupy: event record while capturing")
        self.recorded = True

    @property
    def done(self):
        # the fake runs work when it is issued; with STATE.slow_device it pretends the device lags
        return not STATE.slow_device or self.waited

    def synchronize(self):
        _no_sync("Event.synchronize")
        Event.syncs += 1
        self.waited = True


class MemoryPool:
    """A private pool: keeps alive what was allocated from it while a stream captured."""

    def __init__(self, allocator=None):
        self.blocks = []

    def malloc(self, size):
        raise NotImplementedError("fake cupy allocates through numpy")

    def used_bytes(self):
        return sum(b.nbytes for b in self.blocks)


@contextlib.contextmanager
def using_allocator(allocator=None):
    saved = STATE.allocator
    STATE.allocator = getattr(allocator, "__self__", allocator)
    try:
        yield
    finally:
        STATE.allocator = saved


# ------------------------------------------------------------------------------- kernels
class _Kernel:
    def __init__(self, lib_, name):
        self.name = name
        self.fn = getattr(lib_, f"launch_{name}")
        self.fn.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.calls = 0

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        ptrs, n, vec_ok = [], None, 1
        for a in args:
            if isinstance(a, np.ndarray):
                ptrs.append(a.__array_interface__["data"][0])
            elif isinstance(a, np.int64):
                n = int(a)
            elif isinstance(a, np.int32):
                vec_ok = int(a)
            else:
                raise TypeError(f"unexpected kernel argument {type(a).__name__}: CuPy would pass it as "
                                f"int64/float64")
        argv = (ctypes.c_void_p * len(ptrs))(*ptrs)
        # the emulation runs every thread as an OS thread: cap the grid (the kernels grid-stride),
        # except a split reduction's stage one, which needs exactly its `parts` blocks
        g = grid[0] if self.name.endswith("_partial") else min(grid[0], 4)

        def run(fn=self.fn, b=block[0]):
            fn(argv, n, vec_ok, g, b)
            self.calls += 1
        _issue("kernels", run)


class RawModule:
    workdir: Path = Path(".")
    built: list = []

    def __init__(self, code=None, options=()):
        self.code, self.options = code, options
        self._lib = None

    def get_function(self, name):
        if self._lib is None:
            d = RawModule.workdir / f"m{len(RawModule.built)}"
            d.mkdir(parents=True, exist_ok=True)
            src = emulator.host_source_from_cuda(self.code)
            self._lib = emulator.build_source(src, d)
            RawModule.built.append(self)
        return _Kernel(self._lib, name)


def _runtime():
    return types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                 getDeviceProperties=lambda i: {"name": b"Fake GPU (host emulation)",
                                                                "multiProcessorCount": 4,
                                                                "totalGlobalMem": 1 << 30, "major": 9,
                                                                "minor": 0})


# ---------------------------------------------------------------------- numpy fallback
def _as_device(x):
    if isinstance(x, np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    if isinstance(x, (tuple, list)):
        return type(x)(_as_device(v) for v in x)
    return x


# numpy functions that write into an argument: a capture cannot record them as "compute a new array"
_IN_PLACE = {"copyto", "put", "place", "putmask", "fill_diagonal", "put_along_axis"}


def _numpy_fallback(name):
    """cupy.<name> for what the fake does not define: numpy's, with device arrays out (eager ops of
    ember tensors on "cuda").  While a stream captures, a function that returns new arrays is
    recorded as "compute them again into the same arrays" (what CuPy's kernels would do); one that
    writes into an argument, or gives a host value, is refused."""
    f = getattr(np, name)   # AttributeError for what numpy lacks too
    if isinstance(f, np.ufunc) or not callable(f) or isinstance(f, type):
        return f

    @functools.wraps(f)
    def call(*args, **kwargs):
        if STATE.capture is None:
            COUNTS["ops"] += 1
            return _as_device(f(*[_plain(a) for a in args], **kwargs))
        if name in _IN_PLACE:
            raise CaptureError(f"fake cupy: cupy.{name} writes in place: not recorded while a stream captures")
        if any(isinstance(v, np.ndarray) for v in kwargs.values()):
            raise CaptureError(f"fake cupy: cupy.{name} with array keywords is not recorded while capturing")
        r = f(*[_plain(a) for a in args], **kwargs)
        results = r if isinstance(r, tuple) else (r,)
        if not all(isinstance(x, np.ndarray) for x in results):
            raise CaptureError(f"fake cupy: cupy.{name} gave a host value while a stream captures")
        results = tuple(x.view(ndarray) for x in results)
        for x in results:
            _register(x)
        n = len(args)

        def again(*ops):
            fresh = f(*ops[:n], **kwargs)
            for dst, src in zip(ops[n:], fresh if isinstance(fresh, tuple) else (fresh,)):
                np.copyto(dst, src)
        _record("ops", again, *args, *results)
        return results if isinstance(r, tuple) else results[0]
    return call


def _scatter_add(a, indices, values):
    np.add.at(np.asarray(a), indices, _plain(values))
    COUNTS["ops"] += 1


def _erf(x):
    import math
    x = _plain(x)
    _no_sync("cupyx.scipy.special.erf (not recorded)")
    COUNTS["ops"] += 1
    return _as_device(np.vectorize(math.erf, otypes=[x.dtype])(x))


def make_cupyx():
    """cupyx (and cupyx.scipy.special) with what ember's eager kernels take from them."""
    m = types.ModuleType("cupyx")
    m.__path__ = []
    m.scatter_add = _scatter_add
    m.empty_pinned = lambda shape, dtype=float: np.empty(shape, dtype)
    m.scipy = types.ModuleType("cupyx.scipy")
    m.scipy.__path__ = []
    m.scipy.special = types.ModuleType("cupyx.scipy.special")
    m.scipy.special.erf = _erf
    return m


def make_module(workdir: Path):
    m = types.ModuleType("cupy")
    for name in ("ndarray", "asarray", "zeros", "empty", "ascontiguousarray", "pad", "matmul", "lib",
                 "RawModule"):
        setattr(m, name, globals()[name])
    m.__version__ = "0.0-fake"
    m.cuda = types.SimpleNamespace(Device=Device, runtime=_runtime(),
                                   nvrtc=types.SimpleNamespace(getVersion=lambda: (0, 0)),
                                   Stream=Stream, Event=Event, Graph=Graph, MemoryPool=MemoryPool,
                                   using_allocator=using_allocator, get_current_stream=get_current_stream)
    m.__getattr__ = _numpy_fallback
    RawModule.workdir = Path(workdir)
    return m


def reset_counts() -> dict:
    for k in COUNTS:
        COUNTS[k] = 0
    return COUNTS


@contextlib.contextmanager
def installed(workdir: Path):
    """Install the fake as `cupy` (and `cupyx`) for ember (the CuPy probe, ember.runtime.cuda),
    restoring the state afterwards."""
    from ember.kernels import gpu
    from ember.runtime import cache, cuda as rt
    saved = (sys.modules.get("cupy"), gpu._cupy, gpu._checked, dict(cache._MEMORY), dict(rt._DEVICES),
             dict(rt._SM_COUNT), sys.modules.get("cupyx"))
    fake = make_module(workdir)
    sys.modules["cupy"] = fake
    cupyx = make_cupyx()
    sys.modules.update({"cupyx": cupyx, "cupyx.scipy": cupyx.scipy, "cupyx.scipy.special": cupyx.scipy.special})
    gpu._cupy, gpu._checked = fake, True
    for table in (cache._MEMORY, rt._DEVICES, rt._SM_COUNT):
        table.clear()
    STATE.__init__()
    reset_counts()
    try:
        yield fake
    finally:
        STATE.__init__()
        for name in ("cupyx.scipy", "cupyx.scipy.special"):
            sys.modules.pop(name, None)
        for name, old in (("cupy", saved[0]), ("cupyx", saved[6])):
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
        gpu._cupy, gpu._checked = saved[1], saved[2]
        for table, old in zip((cache._MEMORY, rt._DEVICES, rt._SM_COUNT), saved[3:6]):
            table.clear()
            table.update(old)
