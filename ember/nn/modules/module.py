"""nn.Module: the base class of layers and models, with PyTorch's registration rules.

A module holds parameters (trainable leaves), buffers (state such as running statistics) and child
modules in three ordered dicts; attribute assignment routes values into them, so `self.fc =
Linear(...)` registers a child and `self.w = Parameter(...)` a parameter. From those registries come
parameters(), state_dict(), to(), train()/eval(), print(model), and the forward hooks run by __call__.
"""
from __future__ import annotations

import functools
import itertools
import warnings
import weakref
from collections import OrderedDict, namedtuple
from typing import Any, Callable, Iterator

from ...frontend import autograd as ag
from ...frontend import dispatch as _dispatch
from ...frontend import tracing_hooks
from ...frontend.tensor import Tensor
from ...ir import dtypes as dt
from ..parameter import Buffer, Parameter
from .backward_hooks import BackwardHooks

__all__ = ["Module", "RemovableHandle"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by register_*_hook; handle.remove() unregisters the hook (also a context manager)."""
    _next_id = itertools.count()

    def __init__(self, *dicts):
        self.id = next(RemovableHandle._next_id)
        self._dicts = [weakref.ref(d) if hasattr(d, "__weakref__") else (lambda d=d: d) for d in dicts]

    def remove(self):
        for ref in self._dicts:
            d = ref()
            if d is not None and self.id in d:
                del d[self.id]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class _HookDict(OrderedDict):
    """An OrderedDict that a weakref can point at."""


def _addindent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    first = lines.pop(0)
    return first + "\n" + "\n".join(" " * n + line for line in lines)


# Compiled code reads parameters, buffers and submodules by identity (ember/compiler/guards.py):
# every change to what a module holds bumps this counter, so a compiled call re-validates what it
# read only when something may have changed (one integer compare per call otherwise).
_state_version = [0]


_UNSET = object()
_EXTRA_STATE = "_extra_state"          # state_dict key of get_extra_state()'s value
_SCALARS = (bool, int, float, str, type(None))


def state_version() -> int:
    """A number that changes whenever any module's parameters, buffers, submodules or tensor
    attributes are added, replaced or removed, or a number / string / bool attribute changes value."""
    return _state_version[0]


class _Registry(OrderedDict):
    """The _parameters / _buffers / _modules dict of a Module: an OrderedDict whose every change
    bumps the module state version (containers and load_state_dict write into it directly)."""

    def __setitem__(self, key, value):
        _state_version[0] += 1
        super().__setitem__(key, value)

    def __delitem__(self, key):
        _state_version[0] += 1
        super().__delitem__(key)

    def _bumped(name):
        def method(self, *args, **kwargs):
            _state_version[0] += 1
            return getattr(OrderedDict, name)(self, *args, **kwargs)
        method.__name__ = name
        return method

    def __reduce__(self):
        # pickled as a plain OrderedDict: a checkpoint names no ember-internal class (weights-only
        # loads allow-list classes); Module.__setstate__ makes it a _Registry again
        return OrderedDict, (list(self.items()),)

    pop = _bumped("pop")
    popitem = _bumped("popitem")
    clear = _bumped("clear")
    update = _bumped("update")
    setdefault = _bumped("setdefault")
    move_to_end = _bumped("move_to_end")
    del _bumped


_global_forward_pre_hooks = _HookDict()
_global_forward_hooks = _HookDict()


def register_module_forward_pre_hook(hook):
    h = RemovableHandle(_global_forward_pre_hooks)
    _global_forward_pre_hooks[h.id] = hook
    return h


def register_module_forward_hook(hook):
    h = RemovableHandle(_global_forward_hooks)
    _global_forward_hooks[h.id] = hook
    return h


def _note_store(module, name) -> None:
    """While ember.compile traces, tell the tracer about an attribute store on a module: it replays
    stores of traced tensors after every compiled call and undoes the trace's stores on a graph break."""
    tr = _dispatch.current_tracer()
    if tr is not None:
        tr.module_store(module, name)


class Module:
    """Base class for all neural network modules (PyTorch's nn.Module)."""

    training: bool
    _version = 1
    call_super_init = False

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments {args} {kwargs}")
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = _Registry()
        d["_buffers"] = _Registry()
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = _Registry()
        d["_forward_hooks"] = _HookDict()
        d["_forward_hooks_with_kwargs"] = {}
        d["_forward_hooks_always_called"] = {}
        d["_forward_pre_hooks"] = _HookDict()
        d["_forward_pre_hooks_with_kwargs"] = {}
        d["_backward_hooks"] = _HookDict()
        d["_state_dict_hooks"] = _HookDict()
        d["_load_state_dict_pre_hooks"] = _HookDict()
        d["_load_state_dict_post_hooks"] = _HookDict()

    forward: Callable[..., Any]

    def forward(self, *input):  # noqa: F811
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # ---------------------------------------------------------------------------- registration
    def _check_init(self):
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign before Module.__init__() call")

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        self._check_init()
        if _dispatch._tracing:
            _note_store(self, name)
        if not isinstance(name, str):
            raise TypeError(f"buffer name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError('buffer name can\'t contain "."')
        if name == "":
            raise KeyError('buffer name can\'t be empty string ""')
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(torch Tensor or None required)")
        if isinstance(tensor, Buffer):
            persistent = tensor.persistent
            tensor = tensor.detach()
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_init()
        if not isinstance(name, str):
            raise TypeError(f"parameter name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError('parameter name can\'t contain "."')
        if name == "":
            raise KeyError('parameter name can\'t be empty string ""')
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is None:
            self._parameters[name] = None
            return
        if not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(torch.nn.Parameter or None required)")
        if param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model parameters must be "
                             f"created explicitly. To express '{name}' as a function of another Tensor, compute "
                             "the value in the forward() method.")
        self._parameters[name] = param

    def add_module(self, name: str, module: "Module | None") -> None:
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {type(name).__name__}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f'module name can\'t contain ".", got: {name}')
        if name == "":
            raise KeyError('module name can\'t be empty string ""')
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> "Module":
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if not hasattr(mod, item):
                raise AttributeError(mod._get_name() + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    def set_submodule(self, target: str, module: "Module") -> None:
        *path, last = target.split(".")
        parent = self.get_submodule(".".join(path))
        setattr(parent, last, module)

    def _get_attr_at(self, target, kind, registry):
        module_path, _, name = target.rpartition(".")
        mod = self.get_submodule(module_path)
        if not hasattr(mod, name):
            raise AttributeError(mod._get_name() + " has no attribute `" + name + "`")
        if name not in getattr(mod, registry):
            raise AttributeError("`" + name + "` is not " + kind)
        return getattr(mod, name)

    def get_parameter(self, target: str) -> Parameter:
        return self._get_attr_at(target, "an nn.Parameter", "_parameters")

    def get_buffer(self, target: str) -> Tensor:
        return self._get_attr_at(target, "a buffer", "_buffers")

    # ------------------------------------------------------------------------ attribute access
    def __getattr__(self, name: str):
        d = self.__dict__
        if "_parameters" in d and name in d["_parameters"]:
            return d["_parameters"][name]
        if "_buffers" in d and name in d["_buffers"]:
            return d["_buffers"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value) -> None:
        if _dispatch._tracing:
            _note_store(self, name)
        def remove_from(*dicts_or_sets):
            for d in dicts_or_sets:
                if name in d:
                    if isinstance(d, dict):
                        del d[name]
                    else:
                        d.discard(name)

        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            remove_from(self.__dict__, self._buffers, self._modules, self._non_persistent_buffers_set)
            self.register_parameter(name, value)
            return
        if params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(torch.nn.Parameter or None expected)")
            self.register_parameter(name, value)
            return
        modules = self.__dict__.get("_modules")
        if isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            remove_from(self.__dict__, self._parameters, self._buffers, self._non_persistent_buffers_set)
            modules[name] = value
            return
        if modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(torch.nn.Module or None expected)")
            modules[name] = value
            return
        buffers = self.__dict__.get("_buffers")
        if isinstance(value, Buffer) or (buffers is not None and name in buffers):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(torch.Tensor or None expected)")
            if isinstance(value, Buffer):
                persistent = value.persistent
            else:
                persistent = name not in self._non_persistent_buffers_set
            remove_from(self.__dict__)
            self.register_buffer(name, value, persistent)
            return
        old = self.__dict__.get(name, _UNSET)
        if isinstance(value, Tensor) or isinstance(old, Tensor):
            _state_version[0] += 1      # a tensor attribute compiled code may read (self.mask = ...)
        elif type(value) in _SCALARS and (type(old) is not type(value) or old != value):
            _state_version[0] += 1      # a number compiled code specialised on (Dropout.p, self.temperature)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers_set.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            if isinstance(self.__dict__.get(name), Tensor):
                _state_version[0] += 1
            object.__delattr__(self, name)

    def __dir__(self):
        attrs = dir(type(self))
        keys = (attrs + list(self.__dict__) + list(self._parameters) + list(self._modules)
                + list(self._buffers))
        return sorted(k for k in set(keys) if not k[:1].isdigit())

    def __setstate__(self, state):
        self.__dict__.update(state)
        for reg in ("_parameters", "_buffers", "_modules"):    # pickles from before _Registry
            r = self.__dict__.get(reg)
            if r is not None and not isinstance(r, _Registry):
                self.__dict__[reg] = _Registry(r)

    # ------------------------------------------------------------------------------- iteration
    def _named_members(self, get_members, prefix="", recurse=True, remove_duplicate=True):
        memo = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for module_prefix, module in modules:
            for k, v in get_members(module):
                if v is None or (remove_duplicate and id(v) in memo):
                    continue
                if remove_duplicate:
                    memo.add(id(v))
                yield (module_prefix + ("." if module_prefix else "") + k, v)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def named_children(self):
        memo = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in memo:
                memo.add(id(m))
                yield name, m

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        # iterative pre-order walk (deep models must not hit the recursion limit)
        if memo is None:
            memo = set()
        stack = [(prefix, self)]
        while stack:
            pfx, mod = stack.pop()
            if remove_duplicate:
                if id(mod) in memo:
                    continue
                memo.add(id(mod))
            yield pfx, mod
            kids = [(pfx + ("." if pfx else "") + name, m) for name, m in mod._modules.items() if m is not None]
            stack.extend(reversed(kids))

    # --------------------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for m in self.children():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                if p.grad is not None or tracing_hooks.active():   # traced: .grad is None after, whatever before
                    tracing_hooks.set_grad(p, None)
            elif p.grad is not None:
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                p.grad.zero_()

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---------------------------------------------------------------------- dtype and device
    def _apply(self, fn, recurse=True):
        """Apply fn to every parameter, buffer and gradient, in place (Parameters keep identity)."""
        if recurse:
            for m in self.children():
                m._apply(fn)
        with ag.no_grad():
            for key, p in self._parameters.items():
                if p is None:
                    continue
                new = fn(p)
                if new is not p:
                    p.data = new
                if p.grad is not None:
                    g = fn(p.grad)
                    if g is not p.grad:
                        p.grad = g.detach()
            for key, b in self._buffers.items():
                if b is not None:
                    self._buffers[key] = fn(b)
        return self

    def to(self, *args, **kwargs) -> "Module":
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() received unexpected keyword arguments {list(kwargs)}")
        for a in args:
            if isinstance(a, dt.DType):
                dtype = a
            elif isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif a is not None:
                device = a
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point or complex dtypes, but got desired "
                            f"dtype={dtype}")

        def convert(t):
            r = t
            if device is not None:
                r = r.to(device)
            if dtype is not None and r.dtype.is_floating_point:
                r = r.to(dtype)
            return r
        return self._apply(convert)

    def _cast_float(self, d):
        return self._apply(lambda t: t.to(d) if t.dtype.is_floating_point else t)

    def float(self) -> "Module":
        return self._cast_float(dt.float32)

    def double(self) -> "Module":
        return self._cast_float(dt.float64)

    def half(self) -> "Module":
        return self._cast_float(dt.float16)

    def bfloat16(self) -> "Module":
        return self._cast_float(dt.bfloat16)

    def type(self, dst_type) -> "Module":
        return self._apply(lambda t: t.to(dst_type))

    def cpu(self) -> "Module":
        return self._apply(lambda t: t.to("cpu"))

    def cuda(self, device=None) -> "Module":
        return self._apply(lambda t: t.to("cuda" if device is None else device))

    def share_memory(self) -> "Module":
        return self

    # ---------------------------------------------------------------------------- state dict
    def get_extra_state(self):
        """A module's state that is not a parameter or buffer, saved in state_dict as `<prefix>_extra_state`
        when a subclass defines it (with set_extra_state to restore it)."""
        raise RuntimeError("Reached a code path in Module.get_extra_state() that should never be called.")

    def set_extra_state(self, state) -> None:
        raise RuntimeError("Reached a code path in Module.set_extra_state() that should never be called.")

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()
        if type(self).get_extra_state is not Module.get_extra_state:
            destination[prefix + _EXTRA_STATE] = self.get_extra_state()

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        if args:  # the old positional form state_dict(destination, prefix, keep_vars)
            destination = args[0]
            if len(args) > 1:
                prefix = args[1]
            if len(args) > 2:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()
        meta = getattr(destination, "_metadata", None)
        if meta is not None:
            meta[prefix[:-1]] = {"version": self._version}
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        for hook in self._state_dict_hooks.values():
            r = hook(self, destination, prefix, {})
            if r is not None:
                destination = r
        return destination

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for hook in self._load_state_dict_pre_hooks.values():
            hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        persistent = {k: v for k, v in self._buffers.items() if k not in self._non_persistent_buffers_set}
        local = {k: v for k, v in itertools.chain(self._parameters.items(), persistent.items()) if v is not None}
        for name, param in local.items():
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor):
                error_msgs.append(f'While copying the parameter named "{key}", expected torch.Tensor or '
                                  f"Tensor-like object from checkpoint but received {type(value)}")
                continue
            if tuple(value.shape) != tuple(param.shape):
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {value.shape} from "
                                  f"checkpoint, the shape in current model is {param.shape}.")
                continue
            try:
                with ag.no_grad():
                    param.copy_(value)
            except Exception as e:  # noqa: BLE001  (reported like PyTorch, with the key)
                error_msgs.append(f'While copying the parameter named "{key}", whose dimensions in the model '
                                  f"are {param.shape} and whose dimensions in the checkpoint are {value.shape}, "
                                  f"an exception occurred : {e.args}.")
        extra = type(self).set_extra_state is not Module.set_extra_state
        if extra:
            if prefix + _EXTRA_STATE in state_dict:
                self.set_extra_state(state_dict[prefix + _EXTRA_STATE])
            elif strict:
                missing_keys.append(prefix + _EXTRA_STATE)
        if strict:
            for key in state_dict:
                if key.startswith(prefix):
                    input_name = key[len(prefix):].split(".", 1)
                    if input_name[0] not in self._modules and input_name[0] not in local and \
                            not (extra and input_name[0] == _EXTRA_STATE):
                        unexpected_keys.append(key)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if not isinstance(state_dict, dict):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing, unexpected, errors = [], [], []
        metadata = getattr(state_dict, "_metadata", None)
        state_dict = OrderedDict(state_dict)
        # iterative walk: (module, prefix)
        stack = [(self, "")]
        while stack:
            mod, prefix = stack.pop()
            local_meta = {} if metadata is None else metadata.get(prefix[:-1], {})
            if assign:
                mod._assign_from_state_dict(state_dict, prefix, strict, missing, errors)
            else:
                mod._load_from_state_dict(state_dict, prefix, local_meta, True, missing, unexpected, errors)
            kids = [(child, prefix + name + ".") for name, child in mod._modules.items() if child is not None]
            stack.extend(reversed(kids))
            for hook in mod._load_state_dict_post_hooks.values():
                hook(mod, _IncompatibleKeys(missing, unexpected))
        if assign:
            unexpected = self._unexpected_for_assign(state_dict)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        return _IncompatibleKeys(missing, unexpected)

    def _assign_from_state_dict(self, state_dict, prefix, strict, missing, errors):
        for name, p in list(self._parameters.items()):
            key = prefix + name
            if p is None:
                continue
            if key not in state_dict:
                missing.append(key)
                continue
            v = state_dict[key]
            if tuple(v.shape) != tuple(p.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape {v.shape} from checkpoint, "
                              f"the shape in current model is {p.shape}.")
                continue
            self._parameters[name] = v if isinstance(v, Parameter) else Parameter(v.detach(), p.requires_grad)
        for name, b in list(self._buffers.items()):
            key = prefix + name
            if b is None or name in self._non_persistent_buffers_set:
                continue
            if key not in state_dict:
                missing.append(key)
                continue
            self._buffers[name] = state_dict[key]
        if type(self).set_extra_state is not Module.set_extra_state:
            if prefix + _EXTRA_STATE in state_dict:
                self.set_extra_state(state_dict[prefix + _EXTRA_STATE])
            elif strict:
                missing.append(prefix + _EXTRA_STATE)

    def _unexpected_for_assign(self, state_dict):
        known = set(self.state_dict().keys())
        return [k for k in state_dict if k not in known]

    def register_state_dict_pre_hook(self, hook):
        raise NotImplementedError("register_state_dict_pre_hook is not supported by ember")

    def _register_state_dict_hook(self, hook):
        h = RemovableHandle(self._state_dict_hooks)
        self._state_dict_hooks[h.id] = hook
        return h

    register_state_dict_post_hook = _register_state_dict_hook

    def _register_load_state_dict_pre_hook(self, hook, with_module=False):
        h = RemovableHandle(self._load_state_dict_pre_hooks)
        self._load_state_dict_pre_hooks[h.id] = functools.partial(hook, module=self) if with_module else hook
        return h

    def register_load_state_dict_post_hook(self, hook):
        h = RemovableHandle(self._load_state_dict_post_hooks)
        self._load_state_dict_post_hooks[h.id] = hook
        return h

    # ---------------------------------------------------------------------------------- hooks
    def register_forward_pre_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False):
        h = RemovableHandle(self._forward_pre_hooks, self._forward_pre_hooks_with_kwargs)
        self._forward_pre_hooks[h.id] = hook
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs[h.id] = True
        if prepend:
            self._forward_pre_hooks.move_to_end(h.id, last=False)
        return h

    def register_forward_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False):
        h = RemovableHandle(self._forward_hooks, self._forward_hooks_with_kwargs,
                            self._forward_hooks_always_called)
        self._forward_hooks[h.id] = hook
        if with_kwargs:
            self._forward_hooks_with_kwargs[h.id] = True
        if always_call:
            self._forward_hooks_always_called[h.id] = True
        if prepend:
            self._forward_hooks.move_to_end(h.id, last=False)
        return h

    def register_full_backward_hook(self, hook, prepend: bool = False):
        """hook(module, grad_input, grad_output) -> None or new grad_input (nn/modules/backward_hooks.py)."""
        return self._add_hook(self._backward_hooks, hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend: bool = False):
        """hook(module, grad_output) -> None or new grad_output, before the module's gradients are computed."""
        return self._add_hook(self.__dict__.setdefault("_backward_pre_hooks", _HookDict()), hook, prepend)

    register_backward_hook = register_full_backward_hook

    @staticmethod
    def _add_hook(table, hook, prepend):
        h = RemovableHandle(table)
        table[h.id] = hook
        if prepend:
            table.move_to_end(h.id, last=False)
        return h

    def _call_impl(self, *args, **kwargs):
        if not (self._forward_hooks or self._forward_pre_hooks or _global_forward_hooks
                or _global_forward_pre_hooks or self._backward_hooks or self.__dict__.get("_backward_pre_hooks")):
            return self.forward(*args, **kwargs)
        for hid, hook in itertools.chain(_global_forward_pre_hooks.items(), self._forward_pre_hooks.items()):
            if self._forward_pre_hooks_with_kwargs.get(hid):
                r = hook(self, args, kwargs)
                if r is not None:
                    if not (isinstance(r, tuple) and len(r) == 2):
                        raise RuntimeError("forward pre-hook must return None or a tuple of (new_args, "
                                           f"new_kwargs), but got {r}.")
                    args, kwargs = r
            else:
                r = hook(self, args)
                if r is not None:
                    args = r if isinstance(r, tuple) else (r,)
        bw = BackwardHooks(self, self._backward_hooks.values(), self.__dict__.get("_backward_pre_hooks", {}).values()) \
            if BackwardHooks.wanted(self) else None
        if bw is not None:
            args = bw.wrap_inputs(args)
        try:
            result = self.forward(*args, **kwargs)
        except Exception:
            self._always_called_hooks(args, kwargs)
            raise
        for hid, hook in itertools.chain(_global_forward_hooks.items(), self._forward_hooks.items()):
            if self._forward_hooks_with_kwargs.get(hid):
                r = hook(self, args, kwargs, result)
            else:
                r = hook(self, args, result)
            if r is not None:
                result = r
        return result if bw is None else bw.wrap_outputs(result)

    def _always_called_hooks(self, args, kwargs):
        """forward raised: the hooks registered with always_call=True still run (result None), as in PyTorch;
        an error of theirs is a warning, the forward's error propagates."""
        for hid, hook in self._forward_hooks.items():
            if not self._forward_hooks_always_called.get(hid):
                continue
            try:
                if self._forward_hooks_with_kwargs.get(hid):
                    hook(self, args, kwargs, None)
                else:
                    hook(self, args, None)
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"forward hook with ``always_call=True`` raised an exception that was silenced "
                              f"as another error was raised in forward: {e}")

    __call__ = _call_impl

    # ---------------------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = ["(" + key + "): " + _addindent(repr(m), 2) for key, m in self._modules.items()]
        lines = extra_lines + child_lines
        s = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                s += extra_lines[0]
            else:
                s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"

    def compile(self, *args, **kwargs):
        import ember
        compiled = ember.compile(self, *args, **kwargs)
        self.__dict__["_compiled_call_impl"] = compiled
        return compiled
