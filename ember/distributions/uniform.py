"""torch.distributions.Uniform: uniform on the half-open interval [low, high)."""
from __future__ import annotations

import numbers

import ember
from ember.frontend import tracing_hooks

from . import constraints
from .distribution import Distribution
from .utils import broadcast_all

__all__ = ["Uniform"]


class Uniform(Distribution):
    arg_constraints = {"low": constraints.dependent, "high": constraints.dependent}
    has_rsample = True

    def __init__(self, low, high, validate_args=None):
        self.low, self.high = broadcast_all(low, high)
        batch = () if isinstance(low, numbers.Number) and isinstance(high, numbers.Number) else self.low.shape
        super().__init__(batch, validate_args=validate_args)
        if self._validate_args and not tracing_hooks.tracing(self.low, self.high) and \
                not bool(ember.lt(self.low, self.high).all()):
            raise ValueError(f"Expected parameter low ({type(self.low).__name__} of shape {tuple(self.low.shape)}) of "
                             f"distribution {self!r} to satisfy the constraint LessThan(upper_bound=high), but found "
                             f"invalid values:\n{self.low}")

    def __repr__(self):
        def show(t):
            return t if t.numel() == 1 else t.size()
        return f"Uniform(low: {show(self.low)}, high: {show(self.high)})"

    @property
    def support(self):
        return constraints.half_open_interval(self.low, self.high)

    def expand(self, batch_shape, _instance=None):
        new = Uniform.__new__(Uniform)
        new.low, new.high = self.low.expand(batch_shape), self.high.expand(batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return (self.high + self.low) / 2

    @property
    def mode(self):
        return self.high * float("nan")

    @property
    def stddev(self):
        return (self.high - self.low) / 12 ** 0.5

    @property
    def variance(self):
        return (self.high - self.low).pow(2) / 12

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        rand = ember.rand(*shape, dtype=self.low.dtype, device=self.low.device)
        return self.low + rand * (self.high - self.low)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        lb = self.low.le(value).type_as(self.low)
        ub = self.high.gt(value).type_as(self.low)
        return ember.log(lb * ub) - ember.log(self.high - self.low)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return ((value - self.low) / (self.high - self.low)).clamp(min=0, max=1)

    def icdf(self, value):
        return value * (self.high - self.low) + self.low

    def entropy(self):
        return ember.log(self.high - self.low)
