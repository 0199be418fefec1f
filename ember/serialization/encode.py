"""Python object -> the checkpoint header's JSON tree (without recursion: deep nests are fine).

In:  the object given to ember.save.
Out: (root node, StoragePlan holding every tensor met). Tensor records are filled in by `finish()`.

Node vocabulary (docs/serialization.md has the table): JSON scalars for None/bool/int/str/finite
float, single-key tagged objects for everything else ({"$list": [...]}, {"$tensor": record}, ...).
Whole objects (a Module, an optimizer) follow Python's pickle protocol (`__reduce_ex__`): their class
is named ({"$global": [module, qualname]}) and their state is encoded like any other value, so a file
never contains code, only names that ember.load resolves under its weights_only rules.
An object met twice is written once; later uses are {"$ref": n} to the node carrying "$id": n, so
tied weights, shared lists and cycles come back as the same objects.
"""
from __future__ import annotations

import copyreg
import math
import sys
import types
from collections import OrderedDict

import numpy as np

from ..frontend.device import device as _device
from ..frontend.tensor import Size, Tensor, _wrap
from ..ir import dtypes as dt
from .storages import StoragePlan

# values with identity (and mutability): memoised so that sharing and cycles survive the round trip
_NATIVE_CONTAINERS = (list, dict, OrderedDict, set, frozenset, tuple)


class _Done:
    """A task marker: the object's constructor arguments are written (references to it are now legal)."""
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


def encode(obj):
    """-> (root node, StoragePlan, tensor_nodes: list of (node, key, plan index))."""
    enc = _Encoder()
    root = enc.run(obj)
    return root, enc.plan, enc.tensor_nodes


class _Encoder:
    def __init__(self):
        self.plan = StoragePlan()
        self.tensor_nodes: list = []
        self.memo: dict[int, dict] = {}       # id(obj) -> its node
        self.alive: list = []                  # keeps memoised temporaries alive (ids stay unique)
        self.pending: set = set()              # ids whose node cannot be referenced yet
        self.next_id = 0

    def run(self, obj):
        out: list = []
        tasks = [(obj, "obj", out)]
        while tasks:
            task = tasks.pop()
            if isinstance(task, _Done):
                self.pending.discard(task.key)
                continue
            if isinstance(task, _Unwrap):
                task.node[task.key] = task.holder[0]
                continue
            value, path, sink = task
            node, children = self.node(value, path)
            sink.append(node)
            tasks.extend(reversed(children))
        return out[0]

    # ---------------------------------------------------------------------------- one value
    def node(self, obj, path):
        """-> (node, child tasks). Child tasks append their nodes into lists inside `node`."""
        if obj is None or type(obj) in (bool, int, str):
            return obj, ()
        if type(obj) is float:
            return (obj if math.isfinite(obj) else {"$float": repr(obj)}), ()
        if isinstance(obj, np.generic) and not isinstance(obj, np.void):
            return self._numpy_scalar(obj, path)
        ref = self._ref(obj, path)
        if ref is not None:
            return ref, ()
        if isinstance(obj, Tensor):
            node = {"$tensor": None}
            self.tensor_nodes.append((node, "$tensor", self.plan.add(obj)))
            self._remember(obj, node)
            return node, ()
        if isinstance(obj, np.ndarray) and obj.dtype != object:
            return self._ndarray(obj, path), ()
        t = type(obj)
        if t is complex:
            return {"$complex": [obj.real, obj.imag]}, ()
        if t is bytes:
            return {"$bytes": obj.hex()}, ()
        if t is bytearray:
            node = {"$bytearray": obj.hex()}
            self._remember(obj, node)
            return node, ()
        if isinstance(obj, dt.DType):
            return {"$dtype": obj.name}, ()
        if t is _device:
            return {"$device": str(obj)}, ()
        if t is Size:
            return {"$size": [int(n) for n in obj]}, ()
        if t in _NATIVE_CONTAINERS:
            return self._container(obj, path)
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            return {"$global": _global_name(obj, path)}, ()
        return self._object(obj, path)

    def _numpy_scalar(self, obj, path):
        if isinstance(obj, np.bool_):
            return bool(obj), ()
        if isinstance(obj, np.integer):
            return int(obj), ()
        if isinstance(obj, np.floating):
            return self.node(float(obj), path)
        if isinstance(obj, np.complexfloating):
            return self.node(complex(obj), path)
        return self._object(obj, path)

    def _ndarray(self, a, path):
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        try:
            t = _wrap(a)
        except KeyError:
            raise _unsaveable(a, path, f"numpy arrays of dtype {a.dtype} have no ember dtype") from None
        node = {"$ndarray": None}
        self.tensor_nodes.append((node, "$ndarray", self.plan.add(t)))
        self._remember(a, node)
        self.alive.append(t)
        return node

    def _container(self, obj, path):
        t = type(obj)
        if t in (dict, OrderedDict):
            items = []
            node = {"$odict" if t is OrderedDict else "$dict": items}
            self._remember(obj, node)
            tasks = []
            for k, v in obj.items():
                pair: list = []
                items.append(pair)
                tasks += [(k, f"{path}.<key>", pair), (v, f"{path}[{k!r}]", pair)]
            meta = getattr(obj, "_metadata", None)
            if meta is not None:       # Module.state_dict() carries per-module versions, as in PyTorch
                holder: list = []
                node["$metadata"] = holder
                tasks.append((meta, f"{path}._metadata", holder))
                tasks.append(_Unwrap(node, "$metadata", holder))
            return node, tasks
        items = []
        tag = {list: "$list", tuple: "$tuple", set: "$set", frozenset: "$frozenset"}[t]
        node = {tag: items}
        if obj or t not in (tuple, frozenset):     # (empty immutables need no identity)
            self._remember(obj, node)
        tasks: list = []
        if t is tuple:                 # a tuple exists only once its items do: no references inside
            self.pending.add(id(obj))
            tasks.append(_Done(id(obj)))
        tasks = [(v, f"{path}[{i}]" if t in (list, tuple) else f"{path}.<item>", items)
                 for i, v in enumerate(obj)] + tasks
        return node, tasks

    def _object(self, obj, path):
        """A whole object through the pickle protocol: class (or callable) by name plus its state."""
        try:
            reduce = copyreg.dispatch_table.get(type(obj))
            rv = reduce(obj) if reduce is not None else obj.__reduce_ex__(4)
        except Exception as e:
            raise _unsaveable(obj, path, f"{type(e).__name__}: {e}") from None
        if isinstance(rv, str):
            return {"$global": _global_name(obj, path, rv)}, ()
        if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
            raise _unsaveable(obj, path, "its __reduce__ returned neither a string nor a 2 to 6 item tuple")
        fn, args, state, listitems, dictitems, setter = rv + (None,) * (6 - len(rv))
        kwargs = None
        if fn is copyreg.__newobj__:
            tag, fn, args = "$new", args[0], tuple(args[1:])
        elif getattr(fn, "__name__", None) == "__newobj_ex__" and getattr(fn, "__module__", None) == "copyreg":
            tag, (fn, args, kwargs) = "$new", args
            args = tuple(args)
        else:
            tag = "$call"
        if tag == "$new" and not isinstance(fn, type):
            raise _unsaveable(obj, path, "its __reduce__ names a class that is not a type")
        children: list = []
        fn_task = [(fn, f"{path}.__reduce__()[0]", children)]
        if isinstance(fn, (type, types.FunctionType, types.BuiltinFunctionType)):
            # the usual case: a class or function by name (a failure names obj and its path)
            children.append({"$global": _global_name(fn, path, owner=obj)})
            fn_task = []
        node = {tag: children}
        self._remember(obj, node)
        self.pending.add(id(obj))
        args = tuple(args)
        listitems = None if listitems is None else list(listitems)
        dictitems = None if dictitems is None else [list(kv) for kv in dictitems]
        self.alive += [args, kwargs, state, listitems, dictitems]
        tasks = fn_task + [(args, f"{path}.__reduce__()[1]", children),
                 (kwargs, f"{path}.__reduce__()[1]", children), _Done(id(obj)),
                 (state, f"{path}.__dict__", children), (listitems, f"{path}.<items>", children),
                 (dictitems, f"{path}.<items>", children), (setter, f"{path}.__setstate__", children)]
        return node, tasks

    # ----------------------------------------------------------------------------- memo
    def _ref(self, obj, path):
        node = self.memo.get(id(obj))
        if node is None:
            return None
        if id(obj) in self.pending:
            raise TypeError(f"ember.save: cannot save {type(obj).__qualname__} at {path}: it refers to itself "
                            "from inside its own constructor arguments (or a tuple that contains it)")
        if "$id" not in node:
            node["$id"] = self.next_id
            self.next_id += 1
        return {"$ref": node["$id"]}

    def _remember(self, obj, node):
        self.memo[id(obj)] = node
        self.alive.append(obj)


class _Unwrap:
    """A task that replaces node[key] = [value] by value once the value's node is built."""
    __slots__ = ("node", "key", "holder")

    def __init__(self, node, key, holder):
        self.node, self.key, self.holder = node, key, holder


def _global_name(obj, path, name=None, owner=None) -> list:
    """[module, qualname] for a class or function that ember.load can find again by that name
    (errors name `owner`, the object being saved, when given)."""
    qual = name or getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module = getattr(obj, "__module__", None)
    if module is None or name is not None:
        module = _which_module(obj, qual)
    if qual is None or "<locals>" in qual or "<lambda>" in qual:
        raise _unsaveable(obj if owner is None else owner, path, "it is defined inside a function (or is a "
                                                                 "lambda), so it cannot be found by name when "
                                                                 "the file is loaded")
    found = sys.modules.get(module)
    for part in qual.split("."):
        found = getattr(found, part, None)
    if found is not obj:
        raise _unsaveable(obj if owner is None else owner, path, f"{qual} is not the same object as {module}.{qual}")
    return [module, qual]


def _which_module(obj, qual):
    for name, module in list(sys.modules.items()):
        if module is None or name == "__main__":
            continue
        found = module
        for part in (qual or "").split("."):
            found = getattr(found, part, None)
        if found is obj:
            return name
    return "__main__"


def _unsaveable(obj, path, why) -> TypeError:
    t = obj if isinstance(obj, type) else type(obj)
    return TypeError(f"ember.save: cannot save an object of type {t.__module__}.{t.__qualname__} (at {path}): {why}")
