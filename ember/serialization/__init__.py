"""ember.save / ember.load: checkpoints in a documented, code-free format (docs/serialization.md).

In:  save(obj, f) takes tensors (any dtype, any device, any view), Parameters, containers, Python
     values, and whole objects such as a Module or an optimizer (by class name plus state, the way
     pickle describes them); f is a path (written atomically) or a binary file object.
Out: load(f, map_location=None, *, weights_only=True, mmap=False) rebuilds the object. A file holds
     a JSON header and raw little-endian storage bytes, each part under a CRC-32; it never holds code.
     With weights_only=True (the default, as in PyTorch 2.6) only allow-listed classes
     (add_safe_globals / safe_globals) are instantiated; weights_only=False trusts the file.

Layout (all integers little-endian):
    0   8  magic  b"\\x89EMBER\\r\\n"
    8   4  u32 format version (2; version 1 files are still read)
    12  4  u32 CRC-32 of the header bytes
    16  8  u64 header length H
    24  H  header: UTF-8 JSON {"format", "version", "root", "storages", "data_nbytes"}
    ... zero padding to a multiple of 64
    D      data: each storage at its 64-aligned offset (relative to the data start)
    8      end marker b"EMBEREND"
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Any

import numpy as np

from . import files
from . import allowlist
from .decode import decode, global_names
from .encode import encode
from .format import (ALIGN, END, FORMAT_VERSION, MAGIC, PREFIX, READABLE_VERSIONS, CheckpointDamagedError,
                     check_dict, check_int, check_list, damaged, dtype_of)
from .allowlist import add_safe_globals, clear_safe_globals, get_safe_globals, safe_globals

__all__ = ["save", "load", "add_safe_globals", "safe_globals", "get_safe_globals", "clear_safe_globals",
           "get_unsafe_globals_in_checkpoint", "FORMAT_VERSION", "CheckpointDamagedError"]


# ---------------------------------------------------------------------------------------- save
def save(obj: Any, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False) -> None:
    """Write `obj` to `f` (a path or a binary file object). The pickle arguments are accepted for
    PyTorch compatibility and ignored: the format is always ember's own."""
    root, plan, tensor_nodes = encode(obj)
    storages, records = plan.finish()
    for node, key, i in tensor_nodes:
        rec, t = records[i], plan.members[i].tensor
        if key == "$tensor":
            if any(c.__name__ == "Parameter" for c in type(t).__mro__):
                rec["parameter"] = True
                rec["requires_grad"] = bool(t.requires_grad)
            elif t.requires_grad:
                rec["requires_grad"] = True
        else:
            del rec["device"]
        node[key] = rec
    metas, offset = [], 0
    for a in storages:
        metas.append({"offset": offset, "nbytes": int(a.nbytes), "crc32": zlib.crc32(a)})
        offset += -(-a.nbytes // ALIGN) * ALIGN
    try:
        header = json.dumps({"format": "ember-checkpoint", "version": FORMAT_VERSION, "root": root,
                             "storages": metas, "data_nbytes": offset}, separators=(",", ":"),
                            allow_nan=False, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ValueError("ember.save: the object nests too deeply to be written") from None
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, zlib.crc32(header), len(header))
    pad = -(PREFIX.size + len(header)) % ALIGN

    def write(out):
        out.write(prefix)
        out.write(header)
        out.write(b"\0" * pad)
        for a in storages:
            out.write(memoryview(a))
            out.write(b"\0" * (-a.nbytes % ALIGN))
        out.write(END)

    if isinstance(f, (str, os.PathLike)):
        files.write_atomically(f, write)
    else:
        write(f)


# ---------------------------------------------------------------------------------------- load
def load(f, map_location=None, pickle_module=None, *, weights_only: bool | None = None, mmap: bool | None = None,
         **pickle_load_args) -> Any:
    """Read an object written by ember.save.

    map_location: None (the saved devices), a device or string, a dict {saved: target}, or a callable
    (tensor, saved_location) -> tensor. weights_only (default True): whole objects need their classes
    allow-listed (add_safe_globals / safe_globals); False imports them, trusting the file.
    mmap=True maps the file instead of reading it: tensors are views of the (copy-on-write) mapping,
    so memory holds only the pages that are used."""
    weights_only = True if weights_only is None else bool(weights_only)
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        with open(path, "rb") as fh:
            return _load(fh, path, map_location, weights_only, bool(mmap))
    return _load(f, getattr(f, "name", None) if isinstance(getattr(f, "name", None), str) else None,
                 map_location, weights_only, bool(mmap))


def _load(fh, path, map_location, weights_only, use_mmap):
    src, meta, version = _read_header(fh, path)
    nbytes = meta["data_nbytes"]
    layout = _storage_layout(meta.get("storages"), nbytes, version, path)
    storages = _read_storages(src, layout, nbytes, use_mmap, path)
    if src.read(len(END), "end marker") != END:
        raise damaged(path, "missing end marker")
    return decode(meta["root"], storages, [d for _, _, _, d in layout], version, path, map_location, weights_only)


def _read_header(fh, path):
    """-> (Source positioned at the data section, checked header dict, format version)."""
    src = files.Source(fh, path)
    head = fh.read(PREFIX.size)
    src.pos += len(head)
    if len(head) < 8 and MAGIC.startswith(head):
        raise damaged(path, "ended inside the magic bytes" if head else "empty file")
    if head[:8] != MAGIC:
        raise RuntimeError(_not_ember(head, path))
    if len(head) < PREFIX.size:
        raise damaged(path, "ended inside the file prefix")
    _, version, hcrc, hlen = PREFIX.unpack(head)
    if version > FORMAT_VERSION:
        raise RuntimeError(f"ember.load: checkpoint format version {version} is newer than this ember "
                           f"understands ({FORMAT_VERSION}); upgrade ember")
    if version not in READABLE_VERSIONS:
        raise damaged(path, f"format version {version}")
    pad = -(PREFIX.size + hlen) % ALIGN
    src.require(hlen + pad + len(END), "header")
    header = src.read(hlen, "header")
    if zlib.crc32(header) != hcrc:
        raise damaged(path, "header checksum mismatch")
    try:
        meta = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise damaged(path, f"header is not valid JSON: {type(e).__name__}") from None
    meta = check_dict(meta, path, "header")
    if meta.get("format") != "ember-checkpoint" or meta.get("version") != version or "root" not in meta:
        raise damaged(path, "header lacks the ember-checkpoint format fields")
    nbytes = check_int(meta.get("data_nbytes"), path, "data size")
    src.skip(pad, "header padding")
    src.require(nbytes + len(END), "tensor data")
    return src, meta, version


def get_unsafe_globals_in_checkpoint(f) -> list[str]:
    """The classes and functions a checkpoint names that a weights_only load would refuse now
    (torch.serialization.get_unsafe_globals_in_checkpoint); reads only the header, runs nothing."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return get_unsafe_globals_in_checkpoint(fh)
    _, meta, _ = _read_header(f, None)
    allowed = allowlist.allowed()
    return [n for n in global_names(meta["root"], None) if n not in allowed]


def _storage_layout(entries, data_nbytes, version, path):
    """[(offset, nbytes, crc32, dtype-or-None)], checked: in order, non-overlapping, inside the data."""
    out, end = [], 0
    for i, m in enumerate(check_list(entries, path, "storage table")):
        m = check_dict(m, path, f"storage {i}")
        off = check_int(m.get("offset"), path, f"storage {i} offset")
        n = check_int(m.get("nbytes"), path, f"storage {i} size")
        crc = check_int(m.get("crc32"), path, f"storage {i} checksum", 0, 1 << 32)
        d = None
        if version == 1:
            d = dtype_of(m.get("dtype"), path)
            if n % d.itemsize:
                raise damaged(path, f"storage {i} holds {n} bytes, not whole {d.name} elements")
        if off < end or off + n > data_nbytes:
            raise damaged(path, f"storage {i} at [{off}, {off + n}) overlaps another or leaves the "
                                f"{data_nbytes}-byte data section")
        end = off + n
        out.append((off, n, crc, d))
    return out


def _read_storages(src, layout, data_nbytes, use_mmap, path):
    storages = []
    if use_mmap:
        mm = src.mapping()
        start = src.pos
        for i, (off, n, crc, _) in enumerate(layout):
            a = np.frombuffer(mm, dtype=np.uint8, count=n, offset=start + off) if n else np.empty(0, np.uint8)
            if zlib.crc32(a) != crc:
                raise damaged(path, f"checksum mismatch in tensor storage {i}")
            files.release_pages(mm, start + off, n)
            storages.append(a)
        src.skip(data_nbytes, "tensor data")
        return storages
    pos = 0
    for i, (off, n, crc, _) in enumerate(layout):
        src.skip(off - pos, "tensor data")
        a = src.read_array(n, "tensor data")
        if zlib.crc32(a) != crc:
            raise damaged(path, f"checksum mismatch in tensor storage {i}")
        storages.append(a)
        pos = off + n
    src.skip(data_nbytes - pos, "tensor data")
    return storages


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
