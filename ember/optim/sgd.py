"""ember.optim.SGD: stochastic gradient descent with momentum, dampening, Nesterov, weight decay.

Same update as torch.optim.SGD (single-tensor path), step for step:
    g = -grad if maximize else grad;  g += weight_decay * p
    buf = g (first step) | momentum * buf + (1 - dampening) * g
    g = g + momentum * buf (nesterov) | buf
    p -= lr * g
State per parameter: 'momentum_buffer' (when momentum != 0).

Inside a compiled training step lr, momentum and weight_decay are graph inputs (optimizer.py's
_hyper). The first traced step creates the buffer as real zeros: with dampening 0 (the default),
momentum * 0 + g is g exactly, so one graph serves the first step and all later ones; with dampening
the first step copies g and the next call compiles the steady-state step.
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend.creation import zeros_like
from ..ir import dtypes as dt
from .optimizer import Optimizer, _add, _add_, _hyper, _scalar, _tracing, required

__all__ = ["SGD"]


_ARRAY_DTYPES = (dt.float32, dt.float64)      # the array update's arithmetic is PyTorch's for these

class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if lr is not required and _scalar(lr) < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    @ag.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure() when given."""
        loss = self._closure_loss(closure)
        tracing = _tracing()
        for group in self.param_groups:
            momentum = _scalar(group["momentum"])       # Python values decide the branches
            dampening = group["dampening"]
            weight_decay = _scalar(group["weight_decay"])
            nesterov = group["nesterov"]
            maximize = group["maximize"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if (not tracing and not maximize and p.dtype is g.dtype and p.dtype in _ARRAY_DTYPES
                        and p.device == g.device):
                    self._eager_update(p, g, group, momentum, dampening, weight_decay, nesterov)
                    continue
                if tracing:      # options as graph inputs: a scheduler changing them never recompiles
                    lr, m, wd = (_hyper(group, k, p) for k in ("lr", "momentum", "weight_decay"))
                else:
                    lr, m, wd = _scalar(group["lr"]), momentum, weight_decay
                if maximize:
                    g = -g
                if weight_decay != 0:
                    g = _add(g, p, wd)
                if momentum != 0:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None and tracing:
                        buf = self._new_state(p, lambda: {"momentum_buffer": zeros_like(p)})["momentum_buffer"]
                        if dampening == 0:
                            _add_(buf.mul_(m), g, 1)        # = g exactly: the steady-state graph
                        else:
                            buf.copy_(g)
                            self._state_epoch += 1          # the next call compiles the later steps
                    elif buf is None:
                        buf = g.detach().clone()
                        self.state[p]["momentum_buffer"] = buf
                    else:
                        _add_(buf.mul_(m), g, 1 - dampening)
                    g = _add(g, buf, m) if nesterov else buf
                if isinstance(lr, float) or isinstance(lr, int):
                    p.add_(g, alpha=-lr)
                else:
                    p.sub_(g * lr)
        return loss

    def _eager_update(self, p, g, group, momentum, dampening, weight_decay, nesterov):
        """The update on the arrays, in place, in PyTorch's order of operations: through the ops it is
        3-5 dispatches per parameter (168 us a step for the MNIST CNN's 8, against PyTorch's 77)."""
        lr = _scalar(group["lr"])
        P, G = p._data, g._data
        t = P.dtype.type
        if weight_decay != 0:
            G = G + t(weight_decay) * P                       # g.add(p, alpha=weight_decay)
        bumped = [p]
        if momentum != 0:
            st = self.state[p]
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = g.detach().clone()
                if weight_decay != 0:
                    buf._data[...] = G
            else:
                B = buf._data
                B *= t(momentum)                              # buf.mul_(momentum).add_(g, alpha=1 - dampening)
                B += G if dampening == 0 else t(1 - dampening) * G
                bumped.append(buf)
            G = G + t(momentum) * buf._data if nesterov else buf._data
        P -= t(lr) * G                                        # p.add_(g, alpha=-lr)
        for x in bumped:
            x._vc[0] += 1
