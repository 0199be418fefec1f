"""ember.optim.Optimizer: the base class every optimizer derives from (PyTorch's API and formats).

In:  parameters (an iterable of Tensors, or of dicts {"params": [...], option: value}) and defaults.
Out: `param_groups` (a list of dicts, each with its own options, editable between steps),
     `state` (a dict keyed by parameter), `step(closure)` implemented by subclasses,
     `zero_grad`, and `state_dict()` / `load_state_dict()` in PyTorch's format: state keyed by the
     parameter's integer index (counted across groups in order), groups holding index lists.

Updates are written with ember tensor ops run in place under no_grad (param.add_, mul_, addcdiv_ ...),
so a tracer that captures a whole training step (ember.compile around zero_grad/backward/step) sees
them as ops writing to parameters and state. While tracing, the options schedulers change (lr,
momentum, betas, weight_decay) are read through `_hyper` as 0-d graph inputs bound to the group, so a
scheduler step never recompiles; state a first step creates is made for real (`_new_state`) so the
graph writes it in place; `_state_epoch` counts the changes a compiled step must notice
(load_state_dict, add_param_group).
"""
from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any, Callable, Iterable

from ..frontend import autograd as ag
from ..frontend import dispatch
from ..frontend import tracing_hooks
from ..frontend.tensor import Tensor

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks an option with no default (SGD's lr in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _tracing() -> bool:
    """True while ember.compile traces a step: updates then avoid .item() (a graph break)."""
    return dispatch.tracer is not None


def _scalar(v):
    """lr and friends may be 1-element tensors, as in PyTorch; the eager update uses Python numbers."""
    return v.item() if isinstance(v, Tensor) else v


def _hyper(group: dict, key: str, like: Tensor, index: int | None = None):
    """The option group[key] (group[key][index]) for a traced update: a 0-d graph input that the
    compiled step reads from the group at every call (a tensor option is used as it is)."""
    v = group[key] if index is None else group[key][index]
    if isinstance(v, Tensor) or dispatch.tracer is None:
        return v
    return dispatch.tracer.group_scalar(group, key, index, like)


def _add(a: Tensor, b: Tensor, alpha) -> Tensor:
    """a + alpha * b with alpha a number or a 0-d tensor (the same ops as a.add(b, alpha=alpha))."""
    return a.add(b * alpha) if isinstance(alpha, Tensor) else a.add(b, alpha=alpha)


def _add_(a: Tensor, b: Tensor, alpha) -> Tensor:
    return a.add_(b * alpha) if isinstance(alpha, Tensor) else a.add_(b, alpha=alpha)


class Optimizer:
    """Base class: holds param_groups and state; subclasses implement step()."""

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = defaults
        self._state_epoch = 0       # bumped when state or groups change under a compiled step
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._step_pre_hooks: dict = {}
        self._step_post_hooks: dict = {}
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # --------------------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (missing ones come from defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)
        named = [isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in param_group["params"]]
        if any(named):          # model.named_parameters(), as PyTorch 2.x takes it: the names kept per group
            if not all(named):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            param_group["param_names"] = [n for n, _ in param_group["params"]]
            param_group["params"] = [p for _, p in param_group["params"]]
        for p in param_group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in param_group["params"]]
        if len(set(ids)) != len(ids):
            import warnings
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error", stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if seen.intersection(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)
        self._state_epoch = getattr(self, "_state_epoch", 0) + 1

    # ------------------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's .grad: to None (the default, as in PyTorch) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    if p.grad is not None or tracing_hooks.active():   # traced: .grad is None after, whatever before
                        tracing_hooks.set_grad(p, None)
                elif p.grad is not None:
                    g = p.grad
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad = False
                    g.zero_()

    def step(self, closure: Callable | None = None):
        raise NotImplementedError

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with ag.enable_grad():
            return closure()

    def _new_state(self, p: Tensor, make: Callable[[], dict]) -> dict:
        """state[p] filled with make()'s tensors, created for real even while a step is traced (the
        graph then reads and writes them in place: zeros and step 0 are what the first eager step
        starts from). An abandoned trace takes them out again."""
        had = p in self.state
        with tracing_hooks.eager_now():
            values = make()
        state = self.state[p]
        state.update(values)
        watch = self.__dict__.get("_state_watch")
        if watch is not None:       # a traced GradScaler step keeps the values before the update writes
            watch(values)
        tr = dispatch.tracer
        if tr is not None:
            def undo():
                if not had:
                    self.state.pop(p, None)
                else:
                    for k in values:
                        state.pop(k, None)
            tr.on_undo(undo)
        return state

    def _run_pre_hooks(self, args, kwargs):
        for hook in list(self._step_pre_hooks.values()):
            r = hook(self, args, kwargs)
            if r is not None:
                args, kwargs = r
        return args, kwargs

    def _run_post_hooks(self, args, kwargs):
        for hook in list(self._step_post_hooks.values()):
            hook(self, args, kwargs)

    def register_step_pre_hook(self, hook):
        return _Handle(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook):
        return _Handle(self._step_post_hooks, hook)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # every subclass's step runs the step hooks (PyTorch wraps step the same way)
        if "step" in cls.__dict__:
            raw = cls.__dict__["step"]

            def step(self, *args, **kwargs):
                tr = dispatch.tracer
                if tr is not None:      # a training step being captured by ember.compile
                    if args and args[0] is not None or kwargs.get("closure") is not None:
                        tr.graph_break("step_closure")
                    tr.note_optimizer(self)
                if self._step_pre_hooks or self._step_post_hooks:
                    args, kwargs = self._run_pre_hooks(args, kwargs)
                    out = raw(self, *args, **kwargs)
                    self._run_post_hooks(args, kwargs)
                    return out
                return raw(self, *args, **kwargs)
            step.__doc__ = raw.__doc__
            step.__name__ = "step"
            step.__qualname__ = raw.__qualname__
            cls.step = step

    # ---------------------------------------------------------------------- state dicts
    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} as in PyTorch.
        The state tensors are the optimizer's own (not copies), as in PyTorch."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            ids = []
            for p in g["params"]:
                if id(p) not in index:
                    index[id(p)] = len(index)
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            key = index[id(p)] if isinstance(p, Tensor) else p
            state[key] = s
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state and group options saved by state_dict() (this optimizer's or PyTorch-shaped).
        Floating state tensors are cast to their parameter's dtype and device ('step' is kept)."""
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, sg in zip(groups, saved_groups):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        id_map = {}
        for g, sg in zip(groups, saved_groups):
            for old, p in zip(sg["params"], g["params"]):
                id_map[old] = p
        state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                p = id_map[k]
                state[p] = {name: _cast_state(p, name, val) for name, val in v.items()} \
                    if isinstance(v, dict) else copy.deepcopy(v)
            else:
                state[k] = copy.deepcopy(v)
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            ng = {k: copy.deepcopy(v) for k, v in sg.items() if k != "params"}
            ng["params"] = g["params"]
            new_groups.append(ng)
        self.state = state
        self.param_groups = new_groups
        self._state_epoch += 1

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("_step_pre_hooks", {})
        self.__dict__.setdefault("_step_post_hooks", {})
        self.__dict__["_state_epoch"] = self.__dict__.get("_state_epoch", 0) + 1

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)

    # ------------------------------------------------------------------ helpers for steps
    @staticmethod
    def _params_with_grad(group):
        """The group's parameters that have a gradient (a parameter without one is skipped)."""
        out = []
        for p in group["params"]:
            if p.grad is not None:
                out.append(p)
        return out


def _cast_state(param, name, value):
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    if name == "step":
        return value.clone()
    if value.dtype.is_floating_point and param.dtype.is_floating_point:
        return value.to(device=param.device, dtype=param.dtype, copy=True)
    return value.to(device=param.device, copy=True)


class _Handle:
    _next = 0

    def __init__(self, table, hook):
        _Handle._next += 1
        self.id = _Handle._next
        self._table = table
        table[self.id] = hook

    def remove(self):
        self._table.pop(self.id, None)
