"""Adadelta, Adamax, NAdam, RAdam, SparseAdam and LBFGS against torch.optim: the same initial weights
and gradients (float64 and float32), several steps, compared after every step; state_dict round trips."""
import io

import numpy as np
import pytest

import ember
from ember import optim

torch = pytest.importorskip("torch")

SHAPES = [(4, 3), (3,), (2, 2, 2)]


def _grad(a, t):
    # the gradient of sum((p - t)^3 / 3 + p^2): a function of the current value, so errors compound
    return (a - t) ** 2 + 2 * a


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    targets = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    return init, targets


def _run(name, kwargs, steps=8, dtype=np.float64, restart_at=None, groups=None):
    """Step ember's and torch's optimizer `name` side by side; with restart_at, both optimizers are
    rebuilt there from their own state_dicts (a checkpoint resume; loading casts floating state such
    as NAdam's mu_product to the parameter's dtype in both)."""
    init, targets = _params(dtype)
    ep = [ember.tensor(a, requires_grad=True) for a in init]
    tp = [torch.tensor(a, requires_grad=True) for a in init]

    def make(mod, ps):
        if groups is None:
            return getattr(mod, name)(ps, **kwargs)
        return getattr(mod, name)([dict(params=ps[:1], **groups[0]), dict(params=ps[1:], **groups[1])], **kwargs)
    eo, to = make(optim, ep), make(torch.optim, tp)
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    for step in range(steps):
        if step == restart_at:
            esd, tsd = eo.state_dict(), to.state_dict()
            eo, to = make(optim, ep), make(torch.optim, tp)
            eo.load_state_dict(esd)
            to.load_state_dict(tsd)
        for a, b, t in zip(ep, tp, targets):
            t = t * (step + 1)
            a.grad = ember.tensor(_grad(a.detach().numpy(), t))
            b.grad = torch.tensor(_grad(b.detach().numpy(), t))
        eo.step()
        to.step()
        for a, b in zip(ep, tp):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=rtol,
                                       err_msg=f"{name}{kwargs} step {step}")
    return eo, to


CASES = [
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.3, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adamax", dict(lr=0.01, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, momentum_decay=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, betas=(0.8, 0.9))),
    ("NAdam", dict(lr=0.01, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.01, weight_decay=0.1)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    # beta2 = 0.5 makes rho_t > 5 from the sixth step: both branches of the rectification run
    ("RAdam", dict(lr=0.01, betas=(0.9, 0.5), maximize=True)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(CASES)]


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_matches_torch_float64(name, kwargs):
    _run(name, kwargs, steps=10)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_matches_torch_float32(name, kwargs):
    _run(name, kwargs, steps=6, dtype=np.float32)


@pytest.mark.parametrize("name,kwargs", CASES[::3], ids=IDS[::3])
def test_state_dict_round_trip(name, kwargs):
    eo, to = _run(name, kwargs, steps=8, restart_at=4)
    es, ts = eo.state_dict(), to.state_dict()
    assert es["state"].keys() == ts["state"].keys()
    for k in ts["state"]:
        assert es["state"][k].keys() == ts["state"][k].keys()
        for n, v in ts["state"][k].items():
            e = es["state"][k][n]
            np.testing.assert_allclose(np.asarray(e.numpy() if hasattr(e, "numpy") else e),
                                       np.asarray(v.numpy() if hasattr(v, "numpy") else v), rtol=1e-10, err_msg=n)
    assert [sorted(g) for g in es["param_groups"]] == [sorted(g) for g in ts["param_groups"]]


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam"])
def test_param_groups_match_torch(name):
    _run(name, dict(lr=0.01), groups=[dict(lr=0.05, weight_decay=0.1), dict()])


def test_constructor_errors():
    p = [ember.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="Invalid rho value: 1.5"):
        optim.Adadelta(p, rho=1.5)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adamax(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Invalid momentum_decay value: -1"):
        optim.NAdam(p, momentum_decay=-1)
    with pytest.raises(ValueError, match="Invalid weight_decay value: -0.1"):
        optim.RAdam(p, weight_decay=-0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: 0"):
        optim.SparseAdam(p, lr=0)
    with pytest.raises(ValueError, match="LBFGS doesn't support per-parameter options"):
        optim.LBFGS([{"params": p}, {"params": [ember.zeros(1, requires_grad=True)]}])
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        optim.LBFGS(p, line_search_fn="armijo")
    with pytest.raises(RuntimeError, match="requires a closure"):
        optim.LBFGS(p).step()


# --------------------------------------------------------------------------- SparseAdam
def test_sparse_adam_matches_torch_on_embedding_rows():
    """torch's Embedding(sparse=True) gives sparse gradients of the rows looked up; ember's gradient
    is dense, and SparseAdam updates exactly the rows with a gradient, as torch's does."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((10, 4))
    em = ember.nn.Embedding(10, 4, sparse=True, dtype=ember.float64)
    tm = torch.nn.Embedding(10, 4, sparse=True, dtype=torch.float64)
    em.weight.data.copy_(ember.tensor(w0))
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(w0))
    eo = optim.SparseAdam(list(em.parameters()), lr=0.1, betas=(0.8, 0.9))
    to = torch.optim.SparseAdam(list(tm.parameters()), lr=0.1, betas=(0.8, 0.9))
    for step in range(5):
        idx = rng.integers(0, 6, (3, 2))          # rows 6..9 never looked up: never updated
        target = rng.standard_normal((3, 2, 4))
        for m, o, lib in ((em, eo, ember), (tm, to, torch)):
            o.zero_grad()
            ((m(lib.tensor(idx)) - lib.tensor(target)) ** 2).sum().backward()
            o.step()
        np.testing.assert_allclose(em.weight.detach().numpy(), tm.weight.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"step {step}")
    np.testing.assert_array_equal(em.weight.detach().numpy()[6:], w0[6:])
    assert eo.state[em.weight]["step"] == to.state[tm.weight]["step"] == 5


# -------------------------------------------------------------------------------- LBFGS
def _lbfgs_problem(lib, dtype):
    """A small nonlinear least-squares fit: w (3x2) and b through tanh, to targets tanh can reach
    (an unreachable target drives the weights to saturation, where rounding differences blow up)."""
    rng = np.random.default_rng(3)
    X = lib.tensor(rng.standard_normal((16, 3)).astype(dtype))
    Y = lib.tensor(rng.uniform(-0.6, 0.6, (16, 2)).astype(dtype))
    w = lib.tensor((rng.standard_normal((3, 2)) * 0.5).astype(dtype), requires_grad=True)
    b = lib.tensor(np.zeros(2, dtype), requires_grad=True)
    return X, Y, [w, b]


LBFGS_CASES = [
    dict(),
    dict(lr=0.3, max_iter=6, history_size=3),
    dict(line_search_fn="strong_wolfe"),
    dict(line_search_fn="strong_wolfe", history_size=2, max_iter=7, tolerance_change=1e-6),
    dict(lr=0.8, max_iter=4, max_eval=6, line_search_fn="strong_wolfe"),
]


@pytest.mark.parametrize("kwargs", LBFGS_CASES, ids=[str(i) for i in range(len(LBFGS_CASES))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_matches_torch(kwargs, dtype):
    runs = {}
    for lib, mod in ((ember, optim), (torch, torch.optim)):
        X, Y, params = _lbfgs_problem(lib, dtype)
        opt = mod.LBFGS(params, **kwargs)
        calls = [0]

        def closure(opt=opt, X=X, Y=Y, params=params, calls=calls):
            opt.zero_grad()
            calls[0] += 1
            loss = ((lib.tanh(X @ params[0] + params[1]) - Y) ** 2).mean() + 0.05 * (params[0] ** 2).sum()
            loss.backward()
            return loss
        losses, snaps = [], []
        for _ in range(3):
            losses.append(float(opt.step(closure)))
            snaps.append([p.detach().numpy().copy() for p in params])
        st = opt.state[params[0]]
        runs[lib.__name__] = (losses, snaps, calls[0], st["func_evals"], st["n_iter"], len(st["old_dirs"]))
    e, t = runs["ember"], runs["torch"]
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(e[0], t[0], rtol=rtol)
    for se, stt in zip(e[1], t[1]):
        for a, b in zip(se, stt):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    if dtype == np.float64:     # float32 rounding may end a run one iteration apart on tolerance_change
        assert e[2:] == t[2:], f"closure calls / func_evals / n_iter / history: {e[2:]} vs torch {t[2:]}"
    assert e[0][-1] < e[0][0]


def test_lbfgs_stops_on_tolerance_grad_and_resumes_from_state_dict():
    X, Y, params = _lbfgs_problem(ember, np.float64)
    before = [p.detach().numpy().copy() for p in params]

    def closure():
        opt.zero_grad()
        loss = ((ember.tanh(X @ params[0] + params[1]) - Y) ** 2).mean() + 0.05 * (params[0] ** 2).sum()
        loss.backward()
        return loss
    opt = optim.LBFGS(params, tolerance_grad=1e3)      # the first gradient already counts as optimal
    opt.step(closure)
    for a, b in zip(before, params):
        np.testing.assert_array_equal(a, b.detach().numpy())
    assert opt.state[params[0]]["func_evals"] == 1 and opt.state[params[0]]["n_iter"] == 0
    # a checkpointed LBFGS continues exactly as an uninterrupted one
    opt = optim.LBFGS(params, max_iter=3, history_size=4)
    opt.step(closure)
    buf = io.BytesIO()
    ember.save(opt.state_dict(), buf)          # the state holds live tensors and lists: save a snapshot
    twin = [p.detach().clone().requires_grad_(True) for p in params]
    opt.step(closure)
    expected = [p.detach().numpy().copy() for p in params]
    for p, q in zip(params, twin):
        p.data.copy_(q.detach())
    opt = optim.LBFGS(params, max_iter=3, history_size=4)
    buf.seek(0)
    opt.load_state_dict(ember.load(buf))
    opt.step(closure)
    for a, b in zip(expected, params):
        np.testing.assert_allclose(b.detach().numpy(), a, rtol=1e-12)
