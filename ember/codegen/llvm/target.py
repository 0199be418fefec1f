"""The LLVM target: llvmlite setup, the host's target machine, and the register/memory types of dtypes.

    init_native()             initialise LLVM's native target (llvm.initialize() raises since 0.45)
    host_target_machine()     a fresh TargetMachine for this CPU (MCJIT owns one: never share it)
    host_target()             TargetInfo(triple, data_layout, cpu, features) of this CPU (.vector_bits:
                              512 with AVX-512, 256 with AVX2)
    llvm_type(dtype)          register type (bool is i1; bfloat16 is float, rounded after every op by
                              ops.bf16_round); mem_type(dtype): bool is i8, bfloat16 i16 in memory
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm
import llvmlite.ir as ir   # opaque pointers: ember/codegen/llvm/__init__.py sets the switch first

from ember.ir import dtypes as dt

__all__ = ["TargetInfo", "init_native", "host_target_machine", "host_target", "llvm_type", "mem_type",
           "I1", "I8", "I16", "I32", "I64", "PTR", "i64", "llvm", "ir"]

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()


@dataclass(frozen=True)
class TargetInfo:
    triple: str
    data_layout: str
    cpu: str
    features: str

    @property
    def vector_bits(self) -> int:
        """Width of the widest vector registers the generated code may use: 512 with AVX-512 (F, BW, VL,
        DQ), 256 with AVX2, else 128.  The hand-tiled kernels size their register tiles by it: a tile of 24
        zmm accumulators is 48 ymm on an AVX2 core, which has 16 (spilled: 0.4x of BLAS, measured)."""
        on = {f[1:] for f in self.features.split(",") if f.startswith("+")}
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= on:
            return 512
        return 256 if "avx2" in on else 128


_native_ready = False


def init_native() -> None:
    """Initialise LLVM's native target (llvm.initialize() raises since llvmlite 0.45)."""
    global _native_ready
    if not _native_ready:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        _native_ready = True


def host_target_machine(opt: int = 3):
    """A fresh target machine for this CPU.  MCJIT takes ownership of one: never share it."""
    init_native()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=opt, reloc="static", codemodel="jitdefault", jit=True)


def host_target() -> TargetInfo:
    tm = host_target_machine()
    return TargetInfo(tm.triple, str(tm.target_data), llvm.get_host_cpu_name(),
                      llvm.get_host_cpu_features().flatten())


def llvm_type(d: dt.DType):
    """Register type of a dtype (bool is i1 in registers, i8 in memory)."""
    if d is dt.bool_:
        return I1
    if d is dt.bfloat16:
        return ir.FloatType()
    if d.is_floating_point:
        return {2: ir.HalfType(), 4: ir.FloatType(), 8: ir.DoubleType()}[d.itemsize]
    return ir.IntType(8 * d.itemsize)


def mem_type(d: dt.DType):
    return I8 if d is dt.bool_ else I16 if d is dt.bfloat16 else llvm_type(d)


def i64(v: int):
    return ir.Constant(I64, int(v))
