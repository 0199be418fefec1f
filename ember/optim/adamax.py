"""ember.optim.Adamax: torch.optim.Adamax's update (Adam with the infinity norm), step for step.

    g = -grad if maximize else grad;  g += weight_decay * p
    m = lerp(m, g, 1 - beta1);  u = max(beta2 * u, |g| + eps)
    p -= lr / (1 - beta1^t) * m / u
State per parameter: 'step' (a float32 0-d tensor), 'exp_avg', 'exp_inf'.
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend.creation import tensor, zeros_like
from ..frontend.math_ops import maximum
from ..ir import dtypes as dt
from .adam import _check_betas
from .optimizer import Optimizer, _scalar

__all__ = ["Adamax"]


class Adamax(Optimizer):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        _check_betas(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, capturable=capturable)
        super().__init__(params, defaults)

    @ag.no_grad()
    def step(self, closure=None):
        """One Adamax update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, maximize = group["eps"], group["weight_decay"], group["maximize"]
            for p in self._params_with_grad(group):
                g = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = tensor(0.0, dtype=dt.float32)
                    state["exp_avg"] = zeros_like(p)
                    state["exp_inf"] = zeros_like(p)
                if maximize:
                    g = -g
                step_t = state["step"]
                step_t.add_(1)
                if wd != 0:
                    g = g.add(p, alpha=wd)
                exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
                exp_avg.lerp_(g, 1 - beta1)
                exp_inf.copy_(maximum(exp_inf.mul_(beta2), g.abs().add_(eps)))
                clr = lr / (1 - beta1 ** step_t.item())
                p.addcdiv_(exp_avg, exp_inf, value=-clr)
        return loss
