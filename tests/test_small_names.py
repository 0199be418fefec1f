"""Small names scripts use, against PyTorch's answers: the legacy ember.FloatTensor & co (constructors,
isinstance, .type()), Tensor.new, get_device, the is_xpu / is_mps / is_sparse ... queries, finfo /
iinfo, the memory_format constants and meshgrid."""
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


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_finfo_matches_torch(name):
    e, t = ember.finfo(getattr(ember, name)), torch.finfo(getattr(torch, name))
    for k in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution"):
        assert getattr(e, k) == getattr(t, k), k
    assert e.dtype == t.dtype == name and e == ember.finfo(getattr(ember, name))
    assert ember.finfo().dtype == "float32"
    assert repr(e) == repr(t)


@pytest.mark.parametrize("name", ["uint8", "int8", "int16", "int32", "int64"])
def test_iinfo_matches_torch(name):
    e, t = ember.iinfo(getattr(ember, name)), torch.iinfo(getattr(torch, name))
    assert (e.bits, e.min, e.max, e.dtype) == (t.bits, t.min, t.max, t.dtype)
    assert repr(e) == repr(t)


def test_typeinfo_errors():
    with pytest.raises(TypeError, match="requires a floating point input type"):
        ember.finfo(ember.int64)
    with pytest.raises(TypeError, match="requires an integer input type"):
        ember.iinfo(ember.float32)
    with pytest.raises(TypeError, match="ember.bool is not supported by ember.iinfo"):
        ember.iinfo(ember.bool)


def test_memory_formats_are_accepted():
    m = ember.nn.Conv2d(3, 4, 3).to(memory_format=ember.channels_last)
    x = ember.randn(1, 3, 5, 5).contiguous(memory_format=ember.channels_last)
    assert tuple(m(x).shape) == (1, 4, 3, 3)
    # laid out NHWC, as PyTorch's: channels-last contiguous, not C-contiguous
    assert x.is_contiguous(memory_format=ember.channels_last) and not x.is_contiguous()
    assert x.stride() == (75, 1, 15, 3)
    assert repr(ember.channels_last) == "ember.channels_last" and isinstance(ember.preserve_format,
                                                                             ember.memory_format)


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid_matches_torch(indexing):
    sizes = (2, 3, 4)
    for n in (1, 2, 3):
        arrays = [np.random.default_rng(i).standard_normal(s) for i, s in enumerate(sizes[:n])]
        es = [ember.tensor(a, requires_grad=True) for a in arrays]
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        eo, to = ember.meshgrid(*es, indexing=indexing), torch.meshgrid(*ts, indexing=indexing)
        for a, b in zip(eo, to):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
        sum((o * (i + 1)).sum() for i, o in enumerate(eo)).backward()
        sum((o * (i + 1)).sum() for i, o in enumerate(to)).backward()
        for a, b in zip(es, ts):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy())
    gx, gy = ember.meshgrid([ember.arange(3), ember.arange(2)], indexing=indexing)      # a list works too
    assert tuple(gx.shape) == ((3, 2) if indexing == "ij" else (2, 3))


def test_meshgrid_errors_and_default():
    with pytest.warns(UserWarning, match="indexing argument"):
        a, b = ember.meshgrid(ember.arange(2), ember.arange(3))
    assert tuple(a.shape) == (2, 3)
    with pytest.raises(RuntimeError, match="indexing must be one of"):
        ember.meshgrid(ember.arange(2), indexing="yx")
    with pytest.raises(RuntimeError, match="Expected 0D or 1D tensor"):
        ember.meshgrid(ember.zeros(2, 2), indexing="ij")


def test_wgan_gp_gradient_penalty_matches_torch():
    """autograd.grad(..., create_graph=True, retain_graph=True, only_inputs=True) as WGAN-GP scripts call it."""
    rng = np.random.default_rng(0)
    real, fake, alpha = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (3, 4), (3, 1)))
    res = []
    for lib in (ember, torch):
        lib.manual_seed(0)
        D = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.Tanh(), lib.nn.Linear(8, 1))
        if lib is torch:
            D.load_state_dict({k: torch.tensor(v) for k, v in res[0][1].items()})
        a = lib.tensor(alpha)
        interp = (a * lib.tensor(real) + (1 - a) * lib.tensor(fake)).requires_grad_(True)
        d = D(interp)
        g = lib.autograd.grad(outputs=d, inputs=interp, grad_outputs=lib.ones_like(d), create_graph=True,
                              retain_graph=True, only_inputs=True)[0]
        gp = ((g.norm(2, dim=1) - 1) ** 2).mean()
        gp.backward()
        res.append((gp.item(), {k: v.detach().numpy().copy() for k, v in D.state_dict().items()},
                    [None if p.grad is None else p.grad.numpy().copy() for p in D.parameters()]))
    assert abs(res[0][0] - res[1][0]) < 1e-5
    for a, b in zip(res[0][2], res[1][2]):
        if b is None:               # the last bias does not reach d(D)/dx: no gradient in PyTorch either
            assert a is None or not np.any(a)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
