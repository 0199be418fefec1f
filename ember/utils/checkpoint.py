"""ember.utils.checkpoint: activation checkpointing (torch.utils.checkpoint.checkpoint and
checkpoint_sequential). The forward runs without keeping its intermediate values; the backward runs
the function again (with the random-number state it had, so dropout masks repeat) and backpropagates
through the recomputation. Values and gradients equal those of calling the function directly.

    y = checkpoint(block, x, use_reentrant=False)

Memory is saved when the function returns one tensor and some tensor argument requires grad; other
calls run the function plainly, which gives the same values and gradients (a function returning a
tuple is then run twice in the forward, from the same random-number state).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..frontend import autograd as ag
from ..frontend.rng import default_generator
from ..frontend.tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential"]


class _Checkpoint(ag.Function):
    @staticmethod
    def forward(ctx, run, preserve_rng_state, *args):
        ctx.run = run
        ctx.rng_state = default_generator.get_state() if preserve_rng_state else None
        ctx.args = args
        return run(*args)

    @staticmethod
    def backward(ctx, grad_output):
        args = tuple(a.detach().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a for a in ctx.args)
        outer_state = default_generator.get_state()
        if ctx.rng_state is not None:
            default_generator.set_state(ctx.rng_state)      # the same dropout masks as the forward
        try:
            with ag.enable_grad():
                out = ctx.run(*args)
        finally:
            default_generator.set_state(outer_state)
        if out.requires_grad:
            ag.backward(out, grad_output)                     # parameter grads accumulate here
        return (None, None) + tuple(a.grad if isinstance(a, Tensor) and a.requires_grad else None for a in args)


def checkpoint(function: Callable, *args, use_reentrant: bool | None = None, context_fn: Any = None,
               determinism_check: str = "default", debug: bool = False, preserve_rng_state: bool = True,
               **kwargs) -> Any:
    """function(*args, **kwargs), recomputed in the backward pass instead of stored."""
    def run(*a):
        return function(*a, **kwargs)
    if not ag.is_grad_enabled() or not any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return run(*args)
    state = default_generator.get_state()
    try:
        return _Checkpoint.apply(_single_tensor(run), preserve_rng_state, *args)
    except _NotATensor:
        # a tuple (or other) result: run it plainly, from the same random-number state
        default_generator.set_state(state)
        return run(*args)


class _NotATensor(Exception):
    """The checkpointed function returned something other than one tensor."""


def _single_tensor(run):
    def call(*args):
        out = run(*args)
        if not isinstance(out, Tensor):
            raise _NotATensor
        return out
    return call


def checkpoint_sequential(functions, segments: int, input: Tensor, use_reentrant: bool | None = None,
                          **kwargs) -> Tensor:
    """Run a Sequential (or list of modules) in `segments` chunks, checkpointing all but the last."""
    fns = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be positive, got {segments}")
    size = len(fns) // segments

    def run_range(start, end):
        def forward(x):
            for j in range(start, end + 1):
                x = fns[j](x)
            return x
        return forward

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run_range(start, end), input, use_reentrant=use_reentrant, **kwargs)
    return run_range(end + 1, len(fns) - 1)(input)
