"""CUDA runtime: kernel IR -> CUDA C (ember/codegen/cuda.py) -> NVRTC through cupy.RawModule -> launches
on CuPy arrays.  Same calling convention as ember/runtime/cpu.py, so the executor can use either:

    mod = compile_kernels([k0, k1, x2])         # one RawModule for the whole program, cached
    mod.run("k0_max_sub_exp_sum_div", [x, y])   # or: mod["k0_..."](x, y); arrays are cupy.ndarray
    mod.run(x2.name, [a, b, bias, out])         # an ExternKernel: cuBLAS GEMM + compiled epilogue

In: `Kernel` / `ExternKernel` objects.  Out: a `CudaModule` whose kernels run on contiguous CuPy
arrays in `kernel.args` order (inputs, then outputs, written in place) on the current stream.

Compilation: the key is sha256 over the kernels' IR text, the code generator's own source, the
device's compute capability and the CuPy / NVRTC versions.  An in-memory table maps (key, device)
to the loaded module; below it CuPy keeps its own disk cache of cubins (~/.cupy/kernel_cache, or
$CUPY_CACHE_DIR), keyed by the source, options, architecture and NVRTC version, so a new process
pays NVRTC only once per program.  Options are ('-std=c++17',): CuPy adds the architecture of the
current device itself (`-arch=sm_XY`; passing our own -arch would be a duplicate NVRTC rejects) and
always adds -ftz=true.  No --use_fast_math: expf/tanhf/erff stay the accurate versions.

Launch: grid and block come from the kernel's LaunchSpec (ember/codegen/cuda.py) and the device's
SM count (grid-stride loops, at most 32 blocks per SM).  `n` is passed as int64 and `vec_ok` as int32
(CuPy would pass Python ints as int64).  A kernel with gathers is followed by a read of its
4-slot error buffer (a device sync); an out-of-range index raises
`IndexError("index 7 is out of bounds for dimension 0 with size 5")` like the CPU backend.

Externs: matmul / bmm through cupy.matmul (cuBLAS); conv2d as im2col (a strided view of the padded
input, copied once into [N, C*kh*kw, OH*OW]) and one batched GEMM with the weights, written straight
into NCHW; a fused epilogue (bias, activation) then runs as a compiled kernel on the result.

Without CuPy or a GPU, importing this module works; `compile_kernels` raises a RuntimeError saying so.
"""
from __future__ import annotations

import hashlib
import time
from typing import Sequence

import numpy as np

from ember.codegen import cuda as cg
from ember.runtime import cache
from ember.ir.kernel import ExternKernel, Kernel

__all__ = ["available", "compile_kernels", "CudaModule", "KernelCallable", "ExternCallable", "CudaRunner", "runner",
           "run_extern", "matmul", "conv2d", "cuda_source", "device_info", "OPTIONS", "stats"]

OPTIONS = ("-std=c++17",)
MAX_BLOCKS_PER_SM = 32

_cp = None
_cp_checked = False
_MODULES: dict = {}            # (key, device id) -> (cupy.RawModule, CudaProgram)
_SM_COUNT: dict = {}
_stats = {"compiled": 0, "memory_hits": 0}


def _cupy():
    """cupy when it imports and sees a GPU, else None (checked once)."""
    global _cp, _cp_checked
    if not _cp_checked:
        _cp_checked = True
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cp = cupy
        except Exception:   # no cupy, no driver, no device
            _cp = None
    return _cp


def available() -> bool:
    """CuPy imports and sees at least one GPU."""
    return _cupy() is not None


def _need():
    cp = _cupy()
    if cp is None:
        raise RuntimeError("the CUDA backend is not available: it needs CuPy (pip install 'ember[cuda]', "
                           "cupy-cuda12x or cupy-cuda13x) and an NVIDIA GPU with a driver")
    return cp


def stats() -> dict:
    return dict(_stats)


def device_info(device_id: int | None = None) -> dict:
    """Name, compute capability and SM count of a device (the current one by default)."""
    cp = _need()
    dev = cp.cuda.Device(device_id) if device_id is not None else cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"]
    return {"id": dev.id, "name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": dev.compute_capability, "sm_count": _sm_count(dev.id)}


def _sm_count(device_id: int) -> int:
    n = _SM_COUNT.get(device_id)
    if n is None:
        cp = _need()
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


def _cache_key(kernels, cc: str, versions: str) -> str:
    h = hashlib.sha256()
    for part in ("\n\n".join(str(k) for k in kernels), cache.codegen_fingerprint(), cc, versions, " ".join(OPTIONS)):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


# ================================================================================ compilation
def compile_kernels(kernels: Sequence, use_cache: bool = True) -> "CudaModule":
    """Compile kernels (and extern epilogues) into one CUDA module for the current device."""
    cp = _need()
    kernels = list(kernels)
    dev = cp.cuda.Device()
    t0 = time.perf_counter()
    key = _cache_key(kernels, dev.compute_capability, _versions(cp))
    times: dict = {}
    entry = _MODULES.get((key, dev.id)) if use_cache else None
    source = "memory"
    if entry is None:
        t1 = time.perf_counter()
        prog = cg.emit_program(kernels)
        t2 = time.perf_counter()
        raw = cp.RawModule(code=prog.source, options=OPTIONS)
        # get_function compiles (NVRTC, or CuPy's disk cache) and loads the module now, so a
        # compile error surfaces here, with the source, and not at the first launch
        try:
            for spec in prog.launches.values():
                raw.get_function(spec.name)
                if spec.partial:
                    raw.get_function(spec.partial)
        except Exception as e:
            raise RuntimeError(f"CUDA compilation of {[k.name for k in kernels]} failed: {e}\n"
                               f"--- generated source ---\n{prog.source}") from e
        times["codegen_s"], times["nvrtc_s"] = t2 - t1, time.perf_counter() - t2
        entry = (raw, prog)
        source = "compiled"
        _stats["compiled"] += 1
        if use_cache:
            _MODULES[(key, dev.id)] = entry
    else:
        _stats["memory_hits"] += 1
    times["total_s"] = time.perf_counter() - t0
    return CudaModule(kernels, entry[0], entry[1], key=key, device_id=dev.id, source=source, times=times)


# ==================================================================================== runtime
class CudaModule:
    """One loaded RawModule and the callables of its kernels.

    Attributes: names, source ('compiled' | 'memory'), key, times, device_id, cuda_source (text),
    launches (LaunchSpec per kernel)."""

    def __init__(self, kernels, raw, prog: "cg.CudaProgram", key: str = "", device_id: int = 0,
                 source: str = "compiled", times: dict | None = None):
        cp = _need()
        self.kernels = {k.name: k for k in kernels}
        self.names = list(self.kernels)
        self.raw, self.program = raw, prog
        self.key, self.source, self.times = key, source, times or {}
        self.device_id = device_id
        self.launches = prog.launches
        with cp.cuda.Device(device_id):
            self.err = cp.zeros(4, dtype=np.int64)   # flag, value, dim, size (see codegen)
        self._callables: dict[str, object] = {}
        for k in kernels:
            if isinstance(k, ExternKernel):
                ep = KernelCallable(self, k.epilogue) if k.epilogue is not None else None
                self._callables[k.name] = ExternCallable(self, k, ep)
            else:
                self._callables[k.name] = KernelCallable(self, k)

    @property
    def cuda_source(self) -> str:
        return self.program.source

    def __getitem__(self, name: str):
        return self._callables[name]

    def __contains__(self, name: str) -> bool:
        return name in self._callables

    def run(self, name: str, arrays: Sequence, threads: int | None = None) -> None:
        """Run kernel `name` on arrays in its args order; outputs are written in place.
        (`threads` is accepted for the CPU runner's signature and ignored.)"""
        self._callables[name](*arrays)

    def check_errors(self) -> None:
        """Raise the IndexError a gather recorded (reads the error slots: a device sync)."""
        e = self.err.get()
        if e[0]:
            self.err.fill(0)
            raise IndexError(f"index {int(e[1])} is out of bounds for dimension {int(e[2])} with size {int(e[3])}")


def _check_arrays(kernel, arrays, args, n_out: int):
    cp = _cupy()
    if len(arrays) != len(args):
        raise TypeError(f"{kernel.name} takes {len(args)} arrays ({', '.join(b.name for b in args)}), "
                        f"got {len(arrays)}")
    n_in = len(args) - n_out
    for i, (a, b) in enumerate(zip(arrays, args)):
        if not isinstance(a, cp.ndarray):
            raise TypeError(f"{kernel.name}: argument {b.name} must be a cupy array on the GPU, got "
                            f"{type(a).__name__}")
        if a.dtype != b.dtype.np or tuple(a.shape) != tuple(b.shape):
            raise TypeError(f"{kernel.name}: argument {b.name} expects {b.dtype.name}{list(b.shape)}, "
                            f"got {a.dtype}{list(a.shape)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: argument {b.name} must be C-contiguous")


class KernelCallable:
    """Launches one generated kernel; `fn(*arrays)` checks arguments, `fn.launch(arrays)` does not."""

    def __init__(self, module: CudaModule, kernel: Kernel):
        self.module, self.kernel = module, kernel
        self.spec: cg.LaunchSpec = module.launches[kernel.name]
        self.fn = module.raw.get_function(kernel.name)
        self.partial_fn = module.raw.get_function(self.spec.partial) if self.spec.partial else None
        self._n = np.int64(self.spec.points)
        self._scratch = None
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

    def __call__(self, *arrays, threads: int | None = None) -> None:
        _check_arrays(self.kernel, arrays, self.kernel.args, len(self.kernel.outputs))
        self.launch(arrays)

    def launch(self, arrays: Sequence) -> None:
        """Launch on arrays in args order (caller guarantees shapes/dtypes/contiguity)."""
        s = self.spec
        if s.points == 0:
            return
        args = tuple(arrays) + (self.module.err, self._n)
        if s.strategy == "pointwise":
            if s.vec > 1:
                ok = all(arrays[i].data.ptr % nb == 0 for i, nb in zip(s.vec_args, s.vec_bytes))
                args += (np.int32(1 if ok else 0),)
            self.fn((self.grid,), (s.block,), args)
        elif s.strategy == "split":
            scratch = self._scratch_buffers()
            self.partial_fn((s.parts,), (s.block,), args + scratch)
            self.fn((1,), (s.block,), args + scratch)
        else:
            self.fn((self.grid,), (s.block,), args)
        if s.gathers:
            self.module.check_errors()

    def _scratch_buffers(self) -> tuple:
        if self._scratch is None:
            cp = _cupy()
            self._scratch = tuple(cp.empty(self.spec.parts, dtype=np.dtype(dt_name))
                                  for _, dt_name in self.spec.scratch)
        return self._scratch


class ExternCallable:
    """cuBLAS (through CuPy) for matmul/bmm, im2col + GEMM for conv2d, then the compiled epilogue."""

    def __init__(self, module: CudaModule, ext: ExternKernel, epilogue: KernelCallable | None):
        self.module, self.ext, self.epilogue = module, ext, epilogue
        self._scratch = None

    def __call__(self, *arrays, threads: int | None = None) -> None:
        ext = self.ext
        _check_arrays(ext, arrays, ext.args, len(ext.final_outputs))
        self.launch(arrays)

    def launch(self, arrays: Sequence) -> None:
        ext = self.ext
        ins = arrays[:len(ext.inputs)]
        if self.epilogue is None:
            run_extern(ext.op, ins, arrays[-1], ext.attrs)
            return
        if self._scratch is None:
            self._scratch = _cupy().empty(ext.output.shape, dtype=ext.output.dtype.np)
        run_extern(ext.op, ins, self._scratch, ext.attrs)
        self.epilogue.launch((self._scratch,) + tuple(arrays[len(ext.inputs):]))


# ============================================================================ executor runner
class CudaRunner:
    """Kernel runner for ember/runtime/executor.py (`Executor(program, runner=CudaRunner())`): the
    program's kernels and externs in one CUDA module, called on CuPy arrays.

    `xp` is cupy: an executor running on this runner must allocate its slots and outputs with
    `runner.xp` and call eager fallbacks as `eager_kernels[op](runner.xp, ...)` (the CPU runners'
    xp is numpy)."""

    name = "cuda"

    def __init__(self):
        self.module: CudaModule | None = None

    @property
    def xp(self):
        return _need()

    @property
    def cuda_source(self) -> str | None:
        """The generated CUDA C of the last compiled program (for dumps / ember-ir)."""
        return self.module.cuda_source if self.module is not None else None

    def callables(self, program) -> dict:
        objs = program.compiled_objects()
        if not objs:
            return {}
        self.module = compile_kernels(objs)
        out = {}
        for name in self.module.names:
            out[name] = (lambda f: lambda *arrays: f.launch(arrays))(self.module[name])
        return out


def runner() -> CudaRunner:
    """A fresh executor runner for device 'cuda' (raises the 'not available' error without CuPy/GPU)."""
    _need()
    return CudaRunner()


# ===================================================================================== externs
def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _matmul_into(a, b, out) -> None:
    cp = _cupy()
    try:
        cp.matmul(a, b, out=out)
    except (TypeError, ValueError):   # an older CuPy without out= for this case
        out[...] = cp.matmul(a, b)


def matmul(a, b, out, transpose_a: bool = False, transpose_b: bool = False) -> None:
    """out = a @ b (batched, broadcasting) through cuBLAS; transposes are views, not copies."""
    if transpose_a:
        a = a.swapaxes(-1, -2)
    if transpose_b:
        b = b.swapaxes(-1, -2)
    _matmul_into(a, b, out)


def conv2d(x, w, bias, out, stride=1, padding=0, dilation=1, groups: int = 1) -> None:
    """im2col + one batched GEMM per call: out[n, g*og:(g+1)*og] = w_g @ cols[n, g]."""
    cp = _cupy()
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, _, _ = x.shape
    o, cgr, kh, kw = w.shape
    _, _, oh, ow = out.shape
    if ph or pw:
        x = cp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    x = cp.ascontiguousarray(x)
    s_n, s_c, s_h, s_w = x.strides
    # windows[n, c, a, b, i, j] = x[n, c, i*sh + a*dh, j*sw + b*dw]
    win = cp.lib.stride_tricks.as_strided(x, shape=(n, c, kh, kw, oh, ow),
                                          strides=(s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w))
    ck = cgr * kh * kw
    cols = cp.ascontiguousarray(win).reshape(n, groups, ck, oh * ow)     # the one im2col copy
    og = o // groups
    wg = w.reshape(1, groups, og, ck)
    _matmul_into(wg, cols, out.reshape(n, groups, og, oh * ow))          # NCHW directly
    if bias is not None:
        out += bias.reshape(1, o, 1, 1)


def run_extern(op: str, inputs: Sequence, out, attrs: dict) -> None:
    if op in ("matmul", "bmm"):
        matmul(inputs[0], inputs[1], out, bool(attrs.get("transpose_a")), bool(attrs.get("transpose_b")))
    elif op == "conv2d":
        bias = inputs[2] if len(inputs) > 2 else None
        conv2d(inputs[0], inputs[1], bias, out, attrs.get("stride", 1), attrs.get("padding", 0),
               attrs.get("dilation", 1), int(attrs.get("groups", 1)))
    else:
        raise NotImplementedError(f"extern op {op!r} on CUDA")

