"""ember.distributions against torch.distributions in float64: log_prob, entropy, cdf/icdf, moments,
KL, gradients, sampling statistics, validation errors, and the compiled log_prob."""
import math

import numpy as np
import pytest

import ember
from ember import diagnostics as records
from ember import distributions as D

torch = pytest.importorskip("torch")
TD = torch.distributions
rng = np.random.default_rng(0)


def _both(*arrays, grad=True):
    e = [ember.tensor(a, requires_grad=grad) for a in arrays]
    t = [torch.tensor(a, requires_grad=grad) for a in arrays]
    return e, t


def _close(a, b, rtol=1e-10, atol=1e-12):
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def _grads_match(e_out, t_out, e_in, t_in, rtol=1e-9):
    w = rng.standard_normal(tuple(t_out.shape))
    eg = ember.autograd.grad((e_out * ember.tensor(w)).sum(), e_in, retain_graph=True)
    tg = torch.autograd.grad((t_out * torch.tensor(w)).sum(), t_in, retain_graph=True)
    for a, b in zip(eg, tg):
        _close(a, b, rtol=rtol, atol=1e-12)


# ---------------------------------------------------------------------------------- Normal
def test_normal_log_prob_entropy_cdf_icdf_moments_and_grads():
    loc, scale, x = rng.standard_normal((2, 3)), rng.random((2, 3)) + 0.5, rng.standard_normal((4, 2, 3))
    (el, es, ex), (tl, ts, tx) = _both(loc, scale, x)
    e, t = D.Normal(el, es), TD.Normal(tl, ts)
    for f in (lambda d, v: d.log_prob(v), lambda d, v: d.cdf(v), lambda d, v: d.entropy(),
              lambda d, v: d.icdf(d.cdf(v)), lambda d, v: d.variance, lambda d, v: d.stddev, lambda d, v: d.mean):
        _close(f(e, ex), f(t, tx))
    _grads_match(e.log_prob(ex), t.log_prob(tx), [el, es, ex], [tl, ts, tx])
    _grads_match(e.cdf(ex), t.cdf(tx), [el, es, ex], [tl, ts, tx])
    _grads_match(e.entropy(), t.entropy(), [es], [ts])
    assert e.batch_shape == (2, 3) and e.event_shape == () and e.has_rsample
    s = D.Normal(0.0, 1.0)
    assert s.batch_shape == () and s.sample().shape == () and s.sample((5, 2)).shape == (5, 2)
    assert repr(D.Normal(el, es)) == "Normal(loc: ember.Size([2, 3]), scale: ember.Size([2, 3]))"


def test_normal_rsample_is_reparameterised_and_sample_is_not():
    ember.manual_seed(0)
    loc = ember.tensor([1.0, -2.0], requires_grad=True)
    scale = ember.tensor([0.5, 3.0], requires_grad=True)
    d = D.Normal(loc, scale)
    z = d.rsample((20000,))
    assert z.shape == (20000, 2) and z.requires_grad
    z.sum().backward()
    eps = (z.detach() - loc.detach()) / scale.detach()
    _close(loc.grad, [20000.0, 20000.0])
    _close(scale.grad, eps.sum(0), rtol=1e-4)
    np.testing.assert_allclose(z.detach().numpy().mean(0), [1.0, -2.0], atol=0.06)
    np.testing.assert_allclose(z.detach().numpy().std(0), [0.5, 3.0], rtol=0.03)
    assert not d.sample((3,)).requires_grad


def test_vae_pattern_reparameterised_kl_matches_torch():
    mu, logvar = rng.standard_normal((4, 5)), rng.standard_normal((4, 5)) * 0.3
    (em, ev), (tm, tv) = _both(mu, logvar)
    e = D.kl_divergence(D.Normal(em, (0.5 * ev).exp()), D.Normal(ember.zeros_like(em), ember.ones_like(em)))
    t = TD.kl_divergence(TD.Normal(tm, (0.5 * tv).exp()), TD.Normal(torch.zeros_like(tm), torch.ones_like(tm)))
    _close(e, t)
    _grads_match(e, t, [em, ev], [tm, tv])
    ei = D.kl_divergence(D.Independent(D.Normal(em, ev.exp()), 1), D.Independent(D.Normal(em * 0, ev.exp() * 0 + 1), 1))
    ti = TD.kl_divergence(TD.Independent(TD.Normal(tm, tv.exp()), 1), TD.Independent(TD.Normal(tm * 0, tv.exp() * 0 + 1), 1))
    _close(ei, ti)


# ------------------------------------------------------------------------------- Bernoulli
@pytest.mark.parametrize("by", ["probs", "logits"])
def test_bernoulli(by):
    p = rng.random((3, 4)) if by == "probs" else rng.standard_normal((3, 4))
    x = (rng.random((3, 4)) < 0.5).astype(np.float64)
    (ep,), (tp,) = _both(p)
    e, t = D.Bernoulli(**{by: ep}), TD.Bernoulli(**{by: tp})
    for f in (lambda d: d.log_prob(d.mean * 0 + ember_or_torch(d, x)), lambda d: d.entropy(), lambda d: d.mean,
              lambda d: d.variance, lambda d: d.probs, lambda d: d.logits):
        _close(f(e), f(t))
    _grads_match(e.log_prob(ember.tensor(x)), t.log_prob(torch.tensor(x)), [ep], [tp])
    _grads_match(e.entropy(), t.entropy(), [ep], [tp])
    ember.manual_seed(1)
    s = D.Bernoulli(probs=ember.full((50000,), 0.3)).sample()
    assert set(np.unique(s.numpy())) <= {0.0, 1.0} and abs(s.numpy().mean() - 0.3) < 0.01
    _close(D.Bernoulli(probs=ember.tensor([0.2, 0.5, 0.9])).mode, TD.Bernoulli(probs=torch.tensor([0.2, 0.5, 0.9])).mode)
    assert D.Bernoulli(probs=ember.tensor([0.2, 0.7])).enumerate_support().tolist() == [[0.0, 0.0], [1.0, 1.0]]


def ember_or_torch(d, x):
    return ember.tensor(x) if isinstance(d, D.Distribution) else torch.tensor(x)


# ----------------------------------------------------------------------------- Categorical
@pytest.mark.parametrize("by", ["probs", "logits"])
def test_categorical(by):
    p = rng.random((2, 5)) + 0.1 if by == "probs" else rng.standard_normal((2, 5))
    v = np.array([[0, 4], [3, 3], [1, 0]])
    (ep,), (tp,) = _both(p)
    e, t = D.Categorical(**{by: ep}), TD.Categorical(**{by: tp})
    _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)))
    _close(e.entropy(), t.entropy())
    _close(e.probs, t.probs)
    _close(e.logits, t.logits)
    assert e.mode.tolist() == t.mode.tolist() and e.batch_shape == (2,) and e.event_shape == ()
    _grads_match(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)), [ep], [tp])
    _grads_match(e.entropy(), t.entropy(), [ep], [tp])
    assert e.enumerate_support().tolist() == t.enumerate_support().tolist()
    assert np.isnan(e.mean.numpy()).all() and e.mean.shape == (2,)


def test_categorical_sampling_frequencies_and_zero_probabilities():
    ember.manual_seed(3)
    probs = ember.tensor([0.1, 0.0, 0.6, 0.3])
    s = D.Categorical(probs=probs).sample((40000,))
    assert s.dtype is ember.int64 and s.shape == (40000,)
    freq = np.bincount(s.numpy(), minlength=4) / 40000
    np.testing.assert_allclose(freq, [0.1, 0.0, 0.6, 0.3], atol=0.01)
    assert D.Categorical(logits=ember.randn(3, 2, 6)).sample((7,)).shape == (7, 3, 2)


def test_reinforce_pattern_matches_torch():
    w = rng.standard_normal((4, 3))
    x = rng.standard_normal((5, 4))
    ew, tw = ember.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    e = D.Categorical(ember.softmax(ember.tensor(x) @ ew, -1))
    t = TD.Categorical(torch.softmax(torch.tensor(x) @ tw, -1))
    a = e.sample()
    returns = np.linspace(1.0, 2.0, 5)
    (-(e.log_prob(a) * ember.tensor(returns)).sum()).backward()
    (-(t.log_prob(torch.tensor(a.numpy())) * torch.tensor(returns)).sum()).backward()
    _close(ew.grad, tw.grad)


def test_one_hot_categorical():
    p = rng.random((2, 4)) + 0.1
    e, t = D.OneHotCategorical(probs=ember.tensor(p)), TD.OneHotCategorical(probs=torch.tensor(p))
    v = np.eye(4)[[1, 3]]
    _close(e.log_prob(ember.tensor(v)), t.log_prob(torch.tensor(v)))
    _close(e.entropy(), t.entropy())
    s = e.sample((6,))
    assert s.shape == (6, 2, 4) and (s.sum(-1) == 1).all()


# --------------------------------------------------------------------------------- Uniform
def test_uniform():
    lo, hi = rng.standard_normal(3), rng.standard_normal(3) + 3
    x = np.array([lo[0] + 0.1, hi[1] + 1.0, lo[2] - 1.0])
    (el, eh), (tl, th) = _both(lo, hi)
    e, t = D.Uniform(el, eh, validate_args=False), TD.Uniform(tl, th, validate_args=False)
    for f in (lambda d, v: d.log_prob(v), lambda d, v: d.cdf(v), lambda d, v: d.entropy(), lambda d, v: d.mean,
              lambda d, v: d.stddev, lambda d, v: d.variance, lambda d, v: d.icdf(d.cdf(v))):
        _close(f(e, ember.tensor(x)), f(t, torch.tensor(x)))
    _grads_match(e.entropy(), t.entropy(), [el, eh], [tl, th])
    ember.manual_seed(2)
    s = D.Uniform(ember.tensor(-1.0), ember.tensor(3.0)).rsample((20000,))
    assert s.min().item() >= -1 and s.max().item() < 3 and abs(s.mean().item() - 1.0) < 0.05
    with pytest.raises(ValueError, match="within the support"):
        D.Uniform(0.0, 1.0).log_prob(ember.tensor(2.0))


# ---------------------------------------------------------------------- MultivariateNormal
@pytest.mark.parametrize("param", ["covariance_matrix", "scale_tril", "precision_matrix"])
def test_multivariate_normal(param):
    a = rng.standard_normal((2, 3, 3))
    cov = a @ np.swapaxes(a, -1, -2) + 3 * np.eye(3)
    mat = {"covariance_matrix": cov, "scale_tril": np.linalg.cholesky(cov), "precision_matrix": np.linalg.inv(cov)}[param]
    loc, x = rng.standard_normal(3), rng.standard_normal((4, 2, 3))
    (eloc, emat), (tloc, tmat) = _both(loc, mat)
    e = D.MultivariateNormal(eloc, **{param: emat})
    t = TD.MultivariateNormal(tloc, **{param: tmat})
    assert e.batch_shape == t.batch_shape and e.event_shape == t.event_shape
    _close(e.log_prob(ember.tensor(x)), t.log_prob(torch.tensor(x)), rtol=1e-9)
    _close(e.entropy(), t.entropy(), rtol=1e-9)
    _close(e.covariance_matrix, t.covariance_matrix, rtol=1e-9)
    _close(e.variance, t.variance, rtol=1e-9)
    _grads_match(e.log_prob(ember.tensor(x)), t.log_prob(torch.tensor(x)), [eloc, emat], [tloc, tmat], rtol=1e-7)
    q_e = D.MultivariateNormal(ember.zeros(3, dtype=ember.float64), ember.eye(3, dtype=ember.float64) * 2)
    q_t = TD.MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 2)
    _close(D.kl_divergence(e, q_e), TD.kl_divergence(t, q_t), rtol=1e-9)
    ember.manual_seed(4)
    s = D.MultivariateNormal(ember.tensor(loc), ember.tensor(cov[0])).sample((30000,)).numpy()
    np.testing.assert_allclose(np.cov(s.T), cov[0], atol=0.25)


# ------------------------------------------------------------------------ KL, errors, compile
def test_kl_pairs_and_missing_pair():
    p, q = rng.random((3, 4)) + 0.1, rng.random((3, 4)) + 0.1
    _close(D.kl_divergence(D.Categorical(ember.tensor(p)), D.Categorical(ember.tensor(q))),
           TD.kl_divergence(TD.Categorical(torch.tensor(p)), TD.Categorical(torch.tensor(q))))
    bp, bq = np.array([0.0, 0.3, 1.0]), np.array([0.2, 0.0, 0.5])
    _close(D.kl_divergence(D.Bernoulli(ember.tensor(bp)), D.Bernoulli(ember.tensor(bq))),
           TD.kl_divergence(TD.Bernoulli(torch.tensor(bp)), TD.Bernoulli(torch.tensor(bq))))
    _close(D.kl_divergence(D.Uniform(0.0, 1.0), D.Uniform(-1.0, 2.0)),
           TD.kl_divergence(TD.Uniform(0.0, 1.0), TD.Uniform(-1.0, 2.0)), rtol=1e-6)
    assert D.kl_divergence(D.Uniform(0.0, 3.0), D.Uniform(-1.0, 2.0)).item() == math.inf
    with pytest.raises(NotImplementedError, match="No KL"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Uniform(0.0, 1.0))

    @D.register_kl(D.Normal, D.Uniform)
    def _kl(p, q):
        return p.loc * 0 + 7.0
    assert D.kl_divergence(D.Normal(0.0, 1.0), D.Uniform(0.0, 1.0)).item() == 7.0


def test_validation_errors_and_switch():
    with pytest.raises(ValueError, match=r"Expected parameter scale .* GreaterThan\(lower_bound=0.0\)"):
        D.Normal(ember.tensor([0.0]), ember.tensor([-1.0]))
    with pytest.raises(ValueError, match="Either `probs` or `logits` must be specified, but not both"):
        D.Categorical()
    with pytest.raises(ValueError, match=r"Expected parameter probs .* Interval\(lower_bound=0.0, upper_bound=1.0\)"):
        D.Bernoulli(probs=ember.tensor([1.5]))
    with pytest.raises(ValueError, match="within the support"):
        D.Categorical(logits=ember.zeros(3)).log_prob(ember.tensor(3))
    D.Normal(ember.tensor([0.0]), ember.tensor([-1.0]), validate_args=False)
    D.Distribution.set_default_validate_args(False)
    try:
        D.Normal(ember.tensor([0.0]), ember.tensor([-1.0]))
    finally:
        D.Distribution.set_default_validate_args(True)


def test_log_prob_entropy_kl_compile_to_eager_values():
    def f(loc, log_scale, x, logits, a):
        n = D.Normal(loc, log_scale.exp())
        c = D.Categorical(logits=logits)
        return (n.log_prob(x).sum() + n.entropy().sum() + c.log_prob(a).sum() + c.entropy().sum()
                + D.kl_divergence(n, D.Normal(loc * 0, log_scale.exp() * 0 + 1)).sum())
    ember.manual_seed(0)
    args = [ember.randn(3, requires_grad=True), ember.randn(3, requires_grad=True), ember.randn(5, 3),
            ember.randn(4, 6, requires_grad=True), ember.tensor([0, 5, 2, 1])]
    eager = f(*args)
    eg = ember.autograd.grad(eager, [args[0], args[1], args[3]])
    with records.collect() as recs:
        cf = ember.compile(f, backend="auto")
        out = cf(*args)
        cg = ember.autograd.grad(out, [args[0], args[1], args[3]])
    assert not [r for r in recs if r.kind == "breaks"], [str(r) for r in recs]
    np.testing.assert_allclose(out.item(), eager.item(), rtol=1e-5)
    for a, b in zip(cg, eg):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_module_paths_like_torch():
    from ember.distributions.categorical import Categorical
    from ember.distributions.normal import Normal
    import ember.distributions.constraints as C
    assert Categorical is D.Categorical and Normal is ember.distributions.Normal and C.positive.check(ember.ones(1)).all()
