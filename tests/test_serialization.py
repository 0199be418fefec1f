"""ember.save / ember.load: round trips, sharing, compact views, damage detection, no code execution."""
import io
import math
from collections import OrderedDict

import numpy as np
import pytest

import ember
from ember import optim


def _rt(obj, **kw):
    b = io.BytesIO()
    ember.save(obj, b)
    b.seek(0)
    return ember.load(b, **kw)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64, ember.float16, ember.int64, ember.int32,
                                   ember.int16, ember.int8, ember.uint8, ember.bool])
def test_tensor_dtypes_round_trip(dtype):
    x = (ember.arange(24).reshape(2, 3, 4) % 7).to(dtype)
    y = _rt(x)
    assert y.dtype is dtype and tuple(y.shape) == (2, 3, 4)
    np.testing.assert_array_equal(y.numpy(), x.numpy())


def test_scalars_empty_and_zero_dim():
    x = {"zero_d": ember.tensor(3.5), "empty": ember.zeros(0, 3), "one": ember.ones(1)}
    y = _rt(x)
    assert y["zero_d"].shape == () and y["zero_d"].item() == 3.5
    assert tuple(y["empty"].shape) == (0, 3)


def test_python_values_round_trip():
    obj = {"none": None, "t": True, "f": False, "i": -(2 ** 70), "x": 0.1, "nan": float("nan"),
           "inf": -float("inf"), "s": "héllo", "b": b"\x00\xff", "tuple": (1, (2, [3])), 7: "int key",
           (1, 2): "tuple key", "dtype": ember.float16, "size": ember.Size([2, 3]), "c": 1 + 2j,
           "set": {1, 2}, "od": OrderedDict([("b", 1), ("a", 2)])}
    y = _rt(obj)
    assert math.isnan(y.pop("nan")) and math.isnan(obj.pop("nan"))
    assert y == obj
    assert type(y["tuple"]) is tuple and type(y["tuple"][1][1]) is list
    assert type(y["od"]) is OrderedDict and list(y["od"]) == ["b", "a"]
    assert y["dtype"] is ember.float16 and isinstance(y["size"], ember.Size)


def test_requires_grad_kept():
    p = ember.randn(3, requires_grad=True)
    y = _rt([p, p.detach()])
    assert y[0].requires_grad and not y[1].requires_grad


def test_shared_tensor_stays_shared():
    x = ember.zeros(4)
    a, b = _rt([x, x])
    a[0] = 5
    assert b[0].item() == 5


def test_overlapping_views_share_one_storage():
    x = ember.arange(12).float().reshape(3, 4)
    d = _rt({"x": x, "row": x[1], "t": x.t()})
    d["row"][2] = -1
    assert d["x"][1, 2].item() == -1 and d["t"][2, 1].item() == -1
    np.testing.assert_array_equal(d["t"].numpy(), d["x"].numpy().T)


def test_views_write_the_storage_they_reach_with_strides_kept():
    big = ember.zeros(1000, 1000)
    b1 = io.BytesIO()
    ember.save(big[:2], b1)
    assert len(b1.getvalue()) < 10_000          # only the bytes the view reaches, not all of big
    y = _rt(big.t()[:, :3])
    assert y.stride() == (1, 1000) and tuple(y.shape) == (1000, 3)   # a transpose stays a transpose
    x = ember.arange(10.0)
    y = _rt(x[::3])
    assert y.stride() == (3,) and y.tolist() == [0.0, 3.0, 6.0, 9.0]


def test_path_and_file_object(tmp_path):
    x = ember.randn(5)
    ember.save(x, tmp_path / "a.pt")
    ember.save(x, str(tmp_path / "b.pt"))
    with open(tmp_path / "c.pt", "wb") as f:
        ember.save(x, f)
    for n in "abc":
        np.testing.assert_array_equal(ember.load(tmp_path / f"{n}.pt").numpy(), x.numpy())
    with open(tmp_path / "a.pt", "rb") as f:
        np.testing.assert_array_equal(ember.load(f).numpy(), x.numpy())


def test_several_objects_in_one_stream():
    b = io.BytesIO()
    ember.save(1, b)
    ember.save(ember.ones(2), b)
    b.seek(0)
    assert ember.load(b) == 1 and ember.load(b).sum().item() == 2


def test_optimizer_and_module_like_state_dicts():
    p = ember.randn(4, 3, requires_grad=True)
    opt = optim.Adam([p], lr=1e-3, amsgrad=True)
    (p * p).sum().backward()
    opt.step()
    sd = _rt(opt.state_dict())
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999) and sd["param_groups"][0]["params"] == [0]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    opt2 = optim.Adam([ember.zeros(4, 3, requires_grad=True)])
    opt2.load_state_dict(sd)
    model_sd = OrderedDict([("fc.weight", ember.randn(2, 3)), ("fc.bias", ember.zeros(2))])
    model_sd._metadata = OrderedDict([("", {"version": 1})])
    y = _rt(model_sd)
    assert list(y) == ["fc.weight", "fc.bias"] and y._metadata == {"": {"version": 1}}


def test_unknown_type_raises_type_error_naming_it():
    class Thing:
        pass
    with pytest.raises(TypeError, match=r"Thing.*\(at obj\['a'\]\[1\]\)"):
        ember.save({"a": [1, Thing()]}, io.BytesIO())
    with pytest.raises(TypeError, match="function"):
        ember.save(lambda: 0, io.BytesIO())


def _saved(obj):
    b = io.BytesIO()
    ember.save(obj, b)
    return b.getvalue()


@pytest.mark.parametrize("cut", [0, 5, 20, 40, 200, -9, -1])
def test_truncated_file_is_detected(cut):
    data = _saved({"w": ember.randn(100), "b": ember.zeros(3)})
    with pytest.raises(RuntimeError, match="truncated/damaged"):
        ember.load(io.BytesIO(data[:cut] if cut else b""))


def test_flipped_bytes_are_detected():
    data = bytearray(_saved({"w": ember.randn(100)}))
    for pos in (30, len(data) - 100):        # in the header, in the tensor data
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(RuntimeError, match="truncated/damaged.*checksum"):
            ember.load(io.BytesIO(bytes(bad)))


def test_damaged_file_names_path(tmp_path):
    f = tmp_path / "x.pt"
    f.write_bytes(_saved(ember.ones(10))[:-20])
    with pytest.raises(RuntimeError, match="x.pt"):
        ember.load(f)


def test_foreign_files_are_refused_without_unpickling(tmp_path):
    import pickle
    with pytest.raises(RuntimeError, match="pickle"):
        ember.load(io.BytesIO(pickle.dumps({"a": 1})))
    with pytest.raises(RuntimeError, match="zip"):
        ember.load(io.BytesIO(b"PK\x03\x04" + b"\0" * 100))


def test_map_location_forms():
    x = ember.arange(3)
    assert _rt(x, map_location="cpu").device.type == "cpu"
    assert _rt(x, map_location={"cuda:0": "cpu"}).device.type == "cpu"
    seen = []
    y = _rt(x, map_location=lambda t, loc: (seen.append(loc), t * 2)[1])
    assert seen == ["cpu"] and y.tolist() == [0, 2, 4]


def test_format_is_documented_layout():
    data = _saved(ember.ones(2))
    assert data[:8] == b"\x89EMBER\r\n" and data[-8:] == b"EMBEREND"
    import json
    import struct
    _, version, _, hlen = struct.unpack("<8sIIQ", data[:24])
    header = json.loads(data[24:24 + hlen])
    assert version == 2 and header["format"] == "ember-checkpoint"
    assert header["storages"][0]["nbytes"] == 8 and header["root"]["$tensor"]["dtype"] == "float32"


def test_atomic_save_leaves_no_temp_files(tmp_path):
    ember.save({"a": ember.ones(2)}, tmp_path / "m.pt")
    with pytest.raises(TypeError):
        ember.save({"a": lambda: 0}, tmp_path / "n.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_module_state_dict_and_parameters_round_trip(tmp_path):
    nn = pytest.importorskip("ember.nn")
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    ember.save(model.state_dict(), tmp_path / "m.pt")
    sd = ember.load(tmp_path / "m.pt")
    assert list(sd) == list(model.state_dict())
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    other.load_state_dict(sd)
    x = ember.randn(5, 4)
    np.testing.assert_array_equal(other(x).detach().numpy(), model(x).detach().numpy())
    p = _rt(nn.Parameter(ember.ones(2)))
    assert isinstance(p, nn.Parameter) and p.requires_grad
    params = _rt(list(model.parameters()))
    assert all(isinstance(q, nn.Parameter) for q in params)


class _Pipe:
    """A stream that can only be read (no seek, no tell, no readinto), like a pipe or a socket."""

    def __init__(self, data):
        self._b = io.BytesIO(data)

    def read(self, n=-1):
        return self._b.read(n)


def test_non_seekable_stream():
    b = io.BytesIO()
    ember.save({"w": ember.arange(5.0)}, b)
    ember.save([1, ember.ones(2)], b)
    p = _Pipe(b.getvalue())
    assert ember.load(p)["w"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert ember.load(p)[1].tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="truncated/damaged"):
        ember.load(_Pipe(b.getvalue()[:150]))
