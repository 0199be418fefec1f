"""What a traced training step adds to a compiled variant: `.grad`s, hyper-parameters, optimizer guards.

A compiled function may run `opt.zero_grad()`, `loss.backward()` and `opt.step()`. The tracer
(ember/compiler/capture.py, grads.py) then leaves three things behind, which this module turns into
parts of a CompiledGraph:

  GradReplay     the `.grad` of every tensor the trace assigned: after each call, each gets its final
                 value -- a graph output, None, or the tensor it held (written in place) -- as the
                 eager step would leave it. Built by `collect_grads`, which also undoes the trace's
                 assignments (the first call then runs compiled, like every later one).
  GradGuard      `.grad`s the trace read before writing (backward accumulating into them): at a call
                 each must again be None, or the very tensor the graph reads and writes.
  OptimizerGuard per optimizer stepped in the trace: the identity of its state and param_groups, the
                 state epoch (load_state_dict, add_param_group), each group's parameter count, the
                 values of the options the trace specialised on (eps, amsgrad, nesterov, ...) and, for
                 the options bound as graph inputs (lr, momentum, betas, weight_decay), whether they
                 are a tensor, and whether momentum / weight_decay are zero -- the Python branches
                 taken on them.
  FromHyper      the binding of a hyper-parameter input: group[key] read at every call, so an
                 lr_scheduler step never recompiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..frontend.tensor import Tensor

HYPER_KEYS = ("lr", "momentum", "betas", "weight_decay")


# ------------------------------------------------------------------------------------ bindings
@dataclass(eq=False)
class FromHyper:
    """A 0-d graph input bound to an optimizer option: group[key] (or group[key][index])."""
    group: dict
    key: str
    index: int | None
    dtype: object
    xp: object
    _last: tuple = field(default=(None, None), repr=False)

    def array(self):
        v = self.group[self.key]
        if self.index is not None:
            v = v[self.index]
        last_v, arr = self._last
        if arr is None or v != last_v:       # an unchanged option reuses its array
            arr = self.xp.asarray(np.asarray(v, dtype=self.dtype.np))
            self._last = (v, arr)
        return arr


# ----------------------------------------------------------------------------------- .grad replay
@dataclass(frozen=True)
class GradTarget:
    """Whose .grad: a concrete tensor, or the call's argument at leaf `arg`."""
    tensor: Tensor | None = None
    arg: int | None = None

    def resolve(self, leaves):
        return leaves[self.arg] if self.arg is not None else self.tensor

    def describe(self, names: dict) -> str:
        if self.arg is not None:
            return f"argument {self.arg}.grad"
        return f"{names.get(id(self.tensor), 'tensor')}.grad"


@dataclass
class GradReplay:
    """After a call: targets[i].grad = outputs[k] | None | the tensor it held (written in place)."""
    targets: list               # GradTarget per assignment
    values: list                # "out" (next graph output) | None | a concrete Tensor

    def __post_init__(self):
        self.n_outputs = sum(1 for v in self.values if isinstance(v, str))
        # (tensor or None, argument index, from the outputs?, value) per assignment, for apply()
        self._plan = [(t.tensor, t.arg, isinstance(v, str), v) for t, v in zip(self.targets, self.values)]

    def apply(self, leaves, out_tensors) -> None:
        it = iter(out_tensors)
        for t, arg, from_out, v in self._plan:
            if t is None:
                t = leaves[arg]
            t.grad = next(it) if from_out else v


@dataclass
class GradGuard:
    """`.grad`s the graph read: each must be None / that very tensor again."""
    checks: list                # (GradTarget, expected None or Tensor)
    names: dict = field(default_factory=dict)

    def check(self, leaves):
        for target, want in self.checks:
            got = target.resolve(leaves).grad
            if got is not want:
                def d(x):
                    return "None" if x is None else f"Tensor{list(x.shape)} at {id(x):#x}"
                return target.describe(self.names), d(want), d(got)
        return None


def collect_grads(tr, snapshot, tensor_index) -> tuple:
    """After a trace: (GradReplay or None, GradGuard or None, [symbolic grad tensors in output order]).
    Undoes the trace's .grad assignments. `snapshot` is [(tensor, .grad at trace start)] of the
    parameters the function can reach (a `p.grad = None` the log did not see); `tensor_index` maps an
    argument's placeholder to its leaf index (the .grad of an argument's stand-in is the argument's)."""
    stand_in = {key: tensor_index[ph] for key, ph in tr.stand_ins.items() if ph in tensor_index}
    entries = dict(tr.grad_log)
    start = {id(t): g for t, g in snapshot}
    for t, g0 in snapshot:
        if id(t) not in entries and t.grad is not g0:
            from .grads import GradEntry
            entries[id(t)] = GradEntry(t, g0, False)
    targets, values, checks, sym = [], [], [], []
    for key, e in entries.items():
        t = e.tensor
        target = GradTarget(arg=stand_in[key]) if key in stand_in else GradTarget(tensor=t)
        read = e.read and (key not in start or start[key] is e.entry)   # nothing unseen wrote it first
        if read:
            checks.append((target, e.entry))
        final = t.grad
        if final is not None and tr.is_symbolic(final):
            targets.append(target)
            values.append("out")
            sym.append(final)
        elif final is not e.entry:
            targets.append(target)
            values.append(final)
        if target.arg is None:
            t.grad = e.entry            # undo: the compiled call assigns them
    replay = GradReplay(targets, values) if targets else None
    guard = GradGuard(checks) if checks else None
    return replay, guard, sym


def grad_snapshot(modules, roots) -> list:
    """[(tensor, .grad)] of the parameters of `modules` and of optimizers among `roots` (objects)."""
    from ..optim import Optimizer
    seen, out = set(), []
    params = [p for m in modules for p in m.parameters()]
    for obj in roots:
        if isinstance(obj, Optimizer):
            params += [p for g in obj.param_groups for p in g["params"]]
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append((p, p.grad))
    return out


# ------------------------------------------------------------------------------ optimizer guards
_BRANCHED = ("momentum", "weight_decay")      # options whose `!= 0` picks a code path


def _hyper_class(v, zero_matters: bool):
    """What the traced Python branched on for an option bound as an input: tensor or number, and
    for momentum / weight_decay whether it is zero."""
    if isinstance(v, Tensor):
        return ("tensor", tuple(v.shape), v.dtype.name)
    if isinstance(v, (tuple, list)):
        return tuple(_hyper_class(x, zero_matters) for x in v)
    if not zero_matters:
        return ("number",)
    try:
        return ("zero" if v == 0 else "nonzero",)
    except Exception:
        return ("obj", id(v))


def _static(v):
    return ("tensor", id(v)) if isinstance(v, Tensor) else v


class _GroupGuard:
    """One param_group: its key set, parameter count, the values of the options the trace
    specialised on, and the class of the options bound as inputs."""

    __slots__ = ("group", "n_keys", "n_params", "keys", "values", "hyper")

    def __init__(self, group: dict):
        self.group = group
        self.n_keys = len(group)
        self.n_params = len(group["params"])
        self.keys = tuple(k for k in group if k != "params" and k not in HYPER_KEYS)
        self.values = tuple(_static(group[k]) for k in self.keys)
        self.hyper = tuple((k, _hyper_class(group[k], k in _BRANCHED)) for k in HYPER_KEYS if k in group)

    def check(self, label: str):
        g = self.group
        if len(g) != self.n_keys or len(g["params"]) != self.n_params:
            return f"{label} keys and parameter count", (self.n_keys, self.n_params), (len(g), len(g["params"]))
        try:
            now = tuple(_static(g[k]) for k in self.keys)
        except KeyError as e:
            return f"{label}[{e.args[0]!r}]", "present", "absent"
        if now != self.values:
            for k, a, b in zip(self.keys, self.values, now):
                if not _same(a, b):
                    return f"{label}[{k!r}]", a, b
        for k, want in self.hyper:
            got = _hyper_class(g[k], k in _BRANCHED)
            if got != want:
                return f"{label}[{k!r}]", want, got
        return None

    def describe(self) -> str:
        parts = [f"{len(self.group['params'])} params"]
        parts += [f"{k}={v!r}" for k, v in zip(self.keys, self.values)]
        parts += [f"{k} is {c[0] if isinstance(c[0], str) else 'a tuple'} (an input)" for k, c in self.hyper]
        return ", ".join(parts)


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return a is b


class OptimizerGuard:
    """Guards one optimizer stepped inside the trace (see the module docstring)."""

    def __init__(self, opt, epoch: int):
        self.opt = opt
        self.state = opt.state
        self.groups = opt.param_groups
        self.group_guards = [_GroupGuard(g) for g in opt.param_groups]
        self.epoch = epoch
        self.name = type(opt).__name__

    def check(self):
        opt = self.opt
        if opt.state is not self.state:
            return f"{self.name}.state (identity)", "the traced state dict", "another dict"
        groups = opt.param_groups
        if groups is not self.groups or len(groups) != len(self.group_guards):
            return f"{self.name}.param_groups (identity)", len(self.group_guards), len(groups)
        if opt._state_epoch != self.epoch:
            return f"{self.name} state (load_state_dict, add_param_group or a first step)", self.epoch, opt._state_epoch
        for i, gg in enumerate(self.group_guards):
            if groups[i] is not gg.group:
                return f"{self.name}.param_groups[{i}] (identity)", "the traced group", "another dict"
            failed = gg.check(f"{self.name}.param_groups[{i}]")
            if failed is not None:
                return failed
        return None

    def describe(self) -> list[str]:
        out = [f"{self.name}: state and param_groups identity, state epoch == {self.epoch}"]
        out += [f"{self.name}.param_groups[{i}]: {gg.describe()}" for i, gg in enumerate(self.group_guards)]
        return out
