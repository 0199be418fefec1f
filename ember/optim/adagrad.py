"""ember.optim.Adagrad: torch.optim.Adagrad's update, step for step.

    g = -grad if maximize else grad;  g += weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay);  sum += g * g;  p -= clr * g / (sqrt(sum) + eps)
State per parameter (created at construction, as PyTorch does): 'step', 'sum'.
Inside a compiled training step lr and weight_decay are graph inputs and the decayed rate is a
tensor expression of 'step' (nothing is read back to Python).
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend.creation import full_like, tensor
from ..ir import dtypes as dt
from .optimizer import Optimizer, _add, _hyper, _scalar, _tracing

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        if not 0.0 <= _scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p, group):
        state = self.state.get(p)
        if not state:
            state = self._new_state(p, lambda: {"step": tensor(0.0, dtype=dt.float32, device=p.device),
                                                "sum": full_like(p, group["initial_accumulator_value"])})
        return state

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if hasattr(self, "state"):
            for p in self.param_groups[-1]["params"]:
                self._init_state(p, self.param_groups[-1])

    @ag.no_grad()
    def step(self, closure=None):
        """One Adagrad update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        tracing = _tracing()
        for group in self.param_groups:
            lr_decay, eps, maximize = group["lr_decay"], group["eps"], group["maximize"]
            wd = _scalar(group["weight_decay"])
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if tracing:      # options as graph inputs: a scheduler changing them never recompiles
                    lr, wd_t = _hyper(group, "lr", p), _hyper(group, "weight_decay", p)
                else:
                    lr, wd_t = _scalar(group["lr"]), wd
                state = self._init_state(p, group)
                step_t = state["step"]
                step_t.add_(1)
                step = step_t if tracing else step_t.item()
                if maximize:
                    g = -g
                if wd != 0:
                    g = _add(g, p, wd_t)
                clr = lr / (1 + (step - 1) * lr_decay)
                s = state["sum"]
                s.addcmul_(g, g, value=1)
                std = s.sqrt().add_(eps)
                p.addcdiv_(g, std, value=-clr)
        return loss
