"""The checkpoint file's fixed parts: magic, prefix, alignment, the dtype table, the "damaged" error.

In:  nothing but constants and small checkers; the byte layout is documented in docs/serialization.md.
Out: MAGIC / END / prefix packing, DTYPES (name in the file -> ember dtype), `damaged(path, why)`,
     and the `check_int` / `check_list` helpers every header reader uses, so that a hostile header
     can only ever produce the documented "truncated/damaged" RuntimeError.
"""
from __future__ import annotations

import struct

from ..ir import dtypes as dt

MAGIC = b"\x89EMBER\r\n"
END = b"EMBEREND"
FORMAT_VERSION = 2            # 2: untyped storages, dtype on each tensor record, object nodes
READABLE_VERSIONS = (1, 2)
ALIGN = 64
PREFIX = struct.Struct("<8sIIQ")   # magic, format version, header CRC-32, header length

# numpy cannot describe an array of 2**63 bytes or more; nothing a checkpoint legitimately holds comes
# near this, so larger declared sizes are damage, refused before anything is allocated
MAX_NBYTES = 1 << 62
MAX_NDIM = 64                 # numpy's limit on dimensions

# Element types a checkpoint can hold: (name in the file, ember dtype). The name is the dtype's
# PyTorch name; adding a dtype to the format is one row (bfloat16 appears when ember has it).
_DTYPE_ROWS = (
    ("bool", dt.bool_),
    ("uint8", dt.uint8),
    ("int8", dt.int8),
    ("int16", dt.int16),
    ("int32", dt.int32),
    ("int64", dt.int64),
    ("float16", dt.float16),
    ("bfloat16", getattr(dt, "bfloat16", None)),
    ("float32", dt.float32),
    ("float64", dt.float64),
)
KNOWN_DTYPE_NAMES = frozenset(name for name, _ in _DTYPE_ROWS)
DTYPES = {name: d for name, d in _DTYPE_ROWS if d is not None}


def dtype_name(d) -> str:
    """The file's name for an ember dtype (TypeError for a dtype the format has no row for)."""
    if DTYPES.get(d.name) is not d:
        raise TypeError(f"ember.save: no checkpoint encoding for dtype {d.name}")
    return d.name


class CheckpointDamagedError(RuntimeError):
    """The one error a truncated, damaged or malformed checkpoint gives (a RuntimeError, as before)."""


def damaged(path, why) -> CheckpointDamagedError:
    where = "" if path is None else f": {path}"
    return CheckpointDamagedError(f"ember.load: file is truncated/damaged ({why}){where}")


def dtype_of(name, path):
    """The ember dtype for a name read from a header."""
    d = DTYPES.get(name) if isinstance(name, str) else None
    if d is None:
        if name in KNOWN_DTYPE_NAMES:
            raise RuntimeError(f"ember.load: the checkpoint holds {name} tensors, which this build of ember "
                               "does not support")
        raise damaged(path, f"unknown dtype {str(name)[:40]!r}")
    return d


def check_int(v, path, what, lo=0, hi=MAX_NBYTES) -> int:
    """v must be a JSON integer (not a bool) in [lo, hi)."""
    if type(v) is not int or not lo <= v < hi:
        raise damaged(path, f"{what} is {str(v)[:40]!r}, not an integer in [{lo}, {hi})")
    return v


def check_list(v, path, what) -> list:
    if type(v) is not list:
        raise damaged(path, f"{what} is {type(v).__name__}, not a list")
    return v


def check_dict(v, path, what) -> dict:
    if type(v) is not dict:
        raise damaged(path, f"{what} is {type(v).__name__}, not an object")
    return v
