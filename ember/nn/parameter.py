"""nn.Parameter (a Tensor that a Module registers as trainable) and nn.Buffer.

A Parameter shares its source tensor's array and version counter (no copy), is a leaf, and
requires grad by default, as in PyTorch.
"""
from __future__ import annotations

from ..frontend.tensor import Tensor, _wrap
from ..ir import dtypes as dt


def _adopt(t: Tensor, src: Tensor) -> None:
    """Make t a leaf sharing src's storage."""
    Tensor._init_from(t, src)
    t._vc = src._vc


class Parameter(Tensor):
    """A Tensor that is a module parameter: assigned as a Module attribute, it is registered."""

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from ..frontend.creation import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            from ..frontend.creation import tensor
            data = tensor(data)
        t = Tensor.__new__(cls)
        _adopt(t, data)
        if requires_grad and not t.dtype.is_floating_point:
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        t.requires_grad = bool(requires_grad)
        return t

    def __init__(self, data=None, requires_grad=True):
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.detach().cpu().numpy().copy(), self.dtype.name,
                                     str(self.device), self.requires_grad))

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        # like PyTorch, a deep-copied Parameter starts without .grad
        r = Parameter(_wrap(self._data.copy(), self.device), self.requires_grad)
        memo[id(self)] = r
        return r


def _rebuild_parameter(array, dtype_name, device, requires_grad):
    from ..frontend.creation import tensor
    return Parameter(tensor(array, dtype=dt.by_name(dtype_name), device=device), requires_grad)


class Buffer(Tensor):
    """nn.Buffer(data, persistent=True): assigned as a Module attribute, it is registered as a buffer."""

    def __new__(cls, data=None, *, persistent=True):
        if data is None:
            from ..frontend.creation import empty
            data = empty(0)
        t = Tensor.__new__(cls)
        _adopt(t, data)
        t.persistent = persistent
        return t

    def __init__(self, data=None, *, persistent=True):
        pass


class _Uninitialized:
    """Mixin of the lazy modules' placeholders (ember/nn/modules/lazy.py): no data yet; materialize(shape)
    gives them storage in place, and they become a plain Parameter / Buffer."""
    cls_to_become = None

    def __init__(self, *args, **kwargs):
        pass

    def materialize(self, shape, device=None, dtype=None):
        from ..frontend.creation import empty
        requires_grad = self.requires_grad
        _adopt(self, empty(*shape, device=device or self.device, dtype=dtype or self.dtype))
        self.requires_grad = requires_grad
        self.__class__ = self.cls_to_become

    def __repr__(self):
        return f"<{type(self).__name__}>"

    def __deepcopy__(self, memo):
        return memo.setdefault(id(self), type(self)(self.requires_grad, self.device, self.dtype))

    def __reduce_ex__(self, proto):
        return (_rebuild_uninitialized, (type(self).__name__, self.requires_grad, str(self.device), self.dtype.name))


def _rebuild_uninitialized(kind, requires_grad, device, dtype_name):
    cls = UninitializedParameter if kind == "UninitializedParameter" else UninitializedBuffer
    return cls(requires_grad, device, dt.by_name(dtype_name))


class UninitializedParameter(_Uninitialized, Parameter):
    cls_to_become = Parameter

    def __new__(cls, requires_grad=True, device=None, dtype=None):
        from ..frontend.creation import empty
        return Parameter.__new__(cls, empty(0, device=device, dtype=dtype), requires_grad)


class UninitializedBuffer(_Uninitialized, Buffer):
    cls_to_become = Buffer

    def __new__(cls, requires_grad=False, device=None, dtype=None):
        from ..frontend.creation import empty
        return Buffer.__new__(cls, empty(0, device=device, dtype=dtype))


def is_lazy(param) -> bool:
    return isinstance(param, _Uninitialized)
