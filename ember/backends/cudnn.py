"""ember.backends.cudnn: torch.backends.cudnn's flags. ember does not use cuDNN, so is_available()
is False and the flags (benchmark, deterministic, allow_tf32 ...) change nothing: ember's kernels are
deterministic already and compute float32 in float32."""
from __future__ import annotations

import sys

from ._flags import set_flags

enabled = True
benchmark = False
benchmark_limit = 10
deterministic = False
allow_tf32 = True


def is_available() -> bool:
    return False


def version() -> int | None:
    return None


def is_acceptable(tensor) -> bool:
    return False


def flags(enabled=False, benchmark=False, benchmark_limit=10, deterministic=False, allow_tf32=True):
    """Set the flags for a `with` block (torch.backends.cudnn.flags)."""
    return set_flags(sys.modules[__name__], enabled=enabled, benchmark=benchmark, benchmark_limit=benchmark_limit,
                     deterministic=deterministic, allow_tf32=allow_tf32)
