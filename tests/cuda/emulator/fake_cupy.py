"""A stand-in `cupy` module for testing ember/runtime/cuda.py without a GPU: arrays are numpy arrays
(a subclass with .data.ptr and .get()), and RawModule compiles the CUDA source through the host
emulation (emulator.build) so `get_function(name)(grid, block, args)` really runs the kernel.

    with fake_cupy.installed(tmp_path) as cp:   # sys.modules["cupy"] = the fake, restored after
        mod = ember.runtime.cuda.compile_kernels([k])
        mod.run(k.name, [cp.asarray(x), cp.zeros(...)])

Only what ember/runtime/cuda.py and ember/kernels/gpu.py touch is provided."""
from __future__ import annotations

import contextlib
import ctypes
import sys
import types
from pathlib import Path

import numpy as np

from tests.cuda import emulator


class ndarray(np.ndarray):
    """numpy array posing as a device array."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def get(self):
        return np.array(self)


def _wrap(a):
    return np.asarray(a).view(ndarray)


def asarray(a, dtype=None):
    return _wrap(np.ascontiguousarray(np.asarray(a, dtype=dtype)) if not isinstance(a, np.ndarray) or dtype
                 else np.array(a))


def zeros(shape, dtype=float):
    return _wrap(np.zeros(shape, dtype))


def empty(shape, dtype=float):
    return _wrap(np.empty(shape, dtype))


def ascontiguousarray(a):
    return _wrap(np.ascontiguousarray(a))


def pad(a, width):
    return _wrap(np.pad(np.asarray(a), width))


def matmul(a, b, out=None):
    r = np.matmul(np.asarray(a), np.asarray(b))
    if out is None:
        return _wrap(r)
    out[...] = r
    return out


class _StrideTricks:
    @staticmethod
    def as_strided(a, shape, strides):
        return np.lib.stride_tricks.as_strided(a, shape=shape, strides=strides).view(ndarray)


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
        pass


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
        self.fn(argv, n, vec_ok, g, block[0])
        self.calls += 1


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


def make_module(workdir: Path):
    m = types.ModuleType("cupy")
    for name in ("ndarray", "asarray", "zeros", "empty", "ascontiguousarray", "pad", "matmul", "lib",
                 "RawModule"):
        setattr(m, name, globals()[name])
    m.__version__ = "0.0-fake"
    m.cuda = types.SimpleNamespace(Device=Device, runtime=_runtime(),
                                   nvrtc=types.SimpleNamespace(getVersion=lambda: (0, 0)))
    RawModule.workdir = Path(workdir)
    return m


@contextlib.contextmanager
def installed(workdir: Path):
    """Install the fake as `cupy` for ember (the CuPy probe, ember.runtime.cuda), restoring the
    state afterwards."""
    from ember.kernels import gpu
    from ember.runtime import cache, cuda as rt
    saved = (sys.modules.get("cupy"), gpu._cupy, gpu._checked, dict(cache._MEMORY), dict(rt._DEVICES),
             dict(rt._SM_COUNT))
    fake = make_module(workdir)
    sys.modules["cupy"] = fake
    gpu._cupy, gpu._checked = fake, True
    for table in (cache._MEMORY, rt._DEVICES, rt._SM_COUNT):
        table.clear()
    try:
        yield fake
    finally:
        if saved[0] is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved[0]
        gpu._cupy, gpu._checked = saved[1], saved[2]
        for table, old in zip((cache._MEMORY, rt._DEVICES, rt._SM_COUNT), saved[3:]):
            table.clear()
            table.update(old)
