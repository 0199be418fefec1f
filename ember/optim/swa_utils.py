"""torch.optim.swa_utils: stochastic weight averaging and EMA of a model's weights.

    swa_model = AveragedModel(model)                       # or multi_avg_fn=get_ema_multi_avg_fn(0.999)
    swa_sched = SWALR(opt, swa_lr=0.05)
    ... each epoch after the start: swa_model.update_parameters(model); swa_sched.step()
    update_bn(train_loader, swa_model)                     # BatchNorm statistics of the averaged weights
"""
from __future__ import annotations

import copy
import itertools
import math

from ..frontend.autograd import no_grad
from ..frontend.creation import tensor
from ..ir import dtypes as dt
from ..nn import Module
from ..nn.modules.normalization import _BatchNorm
from .lr_scheduler import LRScheduler, _format_param

__all__ = ["AveragedModel", "SWALR", "update_bn", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn",
           "get_ema_avg_fn", "get_swa_avg_fn"]


def get_ema_avg_fn(decay=0.999):
    """avg_fn of an exponential moving average: decay * average + (1 - decay) * current."""
    def ema_update(ema_param, current_param, num_averaged):
        return decay * ema_param + (1 - decay) * current_param
    return ema_update


def get_swa_avg_fn():
    """avg_fn of the running mean: average + (current - average) / (n + 1)."""
    def swa_update(averaged_param, current_param, num_averaged):
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)
    return swa_update


def get_ema_multi_avg_fn(decay=0.999):
    """multi_avg_fn form of get_ema_avg_fn: updates the averaged tensors in place."""
    def ema_update(ema_params, current_params, num_averaged):
        for e, c in zip(ema_params, current_params):
            e.lerp_(c, 1 - decay)
    return ema_update


def get_swa_multi_avg_fn():
    """multi_avg_fn form of get_swa_avg_fn."""
    def swa_update(averaged_params, current_params, num_averaged):
        n = num_averaged.item() if hasattr(num_averaged, "item") else num_averaged
        for a, c in zip(averaged_params, current_params):
            a.add_((c - a) / (n + 1))
    return swa_update


class AveragedModel(Module):
    """A copy of `model` whose parameters (and, with use_buffers, buffers) are the running average
    (default) or avg_fn / multi_avg_fn of the weights handed to update_parameters(); n_averaged counts them."""

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(0, dtype=dt.int64, device=device))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _tensors(self, model):
        return (itertools.chain(model.parameters(), model.buffers()) if self.use_buffers
                else model.parameters())

    def update_parameters(self, model):
        with no_grad():
            mine = [p.detach() for p in self._tensors(self.module)]
            theirs = [p.detach().to(q.device) for p, q in zip(self._tensors(model), mine)]
            n = int(self.n_averaged.item())
            if n == 0:
                for a, c in zip(mine, theirs):
                    a.copy_(c)
            elif self.multi_avg_fn is not None:
                self.multi_avg_fn(mine, theirs, self.n_averaged.to(mine[0].device) if mine else self.n_averaged)
            else:
                fn = self.avg_fn or get_swa_avg_fn()
                for a, c in zip(mine, theirs):
                    if a.dtype.is_floating_point:
                        a.copy_(fn(a, c, self.n_averaged.to(a.device)))
                    else:
                        a.copy_(c)
            if not self.use_buffers:      # buffers (BatchNorm statistics) follow the model's
                for b, c in zip(self.module.buffers(), model.buffers()):
                    b.detach().copy_(c.detach().to(b.device))
            self.n_averaged.add_(1)


def update_bn(loader, model, device=None):
    """Recompute every BatchNorm's running statistics of `model` with one pass over `loader` (batches,
    or (input, ...) tuples / lists): a cumulative average (momentum None), the momenta restored after."""
    momenta = {}
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.running_mean is not None:
            m.reset_running_stats()
            momenta[m] = m.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for m in momenta:
        m.momentum = None
    with no_grad():
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if device is not None:
                x = x.to(device)
            model(x)
    for m, mom in momenta.items():
        m.momentum = mom
    model.train(was_training)


class SWALR(LRScheduler):
    """Anneals each group's lr to swa_lr over anneal_epochs steps ("cos" or "linear"), then holds it."""

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1):
        for lr, group in zip(_format_param("swa_lr", optimizer, swa_lr), optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must by one of 'cos' or 'linear', instead got {anneal_strategy}")
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_strategy = anneal_strategy
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    def anneal_func(self, t):
        return (1 - math.cos(math.pi * t)) / 2 if self.anneal_strategy == "cos" else t

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        return swa_lr if alpha == 1 else (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self):
        self._warn_outside_step()
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha) for g in self.optimizer.param_groups]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(self.optimizer.param_groups, prev)]
