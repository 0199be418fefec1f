"""The device interface: how a target turns kernels into callables on its arrays.  The executor
(ember/runtime/executor.py) talks to nothing else.

    Device(name, xp, render, compiler, load, run_extern, arrays)
        .compile(kernels) -> Module       render -> compiler.compile_cached -> load: one module per program
    Compiler        source -> binary for one target; `compile_cached` is its only entry, and
                    ember/runtime/cache.py the only cache behind it (memory, then disk)
    Module          loaded kernels: module[name](*arrays) checks the arrays, module[name].launch(arrays)
                    does not (the executor's path: it allocates every array itself)
    BoundKernel     one kernel of a loaded module (the base of every device's kernel callables)
    ExternCallable  an extern (matmul / conv2d through run_extern) then its compiled epilogue
    check_arrays    the argument checks every callable shares
    get_device(d)   "numpy" (the kernel-IR evaluator, the oracle) | "llvm" / "cpu" | "cuda" | a Device

The two compiling devices live in ember/runtime/cpu.py (LLVM JIT) and ember/runtime/cuda.py (NVRTC
through CuPy); each is a Compiler, a Module subclass (the loader) and a kernel callable.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ember.ir.kernel import ExternKernel, Kernel
from ember.ir.kernel_eval import evaluate
from ember.ir.sizes import evaluate as size_at, free_symbols
from ember.kernels import blas
from ember.runtime import cache

__all__ = ["Device", "Compiler", "Build", "Module", "BoundKernel", "ExternCallable", "check_arrays", "get_device",
           "REFERENCE", "kernel_text"]


# ================================================================================== compiling
@dataclass
class Build:
    """What compile_cached produced: the binary, its cache key, where it came from ('compiled' |
    'disk' | 'memory'), seconds per stage, and the rendered source when rendering ran."""
    binary: Any
    key: str
    origin: str
    times: dict = field(default_factory=dict)
    source: Any = None


class Compiler:
    """Source -> binary for one target.  `compile` does the work; `compile_cached` is how the runtime
    calls it: a hit in memory or on disk skips rendering as well as compiling."""

    name = "compile"       # the stage's name in timings ("llvm", "nvrtc")
    persistent = True      # the binary is bytes worth keeping on disk

    def cache_key(self, key_text: str) -> str:
        """Key of key_text (the kernels' IR text) compiled by this compiler for its target."""
        raise NotImplementedError

    def compile(self, source) -> Any:
        raise NotImplementedError

    def compile_cached(self, key_text: str, render: Callable[[], Any], use_cache: bool = True) -> Build:
        t0 = time.perf_counter()
        key = self.cache_key(key_text)
        binary = cache.recall(key) if use_cache else None
        origin = "memory"
        if binary is None and use_cache and self.persistent:
            binary = cache.load(key)
            origin = "disk"
        times, source = {}, None
        if binary is None:
            t1 = time.perf_counter()
            source = render()
            t2 = time.perf_counter()
            binary = self.compile(source)
            times["codegen_s"], times[f"{self.name}_s"] = t2 - t1, time.perf_counter() - t2
            origin = "compiled"
            if use_cache and self.persistent:
                cache.store(key, binary)
        if use_cache:
            cache.remember(key, binary)
        times["total_s"] = time.perf_counter() - t0
        return Build(binary, key, origin, times, source)


def kernel_text(kernels: Sequence) -> str:
    """What identifies a program's kernels (their IR text): the part of a cache key they decide."""
    return "\n\n".join(str(k) for k in kernels)


@dataclass(frozen=True, eq=False)
class Device:
    """One target.  load(device, build, kernels) -> Module; run_extern(op, inputs, out, attrs)."""
    name: str                                   # "numpy" | "cpu" | "cuda"
    xp: Any                                     # numpy | cupy: the arrays its callables take
    render: Callable[[Sequence], Any] | None    # kernels -> source (None: nothing to compile)
    compiler: Compiler | None
    load: Callable[..., "Module"]
    run_extern: Callable
    arrays: str = "a numpy array"               # how argument errors name the arrays it takes

    def compile(self, kernels: Sequence, use_cache: bool = True) -> "Module":
        """One module for kernels (and extern epilogues)."""
        kernels = list(kernels)
        if self.compiler is None:
            return self.load(self, None, kernels)
        build = self.compiler.compile_cached(kernel_text(kernels), lambda: self.render(kernels), use_cache)
        return self.load(self, build, kernels)


# ==================================================================================== modules
class Module:
    """The loaded kernels of one program; callables by kernel name.

    Attributes: names (kernel names in order), source ('compiled' | 'disk' | 'memory'), key (cache
    key), times (seconds per compile stage), language and text (the generated source, for dumps)."""

    language = ""

    def __init__(self, device: Device, build: Build | None, kernels: Sequence):
        self.device = device
        self.kernels = {k.name: k for k in kernels}
        self.names = list(self.kernels)
        self.key, self.source, self.times = (build.key, build.origin, build.times) if build else ("", "compiled", {})
        self._callables: dict[str, object] = {}

    def _bind(self) -> None:
        """Make the callables (subclasses call this once their code is loaded)."""
        for k in self.kernels.values():
            if isinstance(k, ExternKernel):
                ep = self.kernel_callable(k.epilogue) if k.epilogue is not None else None
                self._callables[k.name] = ExternCallable(self, k, ep)
            else:
                self._callables[k.name] = self.kernel_callable(k)

    def kernel_callable(self, kernel: Kernel):
        raise NotImplementedError

    @property
    def text(self) -> str:
        return ""

    def __getitem__(self, name: str):
        return self._callables[name]

    def __contains__(self, name: str) -> bool:
        return name in self._callables

    def run(self, name: str, arrays: Sequence, threads: int | None = None) -> None:
        """Run kernel `name` on arrays in its args order; outputs are written in place."""
        self._callables[name](*arrays, threads=threads)


def check_arrays(kernel, arrays: Sequence, device: Device) -> None:
    """Arrays in kernel.args order: the device's array type, dtypes and shapes as declared,
    C-contiguous, outputs writable."""
    args = kernel.args
    if len(arrays) != len(args):
        raise TypeError(f"{kernel.name} takes {len(args)} arrays ({', '.join(b.name for b in args)}), "
                        f"got {len(arrays)}")
    n_in = len(args) - len(kernel.outputs if isinstance(kernel, Kernel) else kernel.final_outputs)
    for i, (a, b) in enumerate(zip(arrays, args)):
        if not isinstance(a, device.xp.ndarray):
            raise TypeError(f"{kernel.name}: argument {b.name} must be {device.arrays}, got {type(a).__name__}")
        if a.dtype != b.dtype.np or tuple(a.shape) != tuple(b.shape):
            raise TypeError(f"{kernel.name}: argument {b.name} expects {b.dtype.name}{list(b.shape)}, "
                            f"got {a.dtype}{list(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: argument {b.name} must be C-contiguous")
        if i >= n_in and not getattr(a.flags, "writeable", True):
            raise ValueError(f"{kernel.name}: output {b.name} is read-only")


class BoundKernel:
    """One kernel of a module: `fn(*arrays, threads=None)` checks the arrays, `fn.launch(arrays)`
    does not.  `threads` is the CPU device's (how many threads may split the outer loop)."""

    def __init__(self, module: Module, kernel):
        self.module, self.kernel = module, kernel

    def __call__(self, *arrays, threads: int | None = None) -> None:
        check_arrays(self.kernel, arrays, self.module.device)
        self.launch(arrays, threads)

    def launch(self, arrays: Sequence, threads: int | None = None) -> None:
        raise NotImplementedError

    def at(self, values: dict) -> "BoundKernel":
        """This kernel for the given size-symbol values (ember/ir/symbolic.py); a kernel with fixed
        sizes is itself."""
        return self


class ExternCallable(BoundKernel):
    """A library call (matmul / conv2d: ember/kernels/blas.py run_extern on the device's arrays)
    followed by the compiled epilogue, if any."""

    def __init__(self, module: Module, ext: ExternKernel, epilogue):
        super().__init__(module, ext)
        self.ext, self.epilogue = ext, epilogue
        # the extern's result buffer, reused across calls (page faults cost); one per thread:
        # threads may run one compiled function at once
        self._local = threading.local()
        self._out_shape = ext.output.shape

    def at(self, values: dict) -> "ExternCallable":
        if not free_symbols(self.ext.output.shape) and self.epilogue is None:
            return self
        bound = ExternCallable(self.module, self.ext, self.epilogue.at(values) if self.epilogue else None)
        bound._out_shape = tuple(size_at(n, values) for n in self.ext.output.shape)
        return bound

    def launch(self, arrays: Sequence, threads: int | None = None) -> None:
        ext, dev = self.ext, self.module.device
        ins = arrays[:len(ext.inputs)]
        if self.epilogue is None:
            dev.run_extern(ext.op, ins, arrays[-1], ext.attrs)
            return
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = dev.xp.empty(self._out_shape, dtype=ext.output.dtype.np)
        dev.run_extern(ext.op, ins, scratch, ext.attrs)
        self.epilogue.launch((scratch,) + tuple(arrays[len(ext.inputs):]), threads)


# ============================================================================ the numpy oracle
class _Evaluated(BoundKernel):
    """A kernel run by the kernel-IR evaluator (ember/ir/kernel_eval.py)."""

    def launch(self, arrays: Sequence, threads: int | None = None) -> None:
        evaluate(self.kernel, arrays)


class _ReferenceModule(Module):
    def __init__(self, device: Device, build: Build | None, kernels: Sequence):
        super().__init__(device, build, kernels)
        self._bind()

    def kernel_callable(self, kernel: Kernel):
        return _Evaluated(self, kernel)


# kernels through the numpy evaluator, externs through numpy's BLAS: always there, slow, the oracle
REFERENCE = Device("numpy", np, None, None, _ReferenceModule, blas.run_extern)


def get_device(d) -> Device:
    """A Device from a name: 'numpy' (the default), 'llvm' / 'cpu', 'cuda'; a Device is returned as is."""
    if isinstance(d, Device):
        return d
    if d is None or d == "numpy":
        return REFERENCE
    if d in ("llvm", "cpu"):
        from .cpu import CPU
        return CPU
    if d == "cuda":
        from .cuda import device
        return device()
    raise ValueError(f"unknown device {d!r} (expected 'numpy', 'llvm', 'cuda' or a Device)")
