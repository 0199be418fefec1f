"""ember.backends.cpu: get_cpu_capability() names the widest x86 vector extension ember's LLVM code
generator can use on this CPU ("AVX512", "AVX2"), or "DEFAULT"."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def get_cpu_capability() -> str:
    try:
        from ember.codegen.llvm.target import host_target
        bits = host_target().vector_bits      # the width the hand-tiled kernels are built for
    except Exception:           # no llvmlite host query on this platform: report the baseline
        return "DEFAULT"
    return {512: "AVX512", 256: "AVX2"}.get(bits, "DEFAULT")
