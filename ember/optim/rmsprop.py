"""ember.optim.RMSprop: torch.optim.RMSprop's update, step for step.

    g = -grad if maximize else grad;  g += weight_decay * p
    sq = alpha * sq + (1 - alpha) * g * g
    avg = sqrt(sq - ga * ga) with ga = lerp(ga, g, 1 - alpha) (centered) | sqrt(sq);  avg += eps
    buf = momentum * buf + g / avg;  p -= lr * buf   (momentum > 0)
    p -= lr * g / avg                                 (otherwise)
State per parameter: 'step', 'square_avg', 'momentum_buffer' (momentum > 0), 'grad_avg' (centered).
Inside a compiled training step lr, momentum and weight_decay are graph inputs (optimizer.py).
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend.creation import tensor, zeros_like
from ..ir import dtypes as dt
from .optimizer import Optimizer, _add, _add_, _hyper, _scalar, _tracing

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if not 0.0 <= _scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    @ag.no_grad()
    def step(self, closure=None):
        """One RMSprop update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        tracing = _tracing()
        for group in self.param_groups:
            alpha, eps, wd = group["alpha"], group["eps"], _scalar(group["weight_decay"])
            momentum, centered, maximize = _scalar(group["momentum"]), group["centered"], group["maximize"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if tracing:      # options as graph inputs: a scheduler changing them never recompiles
                    lr, m, wd_t = (_hyper(group, k, p) for k in ("lr", "momentum", "weight_decay"))
                else:
                    lr, m, wd_t = _scalar(group["lr"]), momentum, wd
                state = self.state.get(p)
                if not state:
                    def make(p=p):
                        s = {"step": tensor(0.0, dtype=dt.float32, device=p.device), "square_avg": zeros_like(p)}
                        if momentum > 0:
                            s["momentum_buffer"] = zeros_like(p)
                        if centered:
                            s["grad_avg"] = zeros_like(p)
                        return s
                    state = self._new_state(p, make)
                if maximize:
                    g = -g
                state["step"].add_(1)
                if wd != 0:
                    g = _add(g, p, wd_t)
                sq = state["square_avg"]
                sq.mul_(alpha).addcmul_(g, g, value=1 - alpha)
                if centered:
                    ga = state["grad_avg"]
                    ga.lerp_(g, 1 - alpha)
                    avg = sq.addcmul(ga, ga, value=-1).sqrt_()
                else:
                    avg = sq.sqrt()
                avg = avg.add_(eps)
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(m).addcdiv_(g, avg)
                    _add_(p, buf, -lr)
                else:
                    p.addcdiv_(g, avg, value=-lr)
        return loss
