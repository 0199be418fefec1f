"""Getting checkpoint bytes onto and off the disk safely.

`write_atomically(path, write)`: `write(file)` fills a temporary file in the target's directory with
a name unique to the call (host, process, random token), which is flushed, fsynced and renamed over
the target in one step. Concurrent saves to one path (threads or processes) each rename a complete
file: the target is always some whole checkpoint, never a mix, and no save fails because another one
renamed "its" temporary file. Temporary files that a killed save left behind for the same target are
removed by the next save (their process is gone, or, from another host, they are a day old).

`Source`: reads one checkpoint from a path or a binary file object. The number of bytes left in the
file is known before any large read (a seekable file) or reads go in bounded chunks (a pipe), so a
declared size can never make ember allocate more than the file really holds.
"""
from __future__ import annotations

import io
import mmap as _mmap
import os
import secrets
import socket
import threading
import time

import numpy as np

from .format import damaged

_TMP_SUFFIX = ".tmp"
_STALE_FOREIGN_S = 24 * 3600       # a temp file from another host this old belongs to no live save
_in_flight: set = set()            # this process's temp files being written right now
_lock = threading.Lock()


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def _tmp_prefix(base: str) -> str:
    return f".{base}."


def write_atomically(path, write) -> None:
    """Write a file by `write(binary_file)` and rename it onto `path` atomically."""
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)          # replace the file a link points at, not the link
    directory, base = os.path.split(os.path.abspath(path))
    _remove_stale(directory, base)
    while True:
        tmp = os.path.join(directory, f"{_tmp_prefix(base)}{_host()}.{os.getpid()}.{secrets.token_hex(6)}"
                                      f"{_TMP_SUFFIX}")
        with _lock:
            _in_flight.add(tmp)                # before the file exists: a concurrent cleanup skips it
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            with _lock:
                _in_flight.discard(tmp)
        except BaseException:
            with _lock:
                _in_flight.discard(tmp)
            raise
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())             # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        with _lock:
            _in_flight.discard(tmp)


def _remove_stale(directory: str, base: str) -> None:
    """Delete temp files of earlier saves of `base` that can no longer complete."""
    prefix = _tmp_prefix(base)
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix) and e.name.endswith(_TMP_SUFFIX)]
    except OSError:
        return
    host, pid = _host(), os.getpid()
    for e in entries:
        parts = e.name[len(prefix):-len(_TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        owner_host, owner_pid = parts[0], int(parts[1])
        if owner_host == host:
            if owner_pid == pid:
                with _lock:
                    stale = e.path not in _in_flight
            else:
                stale = not _alive(owner_pid)
        else:
            try:
                stale = time.time() - e.stat(follow_symlinks=False).st_mtime > _STALE_FOREIGN_S
            except OSError:
                continue
        if stale:
            try:
                os.remove(e.path)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True                            # no cheap liveness test: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# ------------------------------------------------------------------------------------ read
_CHUNK = 1 << 24


class Source:
    """One checkpoint's bytes from a binary file object, read with bounds (see the module docstring)."""

    def __init__(self, f, path):
        self.f = f
        self.path = path
        self.start = self.pos = None
        self.end = None                         # absolute end of file when seekable
        try:
            if f.seekable():
                self.start = f.tell()
                self.end = f.seek(0, io.SEEK_END)
                f.seek(self.start)
        except (AttributeError, OSError, ValueError):
            self.start = self.end = None
        self.pos = self.start if self.start is not None else 0

    def remaining(self):
        """Bytes left in the file, or None when unknown (a pipe)."""
        return None if self.end is None else self.end - self.pos

    def require(self, n: int, what: str) -> None:
        """Fail now when the file cannot hold `n` more bytes."""
        left = self.remaining()
        if left is not None and n > left:
            raise damaged(self.path, f"the {what} needs {n} bytes but the file has {left} left")

    def read(self, n: int, what: str) -> bytes:
        self.require(n, what)
        if n <= _CHUNK:
            b = self.f.read(n)
        else:                                   # only a pipe gets here: grow with the data
            parts, got = [], 0
            while got < n:
                p = self.f.read(min(_CHUNK, n - got))
                if not p:
                    break
                parts.append(p)
                got += len(p)
            b = b"".join(parts)
        if len(b) != n:
            raise damaged(self.path, f"ended inside the {what}: expected {n} bytes, got {len(b)}")
        self.pos += n
        return b

    def read_array(self, n: int, what: str) -> np.ndarray:
        """n bytes into a fresh uint8 array of their own (one storage never pins another)."""
        self.require(n, what)
        if self.remaining() is None and n > _CHUNK:
            return np.frombuffer(bytearray(self.read(n, what)), dtype=np.uint8)
        out = np.empty(n, dtype=np.uint8)
        view = memoryview(out)
        got = 0
        while got < n:
            k = self.f.readinto(view[got:]) if hasattr(self.f, "readinto") else _readinto(self.f, view[got:])
            if not k:
                break
            got += k
        if got != n:
            raise damaged(self.path, f"ended inside the {what}: expected {n} bytes, got {got}")
        self.pos += n
        return out

    def skip(self, n: int, what: str) -> None:
        self.require(n, what)
        if self.end is not None:
            self.f.seek(self.pos + n)
            self.pos += n
        else:
            while n:
                k = min(n, _CHUNK)
                self.read(k, what)
                n -= k

    def mapping(self):
        """The whole file mapped copy-on-write (tensors are writable, the file never changes)."""
        try:
            fileno = self.f.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fileno = None
        if fileno is None or self.end is None:
            raise ValueError("f must be a file path or a real file in order to use the mmap argument")
        return _mmap.mmap(fileno, 0, access=_mmap.ACCESS_COPY)


def _readinto(f, view):
    data = f.read(len(view))
    view[:len(data)] = data
    return len(data)


def release_pages(mm, offset: int, length: int) -> None:
    """Tell the OS the mapped bytes just checksummed need not stay resident (they are clean)."""
    advise = getattr(mm, "madvise", None)
    flag = getattr(_mmap, "MADV_DONTNEED", None)
    if advise is None or flag is None or length <= 0:
        return
    page = _mmap.PAGESIZE
    lo = (offset + page - 1) // page * page
    hi = (offset + length) // page * page
    if hi > lo:
        try:
            advise(flag, lo, hi - lo)
        except (OSError, ValueError):
            pass
