"""ember.nn: PyTorch's torch.nn — Module and containers, layers, functional, init, utils.

Every layer is written with ember ops (ember/nn/functional.py, ember/nn/_functional/), so eager
mode runs numpy/cupy kernels and ember.compile sees, and fuses, the same primitives.
"""
from .parameter import Parameter, Buffer, UninitializedParameter, UninitializedBuffer  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import module as _module_mod
from . import functional, init, utils  # noqa: F401
from . import modules  # noqa: F401
from . import parallel  # noqa: F401
from .parallel import DataParallel  # noqa: F401

Module = _module_mod.Module


def factory_kwargs(kwargs):
    return {k: kwargs.get(k) for k in ("device", "dtype")}
