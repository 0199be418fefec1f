"""Whole-object checkpoints with PyTorch 2.6 semantics: ember.save(model) works; ember.load of it needs
weights_only=False or the classes allow-listed; otherwise nothing runs and the error says how."""
import argparse
import collections
import enum
import io
import pickle

import numpy as np
import pytest

import ember
import ember.serialization as ser
from ember import nn, optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(8, 4)
        self.head = nn.Linear(4, 8)
        self.back = nn.Linear(8, 4)
        self.back.weight = nn.Parameter(self.head.weight.t().detach())   # an unrelated param
        self.tied = self.fc                                             # one module twice
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x):
        x = self.bn(self.conv(x)).flatten(1)[:, :8]
        return self.back(self.act(self.head(self.tied(x))))


NET_CLASSES = [Net, nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.GELU]


class Color(enum.Enum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


class Sneaky:
    """A class whose construction would be visible: loading it refused must not build it."""
    built = 0

    def __setstate__(self, state):
        Sneaky.built += 1
        self.__dict__.update(state)


def _bytes(obj):
    b = io.BytesIO()
    ember.save(obj, b)
    return b.getvalue()


def _load(raw, **kw):
    return ember.load(io.BytesIO(raw), **kw)


@pytest.fixture(autouse=True)
def _clean_allow_list():
    ser.clear_safe_globals()
    yield
    ser.clear_safe_globals()


def _trained():
    ember.manual_seed(0)
    m = Net()
    opt = optim.AdamW(m.parameters(), lr=1e-2)
    x = ember.randn(3, 1, 4, 4)
    for _ in range(2):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
    return m, opt, x


def test_whole_module_and_optimizer_round_trip_with_weights_only_false():
    m, opt, x = _trained()
    raw = _bytes({"model": m, "opt": opt, "epoch": 3})
    d = _load(raw, weights_only=False)
    m2, opt2 = d["model"], d["opt"]
    assert type(m2) is Net and type(opt2) is optim.AdamW and d["epoch"] == 3
    m.eval(), m2.eval()
    np.testing.assert_array_equal(m2(x).detach().numpy(), m(x).detach().numpy())
    assert m2.tied is m2.fc                                 # shared submodule stays one object
    assert isinstance(m2.fc.weight, nn.Parameter) and m2.fc.weight.requires_grad
    assert opt2.param_groups[0]["params"][0] is next(m2.parameters())   # optimizer holds the same params
    assert set(opt2.state) == set(m2.parameters())
    np.testing.assert_array_equal(m2.bn.running_mean.numpy(), m.bn.running_mean.numpy())
    m2.train()
    opt2.zero_grad()
    m2(x).pow(2).mean().backward()          # and it keeps training
    opt2.step()


def test_default_load_refuses_whole_objects_and_names_every_class():
    m, _, _ = _trained()
    raw = _bytes(m)
    with pytest.raises(pickle.UnpicklingError) as ei:
        _load(raw)
    msg = str(ei.value)
    for cls in NET_CLASSES:
        assert f"{cls.__module__}.{cls.__qualname__}" in msg
    assert "weights_only" in msg and "add_safe_globals" in msg and "safe_globals([" in msg
    with pytest.raises(pickle.UnpicklingError, match="BatchNorm2d"):   # one class short: still refused
        with ser.safe_globals([c for c in NET_CLASSES if c is not nn.BatchNorm2d]):
            _load(raw)


def test_refusal_message_reads_like_pytorchs():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError) as te:
        torch.load(buf)
    with pytest.raises(pickle.UnpicklingError) as ee:
        _load(_bytes(nn.Linear(2, 2)))
    for phrase in ("Weights only load failed", "WeightsUnpickler error: Unsupported global: GLOBAL",
                   "was not an allowed global by default", "add_safe_globals([", "safe_globals([",
                   "weights_only` set to `False`", "arbitrary code execution"):
        assert phrase in str(te.value) and phrase in str(ee.value), phrase


def test_allow_list_api():
    m, _, x = _trained()
    raw = _bytes(m)
    with ser.safe_globals(NET_CLASSES):
        assert set(ser.get_safe_globals()) == set(NET_CLASSES)
        m2 = _load(raw)
    assert ser.get_safe_globals() == []                    # the context manager undoes what it added
    m.eval(), m2.eval()
    np.testing.assert_array_equal(m2(x).detach().numpy(), m(x).detach().numpy())
    ser.add_safe_globals(NET_CLASSES[:2])
    with ser.safe_globals(NET_CLASSES):
        _load(raw)
    assert set(ser.get_safe_globals()) == set(NET_CLASSES[:2])   # entries added before are kept
    ser.add_safe_globals([(c, f"{c.__module__}.{c.__qualname__}") for c in NET_CLASSES[2:]])
    assert type(_load(raw)) is Net
    ser.clear_safe_globals()
    assert ser.get_safe_globals() == []
    with pytest.raises(ValueError, match="length 2"):
        ser.add_safe_globals([(Net, "a", "b")])
    with pytest.raises(TypeError, match="str"):
        ser.add_safe_globals([(Net, 3)])


def test_refused_load_builds_nothing():
    s = Sneaky()
    s.value = 1
    raw = _bytes([s])
    Sneaky.built = 0
    with pytest.raises(pickle.UnpicklingError, match="Sneaky"):
        _load(raw)
    assert Sneaky.built == 0
    assert _load(raw, weights_only=False)[0].value == 1 and Sneaky.built == 1


def test_plain_python_objects():
    ns = argparse.Namespace(lr=0.1, name="run")
    obj = {"ns": ns, "color": Color.RED, "pt": Point(1, 2), "cnt": collections.Counter("aab"),
           "dd": collections.defaultdict(list, {"a": [1]}), "fs": frozenset({1}), "ba": bytearray(b"xy"),
           "fn": np.mean, "cls": nn.Linear, "np": np.float32(1.5), "slots": slice(1, 5, 2)}
    raw = _bytes(obj)
    d = _load(raw, weights_only=False)
    assert d["ns"] == ns and d["color"] is Color.RED and d["pt"] == Point(1, 2) and type(d["pt"]) is Point
    assert d["cnt"] == collections.Counter("aab") and d["dd"]["a"] == [1] and d["dd"]["zz"] == []
    assert d["fs"] == frozenset({1}) and d["ba"] == bytearray(b"xy") and d["fn"] is np.mean
    assert d["cls"] is nn.Linear and d["np"] == 1.5 and d["slots"] == slice(1, 5, 2)
    with pytest.raises(pickle.UnpicklingError, match="argparse.Namespace"):
        _load(raw)
    with ser.safe_globals([argparse.Namespace]):           # allow-listing just what a dict needs
        assert _load(_bytes({"args": ns}))["args"] == ns
    plain = {"c": collections.Counter("ab"), "fs": frozenset({2}), "ba": bytearray(b"z")}
    assert _load(_bytes(plain)) == plain                   # data-only builtins are allowed by default


def test_cycles_and_shared_containers():
    a = [1]
    a.append(a)
    shared = {"k": 1}
    d = _load(_bytes({"a": a, "x": [shared, shared]}), weights_only=False)
    assert d["a"][1] is d["a"] and d["x"][0] is d["x"][1]
    s = Sneaky()
    s.me = s
    s2 = _load(_bytes(s), weights_only=False)
    assert s2.me is s2


def test_unsaveable_values_name_their_path():
    with pytest.raises(TypeError, match=r"lambda.*\(at obj\['f'\]\)|\(at obj\['f'\]\).*lambda"):
        ember.save({"f": lambda: 0}, io.BytesIO())
    import threading
    with pytest.raises(TypeError, match=r"lock.*obj\['lock'\]|obj\['lock'\].*lock"):
        ember.save({"lock": threading.Lock()}, io.BytesIO())


def test_foreign_pickles_are_still_refused():
    with pytest.raises(RuntimeError, match="never unpickles"):
        ember.load(io.BytesIO(pickle.dumps(nn.Linear(2, 2))), weights_only=False)


def test_get_unsafe_globals_in_checkpoint(tmp_path):
    m, _, _ = _trained()
    ember.save({"model": m, "args": argparse.Namespace(lr=1)}, tmp_path / "m.pt")
    names = ser.get_unsafe_globals_in_checkpoint(tmp_path / "m.pt")
    assert names[0] == f"{Net.__module__}.Net" and "argparse.Namespace" in names
    assert "collections.OrderedDict" not in names            # allowed by default
    with ser.safe_globals(NET_CLASSES):
        assert ser.get_unsafe_globals_in_checkpoint(tmp_path / "m.pt") == ["argparse.Namespace"]
    assert ser.get_unsafe_globals_in_checkpoint(io.BytesIO(_bytes(m.state_dict()))) == []
