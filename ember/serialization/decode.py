"""The checkpoint header's JSON tree -> Python objects (iterative: deep nests never recurse).

In:  the parsed header root, the storages (1-D uint8 arrays), the format version, load()'s options.
Out: the saved object. Every malformed node raises the documented "truncated/damaged" error.

Safety: with weights_only=True every class or function the file names ({"$global": ...}) must be on
the allow-list (allowlist.py); the names are checked in one pass over the header *before* anything
is built, and the refusal names all of them. Only allowed classes are instantiated, and only allowed
callables are called, as PyTorch's weights-only unpickler does. With weights_only=False names are
imported like pickle does (the caller trusts the file).
"""
from __future__ import annotations

import importlib
import pickle
from collections import OrderedDict


from ..frontend.device import canonical, device as _device
from ..frontend.tensor import Size, _wrap
from . import allowlist as sg
from .format import CheckpointDamagedError, check_dict, check_int, check_list, damaged, dtype_of
from .storages import view

_CONTAINERS = frozenset(("$list", "$tuple", "$set", "$frozenset", "$dict", "$odict", "$new", "$call"))
_LEAVES = frozenset(("$tensor", "$ndarray", "$float", "$complex", "$bytes", "$bytearray", "$dtype", "$device",
                     "$size", "$global", "$ref"))


class _UserCodeError(Exception):
    """Wraps an exception raised by code the caller chose to run (map_location, trusted classes)."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def decode(root, storages, storage_dtypes, version, path, map_location, weights_only):
    d = _Decoder(storages, storage_dtypes, version, path, map_location, weights_only)
    try:
        return d.run(root)
    except (CheckpointDamagedError, pickle.UnpicklingError):
        raise
    except _UserCodeError as u:
        raise u.error.with_traceback(u.error.__traceback__) from None
    except RecursionError:
        raise damaged(path, "the header nests too deeply") from None
    except Exception as e:        # a malformed node that slipped past the explicit checks
        raise damaged(path, f"malformed header ({type(e).__name__}: {str(e)[:200]})") from None


class _Decoder:
    def __init__(self, storages, storage_dtypes, version, path, map_location, weights_only):
        self.storages = storages
        self.storage_dtypes = storage_dtypes
        self.version = version
        self.path = path
        self.map_location = map_location
        self.weights_only = weights_only
        self.memo: dict[int, object] = {}
        self.versions: dict[int, list] = {}          # storage -> the version counter its tensors share
        self.allowed = sg.allowed() if weights_only else None
        self.allowed_ids = {id(v) for v in self.allowed.values()} if weights_only else None

    # ------------------------------------------------------------------------------ driver
    def run(self, root):
        if self.weights_only:
            refused = [n for n in global_names(root, self.path) if n not in self.allowed]
            if refused:
                raise sg.refusal(refused)
        from ..frontend import autograd as ag
        with ag.no_grad():
            return self._build(root)

    def _build(self, root):
        tag = self._tag(root)
        if tag not in _CONTAINERS:
            return self._leaf(root, tag)
        stack = [self._frame(root, tag)]
        sent = None
        while True:
            try:
                child = stack[-1].send(sent)
            except StopIteration as done:
                stack.pop()
                if not stack:
                    return done.value
                sent = done.value
                continue
            tag = self._tag(child)
            if tag in _CONTAINERS:
                stack.append(self._frame(child, tag))
                sent = None
            else:
                sent = self._leaf(child, tag)

    def _tag(self, node):
        """The node's tag (None for a JSON scalar); checks the node's shape."""
        if node is None or type(node) in (bool, int, float, str):
            return None
        if type(node) is not dict or not node:
            raise damaged(self.path, f"unexpected header node {str(node)[:60]}")
        tag = next(iter(node))
        extra = set(node) - {tag, "$id", "$metadata"}
        if tag not in _CONTAINERS and tag not in _LEAVES or extra or (
                "$metadata" in node and tag not in ("$dict", "$odict")):
            raise damaged(self.path, f"unknown header node {str(node)[:60]}")
        return tag

    def _register(self, node, value):
        k = node.get("$id")
        if k is not None:
            check_int(k, self.path, "object id", 0, 1 << 62)
            if k in self.memo:
                raise damaged(self.path, f"object id {k} defined twice")
            self.memo[k] = value

    # ------------------------------------------------------------------------------ leaves
    def _leaf(self, node, tag):
        if tag is None:
            return node
        v = node[tag]
        if tag == "$ref":
            k = check_int(v, self.path, "object reference", 0, 1 << 62)
            if k not in self.memo:
                raise damaged(self.path, f"reference to object {k} before it is complete")
            return self.memo[k]
        if tag in ("$tensor", "$ndarray"):
            value = self._tensor(check_dict(v, self.path, "tensor record"), tag == "$tensor")
        elif tag == "$float":
            if type(v) is not str or v.lower().lstrip("+-") not in ("nan", "inf", "infinity"):
                raise damaged(self.path, f"bad float {str(v)[:40]!r}")
            value = float(v)
        elif tag == "$complex":
            if type(v) is not list or len(v) != 2 or any(type(x) not in (int, float) for x in v):
                raise damaged(self.path, "bad complex number")
            value = complex(v[0], v[1])
        elif tag in ("$bytes", "$bytearray"):
            if type(v) is not str:
                raise damaged(self.path, "bytes are not a hex string")
            value = bytes.fromhex(v) if tag == "$bytes" else bytearray.fromhex(v)
        elif tag == "$dtype":
            value = dtype_of(v, self.path)
        elif tag == "$device":
            if type(v) is not str:
                raise damaged(self.path, "device is not a string")
            value = _device(v)
        elif tag == "$size":
            value = Size(check_int(n, self.path, "size") for n in check_list(v, self.path, "size"))
        else:   # $global
            value = self._global(v)
        self._register(node, value)
        return value

    def _tensor(self, rec, is_tensor):
        s = check_int(rec.get("storage"), self.path, "storage index", 0, len(self.storages))
        arr = view(self.storages[s], rec, self.path, self.version, self.storage_dtypes[s])
        if not is_tensor:
            return arr
        saved = rec.get("device", "cpu")
        if type(saved) is not str:
            raise damaged(self.path, "tensor device is not a string")
        canonical(saved)                          # a malformed device string is damage, not a CUDA error
        rg, param = rec.get("requires_grad", False), rec.get("parameter", False)
        if type(rg) is not bool or type(param) is not bool:
            raise damaged(self.path, "requires_grad/parameter flags are not booleans")
        t = _wrap(arr)
        if (rg or param and rec.get("requires_grad", True)) and not t.dtype.is_floating_point:
            raise damaged(self.path, f"a {t.dtype.name} tensor cannot require gradients")
        t._vc = self.versions.setdefault(s, t._vc)    # views of one storage share a version counter
        ml = self.map_location
        if callable(ml) and not isinstance(ml, (dict, str, _device)):
            t = _user(ml, t, saved)
        else:
            target = _target_device(saved, ml)
            if target.type != "cpu":
                t = _user(t.to, target)
        if param:
            from ..nn import Parameter
            t = Parameter(t, requires_grad=rec.get("requires_grad", True))
        elif rg:
            t.requires_grad = True
        return t

    def _global(self, v):
        if type(v) is not list or len(v) != 2 or any(type(x) is not str for x in v):
            raise damaged(self.path, f"bad global name {str(v)[:60]}")
        module, qual = v
        if self.weights_only:
            return self.allowed[f"{module}.{qual}"]      # checked before building started
        return _user(_import, module, qual)

    # ------------------------------------------------------------------------------ containers
    def _frame(self, node, tag):
        items = check_list(node[tag], self.path, tag)
        if tag == "$list":
            return self._list(node, items)
        if tag in ("$dict", "$odict"):
            return self._dict(node, items, tag == "$odict")
        if tag in ("$new", "$call"):
            if len(items) != 7:
                raise damaged(self.path, f"{tag} node with {len(items)} parts")
            return self._object(node, items, tag == "$new")
        return self._collection(node, items, {"$tuple": tuple, "$set": set, "$frozenset": frozenset}[tag])

    def _list(self, node, items):
        value: list = []
        self._register(node, value)
        for c in items:
            value.append((yield c))
        return value

    def _collection(self, node, items, kind):
        built = []
        for c in items:
            built.append((yield c))
        value = kind(built)
        self._register(node, value)
        return value

    def _dict(self, node, items, ordered):
        value = OrderedDict() if ordered else {}
        self._register(node, value)
        for kv in items:
            if type(kv) is not list or len(kv) != 2:
                raise damaged(self.path, "dict entry is not a [key, value] pair")
            k = yield kv[0]
            v = yield kv[1]
            value[tuple(k) if isinstance(k, list) else k] = v
        if "$metadata" in node:
            meta = yield node["$metadata"]
            if ordered:       # a state_dict's per-module versions (format 1 wrote it on OrderedDicts)
                value._metadata = meta
        return value

    def _object(self, node, parts, new):
        fn = yield parts[0]
        args = yield parts[1]
        kwargs = yield parts[2]
        if type(args) is not tuple or not (kwargs is None or type(kwargs) is dict):
            raise damaged(self.path, "object arguments are not a tuple and a dict")
        self._check_callable(fn, "class" if new else "function")
        if new:
            if not isinstance(fn, type):
                raise damaged(self.path, f"{fn!r} is not a class")
            obj = _user(fn.__new__, fn, *args, **(kwargs or {}))
        else:
            if kwargs is not None:
                raise damaged(self.path, "a call node with keyword arguments")
            obj = _user(fn, *args)
        self._register(node, obj)
        state = yield parts[3]
        listitems = yield parts[4]
        dictitems = yield parts[5]
        setter = yield parts[6]
        if (state is not None or listitems or dictitems) and self.weights_only and \
                id(type(obj)) not in self.allowed_ids and type(obj) not in (list, dict, OrderedDict, set):
            raise pickle.UnpicklingError(f"Weights only load failed: can only set the state of classes allowlisted "
                                         f"via `add_safe_globals`, but got {type(obj)}")
        if setter is not None:
            self._check_callable(setter, "function")
            _user(setter, obj, state)
        elif state is not None:
            _user(_set_state, obj, state)
        if listitems is not None:
            if type(listitems) is not list:
                raise damaged(self.path, "object items are not a list")
            extend = getattr(obj, "extend", None)
            if extend is not None:
                _user(extend, listitems)
            else:
                for x in listitems:
                    _user(obj.append, x)
        if dictitems is not None:
            if type(dictitems) is not list or any(type(kv) is not list or len(kv) != 2 for kv in dictitems):
                raise damaged(self.path, "object entries are not [key, value] pairs")
            for k, v in dictitems:
                _user(obj.__setitem__, k, v)
        return obj

    def _check_callable(self, fn, what):
        if not callable(fn):
            raise damaged(self.path, f"{str(fn)[:60]} is not callable")
        if self.weights_only and id(fn) not in self.allowed_ids:
            # only a name from the allow-list may be called (never a value another call returned)
            raise pickle.UnpicklingError(f"Weights only load failed: the {what} {fn!r} is not allowlisted via "
                                         "`ember.serialization.add_safe_globals`")


def _set_state(obj, state):
    """pickle's BUILD: __setstate__, else __dict__ (and slot) updates."""
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        if type(state) is not dict or any(type(k) is not str for k in state):
            raise TypeError("object state is not a dict with string keys")
        obj.__dict__.update(state)
    if slots:
        if type(slots) is not dict:
            raise TypeError("object slot state is not a dict")
        for k, v in slots.items():
            setattr(obj, k, v)


def _user(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        raise _UserCodeError(e) from e


def _import(module, qual):
    mod = importlib.import_module(module)
    obj = mod
    for part in qual.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"ember.load: can't get attribute '{qual}' on {mod!r}: the class or function "
                                 "the file names must be importable when the file is loaded") from None
    return obj


def _target_device(saved: str, map_location):
    if map_location is None:
        return canonical(saved)
    if isinstance(map_location, dict):
        return canonical(map_location.get(saved, saved))
    return canonical(map_location)


def global_names(root, path) -> list[str]:
    """Every dotted name a header's {"$global": [module, qualname]} nodes use, in order, once each."""
    seen: dict[str, None] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        if type(n) is dict:
            g = n.get("$global")
            if g is not None and type(g) is list and len(g) == 2 and all(type(x) is str for x in g):
                seen.setdefault(f"{g[0]}.{g[1]}")
            else:
                stack.extend(reversed(list(n.values())))
        elif type(n) is list:
            stack.extend(reversed(n))
    return list(seen)
