"""ember.save / ember.load: checkpoints in a documented, code-free format (docs/serialization.md).

In:  save(obj, f) takes tensors (any dtype, any device), Parameters, dict / OrderedDict / list / tuple
     nests of them, numbers, strings, bytes, None, bool, ember.dtype, ember.device, ember.Size;
     f is a path or a binary file object. Anything else raises TypeError naming the type.
Out: load(f, map_location=None) rebuilds the object. Nothing in the file is ever executed (no pickle):
     the structure is a JSON header, tensor bytes are raw little-endian data, and every part is
     checked against a CRC-32, so a truncated or damaged file is an error, never a wrong result.

Layout (all integers little-endian):
    0   8  magic  b"\\x89EMBER\\r\\n"
    8   4  u32 format version (1)
    12  4  u32 CRC-32 of the header bytes
    16  8  u64 header length H
    24  H  header: UTF-8 JSON {"format", "version", "root", "storages", "data_nbytes"}
    ... zero padding to a multiple of 64
    D      data: each storage at its 64-aligned offset (relative to the data start)
    8      end marker b"EMBEREND"

Tensors that share memory (the same tensor twice, or overlapping views of one array) are saved as
one storage and come back sharing memory; any other view is saved compactly (its own elements only).
"""
from __future__ import annotations

import io
import json
import math
import os
import struct
import zlib
from collections import OrderedDict
from typing import Any

import numpy as np

from .frontend.device import canonical, device as _device
from .frontend.tensor import Size, Tensor, _wrap
from .ir import dtypes as dt

__all__ = ["save", "load", "FORMAT_VERSION"]

MAGIC = b"\x89EMBER\r\n"
END = b"EMBEREND"
FORMAT_VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sIIQ")


class _Damaged(RuntimeError):
    pass


def _damaged(path, why):
    return RuntimeError(f"ember.load: file is truncated/damaged ({why}){'' if path is None else f': {path}'}")


# ---------------------------------------------------------------------------------------- save
def _host_array(t: Tensor) -> np.ndarray:
    d = t._data
    return d if isinstance(d, np.ndarray) else d.get()


class _Storages:
    """Groups the tensors to save into storages: overlapping views of one array share a storage."""

    def __init__(self):
        self.tensors: list[tuple[Tensor, np.ndarray]] = []
        self.by_id: dict[int, int] = {}

    def add(self, t: Tensor) -> int:
        k = self.by_id.get(id(t))
        if k is None:
            k = len(self.tensors)
            self.by_id[id(t)] = k
            self.tensors.append((t, _host_array(t)))
        return k

    def plan(self):
        """-> (storages: list of (array bytes source, nbytes, dtype), per-tensor refs)."""
        n = len(self.tensors)
        parent = list(range(n))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i
        # tensors whose memory overlaps end up in one group (sorted sweep over byte extents)
        spans = []
        for i, (t, a) in enumerate(self.tensors):
            if a.size == 0:
                continue
            lo, hi = _byte_bounds(a)
            spans.append((lo, hi, i))
        spans.sort()
        cur_hi, cur = -1, -1
        for lo, hi, i in spans:
            if lo < cur_hi and self.tensors[i][1].dtype == self.tensors[cur][1].dtype:
                parent[find(i)] = find(cur)
                cur_hi = max(cur_hi, hi)
            else:
                cur_hi, cur = hi, i
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(i)
        storages, refs = [], [None] * n

        def alone(i):
            a = self.tensors[i][1]
            storages.append(np.ascontiguousarray(a).reshape(-1))
            refs[i] = (len(storages) - 1, list(a.shape), _cstrides(a.shape), 0)
        for members in groups.values():
            union = _union(self.tensors[i][1] for i in members) if len(members) > 1 else None
            if union is None:
                for i in members:
                    alone(i)
                continue
            lo, arr = union
            storages.append(arr)
            s, item = len(storages) - 1, arr.itemsize
            for i in members:
                a = self.tensors[i][1]
                refs[i] = (s, list(a.shape), [st // item for st in a.strides], (_addr(a) - lo) // item)
        return storages, refs


def _byte_bounds(a):
    return (np.lib.array_utils.byte_bounds if hasattr(np.lib, "array_utils") else np.byte_bounds)(a)


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _owner(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _union(arrays):
    """(lowest address, a copy of the bytes spanning all the arrays) for views of one contiguous
    owner with one dtype and element-aligned offsets; None when they cannot share a storage."""
    arrays = list(arrays)
    owner = _owner(arrays[0])
    item = arrays[0].itemsize
    if not owner.flags.c_contiguous or any(_owner(a) is not owner or a.dtype != arrays[0].dtype for a in arrays):
        return None
    o_lo = _byte_bounds(owner)[0]
    lo = min(_byte_bounds(a)[0] for a in arrays)
    hi = max(_byte_bounds(a)[1] for a in arrays)
    if (lo - o_lo) % item or any(st % item for a in arrays for st in a.strides):
        return None
    raw = owner.reshape(-1).view(np.uint8)
    return lo, raw[lo - o_lo:hi - o_lo].view(arrays[0].dtype).copy()


def _cstrides(shape):
    st, acc = [], 1
    for n in reversed(shape):
        st.append(acc)
        acc *= n
    return list(reversed(st))


def _encode(obj, stor: _Storages, path: str):
    """Python object -> JSON-able node. Tensors become {"$tensor": index}, resolved after planning."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Tensor):
        return {"$tensor": stor.add(obj), "$t": obj}
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {"$float": repr(f)}
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dt.DType):
        return {"$dtype": obj.name}
    if isinstance(obj, _device):
        return {"$device": str(obj)}
    if isinstance(obj, Size):
        return {"$size": [int(n) for n in obj]}
    if isinstance(obj, bytes):
        return {"$bytes": obj.hex()}
    if isinstance(obj, complex):
        return {"$complex": [obj.real, obj.imag]}
    if isinstance(obj, np.ndarray):
        from .frontend.creation import tensor
        return {"$ndarray": stor.add(tensor(obj)) if obj.dtype != object else _bad(obj, path)}
    if isinstance(obj, dict):
        tag = "$odict" if isinstance(obj, OrderedDict) else "$dict"
        items = [[_encode(k, stor, f"{path}.<key>"), _encode(v, stor, f"{path}[{k!r}]")] for k, v in obj.items()]
        node = {tag: items}
        meta = getattr(obj, "_metadata", None)
        if meta is not None:  # Module.state_dict() carries per-module versions, as in PyTorch
            node["$metadata"] = _encode(meta, stor, f"{path}._metadata")
        return node
    if isinstance(obj, tuple) and type(obj) is not tuple and hasattr(obj, "_fields"):
        return {"$tuple": [_encode(v, stor, f"{path}.{f}") for f, v in zip(obj._fields, obj)]}
    if isinstance(obj, (list, tuple)):
        tag = "$list" if isinstance(obj, list) else "$tuple"
        return {tag: [_encode(v, stor, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, (set, frozenset)):
        return {"$set": [_encode(v, stor, f"{path}.<item>") for v in obj]}
    return _bad(obj, path)


def _bad(obj, path):
    raise TypeError(f"ember.save: cannot save an object of type {type(obj).__module__}.{type(obj).__qualname__} "
                    f"(at {path}); ember checkpoints hold tensors, numbers, strings, bytes, None, and "
                    "dicts/lists/tuples of them")


def _resolve(node, refs, storages_meta):
    """Replace {"$tensor": i, "$t": tensor} with the tensor's record (in place, iteratively)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            if "$tensor" in n or "$ndarray" in n:
                key = "$tensor" if "$tensor" in n else "$ndarray"
                t = n.pop("$t", None)
                s, shape, strides, offset = refs[n[key]]
                rec = {"storage": s, "shape": shape, "stride": strides, "offset": offset}
                if key == "$tensor":
                    rec["device"] = str(t.device)
                    if t.requires_grad:
                        rec["requires_grad"] = True
                    if _is_parameter(t):
                        rec["parameter"] = True
                n[key] = rec
            else:
                stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)


def _is_parameter(t):
    return any(c.__name__ == "Parameter" for c in type(t).__mro__)


def save(obj: Any, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True) -> None:
    """Write `obj` to `f` (a path or a binary file object). See the module docstring for the format."""
    stor = _Storages()
    root = _encode(obj, stor, "obj")
    storages, refs = stor.plan()
    metas, offset = [], 0
    for a in storages:
        d = dt.from_numpy(a.dtype)
        nbytes = a.nbytes
        metas.append({"dtype": d.name, "offset": offset, "nbytes": nbytes,
                      "crc32": zlib.crc32(_le_bytes(a))})
        offset += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
    _resolve(root, refs, metas)
    header = json.dumps({"format": "ember-checkpoint", "version": FORMAT_VERSION, "root": root,
                         "storages": metas, "data_nbytes": offset}, separators=(",", ":"),
                        allow_nan=False).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, zlib.crc32(header), len(header))
    head_len = _PREFIX.size + len(header)
    pad = (-head_len) % _ALIGN

    def write(out):
        out.write(prefix)
        out.write(header)
        out.write(b"\0" * pad)
        for a, m in zip(storages, metas):
            b = _le_bytes(a)
            out.write(b)
            out.write(b"\0" * ((-m["nbytes"]) % _ALIGN))
        out.write(END)
    if isinstance(f, (str, os.PathLike)):
        tmp = f"{os.fspath(f)}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                write(out)
            os.replace(tmp, f)   # atomic: a crash mid-save never leaves half a checkpoint behind
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        write(f)


def _le_bytes(a: np.ndarray):
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not _LITTLE):
        a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))   # bytes of any dtype (bfloat16 has no buffer format)


_LITTLE = np.little_endian


# ---------------------------------------------------------------------------------------- load
def _read_exact(f, n, path, what):
    b = f.read(n)
    if len(b) != n:
        raise _damaged(path, f"ended inside the {what}: expected {n} bytes, got {len(b)}")
    return b


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **kwargs) -> Any:
    """Read an object written by ember.save. map_location: None (the saved devices), a device or
    string, a dict {saved: target}, or a callable (tensor, saved_location) -> tensor.
    weights_only is accepted for PyTorch compatibility; loading never runs code either way."""
    path = None
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        with open(path, "rb") as fh:
            return _load(fh, map_location, path)
    return _load(f, map_location, path)


def _load(f, map_location, path):
    head = f.read(_PREFIX.size)
    if len(head) < 8 and MAGIC.startswith(head):
        raise _damaged(path, "ended inside the magic bytes" if head else "empty file")
    if head[:8] != MAGIC:
        raise RuntimeError(_not_ember(head, path))
    if len(head) < _PREFIX.size:
        raise _damaged(path, "ended inside the file prefix")
    _, version, hcrc, hlen = _PREFIX.unpack(head)
    if version > FORMAT_VERSION:
        raise RuntimeError(f"ember.load: checkpoint format version {version} is newer than this ember "
                           f"understands ({FORMAT_VERSION}); upgrade ember")
    if hlen > (1 << 34):
        raise _damaged(path, f"implausible header length {hlen}")
    header = _read_exact(f, hlen, path, "header")
    if zlib.crc32(header) != hcrc:
        raise _damaged(path, "header checksum mismatch")
    try:
        meta = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(path, f"header is not valid JSON: {e}") from None
    _read_exact(f, (-(_PREFIX.size + hlen)) % _ALIGN, path, "header padding")
    nbytes = int(meta["data_nbytes"])
    buf = bytearray(nbytes)
    got = f.readinto(buf) if hasattr(f, "readinto") else _readinto(f, buf)
    if got != nbytes:
        raise _damaged(path, f"ended inside the tensor data: expected {nbytes} bytes, got {got or 0}")
    if f.read(len(END)) != END:
        raise _damaged(path, "missing end marker")
    storages = []
    for i, m in enumerate(meta["storages"]):
        d = dt.by_name(m["dtype"])
        raw = memoryview(buf)[m["offset"]:m["offset"] + m["nbytes"]]
        if zlib.crc32(raw) != m["crc32"]:
            raise _damaged(path, f"checksum mismatch in tensor storage {i}")
        arr = np.frombuffer(buf, dtype=d.np.newbyteorder("<"), count=m["nbytes"] // d.itemsize, offset=m["offset"])
        storages.append(arr if _LITTLE else arr.astype(d.np))
    return _decode(meta["root"], storages, map_location, path)


def _readinto(f, buf):
    data = f.read(len(buf))
    buf[:len(data)] = data
    return len(data)


def _not_ember(head, path):
    where = "" if path is None else f" {path}"
    if head[:2] == b"PK":
        kind = "a zip archive (a PyTorch torch.save file?)"
    elif head[:1] == b"\x80":
        kind = "a pickle (a legacy PyTorch file?)"
    else:
        kind = "not an ember checkpoint"
    return (f"ember.load: file{where} is {kind}: bad magic bytes {head[:8]!r}. ember reads only its own "
            "format and never unpickles (which could run code from the file)")


def _target_device(saved: str, map_location):
    if map_location is None:
        return canonical(saved)
    if isinstance(map_location, dict):
        return canonical(map_location.get(saved, saved))
    if callable(map_location):
        return None
    return canonical(map_location)


def _decode(root, storages, map_location, path):
    from .frontend import autograd as ag
    shared: dict = {}

    def tensor_of(rec, is_tensor=True):
        s = rec["storage"]
        if not 0 <= s < len(storages):
            raise _damaged(path, f"tensor refers to storage {s} of {len(storages)}")
        base = storages[s]
        shape, stride, off = tuple(rec["shape"]), tuple(rec["stride"]), int(rec["offset"])
        item = base.itemsize
        if shape and any(n == 0 for n in shape):
            arr = np.empty(shape, dtype=base.dtype)
        else:
            hi = off + sum((n - 1) * st for n, st in zip(shape, stride) if st > 0)
            lo = off + sum((n - 1) * st for n, st in zip(shape, stride) if st < 0)
            if lo < 0 or hi >= len(base):
                raise _damaged(path, f"tensor view [{shape}, stride {stride}, offset {off}] exceeds its storage")
            arr = np.lib.stride_tricks.as_strided(base[off:], shape=shape, strides=[st * item for st in stride])
        saved = rec.get("device", "cpu")
        if not is_tensor:
            return np.array(arr)
        t = _wrap(arr, canonical("cpu"))
        key = (s, "vc")
        if key in shared:
            t._vc = shared[key]
        else:
            shared[key] = t._vc
        if callable(map_location) and not isinstance(map_location, (dict, str, _device)):
            t = map_location(t, saved)
        else:
            target = _target_device(saved, map_location)
            if target.type != "cpu":
                t = t.to(target)
        if rec.get("parameter"):
            try:
                from .nn import Parameter
                t = Parameter(t, requires_grad=rec.get("requires_grad", True))
            except ImportError:
                t.requires_grad = rec.get("requires_grad", False)
        elif rec.get("requires_grad"):
            t.requires_grad = True
        return t

    # iterative decoder: (node, setter) work items, containers built bottom-up
    def build(node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise _damaged(path, "untagged list in header")
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise _damaged(path, f"unexpected header node {str(node)[:60]}")
        (tag, val), *rest = node.items()
        if tag == "$tensor":
            return tensor_of(val)
        if tag == "$ndarray":
            return tensor_of(val, is_tensor=False)
        if tag == "$float":
            return float(val)
        if tag == "$dtype":
            return dt.by_name(val)
        if tag == "$device":
            return _device(val)
        if tag == "$size":
            return Size(val)
        if tag == "$bytes":
            return bytes.fromhex(val)
        if tag == "$complex":
            return complex(*val)
        raise _damaged(path, f"unknown header tag {tag!r}")

    with ag.no_grad():
        return _build_tree(root, build, path)


_CONTAINERS = ("$list", "$tuple", "$dict", "$odict", "$set")


def _build_tree(root, leaf, path):
    """Decode nested containers without recursion (deep nests must not hit the recursion limit)."""
    def is_container(n):
        return isinstance(n, dict) and n and next(iter(n)) in _CONTAINERS

    if not is_container(root):
        return leaf(root)
    # post-order walk: a frame is (node, children built so far)
    out = None
    stack = [(root, [], _children(root, path))]
    while stack:
        node, built, todo = stack[-1]
        if todo:
            child = todo.pop()
            if is_container(child):
                stack.append((child, [], _children(child, path)))
            else:
                built.append(leaf(child))
            continue
        stack.pop()
        value = _assemble(node, built, leaf)
        if stack:
            stack[-1][1].append(value)
        else:
            out = value
    return out


def _children(node, path):
    tag, val = next(iter(node.items()))
    if not isinstance(val, list):
        raise _damaged(path, f"{tag} holds {type(val).__name__}, not a list")
    if tag in ("$dict", "$odict"):
        flat = []
        for kv in val:
            if not isinstance(kv, list) or len(kv) != 2:
                raise _damaged(path, "dict entry is not a [key, value] pair")
            flat.extend(kv)
        return list(reversed(flat))
    return list(reversed(val))


def _assemble(node, built, leaf):
    tag = next(iter(node))
    if tag == "$list":
        return built
    if tag == "$tuple":
        return tuple(built)
    if tag == "$set":
        return set(built)
    d = OrderedDict() if tag == "$odict" else {}
    for i in range(0, len(built), 2):
        k = built[i]
        d[tuple(k) if isinstance(k, list) else k] = built[i + 1]
    if "$metadata" in node and isinstance(d, OrderedDict):
        d._metadata = _build_tree(node["$metadata"], leaf, None)
    return d
