"""CUDA code generator: kernel IR -> one CUDA C translation unit + a launch spec per kernel (pure).

    render.py     emit_program(kernels) -> CudaProgram; spells the steps of ember/codegen/loops.py
    ops.py        CUDA_UNARY / CUDA_BINARY: one row per kernel-IR op; C types, literals, casts
    strategy.py   launch strategy per kernel shape, index width, LaunchSpec / CudaProgram
    prelude.cuh   the ember_* device helpers every translation unit starts with

ember/runtime/cuda.py compiles (NVRTC through CuPy) and launches the result.
"""
from ember.codegen.cuda.ops import CUDA_BINARY, CUDA_UNARY, c_type
from ember.codegen.cuda.render import PRELUDE, emit_kernel, emit_program
from ember.codegen.cuda.strategy import BLOCK, SPLIT_MIN_INNER, CudaProgram, LaunchSpec

__all__ = ["CudaProgram", "LaunchSpec", "emit_program", "emit_kernel", "PRELUDE", "c_type", "BLOCK",
           "SPLIT_MIN_INNER", "CUDA_UNARY", "CUDA_BINARY"]
