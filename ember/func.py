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
from .compiler.pytree import flatten, unflatten
from .frontend.tensor import Tensor
from .nn.utils.stateless import functional_call

__all__ = ["functional_call", "grad", "grad_and_value", "vmap", "vjp", "jvp", "jacrev", "jacfwd", "hessian"]


def _tensors(tree):
    leaves = []
    flatten(tree, leaves)
    return [x for x in leaves if isinstance(x, Tensor)]


def _map_tensors(tree, fn):
    """tree with every tensor t replaced by fn(t) (ember/compiler/pytree.py's flatten / unflatten)."""
    leaves = []
    spec = flatten(tree, leaves)
    return unflatten(spec, iter([fn(x) if isinstance(x, Tensor) else x for x in leaves]))


def _leaf(t):
    """t as a tensor to differentiate against: its own history kept when it has one (so transforms nest:
    hessian = jacrev of jacrev), else a detached copy that requires grad."""
    return t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True)


def grad_and_value(func, argnums=0, has_aux=False):
    """A function returning (gradient of func's scalar output w.r.t. args[argnums], func's output)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nums = argnums if isinstance(argnums, tuple) else (argnums,)
        args = list(args)
        leaves = []
        for i in nums:
            ts = [_leaf(t) for t in _tensors(args[i])]
            leaves.append(ts)
            it = iter(ts)
            args[i] = _map_tensors(args[i], lambda _: next(it))
        with ag.enable_grad():
            out = func(*args, **kwargs)
            value, aux = (out if has_aux else (out, None))
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise RuntimeError("grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor")
            flat = [t for ts in leaves for t in ts]
            gs = ag.grad(value, flat, create_graph=True, allow_unused=True)
        gs = [g if g is not None else t.new_zeros(t.shape) for g, t in zip(gs, flat)]
        it = iter(gs)
        grads = tuple(_map_tensors(args[i], lambda _: next(it)) for i in nums)
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
    return _map_tensors(tree, lambda t: t.select(dim, i))


def _stack(outs, dim):
    """The per-slice results stacked leaf by leaf along dim (one dim per element of a tuple result)."""
    from .frontend.creation import tensor
    from .frontend.shape_ops import stack
    if isinstance(dim, (tuple, list)):
        return type(outs[0])(_stack([o[k] for o in outs], d) for k, d in enumerate(dim))
    columns, spec = [], None
    for o in outs:
        leaves = []
        spec = flatten(o, leaves)
        columns.append(leaves)
    return unflatten(spec, iter([stack(list(c), dim=dim) if isinstance(c[0], Tensor) else tensor(list(c))
                                 for c in zip(*columns)]))


def vjp(func, *primals, has_aux=False):
    """(func(*primals), vjp_fn): vjp_fn(cotangent) -> the gradients w.r.t. each primal."""
    leaves = [_leaf(p) for p in primals]
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
        leaves = [_leaf(args[i]) for i in nums]
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
