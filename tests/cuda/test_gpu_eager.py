"""Eager ops on device 'cuda' (CuPy kernels) == the same ops on the CPU (numpy kernels), forward and
backward, for a broad op list; plus device moves, the cross-device error, modules on cuda and the
counter-based RNG giving the same numbers on both devices."""
import numpy as np
import pytest

import ember as E
import ember.nn.functional as F
from tests.cuda.gpu_helpers import assert_close, gpu, to_numpy  # noqa: F401  (fixture)

pytestmark = pytest.mark.gpu
DEVICES = ("cpu", "cuda")   # a dry run of the test logic on a CPU-only machine sets ("cpu", "cpu")


def same_on_devices(fn, *specs, dtype="float32", grad=True, rtol=1e-5, atol=1e-6, low=-2.0, high=2.0, seed=0):
    """fn(*inputs) on cpu and cuda tensors: same shapes, dtypes, values and input gradients."""
    rng = np.random.default_rng(seed)
    arrays = []
    for s in specs:
        if isinstance(s, tuple):
            arrays.append(rng.uniform(low, high, s).astype(dtype))
        else:
            arrays.append(s)
    results = []
    for dev in DEVICES:
        ins = [E.tensor(a, device=dev, requires_grad=grad and isinstance(a, np.ndarray) and a.dtype.kind == "f")
               if isinstance(a, np.ndarray) else a for a in arrays]
        out = fn(*ins)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        for t in outs:
            assert t.device.type == dev, f"output on {t.device}, expected {dev}"
        grads = []
        leaves = [t for t in ins if isinstance(t, E.Tensor) and t.requires_grad]
        diff = [t for t in outs if isinstance(t, E.Tensor) and t.requires_grad]
        if grad and leaves and diff:
            g = np.random.default_rng(seed + 1)
            loss = sum((t * E.tensor(g.uniform(-1, 1, tuple(t.shape)).astype(t.dtype.np), device=dev)).sum()
                       for t in diff)
            grads = E.autograd.grad(loss, leaves, allow_unused=True)
        results.append(([to_numpy(t) for t in outs], [None if x is None else to_numpy(x) for x in grads]))
    (oc, gc), (og, gg) = results
    for i, (a, b) in enumerate(zip(og, oc)):
        assert_close(a, b, rtol, atol, f"output {i}")
    assert len(gg) == len(gc)
    for i, (a, b) in enumerate(zip(gg, gc)):
        assert (a is None) == (b is None), f"grad {i}"
        if a is not None:
            assert_close(a, b, rtol * 10, atol * 10, f"grad {i}")


S = (5, 7)
UNARY = {
    "exp": lambda x: x.exp(), "log": lambda x: x.abs().add(0.1).log(), "sqrt": lambda x: x.abs().add(0.1).sqrt(),
    "rsqrt": lambda x: x.abs().add(0.1).rsqrt(), "sin": lambda x: x.sin(), "cos": lambda x: x.cos(),
    "tanh": lambda x: x.tanh(), "sigmoid": lambda x: x.sigmoid(), "erf": lambda x: x.erf(),
    "log1p": lambda x: x.abs().log1p(), "expm1": lambda x: x.expm1(), "reciprocal": lambda x: (x.abs() + 0.5).reciprocal(),
    "abs": lambda x: x.abs(), "neg": lambda x: -x, "sign": lambda x: x.sign(), "floor": lambda x: x.floor(),
    "ceil": lambda x: x.ceil(), "round": lambda x: x.round(), "trunc": lambda x: x.trunc(), "relu": lambda x: x.relu(),
    "square": lambda x: x.square(), "clamp": lambda x: x.clamp(-0.5, 0.7), "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu, "softplus": F.softplus,
    "leaky_relu": F.leaky_relu, "elu": F.elu,
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b.abs() + 0.5), "pow": lambda a, b: (a.abs() + 0.1) ** b,
    "maximum": E.maximum, "minimum": E.minimum, "remainder": lambda a, b: a.remainder(b.abs() + 0.5),
    "where": lambda a, b: E.where(a > b, a, b), "atan2_like": lambda a, b: (a * b).tanh() + a.sigmoid(),
    "scalar_ops": lambda a, b: (2.0 * a - 1.5) / 3.0 + b ** 2,
}
REDUCE = {
    "sum": lambda x: x.sum(), "sum_dim": lambda x: x.sum(1), "mean": lambda x: x.mean(0, keepdim=True),
    "max_dim": lambda x: x.max(1).values, "min": lambda x: x.min(), "prod": lambda x: x.prod(1),
    "amax": lambda x: x.amax(0), "var": lambda x: x.var(1), "std": lambda x: x.std(),
    "logsumexp": lambda x: x.logsumexp(1), "softmax": lambda x: x.softmax(1), "log_softmax": lambda x: x.log_softmax(0),
    "cumsum": lambda x: x.cumsum(1), "norm": lambda x: x.norm(),
}
SHAPE = {
    "reshape": lambda x: x.reshape(7, 5), "permute": lambda x: x.permute(1, 0), "t": lambda x: x.t().contiguous(),
    "expand": lambda x: x[:, :1].expand(5, 4), "slice": lambda x: x[1:4, ::2], "flip": lambda x: x.flip(0),
    "cat": lambda x: E.cat([x, x * 2], 1), "stack": lambda x: E.stack([x, -x]), "pad": lambda x: F.pad(x, (1, 2, 0, 1)),
    "unsqueeze": lambda x: x.unsqueeze(0).squeeze(0), "tril": lambda x: x.tril(), "roll": lambda x: x.roll(2, 1),
    "chunk": lambda x: E.chunk(x, 3, 1)[1], "index": lambda x: x[[0, 2, 4]], "masked_fill": lambda x: x.masked_fill(x > 0, 0.0),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(gpu, name):
    same_on_devices(UNARY[name], S)


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_float64(gpu, name):
    same_on_devices(UNARY[name], S, dtype="float64", rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcast(gpu, name):
    same_on_devices(BINARY[name], S, (1, 7))


@pytest.mark.parametrize("name", list(REDUCE))
def test_reduce(gpu, name):
    same_on_devices(REDUCE[name], S)


@pytest.mark.parametrize("name", list(SHAPE))
def test_shape(gpu, name):
    same_on_devices(SHAPE[name], S)


@pytest.mark.parametrize("name, fn", [
    ("matmul", lambda a, b: a @ b.t()), ("bmm", lambda a, b: E.bmm(a.reshape(1, 5, 7), b.t().reshape(1, 7, 5))),
    ("linear", lambda a, b: F.linear(a, b, b[:, 0])), ("einsum", lambda a, b: E.einsum("ij,kj->ik", a, b)),
])
def test_linalg(gpu, name, fn):
    same_on_devices(fn, S, S, rtol=1e-4, atol=1e-5)


def test_int_and_bool_ops(gpu):
    a = np.array([[7, -7, 3], [0, 5, -2]], np.int64)
    b = np.array([[2, 2, -2], [3, -1, 1]], np.int64)
    same_on_devices(lambda x, y: [x // y, x % y, x * y, x == y, (x > 0) & (y > 0), x.sum(), x.argmax(1),
                                  x.to(E.float32), x.abs(), x.max()], a, b, grad=False)


@pytest.mark.parametrize("name, fn, specs", [
    ("gather", lambda x, i: x.gather(1, i), [S, np.array([[0, 6], [1, 1], [2, 3], [6, 0], [4, 4]])]),
    ("scatter_add", lambda x, i: E.zeros(5, 7, device=x.device).scatter_add(1, i, x[:, :2]),
     [S, np.array([[0, 6], [1, 1], [2, 3], [6, 0], [4, 4]])]),
    ("index_select", lambda x, i: x.index_select(0, i), [S, np.array([4, 0, 0, 2])]),
    ("take", lambda x, i: E.take(x, i), [S, np.array([0, 34, 3, 3])]),
    ("index_add", lambda x, i: x.index_add(0, i, x[:3] * 2), [S, np.array([4, 0, 4])]),
    ("embedding", lambda x, i: F.embedding(i, x), [S, np.array([[0, 4], [4, 4]])]),
    ("sort", lambda x, i: [x.sort(1).values, x.argsort(0), x.topk(3, 1).values], [S, 0]),
])
def test_indexing(gpu, name, fn, specs):
    same_on_devices(fn, *specs)


def test_index_out_of_range_raises_on_cuda(gpu):
    x = E.randn(5, 3, device="cuda")
    with pytest.raises(IndexError, match="out of bounds"):
        x.index_select(0, E.tensor([0, 5], device="cuda"))


@pytest.mark.parametrize("name, fn, specs", [
    ("conv2d", lambda x, w: F.conv2d(x, w, padding=1, stride=2), [(2, 3, 9, 9), (4, 3, 3, 3)]),
    ("conv2d_groups", lambda x, w: F.conv2d(x, w, groups=3, dilation=2), [(2, 3, 9, 9), (6, 1, 3, 3)]),
    ("max_pool2d", lambda x, w: F.max_pool2d(x, 2) + w.sum(), [(2, 3, 8, 8), (1,)]),
    ("max_pool2d_pad", lambda x, w: F.max_pool2d(x, 3, stride=2, padding=1) * w, [(2, 3, 9, 9), (1,)]),
    ("avg_pool2d", lambda x, w: F.avg_pool2d(x, 2) * w, [(2, 3, 8, 8), (1,)]),
    ("layer_norm", lambda x, w: F.layer_norm(x, (7,), w, w * 0.5), [(4, 5, 7), (7,)]),
    ("batch_norm", lambda x, w: F.batch_norm(x, None, None, w, w, training=True), [(6, 4, 3, 3), (4,)]),
    ("cross_entropy", lambda x, w: F.cross_entropy(x * w[0], E.tensor([1, 0, 3, 2, 2], device=x.device)),
     [(5, 4), (1,)]),
    ("mse_loss", lambda x, w: F.mse_loss(x, w.expand(5, 4)), [(5, 4), (4,)]),
    ("sdpa", lambda x, w: F.scaled_dot_product_attention(x, w, w, is_causal=True), [(2, 6, 8), (2, 6, 8)]),
])
def test_nn_functional(gpu, name, fn, specs):
    same_on_devices(fn, *specs, rtol=1e-4, atol=1e-5)


def test_float16_ops(gpu):
    same_on_devices(lambda x: [(x * 2 + 1).exp(), x.sum(1), x.softmax(1)], S, dtype="float16", grad=False,
                    rtol=2e-3, atol=2e-3, low=-1, high=1)


# ----------------------------------------------------------------------------- device logic
def test_moves_and_properties(gpu):
    x = E.arange(6.0).reshape(2, 3)
    c = x.cuda()
    assert c.device == E.device("cuda:0") and c.is_cuda and str(c.device) == "cuda:0"
    assert c.to("cpu").device == E.device("cpu")
    np.testing.assert_array_equal(c.cpu().numpy(), x.numpy())
    assert c.tolist() == x.tolist() and c.sum().item() == 15.0
    assert "cuda:0" in repr(c)
    with pytest.raises(TypeError, match="cuda"):
        c.numpy()
    z = E.zeros(3, device="cuda")
    assert z.device.type == "cuda" and E.cuda.memory_allocated() > 0
    E.cuda.synchronize()
    assert E.cuda.device_count() >= 1 and E.cuda.current_device() == 0
    assert isinstance(E.cuda.get_device_name(), str) and E.cuda.get_device_capability()[0] >= 7


def test_to_cuda_is_differentiable(gpu):
    x = E.randn(3, 4, requires_grad=True)
    y = (x.cuda() * 3).sum()
    y.backward()
    assert x.grad.device.type == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 3.0)


def test_mixed_devices_raise_pytorch_error(gpu):
    a, b = E.ones(3), E.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device, but found at least "
                                           "two devices"):
        a + b


def test_module_to_cuda(gpu):
    m = E.nn.Sequential(E.nn.Linear(4, 8), E.nn.ReLU(), E.nn.Linear(8, 2))
    p_ids = [id(p) for p in m.parameters()]
    m.to("cuda")
    assert [id(p) for p in m.parameters()] == p_ids          # Parameters keep identity
    assert all(p.device.type == "cuda" for p in m.parameters())
    out = m(E.randn(3, 4, device="cuda"))
    out.sum().backward()
    assert all(p.grad.device.type == "cuda" for p in m.parameters())
    m.cpu()
    assert all(p.device.type == "cpu" for p in m.parameters())


def test_rng_same_numbers_on_both_devices(gpu):
    for dev in ("cpu", "cuda"):
        E.manual_seed(1234)
        u = E.rand(1000, device=dev)
        n = E.randn(1000, dtype=E.float64, device=dev)
        if dev == "cpu":
            u_cpu, n_cpu = u.numpy(), n.numpy()
    np.testing.assert_array_equal(u.cpu().numpy(), u_cpu)            # uint64 arithmetic: bit for bit
    np.testing.assert_allclose(n.cpu().numpy(), n_cpu, rtol=1e-12)   # log/cos: libm ulps
    E.manual_seed(7)
    d_cpu = F.dropout(E.ones(500), 0.5).numpy()
    E.manual_seed(7)
    d_gpu = F.dropout(E.ones(500, device="cuda"), 0.5).cpu().numpy()
    np.testing.assert_array_equal(d_cpu, d_gpu)
