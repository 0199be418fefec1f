"""Hostile and damaged checkpoints: every size is checked before allocation, every malformed header
gives the documented "truncated/damaged" error (never a raw Python exception). Includes a fuzzer."""
import io
import json
import pickle
import random
import struct
import tracemalloc
import zlib
from collections import OrderedDict

import numpy as np
import pytest

import ember
from ember.serialization import CheckpointDamagedError

PREFIX = struct.Struct("<8sIIQ")


def _saved(obj):
    b = io.BytesIO()
    ember.save(obj, b)
    return b.getvalue()


def _craft(header, data=b"", version=2, data_nbytes=None, hlen=None):
    """A file whose checksums are all valid around an arbitrary header."""
    if isinstance(header, dict):
        header = dict(header)
        header.setdefault("format", "ember-checkpoint")
        header.setdefault("version", version)
        header.setdefault("data_nbytes", len(data) if data_nbytes is None else data_nbytes)
        header.setdefault("storages", [])
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    pre = PREFIX.pack(b"\x89EMBER\r\n", version, zlib.crc32(h), len(h) if hlen is None else hlen)
    pad = b"\0" * (-(len(pre) + len(h)) % 64)
    return pre + h + pad + data + b"EMBEREND"


def _storage(data):
    return {"offset": 0, "nbytes": len(data), "crc32": zlib.crc32(data)}


def _load_bounded(blob, limit=32 << 20, **kw):
    """Load under tracemalloc; fail if loading allocated more than `limit` bytes at its peak."""
    tracemalloc.start()
    try:
        return ember.load(io.BytesIO(blob), **kw)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < limit, f"load allocated {peak} bytes for a {len(blob)}-byte file"


def _damaged(blob, **kw):
    with pytest.raises(CheckpointDamagedError, match="truncated/damaged"):
        _load_bounded(blob, **kw)


def test_declared_sizes_larger_than_the_file_are_refused_before_allocating():
    four = b"\0" * 4
    rec = {"$tensor": {"storage": 0, "dtype": "float32", "shape": [1], "stride": [1], "offset": 0}}
    _damaged(_craft({"root": rec, "storages": [_storage(four)]}, four, data_nbytes=1 << 40))
    _damaged(_craft({"root": rec, "storages": [{"offset": 0, "nbytes": 1 << 40, "crc32": 0}]}, four,
                    data_nbytes=1 << 40))
    _damaged(_craft({"root": None}, hlen=1 << 40))                     # a header longer than the file
    _damaged(_craft({"root": None}, hlen=(1 << 64) - 1))
    blob = _craft({"root": rec, "storages": [_storage(four)]}, four)
    assert len(blob) < 1024 and _load_bounded(blob).shape == (1,)


def test_stride_zero_records_never_materialise():
    four = np.float32(2.5).tobytes()
    huge = {"$tensor": {"storage": 0, "dtype": "float32", "shape": [1 << 20, 1 << 20], "stride": [0, 0],
                        "offset": 0}}
    t = _load_bounded(_craft({"root": huge, "storages": [_storage(four)]}, four))
    assert tuple(t.shape) == (1 << 20, 1 << 20) and t.stride() == (0, 0)     # a view, as saved
    assert t[12345, 678].item() == 2.5
    small = {"$tensor": dict(huge["$tensor"], shape=[4, 4])}
    s = _load_bounded(_craft({"root": small, "storages": [_storage(four)]}, four))
    with pytest.raises(RuntimeError, match="single memory location"):    # as for a live expand()
        s.add_(1)
    nd = {"$ndarray": dict(huge["$tensor"])}
    a = _load_bounded(_craft({"root": nd, "storages": [_storage(four)]}, four))
    assert a.shape == (1 << 20, 1 << 20) and a.strides == (0, 0)
    too_big = {"$tensor": dict(huge["$tensor"], shape=[1 << 40, 1 << 40])}
    _damaged(_craft({"root": too_big, "storages": [_storage(four)]}, four))
    empty_big = {"$tensor": dict(huge["$tensor"], shape=[0, 1 << 61, 1 << 61])}
    _damaged(_craft({"root": empty_big, "storages": [_storage(four)]}, four))


GOOD = {"storage": 0, "dtype": "float32", "shape": [2], "stride": [1], "offset": 0}
BAD_RECORDS = [
    {**GOOD, "storage": 1}, {**GOOD, "storage": -1}, {**GOOD, "storage": "0"}, {**GOOD, "storage": True},
    {**GOOD, "dtype": "float128"}, {**GOOD, "dtype": 3}, {**GOOD, "shape": [3]}, {**GOOD, "shape": [-1]},
    {**GOOD, "shape": "2"}, {**GOOD, "shape": [2.0]}, {**GOOD, "stride": [1, 1]}, {**GOOD, "stride": [-1]},
    {**GOOD, "offset": 1}, {**GOOD, "offset": -1}, {**GOOD, "offset": 1 << 70}, {**GOOD, "shape": [1] * 65,
                                                                                 "stride": [1] * 65},
    {**GOOD, "device": 7}, {**GOOD, "device": "tpu:0"}, {**GOOD, "requires_grad": "yes"},
    {**GOOD, "dtype": "int64", "shape": [1], "requires_grad": True}, {k: v for k, v in GOOD.items() if k != "shape"},
]
BAD_ROOTS = [
    [1, 2], {"$list": 3}, {"$nope": 1}, {"$list": [], "$extra": 1}, {"$dict": [[1]]}, {"$dict": [[[1], 2]]},
    {"$dict": [[{"$dict": []}, 1]]}, {"$set": [{"$list": []}]}, {"$float": "1.5"}, {"$float": 3},
    {"$complex": [1]}, {"$complex": ["a", 1]}, {"$bytes": "zz"}, {"$bytes": 5}, {"$dtype": "float128"},
    {"$device": "nonsense"}, {"$size": [-1]}, {"$size": "x"}, {"$ref": 0}, {"$list": [{"$ref": 0}], "$id": 1},
    {"$tuple": [{"$ref": 0}], "$id": 0}, {"$list": [{"$list": [], "$id": 0}, {"$list": [], "$id": 0}]},
    {"$new": [1, 2]}, {"$call": [None, {"$tuple": []}, None, None, None, None, None]},
    {"$odict": [], "$metadata": {"$ref": 5}}, {"$list": [], "$metadata": {}}, {"$global": "os.system"},
    {"$tensor": "x"},
]


@pytest.mark.parametrize("rec", BAD_RECORDS, ids=range(len(BAD_RECORDS)))
def test_malformed_tensor_records_are_damage(rec):
    data = np.arange(2, dtype=np.float32).tobytes()
    _damaged(_craft({"root": {"$tensor": rec}, "storages": [_storage(data)]}, data))


@pytest.mark.parametrize("root", BAD_ROOTS, ids=range(len(BAD_ROOTS)))
def test_malformed_nodes_are_damage(root):
    _damaged(_craft({"root": root}))


@pytest.mark.parametrize("header", [
    b"not json", b"\xff\xfe", b"[]", b'{"root": 1}', json.dumps({"format": "x", "version": 2, "root": 1}).encode(),
    b"[" * 100000 + b"]" * 100000,
    {"root": None, "storages": 5}, {"root": None, "storages": [7]}, {"root": None, "data_nbytes": -1},
    {"root": None, "data_nbytes": "0"}, {"root": None, "version": 1},
    {"root": None, "storages": [{"offset": 0, "nbytes": 8, "crc32": 0}, {"offset": 4, "nbytes": 4, "crc32": 0}],
     "data_nbytes": 8},
    {"root": None, "storages": [{"offset": 0, "nbytes": 4, "crc32": -1}], "data_nbytes": 4},
])
def test_malformed_headers_are_damage(header):
    _damaged(_craft(header, b"\0" * 8 if isinstance(header, dict) and header.get("data_nbytes") == 8 else b""))


def _sample_checkpoint():
    lin = ember.nn.Linear(3, 2)
    x = ember.arange(12).float().reshape(3, 4)
    return _saved({"sd": lin.state_dict(), "x": x, "t": x.t(), "e": ember.ones(3, 1).expand(3, 4),
                   "i": ember.arange(5), "h": ember.ones(2).half(), "py": [1, 2.5, "s", (None, b"b")],
                   "od": OrderedDict(a=1), "nan": float("nan"), "set": {3}})


ACCEPTED = (CheckpointDamagedError, pickle.UnpicklingError)


def _survives(blob):
    """Loading must succeed or raise a documented error; nothing else, and no big allocation."""
    try:
        _load_bounded(blob)
    except ACCEPTED:
        pass
    except RuntimeError as e:
        assert str(e).startswith("ember.load:"), e      # newer version / not an ember file / no such dtype


def test_fuzz_byte_flips_and_truncations():
    blob = _sample_checkpoint()
    rng = random.Random(1234)
    for _ in range(300):
        bad = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        with pytest.raises(ACCEPTED + (RuntimeError,)):
            _survives(bytes(bad))
            raise CheckpointDamagedError("loaded")          # a flip the checksums missed is fine too
    for cut in range(0, len(blob), 7):
        _damaged(blob[:cut])


def _mutate(node, rng):
    """Replace one random node of a JSON tree with a hostile value."""
    hostile = [None, True, -1, 0, 1 << 40, 1 << 70, -(1 << 70), 1.5, "x", "float32", "$list", [], [0], {},
               {"$list": 1}, {"$ref": 0}, {"$ref": 99}, {"$tensor": {}}, {"$global": ["os", "system"]},
               {"$set": [[]]}, {"$dict": [[{"$list": []}, 1]]}, [[0, 1]], {"$size": [1 << 62]}]
    paths = []
    stack = [(node, None, None)]
    while stack:
        n, parent, key = stack.pop()
        paths.append((parent, key))
        if isinstance(n, dict):
            stack += [(v, n, k) for k, v in n.items()]
        elif isinstance(n, list):
            stack += [(v, n, i) for i, v in enumerate(n)]
    parent, key = paths[rng.randrange(1, len(paths))]
    parent[key] = rng.choice(hostile)


def test_fuzz_crafted_headers_with_valid_checksums():
    blob = _sample_checkpoint()
    hlen = PREFIX.unpack(blob[:24])[3]
    data_start = 24 + hlen + (-(24 + hlen) % 64)
    data = blob[data_start:-8]
    header = json.loads(blob[24:24 + hlen])
    rng = random.Random(99)
    for _ in range(400):
        h = json.loads(json.dumps(header))
        for _ in range(rng.randint(1, 3)):
            _mutate(h, rng)
        if not isinstance(h, dict):
            continue
        _survives(_craft(json.dumps(h).encode(), data))


def test_weights_only_refusal_runs_no_code_and_imports_nothing(monkeypatch):
    import os
    import sys
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd))
    evil = {"$call": [{"$global": ["os", "system"]}, {"$tuple": ["echo owned"]}, None, None, None, None, None]}
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL os\.system was not an allowed global"):
        ember.load(io.BytesIO(_craft({"root": evil})))
    unknown = {"$new": [{"$global": ["ember_serial_never_imported", "X"]}, {"$tuple": []}, None, None, None,
                        None, None]}
    with pytest.raises(pickle.UnpicklingError, match="ember_serial_never_imported.X"):
        ember.load(io.BytesIO(_craft({"root": unknown})))
    assert calls == [] and "ember_serial_never_imported" not in sys.modules


def test_allowed_class_cannot_smuggle_a_call():
    # an allowed class whose constructor argument is the result of a call to a refused function
    nested = {"$call": [{"$global": ["collections", "OrderedDict"]},
                        {"$tuple": [{"$call": [{"$global": ["builtins", "eval"]}, {"$tuple": ["1+1"]}, None,
                                               None, None, None, None]}]}, None, None, None, None, None]}
    with pytest.raises(pickle.UnpicklingError, match="eval"):
        ember.load(io.BytesIO(_craft({"root": nested})))
