"""Disk cache for compiled object code: the one place where compiled bytes are stored and trusted.

In: a cache key (`cache_key(source_text, target, extra)`: sha256 of the kernel source text, the
code generator's own source, ember/llvmlite/LLVM versions, triple, CPU name and features) and object
code bytes (`tm.emit_object`).  Out: `load(key) -> bytes | None`, `store(key, data)`.

Where: $EMBER_CACHE_DIR, else $XDG_CACHE_HOME/ember, else ~/.cache/ember; objects live under
`<dir>/llvm/<key>.obj`.  The directory is created with mode 0700; an existing directory that is not
owned by this user or is writable by others is not used (the cache is then off, with a reason in
`stats()["disabled_reason"]`).  EMBER_CACHE=0 turns the cache off.

Entry format:  b"EMBER-OBJ 1\\n" + one JSON header line {"key", "size", "sha256", "versions"} + payload.
`load` checks all of it; anything that does not match (truncated, foreign, damaged) is reported as
a miss and counted in stats()["damaged"]; the caller rebuilds and `store` overwrites it.  Writes are
atomic: a temporary file in the same directory, fsync, then os.replace.

Counters (`stats()`): hits, misses, damaged, writes -- read by the inspect tools and the tests.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["enabled", "cache_dir", "cache_key", "load", "store", "stats", "reset_stats", "MAGIC",
           "EMBER_VERSION", "versions", "codegen_fingerprint"]

MAGIC = b"EMBER-OBJ 1\n"


def _ember_version() -> str:
    try:
        from importlib.metadata import version
        return version("ember")
    except Exception:
        return "0.1.0+dev"


EMBER_VERSION = _ember_version()

_stats = {"hits": 0, "misses": 0, "damaged": 0, "writes": 0, "disabled_reason": None}


def stats() -> dict:
    """A copy of the counters."""
    return dict(_stats)


def reset_stats() -> None:
    for k in ("hits", "misses", "damaged", "writes"):
        _stats[k] = 0


def versions() -> dict:
    import llvmlite
    import llvmlite.binding as llvm
    return {"ember": EMBER_VERSION, "llvmlite": llvmlite.__version__,
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


_FINGERPRINT = None


def codegen_fingerprint() -> str:
    """Hash of the sources that decide generated code (ember/ir and ember/codegen, every file): a
    change there must not hit stale cache entries."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for path in sorted(p for d in ("ir", "codegen") for p in (root / d).rglob("*")
                           if p.suffix in (".py", ".cuh")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
        _FINGERPRINT = h.hexdigest()
    return _FINGERPRINT


def enabled() -> bool:
    return os.environ.get("EMBER_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


def cache_root() -> Path:
    env = os.environ.get("EMBER_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "ember"


def cache_dir() -> Path | None:
    """The private object directory, created 0700; None when the cache is off or unsafe."""
    if not enabled():
        _stats["disabled_reason"] = "EMBER_CACHE=0"
        return None
    root = cache_root()
    sub = root / "llvm"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        sub.mkdir(mode=0o700, exist_ok=True)
        for d in (root, sub):
            st = d.stat()
            if st.st_uid != os.getuid():
                _stats["disabled_reason"] = f"{d} is owned by another user"
                return None
        if root.stat().st_mode & 0o022:
            _stats["disabled_reason"] = f"{root} is writable by other users"
            return None
        if sub.stat().st_mode & 0o077:
            os.chmod(sub, stat.S_IRWXU)   # ours but made under a loose umask: make it private
    except OSError as e:
        _stats["disabled_reason"] = f"cannot use cache directory: {e}"
        return None
    _stats["disabled_reason"] = None
    return sub


def cache_key(source_text: str, target, extra: str = "") -> str:
    """sha256 over everything that changes the object code."""
    h = hashlib.sha256()
    parts = [source_text, json.dumps(versions(), sort_keys=True), target.triple, target.cpu,
             target.features, target.data_layout, extra]
    for p in parts:
        data = p.encode()
        h.update(len(data).to_bytes(8, "little"))   # length-prefixed: no ambiguity between parts
        h.update(data)
    return h.hexdigest()


def _path(key: str) -> Path | None:
    d = cache_dir()
    if d is None:
        return None
    if not all(c in "0123456789abcdef" for c in key) or len(key) != 64:
        raise ValueError(f"bad cache key {key!r}")
    return d / f"{key}.obj"


def load(key: str) -> bytes | None:
    """Verified payload for key, or None (miss, or damaged entry -- counted; caller rebuilds)."""
    p = _path(key)
    if p is None:
        return None
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        _stats["misses"] += 1
        return None
    except OSError:
        _stats["misses"] += 1
        return None
    payload = _verify(raw, key)
    if payload is None:
        _stats["damaged"] += 1
        _stats["misses"] += 1
        return None
    _stats["hits"] += 1
    return payload


def _verify(raw: bytes, key: str) -> bytes | None:
    if not raw.startswith(MAGIC):
        return None
    nl = raw.find(b"\n", len(MAGIC))
    if nl < 0:
        return None
    try:
        header = json.loads(raw[len(MAGIC):nl])
    except ValueError:
        return None
    payload = raw[nl + 1:]
    if not isinstance(header, dict) or header.get("key") != key or header.get("size") != len(payload):
        return None
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        return None
    return payload


def store(key: str, payload: bytes) -> None:
    """Atomically write (or overwrite) the entry for key.  Failures only cost the cache."""
    p = _path(key)
    if p is None:
        return
    header = json.dumps({"key": key, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(),
                         "versions": versions()}, sort_keys=True).encode()
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".obj")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + header + b"\n" + payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        return
    _stats["writes"] += 1
