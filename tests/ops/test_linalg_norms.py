"""ember.linalg norms against torch.linalg (values and gradients)."""
import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("call", [
    lambda L, x: L.norm(x), lambda L, x: L.vector_norm(x, 1, dim=1), lambda L, x: L.vector_norm(x, float("inf")),
    lambda L, x: L.vector_norm(x, 3, dim=0, keepdim=True), lambda L, x: L.matrix_norm(x),
    lambda L, x: L.matrix_norm(x, 1), lambda L, x: L.matrix_norm(x, float("-inf")), lambda L, x: L.norm(x, dim=1),
    lambda L, x: L.norm(x, "fro", dim=(0, 1)),
])
def test_norms_match_torch(call):
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    xe, xt = ember.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    ye, yt = call(ember.linalg, xe), call(torch.linalg, xt)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    ye.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
