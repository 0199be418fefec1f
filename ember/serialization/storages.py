"""Tensors <-> storages: what ember.save writes for a set of tensors, and the views ember.load makes.

Save (`StoragePlan`): the tensors to save are grouped by the allocation they view (numpy's base
chain, or CuPy's memory block). Each group becomes one untyped storage holding the bytes from the
lowest to the highest byte any member reaches, and each tensor becomes a record
{storage, dtype, shape, stride, offset} that views it, so
  - views of one storage keep their sharing after load, whatever their dtypes;
  - strides are kept: a transpose stays a transpose, an expanded view stays stride 0 and writes only
    the elements it expands (PyTorch writes the storage, never the expansion);
  - bytes no saved tensor reaches are not written (PyTorch writes the whole storage; `big[:2]` here
    writes two rows).
A tensor whose offset or strides are not whole elements of its dtype (a numpy view made with byte
tricks) is written alone, contiguously.

Load (`view`): a record is checked against its storage with Python integers (no overflow) before
numpy sees it, and becomes an ndarray over the storage's bytes; nothing is copied or materialised.
"""
from __future__ import annotations

import numpy as np

from .format import MAX_NBYTES, MAX_NDIM, check_int, check_list, damaged, dtype_name, dtype_of

LITTLE = np.little_endian


# ------------------------------------------------------------------------------------ save
def _root(a: np.ndarray) -> np.ndarray:
    """The array owning a's memory: follows .base, also through as_strided's DummyArray."""
    while True:
        b = a.base
        if isinstance(b, np.ndarray):
            a = b
        elif b is not None and isinstance(getattr(b, "base", None), np.ndarray):
            a = b.base
        else:
            return a


def _extent(ptr: int, shape, strides, itemsize: int) -> tuple[int, int]:
    """[lo, hi) byte addresses an array reaches (lo == hi for an empty array)."""
    if any(n == 0 for n in shape):
        return ptr, ptr
    lo = ptr + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = ptr + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) + itemsize
    return lo, hi


class _Member:
    __slots__ = ("tensor", "array", "ptr", "lo", "hi", "key", "device")

    def __init__(self, t):
        self.tensor = t
        a = self.array = t._data
        self.device = str(t.device)
        if isinstance(a, np.ndarray):
            self.ptr = a.__array_interface__["data"][0]
            root = _root(a)
            # one storage per owning array; a non-contiguous owner has no flat byte view to copy from
            self.key = ("np", id(root), root) if root.flags.c_contiguous else None
        else:                                  # a CuPy array: its memory block identifies the storage
            self.ptr = int(a.data.ptr)
            self.key = ("cuda", id(a.data.mem), a.data.mem)
        self.lo, self.hi = _extent(self.ptr, a.shape, a.strides, a.itemsize)


class StoragePlan:
    """Collects tensors (`add` -> index), then `finish()` -> (storages, records)."""

    def __init__(self):
        self.members: list[_Member] = []

    def add(self, t) -> int:
        dtype_name(t.dtype)                    # refuse a dtype without a file encoding early
        self.members.append(_Member(t))
        return len(self.members) - 1

    def finish(self):
        """-> (storages: list of 1-D uint8 host arrays, records: per added tensor, a JSON-able dict)."""
        groups: dict = {}
        storages, records = [], [None] * len(self.members)
        for i, m in enumerate(self.members):
            if m.key is None or m.lo == m.hi or not LITTLE:
                records[i] = self._alone(m, storages)
            else:
                groups.setdefault(m.key[:2], []).append(i)
        for idxs in groups.values():
            lo = min(self.members[i].lo for i in idxs)
            hi = max(self.members[i].hi for i in idxs)
            kept = []
            for i in idxs:
                m = self.members[i]
                item = m.array.itemsize
                if (m.ptr - lo) % item or any(s % item for s in m.array.strides):
                    records[i] = self._alone(m, storages)
                else:
                    kept.append(i)
            if not kept:
                continue
            lo = min(self.members[i].lo for i in kept)
            hi = max(self.members[i].hi for i in kept)
            storages.append(_span_bytes(self.members[kept[0]], lo, hi))
            for i in kept:
                m = self.members[i]
                item = m.array.itemsize
                records[i] = _record(len(storages) - 1, m, [s // item for s in m.array.strides], (m.ptr - lo) // item)
        return storages, records

    @staticmethod
    def _alone(m, storages):
        """A contiguous little-endian copy of m's elements as its own storage."""
        a = m.array if isinstance(m.array, np.ndarray) else m.array.get()
        a = np.ascontiguousarray(a)
        if not LITTLE:
            a = a.astype(a.dtype.newbyteorder("<"))
        storages.append(a.reshape(-1).view(np.uint8))
        st, acc = [], 1
        for n in reversed(a.shape):
            st.append(acc)
            acc *= n
        return _record(len(storages) - 1, m, list(reversed(st)), 0)


def _record(s, m, strides, offset):
    t = m.tensor
    return {"storage": s, "dtype": dtype_name(t.dtype), "shape": [int(n) for n in t.shape],
            "stride": [int(x) for x in strides], "offset": int(offset), "device": m.device}


def _span_bytes(m, lo, hi) -> np.ndarray:
    """The bytes [lo, hi) of m's allocation, as a 1-D uint8 host array (a view on the CPU)."""
    if m.key[0] == "np":
        root = m.key[2]
        base = root.__array_interface__["data"][0]
        return root.reshape(-1).view(np.uint8)[lo - base:hi - base]
    import cupy
    mem = m.key[2]
    ptr = cupy.cuda.MemoryPointer(mem, lo - int(mem.ptr))
    return cupy.ndarray((hi - lo,), dtype=cupy.uint8, memptr=ptr).get()


# ------------------------------------------------------------------------------------ load
def view(storage: np.ndarray, rec: dict, path, version: int, storage_dtype=None) -> np.ndarray:
    """The ndarray a tensor record describes, over `storage` (1-D uint8). Every number is checked
    against the storage's real size first: a damaged record raises, it never allocates."""
    if version == 1:
        d = storage_dtype                       # format 1: typed storages, records without dtype
    else:
        d = dtype_of(rec.get("dtype"), path)
    item = d.itemsize
    shape = check_list(rec.get("shape"), path, "tensor shape")
    stride = check_list(rec.get("stride"), path, "tensor stride")
    if len(shape) > MAX_NDIM or len(stride) != len(shape):
        raise damaged(path, f"tensor with {len(shape)} sizes and {len(stride)} strides")
    shape = [check_int(n, path, "tensor size") for n in shape]
    stride = [check_int(s, path, "tensor stride", -MAX_NBYTES, MAX_NBYTES) for s in stride]
    offset = check_int(rec.get("offset"), path, "tensor offset")
    size = item
    for n in shape:
        size *= max(n, 1)         # numpy's own bound, which also covers empty shapes
    if size >= MAX_NBYTES:
        raise damaged(path, f"tensor of shape {shape} is larger than any array")
    if 0 in shape:
        return np.empty(shape, dtype=d.np)
    lo, hi = _extent(offset * item, shape, [s * item for s in stride], item)
    if lo < 0 or hi > storage.nbytes:
        raise damaged(path, f"tensor view [{shape}, stride {stride}, offset {offset}] reaches bytes "
                            f"[{lo}, {hi}) of a {storage.nbytes}-byte storage")
    arr = np.ndarray(shape, dtype=d.np.newbyteorder("<"), buffer=storage, offset=offset * item,
                     strides=[s * item for s in stride])
    if any(s == 0 and n > 1 for n, s in zip(shape, stride)):
        # an expanded tensor: several elements share memory, so writing into it is refused, as for a
        # live expand() (PyTorch's "more than one element ... refers to a single memory location")
        arr.flags.writeable = False
    if not LITTLE:
        arr = arr.astype(d.np)                  # big-endian host: a native copy (sharing is lost)
    return arr

