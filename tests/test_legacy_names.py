"""The legacy names older scripts still use: ember.FloatTensor & co (constructors, isinstance, .type()),
Tensor.new, get_device, and the is_xpu / is_mps / is_sparse ... queries, against PyTorch's answers."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

NAMES = ["FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor", "ShortTensor", "CharTensor",
         "ByteTensor", "BoolTensor"]


@pytest.mark.parametrize("name", NAMES)
def test_constructors_match_torch(name):
    E, T = getattr(ember, name), getattr(torch, name)
    for args in [(2, 3), (4,), (ember.Size([2, 1]),), ()]:
        targs = tuple(torch.Size(a) if isinstance(a, ember.Size) else a for a in args)
        e, t = E(*args), T(*targs)
        assert tuple(e.shape) == tuple(t.shape) and e.dtype.name == str(t.dtype).split(".")[1], args
    data = [[1, 0, 3], [2, 5, 0]]
    e, t = E(data), T(data)
    np.testing.assert_array_equal(e.numpy(), t.numpy())
    assert e.dtype.name == str(t.dtype).split(".")[1]
    assert isinstance(e, E) and not isinstance(e.to(ember.float64 if name != "DoubleTensor" else ember.int64), E)
    assert not isinstance(np.zeros(2), E)
    e2 = E(e)                                          # same dtype: the same values, no copy of type
    np.testing.assert_array_equal(e2.numpy(), e.numpy())


def test_legacy_errors():
    with pytest.raises(TypeError, match="expected a float32 tensor, got int64"):
        ember.FloatTensor(ember.tensor([1, 2]))
    with pytest.raises(TypeError, match="got an argument of type str"):
        ember.FloatTensor(2, "a")
    with pytest.raises(RuntimeError, match="legacy constructor expects device type: cpu"):
        ember.FloatTensor([1.0], device="cuda")
    if not ember.cuda.is_available():
        with pytest.raises(TypeError, match="ember.cuda.FloatTensor not available"):
            ember.cuda.FloatTensor(2)


def test_type_with_legacy_classes():
    x = ember.tensor([1.5, -2.0])
    assert x.type(ember.LongTensor).dtype is ember.int64
    assert x.type(ember.DoubleTensor).dtype is ember.float64
    assert x.type("torch.IntTensor").dtype is ember.int32 and x.type(ember.float16).dtype is ember.float16
    assert x.type() == "ember.FloatTensor"
    # the PyTorch-GAN idiom: Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor
    Tensor = ember.cuda.FloatTensor if ember.cuda.is_available() else ember.FloatTensor
    assert isinstance(ember.ones(2, dtype=ember.int64).type(Tensor), Tensor)
    assert repr(ember.FloatTensor) == "<class 'ember.FloatTensor'>" and ember.FloatTensor.is_cuda is False


def test_new_and_device_queries_match_torch():
    pairs = [(ember.zeros(2), torch.zeros(2)), (ember.zeros(2, dtype=ember.int64), torch.zeros(2, dtype=torch.long))]
    for e, t in pairs:
        for args in [(3,), (2, 2), ([1, 2],), ()]:
            a, b = e.new(*args), t.new(*args)
            assert tuple(a.shape) == tuple(b.shape) and a.dtype.name == str(b.dtype).split(".")[1]
        assert tuple(e.new(ember.Size([1, 3])).shape) == (1, 3)
        for q in ("is_xpu", "is_mps", "is_meta", "is_quantized", "is_sparse", "is_mkldnn", "is_nested"):
            assert getattr(e, q) is getattr(t, q) is False, q
        assert e.get_device() == t.get_device() == -1
