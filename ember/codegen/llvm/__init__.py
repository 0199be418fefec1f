"""LLVM code generator: kernel IR -> LLVM IR text for the host CPU (pure: nothing is compiled here).

    render.py   emit_module(kernels, target) -> text; spells the steps of ember/codegen/loops.py
    ops.py      LLVM_UNARY / LLVM_BINARY: one row per kernel-IR op; casts and reduction updates
    math.py     transcendentals as inline, vectorisable polynomials (MathLib)
    target.py   llvmlite setup, the host target machine, dtype -> LLVM types

ember/runtime/cpu.py optimises, compiles, caches and calls the result.
"""
import llvmlite

llvmlite.ir_layer_typed_pointers_enabled = False  # opaque pointers (LLVM 22): set before llvmlite.ir loads

from ember.codegen.llvm.ops import LLVM_BINARY, LLVM_UNARY, REDUCE_FLAGS  # noqa: E402
from ember.codegen.llvm.render import emit_module  # noqa: E402
from ember.codegen.llvm.target import (TargetInfo,  # noqa: E402
                                       host_target, host_target_machine, init_native, ir, llvm,
                                       llvm_type)

__all__ = ["TargetInfo", "host_target", "host_target_machine", "init_native", "emit_module", "llvm_type",
           "REDUCE_FLAGS", "LLVM_UNARY", "LLVM_BINARY", "llvm", "ir"]
