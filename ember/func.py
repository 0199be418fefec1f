"""torch.func: functional_call, grad, grad_and_value, vmap.

    out = ember.func.functional_call(model, {"weight": w, "bias": b}, (x,))   # model with other weights
    g = ember.func.grad(loss_fn)(params, x)                                    # d loss / d params

functional_call runs a module with the given tensors in place of its parameters and buffers (by
qualified name; the module's own elsewhere, tied names follow each other) and puts its own back after
-- gradients flow to the given tensors (MAML-style inner loops).  grad differentiates a function of
tensors with ember's autograd (create_graph, so grad of grad works).  vmap maps a function over a
dimension by calling it per slice and stacking the results: PyTorch's semantics, not its batching
rules -- it costs one call per slice.
"""
from __future__ import annotations

import functools

from .frontend import autograd as ag
from .frontend.tensor import Tensor
from .nn.utils.stateless import functional_call

__all__ = ["functional_call", "grad", "grad_and_value", "vmap"]


def _tensors(tree):
    if isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


def _rebuild(tree, it):
    if isinstance(tree, Tensor):
        return next(it)
    if isinstance(tree, dict):
        return {k: _rebuild(v, it) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_rebuild(v, it) for v in tree)
    return tree


def grad_and_value(func, argnums=0, has_aux=False):
    """A function returning (gradient of func's scalar output w.r.t. args[argnums], func's output)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nums = argnums if isinstance(argnums, tuple) else (argnums,)
        args = list(args)
        leaves = []
        for i in nums:
            ts = [t.detach().requires_grad_(True) if not t.requires_grad else t.view_as(t) for t in _tensors(args[i])]
            leaves.append(ts)
            args[i] = _rebuild(args[i], iter(ts))
        with ag.enable_grad():
            out = func(*args, **kwargs)
            value, aux = (out if has_aux else (out, None))
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise RuntimeError("grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor")
            flat = [t for ts in leaves for t in ts]
            gs = ag.grad(value, flat, create_graph=True, allow_unused=True)
        gs = [g if g is not None else t.new_zeros(t.shape) for g, t in zip(gs, flat)]
        it = iter(gs)
        grads = tuple(_rebuild(args[i], it) for i in nums)
        grads = grads if isinstance(argnums, tuple) else grads[0]
        return (grads, (value, aux)) if has_aux else (grads, value)
    return wrapper


def grad(func, argnums=0, has_aux=False):
    """A function returning the gradient of func's scalar output w.r.t. args[argnums] (and aux)."""
    gv = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        g, value = gv(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """func mapped over dimension in_dims of its tensor arguments (None: not mapped), the results stacked
    along out_dims."""
    from .frontend.shape_ops import stack

    @functools.wraps(func)
    def wrapper(*args):
        dims = in_dims if isinstance(in_dims, (tuple, list)) else (in_dims,) * len(args)
        if len(dims) != len(args):
            raise ValueError(f"vmap: in_dims has {len(dims)} entries but the function got {len(args)} arguments")
        sizes = {a.shape[d] for a, d in zip(args, dims) if d is not None and isinstance(a, Tensor)}
        if len(sizes) != 1:
            raise ValueError("vmap: Expected all tensors to have the same size in the mapped dimension, got sizes "
                             f"{sorted(sizes)}" if sizes else "vmap: at least one argument must be mapped over")
        n = sizes.pop()
        outs = [func(*(a.select(d, i) if d is not None and isinstance(a, Tensor) else a
                       for a, d in zip(args, dims))) for i in range(n)]
        if isinstance(outs[0], tuple):
            od = out_dims if isinstance(out_dims, (tuple, list)) else (out_dims,) * len(outs[0])
            return tuple(stack([o[k] for o in outs], dim=od[k]) for k in range(len(outs[0])))
        return stack(outs, dim=out_dims)
    return wrapper
