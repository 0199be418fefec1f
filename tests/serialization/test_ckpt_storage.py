"""Faithful storage: views keep strides and sharing (across dtypes), expansions write only their
storage, mmap=True maps the file, one small tensor never pins the others, format-1 files still load."""
import io
import json
import mmap
import os
import struct
from collections import OrderedDict

import numpy as np
import pytest

import ember
from ember.serialization.storages import _root

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "checkpoint_v1.ember")


def _rt(obj, **kw):
    b = io.BytesIO()
    ember.save(obj, b)
    b.seek(0)
    return ember.load(b, **kw)


def _header(obj):
    b = io.BytesIO()
    ember.save(obj, b)
    raw = b.getvalue()
    hlen = struct.unpack("<8sIIQ", raw[:24])[3]
    return json.loads(raw[24:24 + hlen]), len(raw)


def test_expanded_view_writes_its_storage_not_the_expansion():
    e = ember.arange(3.0).reshape(3, 1).expand(3, 1_000_000)
    header, size = _header(e)
    assert size < 1024 and header["storages"][0]["nbytes"] == 12
    y = _rt(e)
    assert y.stride() == (1, 0) and tuple(y.shape) == (3, 1_000_000)
    assert y[2, 999_999].item() == 2.0
    with pytest.raises(RuntimeError, match="single memory location"):
        y[:, :2].add_(1)   # in-place into an expansion is refused, as for the live tensor
    z = _rt(y)             # and it stays an expansion when saved again
    assert z.stride() == (1, 0) and _header(y)[1] < 1024


def test_views_of_one_storage_share_it_after_load_even_across_dtypes():
    x = ember.arange(8.0)
    bits = x.view(ember.int32)
    header, _ = _header([x[:4], x[4:], bits[2:6]])
    assert len(header["storages"]) == 1
    a, b, c = _rt([x[:4], x[4:], bits[2:6]])
    assert c.dtype is ember.int32 and c.tolist() == bits[2:6].tolist()
    b[0] = -1.0                          # element 4 of the storage, seen through the int32 view
    assert c[2].item() == np.float32(-1.0).view(np.int32)
    assert a.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert a._vc is b._vc is c._vc       # one version counter per storage, as views have


def test_strides_and_offsets_are_preserved_like_pytorch():
    torch = pytest.importorskip("torch")
    base_e, base_t = ember.arange(24.0).reshape(2, 3, 4), torch.arange(24.0).reshape(2, 3, 4)
    views = [lambda b: b.transpose(0, 2), lambda b: b[:, 1:, ::2], lambda b: b[1], lambda b: b.permute(2, 0, 1)[1:],
             lambda b: b[:, :1, :1].expand(2, 5, 3), lambda b: b.view(6, 4)[::3]]

    def torch_rt(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        return torch.load(buf)

    got_e = _rt([v(base_e) for v in views])
    got_t = torch_rt([v(base_t) for v in views])
    alone = [(_rt(v(base_e)), torch_rt(v(base_t))) for v in views]     # each view saved by itself
    for e, t in list(zip(got_e, got_t)) + alone:
        assert e.stride() == t.stride() and tuple(e.shape) == tuple(t.shape)
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    # after loading, writes through one view show in the others, as in PyTorch
    got_e[2][0, 0] = 100.0
    got_t[2][0, 0] = 100.0
    np.testing.assert_array_equal(got_e[0].numpy(), got_t[0].numpy())


def test_bytes_no_tensor_reaches_are_not_written():
    big = ember.zeros(1000, 1000)
    header, size = _header({"a": big[0, :10], "b": big[1, :10]})
    assert header["storages"][0]["nbytes"] == (1000 + 10) * 4 and size < 8000


def test_one_small_tensor_does_not_pin_the_others():
    d = _rt({"big": ember.zeros(1_000_000), "small": ember.ones(3)})
    owner = _root(d["small"]._data)
    held = owner.nbytes if owner.base is None else memoryview(owner.base).nbytes
    assert held < 1024                    # the buffer behind the small tensor holds only its storage


def test_mmap_maps_the_file_copy_on_write(tmp_path):
    p = tmp_path / "m.pt"
    x = ember.arange(100_000.0)
    ember.save({"x": x, "t": x.reshape(100, 1000).t(), "s": ember.tensor(3)}, p)
    before = p.read_bytes()
    d = ember.load(p, mmap=True)
    owner = _root(d["x"]._data).base
    assert isinstance(getattr(owner, "obj", owner), mmap.mmap)
    np.testing.assert_array_equal(d["x"].numpy(), x.numpy())
    assert d["t"].stride() == (1, 1000)
    d["x"][0] = -5.0                      # writable, private: the file does not change
    assert d["t"][0, 0].item() == -5.0 and p.read_bytes() == before
    with pytest.raises(ValueError, match="mmap"):
        ember.load(io.BytesIO(before), mmap=True)
    with open(p, "rb") as f:              # a real file object works too, and several objects in a row
        assert ember.load(f, mmap=True)["s"].item() == 3


def test_format_1_checkpoints_still_load():
    d = ember.load(DATA)
    names = ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"]
    for t, name in zip(d["dtypes"], names):
        assert t.dtype is getattr(ember, name if name != "bool" else "bool")
        assert t.tolist() == (ember.arange(6) % 5).to(t.dtype).tolist()
    x = d["x"]
    assert x.tolist() == ember.arange(12).float().reshape(3, 4).tolist()
    d["row"][2] = -1                      # format-1 overlapping views come back sharing
    assert x[1, 2].item() == -1 and d["t"][2, 1].item() == -1 and d["slice"][1, 1].item() == -1
    sd = d["model"]
    assert type(sd) is OrderedDict and list(sd) == ["weight", "bias"] and tuple(sd["weight"].shape) == (2, 3)
    assert sd._metadata[""]["version"] == 1
    assert isinstance(d["param"], ember.nn.Parameter) and d["param"].tolist() == [1.0, -2.0]
    py = d["py"]
    assert py["i"] == -(2 ** 70) and py["b"] == b"\x00\xff" and py["size"] == ember.Size([2, 3])
    assert py["tuple"] == (1, (2, [3])) and py[7] == "int key" and py["set"] == {1, 2} and py["c"] == 1 + 2j
    assert np.isnan(py["nan"]) and py["dtype"] is ember.float16 and list(py["od"]) == ["b", "a"]
    assert isinstance(d["nd"], np.ndarray) and d["nd"].tolist() == [0, 1, 2, 3]


def test_bfloat16_row_when_ember_has_it():
    if not hasattr(ember, "bfloat16"):
        pytest.skip("this ember has no bfloat16 yet")
    x = ember.arange(6.0).to(ember.bfloat16)
    y = _rt(x)
    assert y.dtype is ember.bfloat16 and y.float().tolist() == x.float().tolist()
