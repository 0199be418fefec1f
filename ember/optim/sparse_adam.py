"""ember.optim.SparseAdam: torch.optim.SparseAdam's lazy Adam, step for step, for embedding tables.

ember's gradients are dense (an Embedding(sparse=True) still produces a dense gradient), so the rows
a sparse gradient would list are found as the rows (entries along dim 0) with a non-zero gradient;
only those rows of the moments and of the parameter are updated, as PyTorch updates only the rows
its sparse gradient holds:

    rows: m[r] += (1 - beta1) * (g[r] - m[r]);  v[r] += (1 - beta2) * (g[r]^2 - v[r])
    p[r] -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m[r] / (sqrt(v[r]) + eps)
State per parameter: 'step' (a Python int, as in PyTorch), 'exp_avg', 'exp_avg_sq'.
"""
from __future__ import annotations

import math

from ..frontend import autograd as ag
from ..frontend.creation import tensor, zeros_like
from .optimizer import Optimizer, _scalar

__all__ = ["SparseAdam"]


class SparseAdam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
        if not 0.0 < _scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, maximize=maximize))

    @ag.no_grad()
    def step(self, closure=None):
        """One lazy Adam update of the rows that have a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, maximize = group["eps"], group.get("maximize", False)
            for p in self._params_with_grad(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = zeros_like(p)
                    state["exp_avg_sq"] = zeros_like(p)
                state["step"] += 1
                g = -p.grad if maximize else p.grad
                xp = g._xp
                nz = g._data != 0
                touched = nz.reshape(nz.shape[0], -1).any(axis=1) if nz.ndim > 1 else nz
                rows = tensor(xp.nonzero(touched)[0], device=p.device)
                if rows.numel() == 0:
                    continue
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                gv = g.index_select(0, rows)
                old_m, old_v = exp_avg.index_select(0, rows), exp_avg_sq.index_select(0, rows)
                m_update = gv.sub(old_m).mul_(1 - beta1)
                v_update = gv.pow(2).sub_(old_v).mul_(1 - beta2)
                exp_avg.index_add_(0, rows, m_update)
                exp_avg_sq.index_add_(0, rows, v_update)
                numer = m_update.add_(old_m)
                denom = v_update.add_(old_v).sqrt_().add_(eps)
                step_size = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                p.index_add_(0, rows, numer.div_(denom).mul_(-step_size))
        return loss
