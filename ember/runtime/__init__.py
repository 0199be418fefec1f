"""Runtime: turns generated code into callables.

    ember.runtime.cpu    compile_kernels(kernels) -> CompiledModule (LLVM JIT, thread pool)
    ember.runtime.cache  disk cache of object code (EMBER_CACHE_DIR, EMBER_CACHE=0), stats()
    ember.runtime.cuda   compile_kernels(kernels) -> CudaModule (NVRTC via CuPy, launches on CuPy
                         arrays, cuBLAS externs), CudaRunner for the executor
    ember.runtime.executor  Program -> generated Python that calls the kernels

Extern kernels on numpy arrays (matmul, conv2d) live in ember/kernels/blas.py.
"""
