"""ember.optim.Adadelta: torch.optim.Adadelta's update, step for step.

    g = -grad if maximize else grad;  g += weight_decay * p
    sq = rho * sq + (1 - rho) * g * g
    delta = sqrt(acc + eps) / sqrt(sq + eps) * g
    acc = rho * acc + (1 - rho) * delta * delta;  p -= lr * delta
State per parameter: 'step' (a float32 0-d tensor), 'square_avg', 'acc_delta'.
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend.creation import tensor, zeros_like
from ..ir import dtypes as dt
from .optimizer import Optimizer, _scalar

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        if not 0.0 <= _scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable,
                        foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    @ag.no_grad()
    def step(self, closure=None):
        """One Adadelta update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            rho, eps, wd, maximize = group["rho"], group["eps"], group["weight_decay"], group["maximize"]
            for p in self._params_with_grad(group):
                g = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = tensor(0.0, dtype=dt.float32)
                    state["square_avg"] = zeros_like(p)
                    state["acc_delta"] = zeros_like(p)
                state["step"].add_(1)
                if maximize:
                    g = -g
                if wd != 0:
                    g = g.add(p, alpha=wd)
                square_avg, acc_delta = state["square_avg"], state["acc_delta"]
                square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
                std = square_avg.add(eps).sqrt_()
                delta = acc_delta.add(eps).sqrt_().div_(std).mul_(g)
                acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
                p.add_(delta, alpha=-lr)
        return loss
