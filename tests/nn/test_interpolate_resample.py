"""interpolate's bicubic and antialiased modes (weight matrices per spatial dim) against PyTorch,
forward and backward, and compiled against eager."""
import itertools

import numpy as np
import pytest

import ember
import ember.nn.functional as F

torch = pytest.importorskip("torch")

SIZES = [dict(size=(4, 5)), dict(size=(18, 7)), dict(scale_factor=0.5), dict(scale_factor=(2.3, 0.37)),
         dict(size=(1, 1)), dict(size=(9, 13)), dict(scale_factor=3)]
CASES = [(m, aa, ac, i) for m, aa, ac, i in itertools.product(["bicubic", "bilinear"], [False, True], [False, True],
                                                              range(len(SIZES))) if m == "bicubic" or aa]


@pytest.mark.parametrize("mode, antialias, align_corners, which", CASES)
def test_bicubic_and_antialias_match_torch(mode, antialias, align_corners, which):
    rng = np.random.default_rng(which)
    x = rng.standard_normal((2, 3, 9, 13)).astype(np.float32)
    kw = dict(SIZES[which], mode=mode, align_corners=align_corners, antialias=antialias)
    t, e = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    rt, re = torch.nn.functional.interpolate(t, **kw), F.interpolate(e, **kw)
    g = rng.standard_normal(tuple(rt.shape)).astype(np.float32)
    (rt * torch.tensor(g)).sum().backward()
    (re * ember.tensor(g)).sum().backward()
    np.testing.assert_allclose(re.detach().numpy(), rt.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_resampling_compiled_equals_eager_and_errors():
    x = ember.randn(2, 3, 10, 12)

    def f(x):
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True) + \
            F.interpolate(x, size=(5, 6), mode="bicubic")
    np.testing.assert_allclose(ember.compile(f)(x).numpy(), f(x).numpy(), rtol=1e-5, atol=1e-6)
    assert tuple(ember.nn.Upsample(scale_factor=2, mode="bicubic")(x).shape) == (2, 3, 20, 24)
    with pytest.raises(NotImplementedError, match="Anti-alias"):
        F.interpolate(ember.randn(1, 2, 8), scale_factor=0.5, mode="linear", antialias=True)
