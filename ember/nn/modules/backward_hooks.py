"""Module full backward hooks (register_full_backward_hook / register_full_backward_pre_hook), as PyTorch
runs them: hook(module, grad_input, grad_output) once the gradients of the module's tensor inputs are
known, pre_hook(module, grad_output) when the gradients of its outputs arrive; either may return
replacements.

How: the tensor inputs that require grad and the tensor outputs pass through an identity autograd
Function each (one node for all inputs, one for all outputs -- PyTorch's BackwardHook does the same).
The outputs' node sees grad_output first and keeps it; the inputs' node then has grad_input and calls
the hooks.  When no input requires grad, the hooks run at the outputs' node with grad_input all None.
"""
from __future__ import annotations

from ...frontend.autograd import Function, is_grad_enabled
from ...frontend.tensor import Tensor

__all__ = ["BackwardHooks"]


class _Identity(Function):
    @staticmethod
    def forward(ctx, state, kind, *tensors):
        ctx.state, ctx.kind = state, kind
        return tensors if len(tensors) != 1 else tensors[0]

    @staticmethod
    def backward(ctx, *grads):
        grads = ctx.state.outputs_done(grads) if ctx.kind == "out" else ctx.state.inputs_done(grads)
        return (None, None) + tuple(grads)


class BackwardHooks:
    """One forward call of a module with backward hooks: wraps its inputs and outputs, runs the hooks."""

    def __init__(self, module, full_hooks, pre_hooks):
        self.module = module
        self.full_hooks, self.pre_hooks = list(full_hooks), list(pre_hooks)
        self.grad_output = None
        self.n_tensor_inputs = 0
        self.wrapped_at = ()          # positions among the tensor inputs of those that require grad

    @staticmethod
    def wanted(module) -> bool:
        return bool(module._backward_hooks or module.__dict__.get("_backward_pre_hooks")) and is_grad_enabled()

    def wrap_inputs(self, args: tuple) -> tuple:
        tensor_pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_tensor_inputs = len(tensor_pos)
        grad_pos = [i for i in tensor_pos if args[i].requires_grad]
        self.wrapped_at = tuple(tensor_pos.index(i) for i in grad_pos)
        # the others get zeros in grad_input, as PyTorch's hook sees them (when any input needs a gradient)
        self.like = [(tuple(args[i].shape), args[i].dtype, args[i].device) for i in tensor_pos]
        return tuple(self._through("in", args, grad_pos)) if grad_pos else args

    def wrap_outputs(self, result):
        outs = result if isinstance(result, (tuple, list)) else (result,)
        pos = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad]
        if not pos:
            return result
        outs = self._through("out", outs, pos)
        return outs[0] if not isinstance(result, (tuple, list)) else type(result)(outs)

    def _through(self, kind, items, positions) -> list:
        """items with those at `positions` passed through one identity node of this kind."""
        new = _Identity.apply(self, kind, *(items[i] for i in positions))
        items = list(items)
        for i, t in zip(positions, new if isinstance(new, tuple) else (new,)):
            items[i] = t
        return items

    def outputs_done(self, grads):
        grads = tuple(grads)
        for hook in self.pre_hooks:
            r = hook(self.module, grads)
            if r is not None:
                grads = tuple(r) if isinstance(r, (tuple, list)) else (r,)
        self.grad_output = grads
        if not self.wrapped_at:               # no input needs a gradient: the hooks run now
            self._run((None,) * self.n_tensor_inputs)
        return grads

    def inputs_done(self, grads):
        from ...frontend.creation import zeros
        full = [zeros(shape, dtype=d, device=dev) for shape, d, dev in self.like]
        for at, g in zip(self.wrapped_at, grads):
            full[at] = g
        full = self._run(tuple(full))
        return tuple(full[at] for at in self.wrapped_at)

    def _run(self, grad_input: tuple) -> tuple:
        for hook in self.full_hooks:
            r = hook(self.module, grad_input, self.grad_output)
            if r is not None:
                r = tuple(r) if isinstance(r, (tuple, list)) else (r,)
                if len(r) != len(grad_input):
                    raise RuntimeError(f"Backward hook returned an invalid number of grad_input, got {len(r)}, "
                                       f"but expected {len(grad_input)}")
                grad_input = r
        return grad_input
