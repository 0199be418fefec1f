"""Guards: the key a compiled variant is cached under, how to describe it, and which part changed.

A key is (grad mode, training flags, argument structure, per-leaf keys, autocast regions). A tensor
leaf's key is its shape, dtype, device and requires_grad; a Python scalar's is its value (the trace
specialised on it). The autocast regions matter because a trace under autocast records casts.

A variant found under its key also checks its StateGuard: the identity of the modules, parameters,
buffers and global objects the trace read, and the values of the numbers and flags it may have read
(module attributes, globals, a config dict's entries) -- a stale object or number would silently give
old answers. A failed state guard compiles the variant again.
"""
from __future__ import annotations

from types import FunctionType, ModuleType

from ..frontend import autocast
from ..frontend import autograd as ag
from ..frontend.tensor import Tensor
from ..ir import dtypes as dt
from ..nn import Module, Parameter
from ..nn.modules.module import state_version
from .pytree import spec_key

GUARD_NAMES = ("grad mode", "training flags", "argument structure", "arguments", "autocast")
_TENSOR_FIELDS = {1: "shape", 2: "dtype", 3: "device", 4: "requires_grad"}


def leaf_key(x, dyn=frozenset()):
    """A leaf's part of the key; `dyn`: the tensor's symbolic dims, keyed as "*" (any size >= 2)."""
    if isinstance(x, Tensor):
        shape = x._data.shape
        if dyn:
            shape = tuple("*" if d in dyn else n for d, n in enumerate(shape))
        return ("T", shape, x.dtype.name, str(x.device), x.requires_grad)
    if x is None or isinstance(x, (bool, int, float, str)):
        return (type(x).__name__, x)
    if isinstance(x, dt.DType):
        return ("dtype", x.name)
    return ("obj", type(x).__name__, id(x))


def guard_key(leaves, spec, modules, dims_of=None) -> tuple:
    """`dims_of(i, tensor)`: the symbolic dims of leaf i (ember/compiler/dynamic.py), or None."""
    training = tuple(m.training for m in modules)
    if dims_of is None:
        keys = tuple(leaf_key(x) for x in leaves)
    else:
        keys = tuple(leaf_key(x, dims_of(i, x)) if isinstance(x, Tensor) else leaf_key(x)
                     for i, x in enumerate(leaves))
    return (ag._mode.enabled, training, spec_key(spec, len(leaves)), keys, autocast.state_key())


def changed_guard(old, new) -> tuple:
    """(guard name, old value, new value) of the first guard that differs between two keys."""
    for name, a, b in zip(GUARD_NAMES, old, new):
        if a == b:
            continue
        if name == "arguments":
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    if x[0] == "T" and y[0] == "T":
                        for j, what in _TENSOR_FIELDS.items():
                            if x[j] != y[j]:
                                return f"argument {i} {what}", x[j], y[j]
                    return f"argument {i} (specialised value)", x[-1], y[-1]
        return name, a, b
    return "none", None, None


def describe_guards(key) -> list[str]:
    grad, training, structure, args, amp = key
    out = [f"grad mode == {grad}"]
    if amp:
        out.append(f"autocast == {amp}")
    if training:
        out.append(f"training flags == {training}")
    for i, a in enumerate(args):
        if a[0] == "T":
            out.append(f"arg{i}: shape {tuple(a[1])}, dtype {a[2]}, device {a[3]}, requires_grad {a[4]}")
        else:
            out.append(f"arg{i}: {a[0]} == {a[-1]!r}")
    return out


# =============================================================================== state guards
_MISSING = object()
_SCALARS = (bool, int, float, str, type(None))


def _describe(obj) -> str:
    if obj is _MISSING:
        return "<unbound>"
    if isinstance(obj, Tensor):
        kind = "Parameter" if isinstance(obj, Parameter) else "Tensor"
        return f"{kind}{list(obj._data.shape)} at {id(obj):#x}"
    if type(obj) in _SCALARS:
        return repr(obj)
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{name} at {id(obj):#x}"


# a global dict or plain object whose numbers the trace may have read (cfg["beta"], args.temperature):
# its float / bool / str / None entries are guarded by value, when it has at most this many (a vocabulary
# table is not a config).  Not ints: a dict of counters (steps, launches) changes every call, and a
# guard on it would recompile every call; the ints of a config (layer counts) rarely change at run time.
CONTENTS_MAX = 64
_CONFIG_VALUES = (bool, float, str, type(None))


def _scalar_fields(v):
    """(the mapping to watch, {key: scalar}) of a dict or a plain object (SimpleNamespace, argparse
    Namespace, a dataclass, a user's config class), or None: ember's own objects (an optimizer counts its
    steps), modules, functions, classes and Python modules are guarded by identity only."""
    if type(v) is dict:
        d = v
    elif type(v).__module__.split(".")[0] in ("ember", "builtins") or isinstance(v, type) or \
            not isinstance(getattr(v, "__dict__", None), dict) or isinstance(v, (FunctionType, ModuleType)):
        return None
    else:
        d = v.__dict__
    fields = {k: x for k, x in d.items() if type(x) in _CONFIG_VALUES}
    return (d, fields) if fields and len(fields) <= CONTENTS_MAX else None


def _walk_module(label: str, root, skip: set, out: list, seen: set) -> None:
    """Append (path, object) for `root`, its submodules, parameters, buffers and tensor attributes,
    in a fixed pre-order (iterative: deep models must not hit the recursion limit)."""
    stack = [(label, root)]
    while stack:
        path, m = stack.pop()
        out.append((path, m))
        if id(m) in seen:           # a shared submodule: its contents are listed once
            continue
        seen.add(id(m))
        d = m.__dict__
        for reg in ("_parameters", "_buffers"):
            for k, v in d.get(reg, {}).items():
                if (id(m), k) not in skip:
                    out.append((f"{path}.{k}", v))
        for k, v in d.items():
            # tensor attributes by identity; numbers, strings and flags by value (a trace specialised on
            # Dropout.p, LeakyReLU.negative_slope, a custom self.temperature)
            if (isinstance(v, Tensor) or (type(v) in _SCALARS and k[:1] != "_")) and (id(m), k) not in skip:
                out.append((f"{path}.{k}", v))
        kids = []
        for k, c in d.get("_modules", {}).items():
            if c is None:
                out.append((f"{path}.{k}", None))
            else:
                kids.append((f"{path}.{k}", c))
        stack.extend(reversed(kids))


class StateGuard:
    """Guards on what a trace read besides its arguments, as torch.compile guards on object ids:

      - every module reached (the compiled Module, modules in globals and closures): the identity
        of each submodule, parameter, buffer and tensor attribute under it, and the value of its
        number / string / flag attributes (Dropout.p, self.temperature). Checked only when ember.nn's
        module state version moved (assignment, `model[2] = ...`, weight tying, load_state_dict), so
        a call costs one integer compare;
      - every global (and closure variable of the compiled function) the traced Python code named:
        bool/int/float/str/None by value, tensors and modules by identity; in the user's code (not
        ember's own modules) anything else by identity too (a new optimizer, a swapped helper
        function recompiles) and a dict or plain object there by the values of its floats, flags and
        strings (cfg["beta"], args.temp: `_scalar_fields`).
    `skip` holds (id(module), attribute) pairs the compiled graph itself writes (self.mask = ...).
    `check()` returns None, or (guard name, old, new) of the first guard that fails."""

    def __init__(self, modules: list, values: list, skip: set = frozenset(), contents: list = ()):
        self.modules = modules          # [(label, Module)]
        self.values = values            # [(label, dict or cell, key or None, expected object)]
        self.contents = list(contents)  # [(label, dict or object's __dict__, {key: expected scalar})]
        self.skip = set(skip)
        self.version = state_version()
        self.snapshot = self._walk()

    def _walk(self) -> list:
        out, seen = [], set()
        for label, m in self.modules:
            _walk_module(label, m, self.skip, out, seen)
        return out

    def check(self):
        for label, box, key, want in self.values:
            if key is None:
                try:
                    got = box.cell_contents
                except ValueError:
                    got = _MISSING
            else:
                got = box.get(key, _MISSING)
            if got is not want and (type(want) not in _SCALARS or not _same_value(got, want)):
                return f"{label}", _describe(want), _describe(got)
        for label, d, fields in self.contents:
            for k, want in fields.items():
                got = d.get(k, _MISSING)
                if got is not want and not _same_value(got, want):
                    return f"{label}[{k!r}]", _describe(want), _describe(got)
        v = state_version()
        if v != self.version:
            fresh = self._walk()
            for (p0, o0), (p1, o1) in zip(self.snapshot, fresh):
                if p0 != p1 or (o0 is not o1 and not (type(o0) in _SCALARS and _same_value(o0, o1))):
                    path = p0 if p0 == p1 else f"{p0} / {p1}"
                    what = "value" if type(o0) in _SCALARS and p0 == p1 else "identity"
                    return f"{what} of {path}", _describe(o0), _describe(o1)
            if len(fresh) != len(self.snapshot):
                longer = fresh if len(fresh) > len(self.snapshot) else self.snapshot
                path, _ = longer[min(len(fresh), len(self.snapshot))]
                old = "present" if longer is self.snapshot else "absent"
                return f"identity of {path}", old, "absent" if old == "present" else "present"
            self.version = v
        return None

    def resync(self, before: int) -> None:
        """The compiled call itself moved the state version (replaying `self.mask = ...`): when
        nothing else had, keep the fast path."""
        if self.version == before:
            self.version = state_version()

    def describe(self) -> list[str]:
        """One line per guard (no addresses: dumps of two runs must be identical)."""
        out = [f"{label} == {want!r}" if type(want) in _SCALARS
               else f"{label} is {_describe(want).split(' at 0x')[0]} (identity)" for label, _, _, want in self.values]
        out += [f"{label}[{k!r}] == {v!r}" for label, _, fields in self.contents for k, v in fields.items()]
        out += [f"identity of {label} (and {sum(1 for p, _ in self.snapshot if p.startswith(label))} objects under it)"
                for label, _ in self.modules]
        return out


def _same_value(a, b) -> bool:
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def state_guard(fn, frames: dict | None, module=None, skip=()) -> StateGuard:
    """The StateGuard of one trace: `frames` ({code: globals}) from the TraceWatch, or None when the
    watch was off (then fn's own globals and closure); `module` the compiled Module ("self")."""
    modules, values, seen = [], [], set()

    def add_module(label, m):
        if all(m is not x for _, x in modules):
            modules.append((label, m))

    if module is not None:
        add_module("self", module)

    functions = [fn]       # functions whose closure cells are guards: fn, and those it reaches that ran

    contents = []

    def consider(label, box, key, v, user=True):
        # scalars by value, tensors and modules by identity; in the user's code (not ember's own modules,
        # whose caches and lazily installed functions change under it) every other object by identity too
        # (a rebound optimizer or helper function recompiles) and a config dict's numbers by value
        if isinstance(v, Module):
            add_module(label, v)
        if user or isinstance(v, (Tensor, Module)) or type(v) in _SCALARS:
            values.append((label, box, key, v))
        if isinstance(v, FunctionType) and v.__code__ in frames and all(v is not f for f in functions):
            functions.append(v)
        fields = None if not user or isinstance(v, (Tensor, Module)) or type(v) in _SCALARS else _scalar_fields(v)
        if fields is not None:
            contents.append((label, *fields))

    if frames is None:
        code = getattr(fn, "__code__", None)
        frames = {code: getattr(fn, "__globals__", {})} if code is not None else {}
    for code, g in frames.items():
        for name in code.co_names:
            if (id(g), name) in seen or name not in g:
                continue
            seen.add((id(g), name))
            consider(f"global {name!r}", g, name, g[name], user=str(g.get("__name__", "")).split(".")[0] != "ember")
    for f in functions:      # grows while it is walked (a helper's closure may hold another helper)
        code = getattr(f, "__code__", None)
        for name, cell in zip(code.co_freevars if code else (), getattr(f, "__closure__", None) or ()):
            if id(cell) in seen:
                continue
            seen.add(id(cell))
            try:
                v = cell.cell_contents
            except ValueError:
                continue
            consider(f"closure variable {name!r}", cell, None, v)
    return StateGuard(modules, values, skip, contents)
