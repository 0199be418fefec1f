"""ember.optim.NAdam: torch.optim.NAdam's update (Adam with Nesterov momentum and momentum decay),
step for step.

    g = -grad if maximize else grad
    p *= 1 - lr * wd (decoupled_weight_decay) | g += wd * p
    mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay));  mu_prod *= mu_t
    m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
    denom = sqrt(v / (1 - beta2^t)) + eps
    p -= lr * (1 - mu_t) / (1 - mu_prod) * g / denom + lr * mu_{t+1} / (1 - mu_prod * mu_{t+1}) * m / denom
State per parameter: 'step' and 'mu_product' (float32 0-d tensors, as PyTorch keeps them, so the
product rounds as PyTorch's does), 'exp_avg', 'exp_avg_sq'.
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend.creation import tensor, zeros_like
from ..ir import dtypes as dt
from .adam import _check_betas
from .optimizer import Optimizer, _scalar

__all__ = ["NAdam"]


class NAdam(Optimizer):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        _check_betas(lr, betas, eps, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    @ag.no_grad()
    def step(self, closure=None):
        """One NAdam update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, maximize = group["eps"], group["weight_decay"], group["maximize"]
            momentum_decay, decoupled = group["momentum_decay"], group["decoupled_weight_decay"]
            for p in self._params_with_grad(group):
                g = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = tensor(0.0, dtype=dt.float32)
                    state["mu_product"] = tensor(1.0, dtype=dt.float32)
                    state["exp_avg"] = zeros_like(p)
                    state["exp_avg_sq"] = zeros_like(p)
                if maximize:
                    g = -g
                state["step"].add_(1)
                step = state["step"].item()
                bias_correction2 = 1 - beta2 ** step
                if wd != 0:
                    if decoupled:
                        p.mul_(1 - lr * wd)
                    else:
                        g = g.add(p, alpha=wd)
                mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
                mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
                mu_product = state["mu_product"]
                mu_product.mul_(mu)
                mu_prod = mu_product.item()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(g, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = exp_avg_sq.div(bias_correction2).sqrt().add_(eps)
                p.addcdiv_(g, denom, value=-lr * (1.0 - mu) / (1.0 - mu_prod))
                p.addcdiv_(exp_avg, denom, value=(-lr * mu_next) / (1.0 - mu_prod * mu_next))
        return loss
