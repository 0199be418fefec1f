"""ember.compile capture: graphs, guards, breaks, backward; compiled results equal eager."""
import warnings

import numpy as np
import pytest

import ember
from ember import diagnostics as records
from ember.compiler import GraphBreakError


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a.detach().numpy(), np.float64), np.asarray(b.detach().numpy(), np.float64),
                               rtol=tol, atol=tol)


def _grads_match(f, args, backend="eager", tol=1e-5):
    cf = ember.compile(f, backend=backend)
    for a in args:
        a.grad = None
    y0 = f(*args)
    w = ember.randn(*y0.shape)
    (y0 * w).sum().backward()
    g0 = [a.grad.clone() if a.grad is not None else None for a in args]
    for a in args:
        a.grad = None
    y1 = cf(*args)
    _close(y0, y1, tol)
    (y1 * w).sum().backward()
    for a, g in zip(args, g0):
        if g is not None:
            _close(g, a.grad, tol)
    return cf


def test_simple_function_graph_and_values():
    def f(x, w):
        return (x @ w).relu().sum(1).softmax(0)
    x, w = ember.randn(4, 3), ember.randn(3, 5, requires_grad=True)
    cf = _grads_match(f, [x, w])
    g = cf.variants[0].graph
    text = str(g)
    assert "matmul(%x, %w)" in text and "test_capture.py:" in text
    assert cf.variants[0].backward is not None


def test_decorator_and_kwargs_and_structures():
    @ember.compile(backend="eager")
    def f(inp, scale=2.0):
        a, b = inp["a"], inp["b"]
        return {"sum": a * scale + b, "pair": (a - b, b.exp())}

    a, b = ember.randn(3), ember.randn(3)
    out = f({"a": a, "b": b}, scale=3.0)
    _close(out["sum"], a * 3.0 + b)
    _close(out["pair"][1], b.exp())


def test_guards_recompile_on_shape_and_dtype():
    cf = ember.compile(lambda x: x * 2 + 1, backend="eager")
    cf(ember.randn(3))
    cf(ember.randn(3))
    assert cf.stats["compiles"] == 1
    with records.collect() as recs:
        cf(ember.randn(4))
        cf(ember.randn(4, dtype=ember.float64))
    assert cf.stats["compiles"] == 3
    reasons = [r.reason for r in recs if r.kind == "recompiles"]
    assert any("shape" in r for r in reasons) and any("dtype" in r for r in reasons)


def test_recompile_limit_warns_once_and_runs_eagerly():
    # dynamic=False: every size is a variant (by default a size that changes turns symbolic)
    cf = ember.compile(lambda x: x + 1, backend="eager", recompile_limit=3, dynamic=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for n in range(1, 8):
            y = cf(ember.ones(n))
            assert y.shape == (n,) and float(y.sum()) == 2 * n
    msgs = [str(x.message) for x in w if "recompile limit" in str(x.message)]
    assert len(msgs) == 1 and "shape" in msgs[0]
    auto = ember.compile(lambda x: x + 1, backend="eager", recompile_limit=3)
    for n in range(1, 8):
        assert float(auto(ember.ones(n)).sum()) == 2 * n
    assert auto.stats["compiles"] == 2 and auto.stats["eager_calls"] == 0    # size 1, then one dynamic


def test_python_scalar_specialised():
    cf = ember.compile(lambda x, k: x * k, backend="eager")
    x = ember.randn(3)
    _close(cf(x, 2), x * 2)
    _close(cf(x, 5), x * 5)
    assert cf.stats["compiles"] == 2


@pytest.mark.parametrize("kind,code", [
    ("bool", "B001"), ("item", "B002"), ("tolist", "B003"), ("numpy", "B004"), ("print", "B005"),
    ("nonzero", "B006")])
def test_graph_breaks_run_eagerly_and_are_recorded(kind, code, capsys):
    def f(x):
        if kind == "bool":
            if (x.sum() > 0):
                return x * 2
            return x * 3
        if kind == "item":
            return x * x.sum().item()
        if kind == "tolist":
            return x * len(x.tolist())
        if kind == "numpy":
            return x * float(x.detach().numpy().sum())
        if kind == "print":
            print(x)
            return x + 1
        return x[x > 0].sum() + x.sum()
    x = ember.randn(5)
    cf = ember.compile(f, backend="eager")
    with records.collect() as recs:
        y = cf(x)
    _close(y, f(x))
    br = [r for r in recs if r.kind == "breaks"]
    assert br and br[0].code == code and "test_capture.py:" in br[0].source
    with pytest.raises(GraphBreakError) as ei:
        ember.compile(f, fullgraph=True, backend="eager")(x)
    assert code in str(ei.value) and "test_capture.py:" in str(ei.value)


def test_mutation_of_buffer_is_written_back():
    state = ember.zeros(3)

    def f(x):
        state.mul_(0.5).add_(x)
        return x * 2
    cf = ember.compile(f, backend="eager")
    x = ember.ones(3)
    cf(x)
    cf(x)
    np.testing.assert_allclose(state.numpy(), [1.5, 1.5, 1.5])
    assert len(cf.variants[0].graph.mutations) == 1


def test_random_ops_agree_with_eager_for_same_seed():
    def f(x):
        return x * (ember.rand(*x.shape) > 0.5).float() + ember.randn(*x.shape)
    x = ember.ones(1000)
    ember.manual_seed(7)
    y0 = f(x)
    y0b = f(x)
    cf = ember.compile(f, backend="eager")
    ember.manual_seed(7)
    y1 = cf(x)
    y1b = cf(x)
    _close(y0, y1)
    _close(y0b, y1b)
    assert not np.allclose(y1.numpy(), y1b.numpy())


def test_error_names_node_and_source():
    def f(x, idx):
        return x.gather(0, idx)
    cf = ember.compile(f, backend="eager")
    with pytest.raises(IndexError) as ei:
        cf(ember.randn(3), ember.tensor([0, 5]))
    assert "while executing" in str(ei.value) and "gather" in str(ei.value)


def test_explain_report():
    def f(x):
        y = x.relu()
        if y.sum() > 0:
            return y
        return -y
    rep = ember.explain(f, ember.randn(4))
    assert rep.graph_break_count == 1
    s = str(rep)
    assert "B001" in s and "graph break" in s


def test_no_grad_mode_is_a_guard():
    w = ember.randn(3, requires_grad=True)
    cf = ember.compile(lambda x: (x * w).sum(), backend="eager")
    x = ember.randn(3)
    with ember.no_grad():
        y = cf(x)
    assert y.grad_fn is None
    y = cf(x)
    y.backward()
    _close(w.grad, x)


def test_closed_over_parameter_gets_grad_and_updates_without_recompile():
    w = ember.randn(4, requires_grad=True)
    cf = ember.compile(lambda x: (x * w).tanh().sum(), backend="eager")
    x = ember.randn(4)
    for _ in range(3):
        loss = cf(x)
        loss.backward()
        with ember.no_grad():
            w -= 0.1 * w.grad
        expected = (1 - (x * (w + 0.1 * w.grad)).tanh() ** 2) * x
        _close(w.grad, expected, 1e-4)
        w.grad = None
    assert cf.stats["compiles"] == 1


def _F():
    import ember.nn.functional as F
    return F


OPS = [
    ("exp", lambda x: x.exp()), ("log", lambda x: x.abs().add(0.1).log()), ("tanh", lambda x: x.tanh()),
    ("sigmoid", lambda x: x.sigmoid()), ("erf", lambda x: x.erf()), ("sqrt", lambda x: (x * x + 1).sqrt()),
    ("rsqrt", lambda x: (x * x + 1).rsqrt()), ("sin", lambda x: x.sin()), ("cos", lambda x: x.cos()),
    ("abs", lambda x: x.abs()), ("pow", lambda x: x.abs().add(0.5) ** 1.7), ("rpow", lambda x: 2.0 ** x),
    ("clamp", lambda x: x.clamp(-0.5, 0.5)), ("maximum", lambda x: ember.maximum(x, x.flip(0))),
    ("where", lambda x: ember.where(x > 0, x, x * 0.1)), ("sum", lambda x: x.sum(1)),
    ("mean", lambda x: x.mean((0, 1), keepdim=True)), ("var", lambda x: x.var(1)), ("std", lambda x: x.std(0)),
    ("amax", lambda x: x.amax(1)), ("max_dim", lambda x: x.max(1).values), ("logsumexp", lambda x: x.logsumexp(1)),
    ("softmax", lambda x: x.softmax(-1)), ("log_softmax", lambda x: x.log_softmax(0)),
    ("cumsum", lambda x: x.cumsum(1)), ("norm", lambda x: x.norm()), ("prod", lambda x: x.prod(1)),
    ("reshape", lambda x: x.reshape(6, 4) * 2), ("permute", lambda x: x.t() * 1), ("expand", lambda x: x[:, :1].expand(4, 6)),
    ("slice", lambda x: x[1:, ::2]), ("index", lambda x: x[ember.tensor([0, 2, 2])]), ("flip", lambda x: x.flip(1)),
    ("roll", lambda x: x.roll(2, 1)), ("cat", lambda x: ember.cat([x, x * 2], 1)), ("stack", lambda x: ember.stack([x, x.exp()])),
    ("tril", lambda x: x.tril()), ("gather", lambda x: x.gather(1, ember.tensor([[0, 1], [2, 3], [4, 5], [0, 0]]))),
    ("matmul", lambda x: x @ x.t()), ("einsum", lambda x: ember.einsum("ij,kj->ik", x, x)),
    ("masked_fill", lambda x: x.masked_fill(x > 0.5, -1.0)), ("topk", lambda x: x.topk(2, 1).values),
    ("sort", lambda x: x.sort(1).values), ("split", lambda x: x.split(2, 1)[1] * 3),
    ("repeat", lambda x: x.repeat(2, 1)),
    ("max_pool2d", lambda x: _F().max_pool2d(x.view(1, 2, 3, 4), 2, ceil_mode=False)),
    ("max_pool2d_odd", lambda x: _F().max_pool2d(x.view(1, 1, 4, 6), (3, 2), stride=(1, 2))),
    ("avg_pool2d", lambda x: _F().avg_pool2d(x.view(1, 1, 4, 6), 2)),
    ("conv2d", lambda x: _F().conv2d(x.view(1, 1, 4, 6), x[:2, :3].reshape(2, 1, 1, 3) * 1, padding=1)),
    ("layer_norm", lambda x: _F().layer_norm(x, (6,))),
    ("gelu", lambda x: _F().gelu(x, approximate="tanh") + _F().gelu(x)),
    ("cross_entropy", lambda x: _F().cross_entropy(x, ember.tensor([1, 0, 5, 2])).reshape(1)), ("pad_slice_set", lambda x: ember.cat([x[:, 3:], x[:, :3]], 1)),
]


@pytest.mark.parametrize("backend", ["eager", "auto"])
@pytest.mark.parametrize("name,fn", OPS, ids=[n for n, _ in OPS])
def test_compiled_op_matches_eager_values_and_grads(name, fn, backend):
    ember.manual_seed(0)
    x = ember.randn(4, 6, requires_grad=True)
    with records.collect() as recs:
        _grads_match(fn, [x], backend=backend, tol=2e-5)
    assert not [r for r in recs if r.code == "F002"], [str(r) for r in recs if r.code == "F002"]


def test_backward_inside_compiled_function_is_captured_and_create_graph_breaks():
    w = ember.randn(3, requires_grad=True)

    def step(x):
        loss = (x * w).sum()
        loss.backward()
        return loss
    x = ember.randn(3)
    with records.collect() as recs:
        cf = ember.compile(step, backend="eager")
        loss = cf(x)
    _close(w.grad, x)
    assert not [r for r in recs if r.kind == "breaks"] and cf.stats["compiles"] == 1

    def higher(x):
        (g,) = ember.autograd.grad((x * w).pow(2).sum(), w, create_graph=True)
        return g.sum()
    with records.collect() as recs:
        out = ember.compile(higher, backend="eager")(x)
    br = [r for r in recs if r.kind == "breaks"]
    assert br and br[0].code == "B009" and br[0].hint and "create_graph" in br[0].reason
    _close(out, (2 * x * x * w).sum())
    assert float(loss) == pytest.approx(float((x * w).sum()))


def test_an_argument_no_output_depends_on_gets_no_gradient():
    """As in PyTorch: an unused argument's .grad stays None (not a zero tensor an optimizer would then decay
    or step); one that reaches an output through a zero factor gets zeros. Also across a graph break."""
    def f(x, y, z):
        return (x * 2).sum() + (z * 0).sum()

    def g(x, y, z):
        a = (x * 2).sum()
        print(end="")           # a graph break: the pieces compile apart
        return a + (z * 0).sum()
    for fn in (f, g):
        x, y, z = (ember.ones(3, requires_grad=True) for _ in range(3))
        ember.compile(fn)(x, y, z).backward()
        assert x.grad.tolist() == [2.0, 2.0, 2.0] and y.grad is None and z.grad.tolist() == [0.0, 0.0, 0.0]
