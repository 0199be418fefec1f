"""ember.Tensor: dtypes, creation, properties, conversions, printing, operators, in-place ops, views."""
import copy
import math
import pickle

import numpy as np
import pytest

import ember as E
from tests.ops.helpers import NUMPY_WARNINGS_ARE_ERRORS, check, torch, needs_torch

pytestmark = NUMPY_WARNINGS_ARE_ERRORS

# ------------------------------------------------------------------------------------ dtypes
DTYPES = ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"]


@pytest.mark.parametrize("name", DTYPES)
def test_dtype_objects(name):
    d = getattr(E, name)
    assert isinstance(d, E.dtype) and repr(d) == f"ember.{name}"
    assert E.zeros(2, dtype=d).dtype is d
    assert E.zeros(2, dtype=d).numpy().dtype == np.dtype(name)
    assert pickle.loads(pickle.dumps(d)) is d and copy.deepcopy(d) is d


def test_dtype_aliases():
    assert E.float is E.float32 and E.double is E.float64 and E.half is E.float16
    assert E.long is E.int64 and E.int is E.int32 and E.short is E.int16
    assert E.float32.is_floating_point and not E.int64.is_floating_point
    assert E.get_default_dtype() is E.float32


def test_default_dtype_switch():
    E.set_default_dtype(E.float64)
    try:
        assert E.tensor([1.5]).dtype is E.float64 and E.ones(2).dtype is E.float64
        assert (E.tensor([1]) * 0.5).dtype is E.float64
    finally:
        E.set_default_dtype(E.float32)
    assert E.ones(2).dtype is E.float32


# ---------------------------------------------------------------------------------- creation
@pytest.mark.parametrize("data,dtype", [
    ([1, 2, 3], E.int64), ([1.0, 2], E.float32), ([True, False], E.bool), (3, E.int64), (2.5, E.float32), (True, E.bool),
    ([[1, 2], [3, 4]], E.int64), ([], E.float32), ([[1, 2.5], [3, 4]], E.float32), ((1, 2), E.int64),
    (np.array([1, 2], np.int32), E.int32), (np.float64(2.0), E.float64), ([True, 2], E.int64)])
def test_tensor_infers_dtype(data, dtype):
    t = E.tensor(data)
    assert t.dtype is dtype
    if torch is not None:
        tt = torch.tensor(data)
        assert t.dtype.name == str(tt.dtype).split(".")[1] and tuple(t.shape) == tuple(tt.shape)
        assert t.tolist() == tt.tolist()


def test_tensor_copies():
    a = np.array([1.0, 2.0])
    t = E.tensor(a)
    a[0] = 10
    assert t[0].item() == 1.0
    t2 = E.tensor(t)
    t2[0] = 5.0
    assert t[0].item() == 1.0


def test_from_numpy_shares_memory():
    a = np.arange(4.0)
    t = E.from_numpy(a)
    assert t.dtype is E.float64
    a[0] = 100
    assert t[0].item() == 100
    t[1] = -1.0
    assert a[1] == -1.0
    t.add_(1)
    assert a[2] == 3.0
    with pytest.raises(TypeError):
        E.from_numpy(np.array([1 + 2j]))
    with pytest.raises(TypeError):
        E.from_numpy([1, 2])


def test_as_tensor():
    a = np.arange(3, dtype=np.float32)
    t = E.as_tensor(a)
    a[0] = 7
    assert t[0].item() == 7
    assert E.as_tensor(t) is t
    assert E.as_tensor(a, dtype=E.float64).dtype is E.float64
    assert E.as_tensor([1, 2]).dtype is E.int64


@pytest.mark.parametrize("fn,args,kw", [
    ("zeros", (2, 3), {}), ("ones", ((2, 3),), {}), ("zeros", ([2, 3],), {"dtype": E.int32}), ("full", ((2, 2), 7), {}),
    ("full", ((2,), 1.5), {}), ("full", ((2,), True), {}), ("full", ((3,), 2), {"dtype": E.float64}),
    ("arange", (5,), {}), ("arange", (1, 7, 2), {}), ("arange", (0, 1, 0.1), {}), ("arange", (5.0,), {}),
    ("arange", (10, 0, -3), {}), ("arange", (0, 5), {"dtype": E.float32}), ("arange", (-1.5, 1.5, 0.5), {"dtype": E.float64}),
    ("linspace", (0, 1, 5), {}), ("linspace", (-2, 2, 1), {}), ("linspace", (0, 10, 7), {"dtype": E.float64}),
    ("eye", (3,), {}), ("eye", (2, 4), {}), ("eye", (3,), {"dtype": E.int64}), ("logspace", (0, 2, 3), {}),
    ("zeros", ((),), {}), ("ones", (0, 2), {}),
])
def test_factories(fn, args, kw):
    e = getattr(E, fn)(*args, **kw)
    if torch is None:
        return
    tkw = {k: (getattr(torch, v.name) if isinstance(v, E.dtype) else v) for k, v in kw.items()}
    t = getattr(torch, fn)(*args, **tkw)
    assert e.dtype.name == str(t.dtype).split(".")[1]
    assert tuple(e.shape) == tuple(t.shape)
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6, atol=1e-7)


def test_empty_and_like():
    x = E.ones(2, 3, dtype=E.float64)
    for fn in (E.zeros_like, E.ones_like, E.empty_like, E.rand_like, E.randn_like):
        y = fn(x)
        assert y.shape == (2, 3) and y.dtype is E.float64
    assert E.full_like(x, 3).tolist() == [[3.0] * 3] * 2
    assert E.zeros_like(x, dtype=E.int32).dtype is E.int32
    assert E.empty(3, 4).shape == (3, 4)
    assert E.ones_like(x, requires_grad=True).requires_grad
    assert E.randint_like(x, 5).shape == (2, 3)


def test_factory_keywords():
    t = E.zeros(2, dtype=E.float64, device="cpu", requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.device.type == "cpu" and t.dtype is E.float64
    assert E.tensor([1.0], requires_grad=True).requires_grad
    assert E.arange(3.0, requires_grad=True).requires_grad
    assert E.ones(2, device=E.device("cpu")).device == "cpu"
    with pytest.raises(RuntimeError, match="floating point"):
        E.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="negative dimension"):
        E.zeros(-1)


def test_random_reproducible():
    for fn in (lambda: E.rand(3, 4), lambda: E.randn(5), lambda: E.randint(0, 10, (6,)), lambda: E.randperm(8),
               lambda: E.rand(2, dtype=E.float64), lambda: E.normal(0.0, 1.0, size=(3,))):
        E.manual_seed(123)
        a = fn()
        E.manual_seed(123)
        b = fn()
        assert a.tolist() == b.tolist()
    E.manual_seed(1)
    a, b = E.rand(4), E.rand(4)
    assert a.tolist() != b.tolist()


def test_random_ranges_and_stats():
    E.manual_seed(0)
    u = E.rand(20000)
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    n = E.randn(20000)
    assert abs(float(n.mean())) < 0.03 and abs(float(n.std()) - 1) < 0.03
    r = E.randint(3, 7, (1000,))
    assert r.dtype is E.int64 and set(r.tolist()) == {3, 4, 5, 6}
    assert E.randint(5, (2, 2)).shape == (2, 2)
    p = E.randperm(10)
    assert sorted(p.tolist()) == list(range(10)) and p.dtype is E.int64
    assert E.randn(2, 3, dtype=E.float16).dtype is E.float16


def test_generator():
    g = E.Generator().manual_seed(5)
    a = E.rand(3, generator=g)
    g2 = E.Generator()
    g2.manual_seed(5)
    assert E.rand(3, generator=g2).tolist() == a.tolist()
    assert g.initial_seed() == 5
    s = g.get_state()
    x = E.randn(4, generator=g)
    g.set_state(s)
    assert E.randn(4, generator=g).tolist() == x.tolist()
    E.manual_seed(5)
    E.rand(3, generator=g)  # a private generator leaves the global one alone
    E.manual_seed(5)
    assert E.rand(3).tolist() == a.tolist()
    st = E.get_rng_state()
    v = E.rand(2)
    E.set_rng_state(st)
    assert E.rand(2).tolist() == v.tolist()


def test_inplace_random():
    E.manual_seed(0)
    x = E.empty(1000).uniform_(-2, 3)
    assert -2 <= float(x.min()) and float(x.max()) < 3
    y = E.empty(5000, dtype=E.float64).normal_(1.0, 0.5)
    assert abs(float(y.mean()) - 1) < 0.05 and abs(float(y.std()) - 0.5) < 0.05 and y.dtype is E.float64
    E.manual_seed(3)
    a = E.empty(4).uniform_()
    E.manual_seed(3)
    assert E.empty(4).uniform_().tolist() == a.tolist()


# -------------------------------------------------------------------------------- properties
def test_properties():
    x = E.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and isinstance(x.shape, E.Size) and repr(x.shape) == "ember.Size([2, 3, 4])"
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.dtype is E.float32 and str(x.device) == "cpu" and repr(x.device) == "device(type='cpu')"
    assert x.T.shape == (4, 3, 2) and x.element_size() == 4 and x.nbytes == 96
    assert x.shape.numel() == 24 and x.shape[1:] == (3, 4) and isinstance(x.shape[1:], E.Size)
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(E.tensor(1.0))
    with pytest.raises(IndexError):
        x.size(3)


def test_item_tolist_numpy():
    assert E.tensor(2.5).item() == 2.5 and isinstance(E.tensor(3).item(), int)
    assert isinstance(E.tensor(True).item(), bool) and E.tensor([[4.0]]).item() == 4.0
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        E.ones(2).item()
    assert E.tensor([[1, 2], [3, 4]]).tolist() == [[1, 2], [3, 4]] and E.tensor(1.5).tolist() == 1.5
    a = E.arange(3.0)
    assert isinstance(a.numpy(), np.ndarray) and np.shares_memory(a.numpy(), a.numpy())
    with pytest.raises(RuntimeError, match="requires grad"):
        E.ones(2, requires_grad=True).numpy()
    assert E.ones(2, requires_grad=True).detach().numpy().tolist() == [1.0, 1.0]
    assert np.asarray(E.ones(2)).dtype == np.float32


def test_python_scalars():
    assert bool(E.tensor([1])) is True and bool(E.tensor(0.0)) is False
    assert int(E.tensor(3.7)) == 3 and float(E.tensor(2)) == 2.0 and int(E.tensor([[5]])) == 5
    assert [10, 20, 30][E.tensor(1)] == 20 and complex(E.tensor(1.0)) == 1 + 0j
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(E.ones(2))
    with pytest.raises(RuntimeError):
        float(E.ones(2))
    with pytest.raises(TypeError):
        [1, 2][E.tensor(1.0)]
    assert math.isclose(math.sqrt(E.tensor(4.0)), 2.0)


def test_format():
    assert f"{E.tensor(3.14159):.2f}" == "3.14" and f"{E.tensor(7):03d}" == "007"
    assert f"{E.tensor(2.5)}" == "2.5" and "{:>6}".format(E.tensor(1)) == "     1"
    assert f"{E.ones(2)}" == str(E.ones(2))


def test_iteration():
    x = E.arange(6).view(2, 3)
    rows = list(x)
    assert len(rows) == 2 and rows[1].tolist() == [3, 4, 5]
    assert [int(v) for v in E.arange(3)] == [0, 1, 2]
    assert [r.tolist() for r in reversed(x)] == [[3, 4, 5], [0, 1, 2]]
    with pytest.raises(TypeError, match="0-d"):
        iter(E.tensor(1.0))
    assert 4 in x and 9 not in x
    a, b = E.tensor([1.0, 2.0])
    assert (a.item(), b.item()) == (1.0, 2.0)


@pytest.mark.parametrize("method,dtype", [("float", E.float32), ("double", E.float64), ("half", E.float16),
                                          ("long", E.int64), ("int", E.int32), ("short", E.int16), ("bool", E.bool),
                                          ("byte", E.uint8), ("char", E.int8)])
def test_conversion_methods(method, dtype):
    x = E.tensor([0.0, 1.7, -2.2, 300.0])
    y = getattr(x, method)()
    assert y.dtype is dtype
    if torch is not None and method not in ("byte",):
        assert y.tolist() == getattr(torch.tensor([0.0, 1.7, -2.2, 300.0]), method)().tolist()


def test_to_and_type():
    x = E.tensor([1.5, 2.5])
    assert x.to(E.float64).dtype is E.float64 and x.to("cpu") is x and x.to(x) is x
    assert x.to(E.tensor([1])).dtype is E.int64 and x.to("cpu", E.int32).dtype is E.int32
    assert x.to(device="cpu", dtype=E.float16).dtype is E.float16 and x.to(E.float32) is x
    assert x.to(E.float32, copy=True) is not x
    assert x.type() == "ember.FloatTensor" and E.tensor([1]).type() == "ember.LongTensor"
    assert x.type(E.int64).dtype is E.int64 and x.type("ember.DoubleTensor").dtype is E.float64
    assert x.type_as(E.tensor([1])).dtype is E.int64 and x.cpu() is x
    y = E.tensor([1.0], requires_grad=True)
    z = y.to(E.float64)
    assert z.grad_fn is not None
    z.sum().backward()
    assert y.grad.dtype is E.float32 and y.grad.tolist() == [1.0]


def test_clone_detach_contiguous():
    x = E.arange(6.0).view(2, 3)
    c = x.clone()
    c[0, 0] = 100.0
    assert x[0, 0].item() == 0.0
    d = x.detach()
    d[0, 0] = 50.0
    assert x[0, 0].item() == 50.0
    t = x.t()
    assert not t.is_contiguous() and t.contiguous().is_contiguous()
    assert t.contiguous().tolist() == t.tolist() and x.contiguous() is x


def test_requires_grad_props():
    x = E.ones(2, requires_grad=True)
    assert x.is_leaf and x.grad is None and x.grad_fn is None
    y = x * 2
    assert not y.is_leaf and y.requires_grad and y.grad_fn.name() == "MulBackward0"
    z = E.ones(2).requires_grad_()
    assert z.requires_grad
    z.requires_grad_(False)
    assert not z.requires_grad
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    assert x.data.requires_grad is False and x.data.tolist() == [1.0, 1.0]
    x.data = E.zeros(2)
    assert x.tolist() == [0.0, 0.0] and x.requires_grad


# ---------------------------------------------------------------------------------- printing
PRINT_CASES = [
    [1.0, 2.0, 3.0], [1.5, -2.25, 3.0], [[1, 2], [3, 4]], [0.0001, 1.0], [1e-5, 1.0], [1e10, 1.0], [123456789.0, 1.0],
    [float("nan"), 1.0, float("inf"), -float("inf")], [float("nan")], [float("inf"), 1.5], 3.5, 2.0, -0.0, 0.1,
    [True, False], [-1, 100000], [[1.123456, 2.0], [-3.0, 4.0]], [0.1, 0.2, 0.3], [1e-10], [1e-3, 1e3], [5e-5, 1.2],
    [], [[]], [0.0, 0.0], [1.0, -1.0], [-1e-5, 1.0], [12345.678, 0.5], [1e8, 1.0], [1e8, 1.5], [100.0, 1.25],
    [1000.5, 0.25], [-5.0], 7, -7, True, [[[1.0, -2.0]], [[3.5, 4.0]]], [1e-4, 1.0], [[0.5] * 30] * 2,
]


@needs_torch
@pytest.mark.parametrize("dtype", [None, "float64", "float16", "int32", "int64", "uint8", "int8", "bool"])
@pytest.mark.parametrize("data", PRINT_CASES, ids=repr)
def test_str_matches_torch(data, dtype):
    arr = np.array(data, dtype=float) if not isinstance(data, bool) else None
    if dtype and dtype != "bool" and ("int" in dtype) and arr is not None and not np.isfinite(arr).all():
        pytest.skip("non-finite to int")
    if dtype == "uint8" and arr is not None and (arr < 0).any():
        pytest.skip("negative to uint8")
    if dtype and dtype != "bool" and "int" in dtype and arr is not None and \
            (np.abs(arr[np.isfinite(arr)]) > np.iinfo(dtype).max).any():
        pytest.skip("out of range (torch raises)")
    t = torch.tensor(data, dtype=getattr(torch, dtype) if dtype else None)
    e = E.tensor(data, dtype=getattr(E, dtype) if dtype else None)
    assert str(e) == str(t).replace("torch", "ember")
    assert repr(e) == repr(t).replace("torch", "ember")


@needs_torch
@pytest.mark.parametrize("shape", [(2000,), (40, 50), (3, 400), (2, 3, 200), (10, 10, 11), (1001,), (30,), (12, 8),
                                   (3, 4, 5), (2, 2, 2, 2), (0, 3), (1, 1, 1)])
@pytest.mark.parametrize("kind", ["arange", "normal", "int", "scaled", "bool"])
def test_str_shapes_matches_torch(shape, kind):
    n = int(np.prod(shape))
    rng = np.random.default_rng(0)
    vals = {"arange": lambda: np.arange(n, dtype=np.float32), "normal": lambda: rng.normal(size=n).astype(np.float32),
            "int": lambda: np.arange(n) - n // 2, "scaled": lambda: (rng.normal(size=n) * 1e-5).astype(np.float64),
            "bool": lambda: rng.random(n) < 0.5}[kind]().reshape(shape)
    assert str(E.tensor(vals)) == str(torch.tensor(vals)).replace("torch", "ember")


@needs_torch
def test_str_grad_suffixes():
    for make in (lambda m: m.ones(3, requires_grad=True), lambda m: m.ones(2, 2, requires_grad=True) * 2,
                 lambda m: (m.ones(3, requires_grad=True) + 1), lambda m: m.ones(3, requires_grad=True).sum(),
                 lambda m: m.ones(3, requires_grad=True).exp(), lambda m: m.zeros(60, dtype=m.float64, requires_grad=True),
                 lambda m: m.ones(2, 3, dtype=m.float64, requires_grad=True).sum(), lambda m: m.ones(3).requires_grad_().detach()):
        assert str(make(E)) == str(make(torch)).replace("torch", "ember")


@needs_torch
def test_printoptions():
    try:
        for kw in ({"precision": 2}, {"threshold": 5}, {"edgeitems": 1, "threshold": 5}, {"linewidth": 30},
                   {"sci_mode": True}, {"sci_mode": False}, {"profile": "short"}, {"profile": "full"}):
            E.set_printoptions(**kw)
            torch.set_printoptions(**kw)
            for v in ([1.12345, 2.0, 1e-6], np.arange(20.0), [[1.5] * 12] * 3):
                assert str(E.tensor(v)) == str(torch.tensor(v)).replace("torch", "ember"), kw
            E.set_printoptions(profile="default")
            torch.set_printoptions(profile="default")
    finally:
        E.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")


# --------------------------------------------------------------------------------- operators
OPS = ["__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
       "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__lt__", "__le__", "__gt__",
       "__ge__", "__eq__", "__ne__"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("other", [2, 1.5])
def test_operator_with_scalar(op, other):
    grad = op not in ("__floordiv__", "__rfloordiv__", "__mod__", "__rmod__")
    check(op, lambda x: getattr(x, op)(other), None, (3, 4), low=0.5, high=3, grad=grad)
    check(op, lambda x: getattr(x, op)(other), None, (3, 4), dtype="int64", low=1, high=4)


def test_unary_operators():
    check("neg", lambda x: -x, None, (3,))
    check("pos", lambda x: +x, None, (3,))
    check("abs", lambda x: abs(x), None, (3,))
    check("invert", lambda x: ~x, None, (3,), dtype="bool")


def test_python_ops_with_numpy_array_on_left():
    x = E.tensor([1.0, 2.0])
    r = np.float32(2.0) + x
    assert isinstance(r, E.Tensor) and r.tolist() == [3.0, 4.0]


def test_eq_with_non_tensor_is_false():
    x = E.tensor([1.0])
    assert (x == None) is False and (x != "a") is True  # noqa: E711


INPLACE = [("add_", (2,), {}), ("add_", (None,), {"alpha": 3}), ("sub_", (None,), {}), ("mul_", (0.5,), {}),
           ("div_", (None,), {}), ("clamp_", (-0.5, 0.5), {}), ("pow_", (2,), {}), ("exp_", (), {}), ("neg_", (), {}),
           ("masked_fill_", ("mask", 0.0), {}), ("zero_", (), {}), ("fill_", (3.0,), {}), ("sqrt_", (), {}),
           ("abs_", (), {}), ("sigmoid_", (), {}), ("tanh_", (), {}), ("floor_", (), {}), ("clamp_min_", (0.0,), {})]


@pytest.mark.parametrize("name,args,kw", INPLACE, ids=[n for n, _, _ in INPLACE])
def test_inplace_methods(name, args, kw):
    def fn(x, y):
        z = x.clone()
        a = tuple(y if v is None else (x.detach() > 0 if v == "mask" else v) for v in args)
        r = getattr(z, name)(*a, **kw)
        assert r is z
        return z
    check(name, fn, None, (3, 4), (3, 4), low=0.1, high=2)


def test_inplace_bumps_version_and_keeps_identity():
    x = E.zeros(3)
    v0 = x._version
    y = x.add_(1)
    assert y is x and x._version == v0 + 1 and x.tolist() == [1.0, 1.0, 1.0]
    x += 1
    assert x._version == v0 + 2
    x.copy_(E.tensor([1, 2, 3]))
    assert x.tolist() == [1.0, 2.0, 3.0] and x.dtype is E.float32 and x._version == v0 + 3
    x.copy_(E.tensor(5.0))
    assert x.tolist() == [5.0] * 3
    ident = id(x)
    x *= 2
    assert id(x) == ident


def test_inplace_dtype_rules():
    x = E.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        x.mul_(1.5)
    y = E.tensor([1.0, 2.0])
    y.add_(E.tensor([1, 1]))
    assert y.dtype is E.float32
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape|broadcast"):
        E.zeros(3).add_(E.ones(2, 3))


def test_views_share_version_counter():
    x = E.zeros(4)
    v = x[1:3]
    v.fill_(1.0)
    assert x.tolist() == [0.0, 1.0, 1.0, 0.0] and x._version == v._version == 1
    x.zero_()
    assert v.tolist() == [0.0, 0.0] and v._version == 2
    w = x.view(2, 2)
    w[1, 1] = 9.0
    assert x[3].item() == 9.0 and x._version == 3
    u = x.unsqueeze(0)
    u.mul_(2)
    assert x[3].item() == 18.0


def test_deepcopy_and_pickle():
    x = E.tensor([1.0, 2.0], requires_grad=True)
    y = copy.deepcopy(x)
    assert y.requires_grad and y.tolist() == x.tolist() and y is not x
    z = pickle.loads(pickle.dumps(x))
    assert z.tolist() == [1.0, 2.0] and z.requires_grad
    with pytest.raises(RuntimeError, match="leaves"):
        copy.deepcopy(x * 2)
