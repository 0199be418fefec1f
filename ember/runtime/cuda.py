"""The CUDA device: kernel IR -> CUDA C (ember/codegen/cuda/) -> NVRTC through cupy.RawModule ->
launches on CuPy arrays.  Same interface as the CPU device (ember/runtime/device.py):

    mod = compile_kernels([k0, k1, x2])         # device().compile: one RawModule for the program
    mod.run("k0_max_sub_exp_sum_div", [x, y])   # or: mod["k0_..."](x, y); arrays are cupy.ndarray
    mod.run(x2.name, [a, b, bias, out])         # an ExternKernel: cuBLAS GEMM + compiled epilogue

In: `Kernel` / `ExternKernel` objects.  Out: a `CudaModule` whose kernels run on contiguous CuPy
arrays in `kernel.args` order (inputs, then outputs, written in place) on the current stream.

Compilation (`NvrtcCompiler`): the key is sha256 over the kernels' IR text, the code generators'
sources, the device's compute capability and id and the CuPy / NVRTC versions.  CuPy compiles and
loads in one step, so the in-memory cache (ember/runtime/cache.py) holds the loaded module; below it
CuPy keeps its own disk cache of cubins (~/.cupy/kernel_cache, or $CUPY_CACHE_DIR), keyed by the
source, options, architecture and NVRTC version, so a new process pays NVRTC only once per program.
Options are ('-std=c++17',): CuPy adds the architecture of the current device itself
(`-arch=sm_XY`; passing our own -arch would be a duplicate NVRTC rejects) and always adds
-ftz=true.  No --use_fast_math: expf/tanhf/erff stay the accurate versions.

Launch: grid and block come from the kernel's LaunchSpec (ember/codegen/cuda/strategy.py) and the
device's SM count (grid-stride loops, at most 32 blocks per SM).  `n` is passed as int64 and `vec_ok`
as int32 (CuPy would pass Python ints as int64).  A kernel with gathers is followed by a read of its
4-slot error buffer (a device sync); an out-of-range index raises
`IndexError("index 7 is out of bounds for dimension 0 with size 5")` like the CPU backend.
Externs (matmul through cuBLAS, conv2d as im2col + one batched GEMM) are ember/kernels/gpu.py.
A module whose owner checks the error slots itself (`defer_checks = True`: the compiled-program
runner of ember/runtime/cuda_graph.py, which reads them asynchronously) launches gathers without
that sync: a compiled step never waits for the device.

Launch accounting: `COUNTER` (a LaunchCounter) counts what the host issues on this device: ember's
kernels exactly (a split reduction is two launches), library calls by the launches they issue
(`library_launches`: matmul 1 GEMM; conv2d pad + im2col copy + GEMM + bias), graph replays,
copies and host synchronisations.  The runner turns its deltas into launches per compiled call.

Without CuPy or a GPU, importing this module works; `device()` and `compile_kernels` raise a
RuntimeError saying so.
"""
from __future__ import annotations

import functools
import threading
from typing import Sequence

import numpy as np

from ember.codegen import cuda as cg
from ember.ir.kernel import Kernel
from ember.kernels import blas, gpu
from ember.kernels.gpu import conv2d, matmul  # noqa: F401  (the CUDA externs, also reachable from here)
from ember.runtime import cache
from ember.runtime.device import Build, BoundKernel, Compiler, Device, Module

__all__ = ["available", "device", "compile_kernels", "CudaModule", "KernelCallable", "NvrtcCompiler",
           "cuda_source", "device_info", "OPTIONS", "matmul", "conv2d", "LaunchCounter", "COUNTER",
           "library_launches"]

OPTIONS = ("-std=c++17",)
MAX_BLOCKS_PER_SM = 32

_DEVICES: dict[int, Device] = {}   # device id -> Device
_SM_COUNT: dict = {}


class LaunchCounter:
    """What the host has issued on the CUDA device so far: kernels (ember's generated kernels),
    library (launches inside cuBLAS / CuPy calls of externs), graphs (CUDA graph replays), copies
    (device copies and host<->device transfers), syncs (host waits for the device)."""

    __slots__ = ("kernels", "library", "graphs", "copies", "syncs")

    def __init__(self):
        self.kernels = self.library = self.graphs = self.copies = self.syncs = 0

    def snapshot(self) -> tuple:
        return (self.kernels, self.library, self.graphs, self.copies, self.syncs)

    def restore(self, snap: tuple) -> None:
        """Set the counts back (a capture records launches, it does not issue them)."""
        self.kernels, self.library, self.graphs, self.copies, self.syncs = snap

    @staticmethod
    def launches(before: tuple, after: tuple) -> int:
        """Launches issued between two snapshots (kernels, library calls, graphs, copies)."""
        return sum(after[i] - before[i] for i in range(4))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


COUNTER = LaunchCounter()


def library_launches(op: str, attrs: dict, n_inputs: int) -> int:
    """Launches one extern call issues on CuPy (ember/kernels/gpu.py): matmul one GEMM; conv2d the
    padding copy (when padded), the im2col copy, one batched GEMM and the bias add (when biased)."""
    if op == "conv2d":
        pad = attrs.get("padding", 0)
        padded = any(pad) if isinstance(pad, (tuple, list)) else bool(pad)
        return int(padded) + 2 + int(n_inputs > 2)
    return 1


def _run_extern(cp, op: str, inputs, out, attrs: dict) -> None:
    """The CUDA device's extern entry: ember/kernels/blas.run_extern on CuPy arrays, counted."""
    COUNTER.library += library_launches(op, attrs, len(inputs))
    blas.run_extern(op, inputs, out, attrs, xp=cp)


def available() -> bool:
    """CuPy imports and sees at least one GPU."""
    return gpu.cupy_or_none() is not None


def device_info(device_id: int | None = None) -> dict:
    """Name, compute capability and SM count of a device (the current one by default)."""
    cp = gpu.need()
    dev = cp.cuda.Device(device_id) if device_id is not None else cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"]
    return {"id": dev.id, "name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": dev.compute_capability, "sm_count": _sm_count(dev.id)}


def _sm_count(device_id: int) -> int:
    n = _SM_COUNT.get(device_id)
    if n is None:
        cp = gpu.need()
        try:
            n = int(cp.cuda.Device(device_id).attributes["MultiProcessorCount"])
        except Exception:   # noqa: BLE001 - an older CuPy: ask the runtime
            n = int(cp.cuda.runtime.getDeviceProperties(device_id)["multiProcessorCount"])
        _SM_COUNT[device_id] = n
    return n


def _versions(cp) -> str:
    try:
        nvrtc = ".".join(map(str, cp.cuda.nvrtc.getVersion()))
    except Exception:
        nvrtc = "?"
    return f"cupy {cp.__version__} nvrtc {nvrtc}"


def cuda_source(kernels: Sequence) -> str:
    """The CUDA C the backend compiles for these kernels (for the inspect tools); needs no GPU."""
    return cg.emit_program(list(kernels)).source


# ================================================================================ compilation
class NvrtcCompiler(Compiler):
    """A CudaProgram -> (loaded cupy.RawModule, the program) for one device."""

    name = "nvrtc"
    persistent = False   # CuPy keeps the cubins on disk itself

    def __init__(self, cp, device_id: int):
        self.cp, self.device_id = cp, device_id
        self.cc = cp.cuda.Device(device_id).compute_capability

    def cache_key(self, key_text: str) -> str:
        return cache.key(key_text, cache.codegen_fingerprint(), self.cc, _versions(self.cp), " ".join(OPTIONS),
                         f"device {self.device_id}")

    def compile(self, prog: cg.CudaProgram):
        with self.cp.cuda.Device(self.device_id):
            raw = self.cp.RawModule(code=prog.source, options=OPTIONS)
            # get_function compiles (NVRTC, or CuPy's disk cache) and loads the module now, so a
            # compile error surfaces here, with the source, and not at the first launch
            try:
                for spec in prog.launches.values():
                    raw.get_function(spec.name)
                    if spec.partial:
                        raw.get_function(spec.partial)
            except Exception as e:
                raise RuntimeError(f"CUDA compilation of {prog.names} failed: {e}\n"
                                   f"--- generated source ---\n{prog.source}") from e
        return raw, prog


# ==================================================================================== runtime
class CudaModule(Module):
    """One loaded RawModule and the callables of its kernels (see ember/runtime/device.py Module).

    Extra attributes: device_id, raw (the cupy.RawModule), program (CudaProgram), launches
    (LaunchSpec per kernel), cuda_source (text), err (the gather-error slots)."""

    language = "cuda"

    def __init__(self, device: Device, build: Build, kernels: Sequence):
        super().__init__(device, build, kernels)
        cp = device.xp
        self.raw, self.program = build.binary
        self.launches = self.program.launches
        self.device_id = device.compiler.device_id
        with cp.cuda.Device(self.device_id):
            self.err = cp.zeros(4, dtype=np.int64)   # flag, value, dim, size (see codegen)
        # True when the module's owner reads the error slots itself (asynchronously, see
        # ember/runtime/cuda_graph.py): gathers then launch without a host sync
        self.defer_checks = False
        self._bind()

    def kernel_callable(self, kernel: Kernel) -> "KernelCallable":
        return KernelCallable(self, kernel)

    @property
    def cuda_source(self) -> str:
        return self.program.source

    text = cuda_source

    def check_errors(self) -> None:
        """Raise the IndexError a gather recorded (reads the error slots: a device sync)."""
        COUNTER.syncs += 1
        self.raise_recorded(self.err.get())

    def raise_recorded(self, e, note: str = "") -> None:
        """Raise the IndexError the error slots `e` (a host copy) hold, if any, and clear them."""
        if e[0]:
            self.err.fill(0)
            raise IndexError(f"index {int(e[1])} is out of bounds for dimension {int(e[2])} with size "
                             f"{int(e[3])}{note}")


class KernelCallable(BoundKernel):
    """Launches one generated kernel; `fn(*arrays)` checks arguments, `fn.launch(arrays)` does not."""

    def __init__(self, module: CudaModule, kernel: Kernel):
        super().__init__(module, kernel)
        self.spec: cg.LaunchSpec = module.launches[kernel.name]
        self.fn = module.raw.get_function(kernel.name)
        self.partial_fn = module.raw.get_function(self.spec.partial) if self.spec.partial else None
        self._n = np.int64(self.spec.points)
        self._local = threading.local()     # split-reduction partials, per thread
        sm = _sm_count(module.device_id)
        s = self.spec
        cap = sm * MAX_BLOCKS_PER_SM
        if s.strategy == "pointwise":
            work = -(-s.points // s.vec)
            self.grid = max(1, min(-(-work // s.block), cap))
        elif s.strategy == "split":
            self.grid = 1
        else:
            self.grid = max(1, min(-(-s.points // s.per_block), cap))

    def launch(self, arrays: Sequence, threads: int | None = None) -> None:
        """Launch on arrays in args order (caller guarantees shapes/dtypes/contiguity); `threads` is
        the CPU device's parameter, ignored here."""
        s = self.spec
        if s.points == 0:
            return
        args = tuple(arrays) + (self.module.err, self._n)
        if s.strategy == "pointwise":
            if s.vec > 1:
                ok = all(arrays[i].data.ptr % nb == 0 for i, nb in zip(s.vec_args, s.vec_bytes))
                args += (np.int32(1 if ok else 0),)
            self.fn((self.grid,), (s.block,), args)
            COUNTER.kernels += 1
        elif s.strategy == "split":
            scratch = self._scratch_buffers()
            self.partial_fn((s.parts,), (s.block,), args + scratch)
            self.fn((1,), (s.block,), args + scratch)
            COUNTER.kernels += 2
        else:
            self.fn((self.grid,), (s.block,), args)
            COUNTER.kernels += 1
        if s.gathers and not self.module.defer_checks:
            self.module.check_errors()

    def _scratch_buffers(self) -> tuple:
        # per thread: two threads' launches interleave on the stream, so shared partials would mix
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            cp = self.module.device.xp
            scratch = self._local.scratch = tuple(cp.empty(self.spec.parts, dtype=np.dtype(dt_name))
                                                  for _, dt_name in self.spec.scratch)
        return scratch


# ==================================================================================== devices
def device(device_id: int | None = None) -> Device:
    """The Device for a GPU (the current one by default); raises the 'not available' error without
    CuPy or a GPU."""
    cp = gpu.need()
    if device_id is None:
        device_id = cp.cuda.Device().id
    d = _DEVICES.get(device_id)
    if d is None:
        d = _DEVICES[device_id] = Device("cuda", cp, cg.emit_program, NvrtcCompiler(cp, device_id), CudaModule,
                                         functools.partial(_run_extern, cp), "a cupy array on the GPU")
    return d


def compile_kernels(kernels: Sequence, use_cache: bool = True) -> CudaModule:
    """Compile kernels (and extern epilogues) into one CUDA module for the current device."""
    return device().compile(kernels, use_cache)
