"""flags(): the context manager torch.backends.cudnn / mkldnn offer, for any module of flags."""
from __future__ import annotations

import contextlib
import types


@contextlib.contextmanager
def set_flags(module: types.ModuleType, **values):
    """Set the given module-level flags (None leaves one as it is) for the duration of a block."""
    old = {k: getattr(module, k) for k, v in values.items() if v is not None}
    for k in old:
        setattr(module, k, values[k])
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)
