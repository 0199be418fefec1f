"""Array kernels shared by eager mode and compiled code (numpy or cupy arrays in, arrays out).

    blas.py          matmul / conv2d into a preallocated `out` (the compiled programs' externs)
    blas_threads.py  the BLAS thread policy: small products on one thread (measured reasons inside)

This package sits just above ember.ir: the eager kernels (ember/frontend/prims.py) and the runtime
(ember/runtime) both call it, so neither has to import the other.
"""
