"""Runtime: turns generated code into callables and runs compiled programs.

    ember.runtime.device    Device (name, xp, render, compiler, load, run_extern), Compiler with
                            compile_cached, Module, the numpy reference device, get_device
    ember.runtime.cpu       the CPU device: LLVM -> object code -> MCJIT, thread split (CPU, compile_kernels)
    ember.runtime.cuda      the CUDA device: CUDA C -> NVRTC via CuPy -> launches (device(), compile_kernels)
    ember.runtime.cache     the one cache: key(), memory cache, disk cache of object code (EMBER_CACHE_DIR,
                            EMBER_CACHE=0), stats()
    ember.runtime.executor  Program -> generated Python that calls a device's kernels
"""
