"""ember.backends.mkldnn: torch.backends.mkldnn's flags; ember's CPU kernels are its own (LLVM), not oneDNN."""
from __future__ import annotations

import sys

from ._flags import set_flags

enabled = False
deterministic = False


def is_available() -> bool:
    return False


def flags(enabled=False, deterministic=False):
    return set_flags(sys.modules[__name__], enabled=enabled, deterministic=deterministic)
