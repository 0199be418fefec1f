"""torch.func: functional_call, grad, grad_and_value, vmap, vjp, jvp, jacrev / jacfwd, hessian.

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

__all__ = ["functional_call", "grad", "grad_and_value", "vmap", "vjp", "jvp", "jacrev", "jacfwd", "hessian"]


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
    """func mapped over dimension in_dims of its arguments' tensors (None: not mapped; an argument may be a
    dict / list / tuple of tensors), the results -- tensors, numbers or such containers -- stacked along
    out_dims."""
    @functools.wraps(func)
    def wrapper(*args):
        dims = in_dims if isinstance(in_dims, (tuple, list)) else (in_dims,) * len(args)
        if len(dims) != len(args):
            raise ValueError(f"vmap: in_dims has {len(dims)} entries but the function got {len(args)} arguments")
        sizes = {t.shape[d] for a, d in zip(args, dims) if d is not None for t in _tensors(a)}
        if len(sizes) != 1:
            raise ValueError("vmap: Expected all tensors to have the same size in the mapped dimension, got sizes "
                             f"{sorted(sizes)}" if sizes else "vmap: at least one argument must be mapped over")
        n = sizes.pop()
        outs = [func(*(a if d is None else _select(a, d, i) for a, d in zip(args, dims))) for i in range(n)]
        return _stack(outs, out_dims)
    return wrapper


def _select(tree, dim, i):
    if isinstance(tree, Tensor):
        return tree.select(dim, i)
    if isinstance(tree, dict):
        return {k: _select(v, dim, i) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_select(v, dim, i) for v in tree)
    return tree


def _stack(outs, dim):
    from .frontend.creation import tensor
    from .frontend.shape_ops import stack
    first = outs[0]
    if isinstance(first, Tensor):
        return stack(outs, dim=dim)
    if isinstance(first, dict):
        return {k: _stack([o[k] for o in outs], dim) for k in first}
    if isinstance(first, (list, tuple)):
        dims = dim if isinstance(dim, (tuple, list)) else (dim,) * len(first)
        return type(first)(_stack([o[k] for o in outs], d) for k, d in zip(range(len(first)), dims))
    return tensor(outs)


def vjp(func, *primals, has_aux=False):
    """(func(*primals), vjp_fn): vjp_fn(cotangent) -> the gradients w.r.t. each primal."""
    leaves = [p.view_as(p) if p.requires_grad else p.detach().requires_grad_(True) for p in primals]
    with ag.enable_grad():
        out = func(*leaves)
    value, aux = out if has_aux else (out, None)

    def vjp_fn(cotangent):
        gs = ag.grad(value, leaves, cotangent, retain_graph=True, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else t.new_zeros(t.shape) for g, t in zip(gs, leaves))
    return (value, vjp_fn, aux) if has_aux else (value, vjp_fn)


def jacrev(func, argnums=0, has_aux=False):
    """The Jacobian of func's tensor output w.r.t. args[argnums]: output.shape + input.shape, one reverse pass
    per output element."""
    from .frontend.shape_ops import stack

    @functools.wraps(func)
    def wrapper(*args):
        nums = argnums if isinstance(argnums, tuple) else (argnums,)
        args = list(args)
        leaves = [args[i].view_as(args[i]) if args[i].requires_grad else args[i].detach().requires_grad_(True)
                  for i in nums]        # (an input that requires grad keeps its history: hessian = jacrev of jacrev)
        for i, t in zip(nums, leaves):
            args[i] = t
        with ag.enable_grad():
            out = func(*args)
            value, aux = out if has_aux else (out, None)
            flat = value.reshape(-1)
            rows = []
            for k in range(flat.numel()):
                gs = ag.grad(flat[k], leaves, retain_graph=True, create_graph=True, allow_unused=True)
                rows.append([g if g is not None else t.new_zeros(t.shape) for g, t in zip(gs, leaves)])
        jac = tuple(stack([r[j] for r in rows]).reshape(tuple(value.shape) + tuple(t.shape))
                    if rows else value.new_zeros(tuple(value.shape) + tuple(t.shape))
                    for j, t in enumerate(leaves))
        jac = jac if isinstance(argnums, tuple) else jac[0]
        return (jac, aux) if has_aux else jac
    return wrapper


jacfwd = jacrev      # (the same Jacobian; computed in reverse mode here)


def hessian(func, argnums=0):
    """The Hessian of func's scalar output: the Jacobian of its gradient."""
    return jacrev(jacrev(func, argnums), argnums)


def jvp(func, primals, tangents, *, has_aux=False):
    """(func(*primals), J @ tangents): the directional derivative, through the Jacobian."""
    out = func(*primals)
    value, aux = out if has_aux else (out, None)
    jac = jacrev(lambda *p: func(*p)[0] if has_aux else func(*p), argnums=tuple(range(len(primals))))(*primals)
    tangent_out = None
    for j, t in zip(jac, tangents):
        term = (j.reshape(value.numel(), -1) @ t.reshape(-1)).reshape(tuple(value.shape))
        tangent_out = term if tangent_out is None else tangent_out + term
    return (value, tangent_out, aux) if has_aux else (value, tangent_out)
