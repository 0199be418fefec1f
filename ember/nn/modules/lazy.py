"""Lazy modules: LazyLinear, LazyConv*d, LazyConvTranspose*d, LazyBatchNorm*d, LazyInstanceNorm*d.

A lazy module leaves its input size open (in_features, in_channels, num_features) and takes it from the
first input: its parameters and buffers are UninitializedParameter / UninitializedBuffer until then,
are materialised in place at the first call (so an optimizer built before it holds the same objects),
initialised by the full module's reset_parameters(), and the module becomes that class (LazyLinear ->
Linear), as in PyTorch.  Loading a state_dict into a lazy module materialises it from the saved shapes.
"""
from __future__ import annotations

from ...frontend import autograd as ag
from ..parameter import UninitializedBuffer, UninitializedParameter, is_lazy
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .linear import Linear
from .normalization import (BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d, InstanceNorm2d,
                            InstanceNorm3d)

__all__ = ["UninitializedParameter", "UninitializedBuffer", "LazyModuleMixin", "LazyLinear", "LazyConv1d",
           "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d", "LazyConvTranspose2d", "LazyConvTranspose3d",
           "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d",
           "LazyInstanceNorm3d"]


class LazyModuleMixin:
    """Subclasses: cls_to_become (the full module), _in_size(input) -> the inferred size and its attribute
    name (_in_attr), _shapes() -> {name: shape} of the placeholders once that size is known."""
    cls_to_become = None
    _in_attr = ""

    def _make_lazy(self, names):
        for name in names:
            old = getattr(self, name, None)
            if old is None:
                continue
            if name in self._parameters:
                self._parameters[name] = UninitializedParameter(old.requires_grad, old.device, old.dtype)
            else:
                self._buffers[name] = UninitializedBuffer(False, old.device, old.dtype)
        setattr(self, self._in_attr, 0)
        # (the hook's id, not its handle: a lazy module must pickle and deepcopy)
        self._lazy_hook_id = self.register_forward_pre_hook(LazyModuleMixin._infer_parameters).id

    def has_uninitialized_params(self) -> bool:
        return any(is_lazy(t) for t in list(self._parameters.values()) + list(self._buffers.values()))

    def initialize_parameters(self, input) -> None:
        if not getattr(self, self._in_attr):
            setattr(self, self._in_attr, self._in_size(input))
        if not self.has_uninitialized_params():
            return
        with ag.no_grad():
            for name, shape in self._shapes().items():
                t = self._parameters.get(name, self._buffers.get(name))
                if is_lazy(t):
                    t.materialize(shape)
            self.reset_parameters()

    @staticmethod
    def _infer_parameters(module, args):
        module.initialize_parameters(*args)
        module._finish()

    def _finish(self):
        self._forward_pre_hooks.pop(self._lazy_hook_id, None)
        del self._lazy_hook_id
        if self.cls_to_become is not None:
            self.__class__ = self.cls_to_become

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # a lazy module takes its shapes from the checkpoint
        for name, t in list(self._parameters.items()) + list(self._buffers.items()):
            if is_lazy(t) and prefix + name in state_dict:
                with ag.no_grad():
                    t.materialize(tuple(state_dict[prefix + name].shape))
        w = self._parameters.get("weight")
        if w is not None and not is_lazy(w):
            setattr(self, self._in_attr, self._in_from_weight(w))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


# ------------------------------------------------------------------------------------------ linear
class LazyLinear(LazyModuleMixin, Linear):
    cls_to_become = Linear
    _in_attr = "in_features"

    def __init__(self, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(1, out_features, bias, device, dtype)
        self._make_lazy(("weight", "bias"))

    def _in_size(self, input):
        return input.shape[-1]

    def _in_from_weight(self, w):
        return w.shape[1]

    def _shapes(self):
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}


# ---------------------------------------------------------------------------------- convolutions
class _LazyConvMixin(LazyModuleMixin):
    _in_attr = "in_channels"

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None, **kw):
        super().__init__(groups, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                         device=device, dtype=dtype, **kw)
        self._make_lazy(("weight", "bias"))

    def _in_size(self, input):
        return input.shape[0] if input.ndim == self._nd + 1 else input.shape[1]

    def _in_from_weight(self, w):
        return w.shape[0] if self.transposed else w.shape[1] * self.groups

    def _shapes(self):
        g, k = self.groups, tuple(self.kernel_size)
        w = (self.in_channels, self.out_channels // g) + k if self.transposed else \
            (self.out_channels, self.in_channels // g) + k
        return {"weight": w, "bias": (self.out_channels,)}


class _LazyConvTransposeMixin(_LazyConvMixin):
    def __init__(self, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
                 dilation=1, padding_mode="zeros", device=None, dtype=None):
        # (ConvTranspose's argument order: output_padding before groups, dilation after bias)
        self.cls_to_become.__init__(self, groups, out_channels, kernel_size, stride, padding, output_padding, groups,
                                    bias, dilation, padding_mode, device, dtype)
        self._make_lazy(("weight", "bias"))


def _conv(name, full, transposed=False):
    base = _LazyConvTransposeMixin if transposed else _LazyConvMixin
    return type(name, (base, full), {"cls_to_become": full, "__module__": __name__})


LazyConv1d, LazyConv2d, LazyConv3d = (_conv(f"LazyConv{n}d", c) for n, c in ((1, Conv1d), (2, Conv2d), (3, Conv3d)))
LazyConvTranspose1d, LazyConvTranspose2d, LazyConvTranspose3d = (
    _conv(f"LazyConvTranspose{n}d", c, True) for n, c in ((1, ConvTranspose1d), (2, ConvTranspose2d),
                                                          (3, ConvTranspose3d)))


# -------------------------------------------------------------------------------- normalisation
class _LazyNormMixin(LazyModuleMixin):
    _in_attr = "num_features"
    _no_batch_dim = None            # InstanceNorm: the channel dim of an unbatched input is 0

    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None):
        super().__init__(1, eps, momentum, affine, track_running_stats, device, dtype)
        self._make_lazy(("weight", "bias", "running_mean", "running_var"))

    def _in_size(self, input):
        return input.shape[0] if input.ndim == self._no_batch_dim else input.shape[1]

    def _in_from_weight(self, w):
        return w.shape[0]

    def _shapes(self):
        return {k: (self.num_features,) for k in ("weight", "bias", "running_mean", "running_var")}


def _norm(name, full, no_batch_dim=None):
    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None):
        _LazyNormMixin.__init__(self, eps, momentum, affine, track_running_stats, device, dtype)
    return type(name, (_LazyNormMixin, full), {"cls_to_become": full, "__module__": __name__,
                                               "_no_batch_dim": no_batch_dim, "__init__": __init__})


LazyBatchNorm1d, LazyBatchNorm2d, LazyBatchNorm3d = (
    _norm(f"LazyBatchNorm{n}d", c) for n, c in ((1, BatchNorm1d), (2, BatchNorm2d), (3, BatchNorm3d)))
LazyInstanceNorm1d, LazyInstanceNorm2d, LazyInstanceNorm3d = (
    _norm(f"LazyInstanceNorm{n}d", c, n + 1)
    for n, c in ((1, InstanceNorm1d), (2, InstanceNorm2d), (3, InstanceNorm3d)))
