"""Helpers shared by the distributions: broadcasting parameters, probs <-> logits (as
torch.distributions.utils)."""
from __future__ import annotations

import numbers

import ember

__all__ = ["broadcast_all", "logits_to_probs", "probs_to_logits", "clamp_probs", "lazy_property"]


def broadcast_all(*values):
    """Numbers become tensors (the dtype of the first tensor argument, else the default float), then
    everything is broadcast to one shape."""
    if not all(isinstance(v, (ember.Tensor, numbers.Number)) for v in values):
        raise ValueError("Input arguments must all be instances of numbers.Number or Tensor.")
    like = next((v for v in values if isinstance(v, ember.Tensor)), None)
    dtype = like.dtype if like is not None else ember.get_default_dtype()
    device = like.device if like is not None else None
    ts = [v if isinstance(v, ember.Tensor) else ember.tensor(float(v), dtype=dtype, device=device) for v in values]
    shape = tuple(ember.broadcast_shapes(*(tuple(t.shape) for t in ts)))
    # tensors already of the common shape are passed through (no expand node in their history)
    return tuple(t if tuple(t.shape) == shape else t.expand(shape) for t in ts)


def clamp_probs(probs):
    eps = ember.finfo(probs.dtype).eps
    return probs.clamp(min=eps, max=1 - eps)


def logits_to_probs(logits, is_binary: bool = False):
    return ember.sigmoid(logits) if is_binary else ember.softmax(logits, dim=-1)


def probs_to_logits(probs, is_binary: bool = False):
    ps = clamp_probs(probs)
    if is_binary:
        return ember.log(ps) - ember.log1p(-ps)
    return ember.log(ps)


class lazy_property:
    """Computed on first access and cached on the instance (torch.distributions.utils.lazy_property)."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.__name__] = value
        return value
