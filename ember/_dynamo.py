"""`torch._dynamo` spellings PyTorch scripts use, on ember's compiler (ember/compiler).

    ember._dynamo.mark_dynamic(x, 0)      # x's dim 0 compiles as a symbolic size
    ember._dynamo.reset()                 # forget every compiled variant
    ember._dynamo.config.recompile_limit  # (cache_size_limit too): variants before a function runs eagerly
"""
from __future__ import annotations

from types import SimpleNamespace

from .compiler import disable, is_compiling, mark_dynamic, mark_static, maybe_mark_dynamic, reset  # noqa: F401
from .compiler.compiled import DEFAULT_RECOMPILE_LIMIT

__all__ = ["mark_dynamic", "maybe_mark_dynamic", "mark_static", "reset", "disable", "is_compiling", "config"]

# read by nothing yet: ember.compile takes recompile_limit= per function (kept for scripts that set it)
config = SimpleNamespace(recompile_limit=DEFAULT_RECOMPILE_LIMIT, cache_size_limit=DEFAULT_RECOMPILE_LIMIT,
                         automatic_dynamic_shapes=True, assume_static_by_default=True, suppress_errors=False)
