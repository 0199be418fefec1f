"""F.grid_sample and F.affine_grid against torch (float64 values and gradients, every mode / padding /
align_corners), errors, and the spatial-transformer pattern compiled == eager."""
import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember import diagnostics as records

torch = pytest.importorskip("torch")
TF = torch.nn.functional


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_matches_torch(mode, padding_mode, align_corners):
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((2, 3, 5, 6)), rng.uniform(-1.3, 1.3, (2, 4, 7, 2))
    ex, eg = ember.tensor(x, requires_grad=True), ember.tensor(g, requires_grad=True)
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g, requires_grad=True)
    eo = F.grid_sample(ex, eg, mode, padding_mode, align_corners)
    to = TF.grid_sample(tx, tg, mode, padding_mode, align_corners)
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=1e-12, atol=1e-12)
    w = rng.standard_normal(tuple(to.shape))
    (eo * ember.tensor(w)).sum().backward()
    (to * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    eg_grad = eg.grad.numpy() if eg.grad is not None else np.zeros_like(g)    # nearest: zero (None here)
    np.testing.assert_allclose(eg_grad, tg.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid_2d_and_3d(align_corners):
    rng = np.random.default_rng(1)
    for theta, size in ((rng.standard_normal((2, 2, 3)), (2, 3, 4, 5)), (rng.standard_normal((2, 3, 4)), (2, 1, 3, 4, 5)),
                        (rng.standard_normal((1, 2, 3)), (1, 1, 1, 3))):
        e, t = ember.tensor(theta, requires_grad=True), torch.tensor(theta, requires_grad=True)
        eo, to = F.affine_grid(e, size, align_corners), TF.affine_grid(t, size, align_corners)
        np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=1e-12, atol=1e-12)
        eo.pow(2).sum().backward()
        to.pow(2).sum().backward()
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-10)


def test_align_corners_default_warns_like_torch():
    with pytest.warns(UserWarning, match="align_corners=False since 1.3.0"):
        F.affine_grid(ember.zeros(1, 2, 3), (1, 1, 2, 2))


def test_errors():
    x, g = ember.randn(2, 1, 3, 3), ember.randn(2, 2, 2, 2)
    with pytest.raises(ValueError, match="expected mode to be 'bilinear', 'nearest' or 'bicubic', but got: 'area'"):
        F.grid_sample(x, g, mode="area", align_corners=False)
    with pytest.raises(ValueError, match="expected padding_mode to be 'zeros', 'border', or 'reflection'"):
        F.grid_sample(x, g, padding_mode="wrap", align_corners=False)
    with pytest.raises(RuntimeError, match="expected grid to have size 2 in last dimension"):
        F.grid_sample(x, ember.randn(2, 2, 2, 3), align_corners=False)
    with pytest.raises(RuntimeError, match="expected input and grid to have same batch size"):
        F.grid_sample(x, ember.randn(3, 2, 2, 2), align_corners=False)
    with pytest.raises(ValueError, match=r"Expected a batch of 2D affine matrices of shape Nx2x3 for size \[1, 1, 2, 2\]"):
        F.affine_grid(ember.zeros(1, 3, 3), (1, 1, 2, 2), align_corners=False)


def test_spatial_transformer_compiles_to_the_eager_values_and_gradients():
    ember.manual_seed(0)
    x = ember.randn(2, 1, 8, 8, requires_grad=True)
    theta = (ember.eye(2, 3).unsqueeze(0).repeat(2, 1, 1) + 0.1 * ember.randn(2, 2, 3)).requires_grad_()

    def stn(x, theta):
        grid = F.affine_grid(theta, (2, 1, 6, 6), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="border")
    eager = stn(x, theta)
    gx, gt = ember.autograd.grad(eager.pow(2).sum(), [x, theta])
    with records.collect() as recs:
        out = ember.compile(stn, backend="auto")(x, theta)
        cgx, cgt = ember.autograd.grad(out.pow(2).sum(), [x, theta])
    assert not [r for r in recs if r.kind == "breaks"], [str(r) for r in recs]
    for a, b in ((out, eager), (cgx, gx), (cgt, gt)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-5)
