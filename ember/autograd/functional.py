"""ember.autograd.functional: jacobian, hessian, vjp, jvp, hvp, vhp (torch.autograd.functional), by
reverse-mode autograd (one backward pass per output element for jacobian; jvp by the double-vjp trick).

In: a function of one tensor or a tuple of tensors, and the point(s). Out: PyTorch's nesting: a tensor
for one input and one output, tuples over inputs and/or outputs otherwise.
"""
from __future__ import annotations

from ..frontend import autograd as ag
from ..frontend import creation
from ..frontend.tensor import Tensor

__all__ = ["jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"]


def _as_tuple(x, what: str, fn: str):
    is_tuple = isinstance(x, tuple)
    xs = x if is_tuple else (x,)
    for i, t in enumerate(xs):
        if not isinstance(t, Tensor):
            raise TypeError(f"The {what} given to {fn} must be either a Tensor or a tuple of Tensors but the value "
                            f"at index {i} has type {type(t)}.")
    return is_tuple, xs


def _prepare(inputs, create_graph: bool):
    return tuple(t if create_graph and t.requires_grad else t.detach().requires_grad_(True) for t in inputs)


def _grads(outputs, inputs, grad_outputs, create_graph: bool):
    gs = ag.grad(outputs, inputs, grad_outputs, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return tuple(creation.zeros_like(x) if g is None else g for g, x in zip(gs, inputs))


def jacobian(func, inputs, create_graph: bool = False, strict: bool = False, vectorize: bool = False,
             strategy: str = "reverse-mode"):
    """d func(inputs) / d inputs: for output o and input x, a tensor of shape o.shape + x.shape."""
    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode".')
    in_tuple, xs = _as_tuple(inputs, "inputs", "jacobian")
    with ag.enable_grad():
        xs = _prepare(xs, create_graph)
        out = func(*xs)
        out_tuple, outs = _as_tuple(out, "outputs of the user-provided function", "jacobian")
        result = []
        for o in outs:
            flat = o.reshape(-1)
            rows = [[] for _ in xs]
            for j in range(flat.shape[0]):
                if flat.requires_grad:
                    gs = _grads([flat[j]], xs, None, create_graph)
                else:
                    if strict:
                        raise RuntimeError("Output 0 of the user-provided function is independent of input 0. This "
                                           "is not allowed in strict mode.")
                    gs = tuple(creation.zeros_like(x) for x in xs)
                for r, g in zip(rows, gs):
                    r.append(g if create_graph else g.detach())
            per_input = []
            for r, x in zip(rows, xs):
                from ..frontend.shape_ops import stack
                j_ = stack(r, 0) if r else creation.zeros(0, *x.shape, dtype=x.dtype)
                per_input.append(j_.reshape(tuple(o.shape) + tuple(x.shape)))
            result.append(tuple(per_input) if in_tuple else per_input[0])
    return tuple(result) if out_tuple else result[0]


def hessian(func, inputs, create_graph: bool = False, strict: bool = False, vectorize: bool = False,
            outer_jacobian_strategy: str = "reverse-mode"):
    """The Hessian of a scalar function: jacobian of its gradient."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "hessian")

    def grad_fn(*inp):
        out = func(*inp)
        _, outs = _as_tuple(out, "outputs of the user-provided function", "hessian")
        if len(outs) != 1 or outs[0].numel() != 1:
            raise RuntimeError("The function given to hessian should return a single Tensor with a single element")
        g = _grads(outs, inp, None, True)
        return g if in_tuple else g[0]
    return jacobian(grad_fn, xs if in_tuple else xs[0], create_graph=create_graph, strict=strict)


def vjp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T J)."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "vjp")
    with ag.enable_grad():
        xs = _prepare(xs, create_graph)
        out = func(*xs)
        out_tuple, outs = _as_tuple(out, "outputs of the user-provided function", "vjp")
        if v is None:
            if len(outs) != 1 or outs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the user-provided function returns a single "
                                   "Tensor with a single element.")
            vs = None
        else:
            _, vs = _as_tuple(v, "v", "vjp")
        res = _grads(list(outs), xs, list(vs) if vs is not None else None, create_graph)
    outs = outs if create_graph else tuple(o.detach() for o in outs)
    res = res if create_graph else tuple(r.detach() for r in res)
    return (outs if out_tuple else outs[0]), (res if in_tuple else res[0])


def jvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), J v), by differentiating the vjp with respect to its vector."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "jvp")
    if v is None:
        if len(xs) != 1 or xs[0].numel() != 1:
            raise RuntimeError("The vector v can only be None if the input to the user-provided function is a "
                               "single Tensor with a single element.")
        vs = (creation.ones_like(xs[0]),)
    else:
        _, vs = _as_tuple(v, "v", "jvp")
    with ag.enable_grad():
        xs = _prepare(xs, create_graph)
        out = func(*xs)
        out_tuple, outs = _as_tuple(out, "outputs of the user-provided function", "jvp")
        us = tuple(creation.zeros_like(o).requires_grad_(True) for o in outs)
        g = _grads(list(outs), xs, list(us), True)
        res = _grads(list(g), us, list(vs), create_graph)
    outs = outs if create_graph else tuple(o.detach() for o in outs)
    res = res if create_graph else tuple(r.detach() for r in res)
    return (outs if out_tuple else outs[0]), (res if out_tuple else res[0])


def vhp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T H) for a scalar func."""
    in_tuple, xs = _as_tuple(inputs, "inputs", "vhp")
    _, vs = _as_tuple(v, "v", "vhp") if v is not None else (False, tuple(creation.ones_like(x) for x in xs))
    with ag.enable_grad():
        xs = _prepare(xs, create_graph)
        out = func(*xs)
        if out.numel() != 1:
            raise RuntimeError("The function given to vhp should return a single Tensor with a single element")
        g = _grads([out], xs, None, True)
        res = _grads(list(g), xs, list(vs), create_graph)
    out = out if create_graph else out.detach()
    res = res if create_graph else tuple(r.detach() for r in res)
    return out, (res if in_tuple else res[0])


def hvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), H v); the Hessian of a twice-differentiable scalar function is symmetric, so this is vhp."""
    return vhp(func, inputs, v, create_graph, strict)
