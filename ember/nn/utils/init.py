"""nn.utils.skip_init: a module built without running its parameter initialisation.

PyTorch builds on the meta device and then allocates empty storage; ember has no meta device, so the
module is built on its device while ember.nn.init's in-place initialisers are no-ops: the parameters
keep the uninitialised memory `empty` gave them (what PyTorch promises, and no more)."""
from __future__ import annotations

import contextlib
import inspect

from .. import init as _init
from ..modules.module import Module

__all__ = ["skip_init"]

_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                 "sparse_")


@contextlib.contextmanager
def _no_init():
    saved = {n: getattr(_init, n) for n in _INITIALISERS}
    try:
        for n in _INITIALISERS:
            setattr(_init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(_init, n, f)


def skip_init(module_cls, *args, **kwargs):
    """module_cls(*args, **kwargs) with its parameters left uninitialised (module_cls must take `device`)."""
    if not (isinstance(module_cls, type) and issubclass(module_cls, Module)):
        raise RuntimeError(f"Expected a Module; got {module_cls}")
    if "device" not in inspect.signature(module_cls).parameters:
        raise RuntimeError("Module must support a 'device' arg to skip initialization")
    kwargs.setdefault("device", "cpu")
    with _no_init():
        return module_cls(*args, **kwargs)
