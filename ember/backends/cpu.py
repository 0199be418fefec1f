"""ember.backends.cpu: get_cpu_capability() names the widest x86 vector extension ember's LLVM code
generator can use on this CPU ("AVX512", "AVX2"), or "DEFAULT"."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def get_cpu_capability() -> str:
    try:
        import llvmlite.binding as llvm
        features = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")}
    except Exception:           # no llvmlite host query on this platform: report the baseline
        return "DEFAULT"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= features:
        return "AVX512"
    if "avx2" in features:
        return "AVX2"
    return "DEFAULT"
