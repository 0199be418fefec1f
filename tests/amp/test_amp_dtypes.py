"""bfloat16 and float16 tensors on the CPU against PyTorch: promotion, casts, printing, finfo, modules,
save/load, and op results (bit for bit where PyTorch's CPU kernel computes in float32 and rounds once)."""
import io
import itertools

import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

NAMES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")
HALF = ("bfloat16", "float16")


def e_dt(name):
    return getattr(ember, name)


def t_dt(name):
    return getattr(torch, name)


@pytest.mark.parametrize("a,b", list(itertools.combinations_with_replacement(NAMES, 2)))
def test_promote_types_matches_torch(a, b):
    assert ember.promote_types(e_dt(a), e_dt(b)).name == str(torch.promote_types(t_dt(a), t_dt(b))).split(".")[1]


@pytest.mark.parametrize("name", HALF)
def test_result_type_scalars_and_zero_dim_tensors_do_not_promote(name):
    x, tx = ember.ones(3, dtype=e_dt(name)), torch.ones(3, dtype=t_dt(name))
    for other, tother in ((2.5, 2.5), (3, 3), (True, True), (ember.tensor(2.0), torch.tensor(2.0)),
                          (ember.tensor(2.0, dtype=ember.float64), torch.tensor(2.0, dtype=torch.float64)),
                          (ember.ones(3), torch.ones(3)), (ember.ones(3, dtype=ember.int64), torch.ones(3, dtype=torch.int64))):
        assert (x + other).dtype.name == str((tx + tother).dtype).split(".")[1], other
        assert (other * x).dtype.name == str((tother * tx).dtype).split(".")[1], other
    assert ember.result_type(x, 1.0) is e_dt(name)


def test_bf16_with_f16_is_float32():
    a, b = ember.ones(2, dtype=ember.bfloat16), ember.ones(2, dtype=ember.float16)
    assert (a + b).dtype is ember.float32 and ember.cat([a, b]).dtype is ember.float32


@pytest.mark.parametrize("name", HALF + ("float32", "float64"))
def test_finfo_matches_torch(name):
    e, t = ember.finfo(e_dt(name)), torch.finfo(t_dt(name))
    for f in ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution"):
        assert getattr(e, f) == getattr(t, f), f
    assert e.dtype == t.dtype
    assert repr(e) == repr(t)


def test_finfo_iinfo_defaults_and_errors():
    assert ember.finfo().dtype == "float32"
    assert ember.iinfo(ember.int8).max == 127 and ember.iinfo(ember.uint8).min == 0
    with pytest.raises(TypeError, match="floating point"):
        ember.finfo(ember.int32)
    with pytest.raises(TypeError, match="integer"):
        ember.iinfo(ember.bfloat16)


@pytest.mark.parametrize("src", ("float64", "float32", "float16", "int64", "int32", "uint8", "bool"))
@pytest.mark.parametrize("dst", HALF)
def test_casts_to_16bit_match_torch_bits(src, dst):
    rng = np.random.default_rng(1)
    vals = np.concatenate([rng.standard_normal(300) * 10.0 ** rng.integers(-6, 6, 300),
                           [0.0, -0.0, 1e40, -1e40, 65519.0, 65520.0, 1.0 + 2 ** -9, 1.0 + 2 ** -9 + 2 ** -30]])
    if src == "bool":
        arr = vals > 0
    elif src in ("float64", "float32", "float16"):
        with np.errstate(over="ignore"):
            arr = vals.astype(src)
    else:
        arr = np.clip(vals, 0 if src == "uint8" else -1e6, 255 if src == "uint8" else 1e6).astype(src)
    e = ember.tensor(arr).to(e_dt(dst))
    t = torch.tensor(arr).to(t_dt(dst))
    np.testing.assert_array_equal(e.float().numpy(), t.float().numpy())


@pytest.mark.parametrize("src", HALF)
@pytest.mark.parametrize("dst", ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int8", "bool"))
def test_casts_from_16bit_match_torch(src, dst):
    vals = np.array([0.0, -0.0, 1.5, -2.75, 100.25, -300.5, 7.0, 0.3], np.float32)
    e = ember.tensor(vals).to(e_dt(src)).to(e_dt(dst))
    t = torch.tensor(vals).to(t_dt(src)).to(t_dt(dst))
    assert e.dtype.name == dst
    np.testing.assert_array_equal(e.float().numpy() if dst in HALF else e.numpy(),
                                  t.float().numpy() if dst in HALF else t.numpy())


@pytest.mark.parametrize("name", HALF)
def test_repr_matches_torch(name):
    data = [[1.5, -2.25, 3.1415], [1e-5, 100.0, 0.0]]
    for d in (data, [1.0, 2.0], [1e10, 1.0], 3.5):
        e = repr(ember.tensor(d).to(e_dt(name)))
        t = repr(torch.tensor(d).to(t_dt(name)))
        assert e == t.replace("torch.", "ember."), (e, t)
    assert ember.ones(2, dtype=e_dt(name)).type() == torch.ones(2, dtype=t_dt(name)).type().replace("torch", "ember")


def test_conversion_methods_and_values():
    x = ember.tensor([1.0, 2.5, -3.0])
    b = x.bfloat16()
    assert b.dtype is ember.bfloat16 and b.element_size() == 2 and b.is_floating_point()
    assert x.half().dtype is ember.float16 and b.float().dtype is ember.float32
    assert x.to(ember.bfloat16).tolist() == [1.0, 2.5, -3.0]
    assert isinstance(b[1].item(), float) and b[1].item() == 2.5
    assert ember.zeros(2, 3, dtype=ember.bfloat16).dtype is ember.bfloat16
    assert ember.full((2,), 0.1, dtype=ember.bfloat16).tolist() == [0.10009765625] * 2
    assert ember.tensor([0.1], dtype=ember.bfloat16).tolist() == [0.10009765625]
    assert ember.arange(4, dtype=ember.bfloat16).tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("name", HALF)
def test_rand_stays_below_one(name):
    ember.manual_seed(0)
    r = ember.rand(20000, dtype=e_dt(name))
    assert r.dtype.name == name and float(r.max()) < 1.0 and float(r.min()) >= 0.0
    assert ember.randn(5, dtype=e_dt(name)).dtype.name == name


def test_module_bfloat16_and_half_cast_floating_params_and_buffers_only():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    m.bfloat16()
    assert all(p.dtype is ember.bfloat16 for p in m.parameters())
    assert m[1].running_mean.dtype is ember.bfloat16 and m[1].num_batches_tracked.dtype is ember.int64
    m.half()
    assert all(p.dtype is ember.float16 for p in m.parameters())
    m.float()
    assert all(p.dtype is ember.float32 for p in m.parameters())


def test_save_load_round_trip_bfloat16():
    m = nn.Linear(3, 2).bfloat16()
    x = ember.randn(4, 5).bfloat16()
    buf = io.BytesIO()
    ember.save({"m": m.state_dict(), "x": x, "view": x[1:, 2:], "dtype": ember.bfloat16}, buf)
    buf.seek(0)
    r = ember.load(buf)
    assert r["dtype"] is ember.bfloat16
    assert r["x"].dtype is ember.bfloat16 and ember.equal(r["x"], x) and ember.equal(r["view"], x[1:, 2:])
    assert r["m"]["weight"].dtype is ember.bfloat16 and ember.equal(r["m"]["weight"], m.weight.detach())


# ------------------------------------------------------------------------------------ op values
def _pair(name, seed=0, shape=(6, 7), low=-3.0, high=3.0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(low, high, shape).astype(np.float32)
    b = rng.uniform(0.1, 3.0, shape).astype(np.float32)
    return (ember.tensor(a).to(e_dt(name)), ember.tensor(b).to(e_dt(name)),
            torch.tensor(a).to(t_dt(name)), torch.tensor(b).to(t_dt(name)))


def _lib(x):
    return (torch, TF) if isinstance(x, torch.Tensor) else (ember, F)


# one fused CPU kernel in PyTorch: ember computes in float32 and rounds once -> identical bits
EXACT = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
    "add_scalar": lambda x, y: x + 0.1, "rsub_scalar": lambda x, y: 0.3 - x, "mul_scalar": lambda x, y: x * 1.1,
    "div_scalar": lambda x, y: x / 0.7, "rdiv_scalar": lambda x, y: 1.37 / y, "pow_scalar": lambda x, y: y ** 1.3,
    "pow": lambda x, y: y ** x, "square": lambda x, y: x ** 2,
    "exp": lambda x, y: x.exp(), "log": lambda x, y: y.log(), "sqrt": lambda x, y: y.sqrt(),
    "sin": lambda x, y: x.sin(), "cos": lambda x, y: x.cos(), "tanh": lambda x, y: x.tanh(),
    "sigmoid": lambda x, y: x.sigmoid(), "erf": lambda x, y: x.erf(), "log1p": lambda x, y: y.log1p(),
    "expm1": lambda x, y: x.expm1(), "reciprocal": lambda x, y: y.reciprocal(), "abs": lambda x, y: x.abs(),
    "neg": lambda x, y: -x, "floor": lambda x, y: x.floor(), "round": lambda x, y: x.round(),
    "maximum": lambda x, y: _lib(x)[0].maximum(x, y), "clamp": lambda x, y: x.clamp(-1, 1),
    "relu": lambda x, y: x.relu(), "where": lambda x, y: x.where(x > 0, y), "remainder": lambda x, y: x.remainder(y),
    "fmod": lambda x, y: x.fmod(y), "floor_divide": lambda x, y: x // y,
    "sum": lambda x, y: x.sum(), "sum_dim": lambda x, y: x.sum(1), "mean": lambda x, y: x.mean(),
    "mean_dim": lambda x, y: x.mean(0), "std": lambda x, y: x.std(), "amax": lambda x, y: x.amax(1),
    "cumsum": lambda x, y: x.cumsum(1), "norm": lambda x, y: x.norm(), "softmax": lambda x, y: x.softmax(-1),
    "matmul": lambda x, y: x @ y.T, "lerp": lambda x, y: x.lerp(y, 0.3),
    "addcmul": lambda x, y: x.addcmul(y, y, value=0.5),
    "gelu": lambda x, y: _lib(x)[1].gelu(x),
    "silu": lambda x, y: _lib(x)[1].silu(x), "softplus": lambda x, y: _lib(x)[1].softplus(x),
    "elu": lambda x, y: _lib(x)[1].elu(x), "mish": lambda x, y: _lib(x)[1].mish(x),
    "hardswish": lambda x, y: _lib(x)[1].hardswish(x), "logsigmoid": lambda x, y: _lib(x)[1].logsigmoid(x),
    "layer_norm": lambda x, y: _lib(x)[1].layer_norm(x, (7,)),
    "layer_norm_f32_weight": lambda x, y: _lib(x)[1].layer_norm(x, (7,), _lib(x)[0].ones(7) * 1.3),
    "rms_norm": lambda x, y: _lib(x)[1].rms_norm(x, (7,)),
    "group_norm": lambda x, y: _lib(x)[1].group_norm(x.reshape(2, 3, 7), 1),
    "mse_loss": lambda x, y: _lib(x)[1].mse_loss(x, y), "sort": lambda x, y: x.sort(1)[0],
    "cat": lambda x, y: _lib(x)[0].cat([x, y]), "gt": lambda x, y: x > y, "to_double_and_back": lambda x, y: x.double().to(x.dtype),
}
# composites or different accumulation orders in PyTorch: equal within a few units of the last place
CLOSE = {
    "var": lambda x, y: x.var(1), "gelu_tanh": lambda x, y: _lib(x)[1].gelu(x, approximate="tanh"), "prod": lambda x, y: x.prod(1), "logsumexp": lambda x, y: x.logsumexp(1),
    "log_softmax": lambda x, y: x.log_softmax(-1), "rsqrt": lambda x, y: y.rsqrt(),
    "batch_norm": lambda x, y: _lib(x)[1].batch_norm(x, None, None, training=True),
    "cross_entropy": lambda x, y: _lib(x)[1].cross_entropy(x, _lib(x)[0].tensor([0, 1, 2, 3, 4, 5])),
    "bce_logits": lambda x, y: _lib(x)[1].binary_cross_entropy_with_logits(x, y / 3),
    "linear": lambda x, y: _lib(x)[1].linear(x, y[:3], y[0, :3]),
    "sdpa": lambda x, y: _lib(x)[1].scaled_dot_product_attention(x[None], y[None], x[None]),
}


def _values(name, fn):
    x, y, tx, ty = _pair(name)
    e, t = fn(x, y), fn(tx, ty)
    assert e.dtype.name == str(t.dtype).split(".")[1]
    assert tuple(e.shape) == tuple(t.shape)
    return e.float().numpy(), t.float().numpy()


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", sorted(EXACT))
def test_op_bits_match_torch(op, name):
    e, t = _values(name, EXACT[op])
    np.testing.assert_array_equal(e, t)


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", sorted(CLOSE))
def test_op_values_close_to_torch(op, name):
    e, t = _values(name, CLOSE[op])
    eps = ember.finfo(e_dt(name)).eps
    np.testing.assert_allclose(e, t, rtol=4 * eps, atol=4 * eps)


@pytest.mark.parametrize("name", HALF)
def test_gradients_of_a_16bit_mlp_match_torch(name):
    rng = np.random.default_rng(3)
    w1, b1 = rng.standard_normal((16, 8)).astype(np.float32) * 0.3, rng.standard_normal(16).astype(np.float32)
    w2 = rng.standard_normal((4, 16)).astype(np.float32) * 0.3
    x = rng.standard_normal((5, 8)).astype(np.float32)
    grads = []
    for lib, fl in ((ember, F), (torch, TF)):
        d = getattr(lib, name)
        ps = [lib.tensor(a).to(d).requires_grad_() for a in (w1, b1, w2)]
        h = fl.gelu(fl.linear(lib.tensor(x).to(d), ps[0], ps[1]))
        loss = fl.log_softmax(fl.linear(h, ps[2]), -1).sum()
        loss.backward()
        assert all(p.grad.dtype is d for p in ps)
        grads.append([p.grad.float().numpy() for p in ps])
    eps = ember.finfo(e_dt(name)).eps
    for ge, gt in zip(*grads):
        np.testing.assert_allclose(ge, gt, rtol=8 * eps, atol=8 * eps * np.abs(gt).max())


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_inf_and_nan_arise_silently(name):
    """inf * 0, log(-1), overflow: nan and inf as in PyTorch, and no numpy RuntimeWarning from the float32
    computation the 16-bit ops run on."""
    import warnings
    x = ember.ones(3, dtype=getattr(ember, name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = (x / 0 * 0, ember.log(-x), x * 1e30 * 1e30, ember.exp(x * 1e4))
    assert all(t.dtype == x.dtype for t in r)
    assert ember.isnan(r[0]).all() and ember.isnan(r[1]).all()
    assert ember.isinf(r[2]).all() and ember.isinf(r[3]).all()


def test_eager_bf16_relu_is_one_generated_pass_with_torchs_bits():
    """F.relu on a large bf16 array runs the generated kernel on the bf16 values (no float32 round trip):
    PyTorch's bits forward (-0.0 and NaN pass) and backward (masked where the result is <= 0)."""
    from ember.kernels import generated
    rng = np.random.default_rng(3)
    bits = (rng.standard_normal((64, 10, 12, 12)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bits[0, 0, 0, :4] = [0x8000, 0x0000, 0x7FC0, 0xFF80]          # -0.0, 0.0, NaN, -inf
    gbits = (rng.standard_normal(bits.shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    x = ember.from_numpy(bits.view(ember.bfloat16.np)).requires_grad_(True)
    y = F.relu(x)
    y.backward(ember.from_numpy(gbits.view(ember.bfloat16.np)))
    assert any(k[:2] == ("elementwise", "relu") and k[2] == (np.dtype(ember.bfloat16.np).str,) for k in generated.built)
    tx = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16).requires_grad_(True)
    ty = TF.relu(tx)
    ty.backward(torch.from_numpy(gbits.view(np.int16).copy()).view(torch.bfloat16))
    got, want = y.detach().numpy().view(np.uint16), ty.detach().view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(y.detach().float().numpy())       # (PyTorch's vectorised rounding writes NaN as 0xFFFF)
    assert np.array_equal(nan, np.isnan(ty.detach().float().numpy())) and nan[0, 0, 0, 2]
    assert np.array_equal(got[~nan], want[~nan]) and got[0, 0, 0, 0] == 0x8000
    assert np.array_equal(x.grad.numpy().view(np.uint16), tx.grad.view(torch.int16).numpy().view(np.uint16))


LARGE_EXACT = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
    "mul_scalar": lambda x, y: x * 0.1767767, "rsub_scalar": lambda x, y: 0.3 - x, "rdiv_scalar": lambda x, y: 1.37 / y,
    "add_broadcast_row": lambda x, y: x + y[0, 0], "mul_transposed": lambda x, y: x.transpose(0, 2) * y.transpose(0, 2),
    "neg": lambda x, y: -x, "abs": lambda x, y: x.abs(), "gt": lambda x, y: x > y, "le_scalar": lambda x, y: x <= 0.37,
    "eq": lambda x, y: x == y.round(), "masked_fill": lambda x, y: x.masked_fill(y[:1] > 1.5, float("-inf")),
    "where": lambda x, y: x.where(x > 0, y), "pad": lambda x, y: _lib(x)[1].pad(x, (1, 2, 0, 3), value=0.37),
}


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("op", sorted(LARGE_EXACT))
def test_large_16bit_elementwise_ops_are_one_pass_with_torchs_bits(op, name, monkeypatch):
    """Above generated.MIN_SIZE the exact elementwise ops run as one generated pass over the 16-bit values
    (ember/kernels/elementwise16.py) and pad only moves 16-bit data: PyTorch's bits, any layout."""
    from ember.kernels import elementwise16
    ran = []
    run = elementwise16.run
    def counted(op, args):
        r = run(op, args)
        ran.append(r is not None)
        return r
    monkeypatch.setattr(elementwise16, "run", counted)
    x, y, tx, ty = _pair(name, shape=(8, 64, 33))
    e, t = LARGE_EXACT[op](x, y), LARGE_EXACT[op](tx, ty)
    assert e.dtype.name == str(t.dtype).split(".")[1] and tuple(e.shape) == tuple(t.shape)
    np.testing.assert_array_equal(e.float().numpy(), t.float().numpy())
    assert any(ran) == (op != "pad")
