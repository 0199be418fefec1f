"""Host emulation of generated CUDA kernels (no GPU): the CUDA C from ember/codegen/cuda.py is compiled
by g++ against cuda_shim.h (threads per block as std::threads, barriers for __syncthreads and warp
shuffles) into a shared library, and each kernel is run through a generated launcher on numpy
arrays.  Used by tests/cuda/test_emulated.py to check the generator's numerics against kernel_eval
on machines without a GPU; the real launches are checked by the @pytest.mark.gpu tests.

    lib = build(kernels, workdir)                # one g++ call for all kernels
    outs = run(lib, kernel, inputs)              # numpy outputs (IndexError on a bad gather)
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ember.codegen import cuda as cg

SHIM = Path(__file__).with_name("cuda_shim.h")

HOST_F16 = """// [f16 conversions: host emulation]
inline float ember_h2f(unsigned short h) { _Float16 x; std::memcpy(&x, &h, 2); return (float)x; }
inline unsigned short ember_f2h(float f) { _Float16 x = (_Float16)f; unsigned short h; std::memcpy(&h, &x, 2); return h; }
inline unsigned short ember_d2h(double d) { _Float16 x = (_Float16)d; unsigned short h; std::memcpy(&h, &x, 2); return h; }
"""


def compiler() -> str | None:
    return shutil.which("g++")


def _wrapper(k, spec: cg.LaunchSpec) -> str:
    n_in = len(k.inputs)
    casts = []
    for i, b in enumerate(k.args):
        const = "const " if i < n_in else ""
        casts.append(f"({const}{cg.c_type(b.dtype, True)}*)a[{i}]")
    e = len(k.args)
    casts.append(f"(long long*)a[{e}]")
    casts.append("n")
    if spec.vec > 1:
        casts.append("vec_ok")
    scratch_out = [f"({cg.c_type(_dt(t), True)}*)a[{e + 1 + j}]" for j, (_, t) in enumerate(spec.scratch)]
    scratch_in = [f"(const {cg.c_type(_dt(t), True)}*)a[{e + 1 + j}]" for j, (_, t) in enumerate(spec.scratch)]
    lines = [f'extern "C" void run_{k.name}(void** a, long long n, int vec_ok, int grid, int block) {{']
    if spec.partial:
        lines.append(f"  ember_emulate({spec.parts}, block, [&]() {{ {spec.partial}({', '.join(casts + scratch_out)}); }});")
        lines.append(f"  ember_emulate(1, block, [&]() {{ {k.name}({', '.join(casts + scratch_in)}); }});")
    else:
        lines.append(f"  ember_emulate(grid, block, [&]() {{ {k.name}({', '.join(casts)}); }});")
    lines.append("}")
    return "\n".join(lines)


def _dt(name):
    from ember.ir import dtypes as dt
    return dt.by_name(name)


def host_source(kernels) -> tuple[str, cg.CudaProgram]:
    prog = cg.emit_program(kernels)
    src = re.sub(r"// \[f16 conversions\].*?// \[end f16 conversions\]\n", HOST_F16, prog.source, flags=re.S)
    wrappers = [_wrapper(k, prog.launches[k.name]) for k in prog.kernels]
    return src + "\n// ---- emulation launchers ----\n" + "\n\n".join(wrappers) + "\n", prog


class EmulatedLibrary:
    def __init__(self, path: Path, prog: cg.CudaProgram):
        self.lib = ctypes.CDLL(str(path))
        self.prog = prog


def build(kernels, workdir: Path) -> EmulatedLibrary:
    src, prog = host_source(list(kernels))
    workdir = Path(workdir)
    cu = workdir / "emulated.cpp"
    so = workdir / "emulated.so"
    cu.write_text(src)
    cmd = [compiler(), "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", "-fno-strict-aliasing", "-ffp-contract=off",
           "-Wno-unknown-pragmas", "-Wno-unused-variable", "-include", str(SHIM), str(cu), "-o", str(so)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"g++ failed on the emulated source {cu}:\n{res.stderr[-6000:]}")
    return EmulatedLibrary(so, prog)


def launch_shape(spec: cg.LaunchSpec) -> tuple[int, int]:
    """(grid, block) for the emulation: small grids, so grid-stride loops take several steps."""
    if spec.strategy in ("pointwise", "thread"):
        return 3, 64
    if spec.strategy == "warp":
        return 2, 64
    return 2, spec.block


def run(lib: EmulatedLibrary, kernel, inputs, vec_ok: bool = True) -> list[np.ndarray]:
    spec = lib.prog.launches[kernel.name]
    arrays = [np.ascontiguousarray(a) for a in inputs]
    outs = [np.zeros(b.shape, dtype=b.dtype.np) for b in kernel.outputs]
    err = np.zeros(4, dtype=np.int64)
    scratch = [np.zeros(max(spec.parts, 1), dtype=np.dtype(t)) for _, t in spec.scratch]
    ptrs = [a.ctypes.data for a in arrays + outs] + [err.ctypes.data] + [s.ctypes.data for s in scratch]
    argv = (ctypes.c_void_p * len(ptrs))(*ptrs)
    grid, block = launch_shape(spec)
    fn = getattr(lib.lib, f"run_{kernel.name}")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    ok = vec_ok and all(arrays_or_outs.ctypes.data % nb == 0
                        for arrays_or_outs, nb in zip([(arrays + outs)[i] for i in spec.vec_args], spec.vec_bytes))
    if spec.points:
        fn(argv, spec.points, 1 if ok else 0, grid, block)
    if err[0]:
        raise IndexError(f"index {int(err[1])} is out of bounds for dimension {int(err[2])} with size {int(err[3])}")
    return outs


_SIG = re.compile(r'extern "C" __global__ void __launch_bounds__\(\d+\) (\w+)\((.*?)\) \{', re.S)


def host_source_from_cuda(code: str) -> str:
    """Host-emulation source for raw generated CUDA C (what cupy.RawModule receives): the f16
    conversions swapped for host ones and a `launch_<fn>(void** ptrs, n, vec_ok, grid, block)` per
    __global__ function, built from its signature (pointer parameters in order from ptrs)."""
    src = re.sub(r"// \[f16 conversions\].*?// \[end f16 conversions\]\n", HOST_F16, code, flags=re.S)
    launchers = []
    for m in _SIG.finditer(code):
        name, params = m.group(1), [p.strip() for p in m.group(2).split(",")]
        args, k = [], 0
        for p in params:
            if "*" in p:
                ty = p.split("__restrict__")[0].strip()
                args.append(f"({ty})a[{k}]")
                k += 1
            elif p.endswith(" n"):
                args.append("n")
            elif p.endswith(" vec_ok"):
                args.append("vec_ok")
            else:
                raise ValueError(f"unexpected parameter {p!r} of {name}")
        launchers.append(f'extern "C" void launch_{name}(void** a, long long n, int vec_ok, int grid, int block) {{\n'
                         f"  ember_emulate(grid, block, [&]() {{ {name}({', '.join(args)}); }});\n}}")
    return src + "\n// ---- emulation launchers ----\n" + "\n".join(launchers) + "\n"


def build_source(src: str, workdir: Path) -> ctypes.CDLL:
    workdir = Path(workdir)
    cu, so = workdir / "raw.cpp", workdir / "raw.so"
    cu.write_text(src)
    cmd = [compiler(), "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", "-fno-strict-aliasing", "-ffp-contract=off",
           "-Wno-unknown-pragmas", "-Wno-unused-variable", "-include", str(SHIM), str(cu), "-o", str(so)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"g++ failed on {cu}:\n{res.stderr[-6000:]}")
    return ctypes.CDLL(str(so))
