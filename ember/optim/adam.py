"""ember.optim.Adam (and the shared update used by AdamW): torch.optim.Adam's update, step for step.

    g = -grad if maximize else grad
    p *= 1 - lr * wd (decoupled, AdamW) | g += wd * p (Adam's L2 penalty)
    m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g;  (amsgrad: vmax = max(vmax, v))
    p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
State per parameter: 'step' (a float32 0-d tensor, as PyTorch keeps it), 'exp_avg', 'exp_avg_sq',
'max_exp_avg_sq' (amsgrad). Eagerly the bias corrections are Python numbers; while a step is being
traced (or with capturable=True) they are tensor ops on 'step', so no value is read back; while
traced, lr, betas and weight_decay are graph inputs read from the group at every call (optimizer.py).
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend import dispatch
from ..frontend.creation import tensor, zeros_like
from ..frontend.math_ops import maximum
from ..ir import dtypes as dt
from .optimizer import Optimizer, _add, _hyper, _scalar, _tracing

__all__ = ["Adam"]


def _check_betas(lr, betas, eps, weight_decay):
    if not 0.0 <= _scalar(lr):
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _check_betas(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                        fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, amsgrad):
        state = self.state.get(p)
        if not state:
            def make():
                s = {"step": tensor(0.0, dtype=dt.float32, device=p.device), "exp_avg": zeros_like(p),
                     "exp_avg_sq": zeros_like(p)}
                if amsgrad:
                    s["max_exp_avg_sq"] = zeros_like(p)
                return s
            state = self._new_state(p, make)
        return state

    @ag.no_grad()
    def step(self, closure=None):
        """One Adam update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        tracing = _tracing()
        for group in self.param_groups:
            lr = _scalar(group["lr"])
            beta1, beta2 = (_scalar(b) for b in group["betas"])
            eps = group["eps"]
            wd = _scalar(group["weight_decay"])
            amsgrad = group["amsgrad"]
            maximize = group["maximize"]
            decoupled = group.get("decoupled_weight_decay", False)
            capturable = tracing or group.get("capturable", False)
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                state = self._init_state(p, amsgrad)
                if not capturable and not amsgrad and not maximize and p.dtype is g.dtype:
                    self._eager_update(p, g, state, lr, beta1, beta2, eps, wd, decoupled)
                    continue
                if tracing:      # options as graph inputs: a scheduler changing them never recompiles
                    lr, beta1, beta2 = (_hyper(group, "lr", p), _hyper(group, "betas", p, 0),
                                        _hyper(group, "betas", p, 1))
                    wd_t = _hyper(group, "weight_decay", p)
                else:
                    wd_t = wd
                if maximize:
                    g = -g
                step_t = state["step"]
                step_t.add_(1)
                if wd != 0:
                    if decoupled:
                        p.mul_(1 - lr * wd_t)
                    else:
                        g = _add(g, p, wd_t)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(g, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                if amsgrad:
                    vmax = state["max_exp_avg_sq"]
                    vmax.copy_(maximum(vmax, exp_avg_sq))
                    v = vmax
                else:
                    v = exp_avg_sq
                if capturable:
                    # tensor-valued corrections: nothing is read back to Python
                    bc1 = 1 - beta1 ** step_t
                    bc2_sqrt = (1 - beta2 ** step_t).sqrt()
                    step_size_neg = (lr / bc1).neg()
                    denom = (v.sqrt() / (bc2_sqrt * step_size_neg)).add_(eps / step_size_neg)
                    p.addcdiv_(exp_avg, denom)
                else:
                    step = step_t.item()
                    bc1 = 1 - beta1 ** step
                    bc2_sqrt = (1 - beta2 ** step) ** 0.5
                    denom = (v.sqrt() / bc2_sqrt).add_(eps)
                    p.addcdiv_(exp_avg, denom, value=-(lr / bc1))
        return loss

    @staticmethod
    def _eager_update(p, g, state, lr, beta1, beta2, eps, wd, decoupled):
        """The same update on the arrays, in place, with the operations in PyTorch's order: an
        eager step over many parameters is dominated by per-op dispatch otherwise (~15 ops each).
        One generated kernel does it where it is installed (dispatch.FUSED["adam"]: fn(P, G, M, V,
        consts, mode) -> False where it does not apply), numpy otherwise."""
        xp = p._xp
        P, G = p._data, g._data
        step_t = state["step"]
        step_t._data += 1
        step = float(step_t._data)
        M, V = state["exp_avg"]._data, state["exp_avg_sq"]._data
        bc1 = 1 - beta1 ** step
        bc2_sqrt = (1 - beta2 ** step) ** 0.5
        fused = dispatch.FUSED.get("adam")
        mode = "none" if wd == 0 else "decoupled" if decoupled else "l2"
        if fused is None or not fused(P, G, M, V, (1 - lr * wd, wd, 1 - beta1, beta2, 1 - beta2, bc2_sqrt, eps,
                                                   -(lr / bc1)), mode):
            t = G.dtype.type
            if mode == "decoupled":
                P *= t(1 - lr * wd)
            elif mode == "l2":
                G = G + P * t(wd)
            M += t(1 - beta1) * (G - M)                  # lerp_(g, 1 - beta1)
            V *= t(beta2)
            V += t(1 - beta2) * (G * G)                  # mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = xp.sqrt(V) / t(bc2_sqrt)
            denom += t(eps)
            P += t(-(lr / bc1)) * (M / denom)            # addcdiv_(exp_avg, denom, value=-lr / bc1)
        for x in (p, step_t, state["exp_avg"], state["exp_avg_sq"]):
            x._vc[0] += 1
