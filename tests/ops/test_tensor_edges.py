"""Tensor edge cases against torch: torch.Size arithmetic, gradients through in-place composites,
p-norms and median() at zeros and ties, memory layouts kept by clone / *_like (preserve_format),
channels_last, and writes through unfold views."""
import math

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

INF, NAN = math.inf, math.nan


def _grad(lib, fn, data):
    a = lib.tensor(data, requires_grad=True)
    r = fn(lib, a)
    r.sum().backward()
    return r.detach().numpy(), a.grad.numpy()


def _same_grad(fn, data):
    for e, t in zip(_grad(ember, fn, data), _grad(torch, fn, data)):
        np.testing.assert_allclose(e, t, rtol=1e-5, atol=1e-6)


def test_size_arithmetic_gives_a_size():
    s = ember.ones(2, 3).size()
    for r in (s + (1,), (1,) + s, s + s, s * 2, 2 * s, s[1:]):
        assert type(r) is ember.Size
    assert (1,) + s == (1, 2, 3) and s * 2 == (2, 3, 2, 3)
    with pytest.raises(TypeError):
        s + [1]


@pytest.mark.parametrize("name,fn", [
    ("fmod_", lambda L, a: (a * 1).fmod_(0.3)),
    ("fmod_tensor", lambda L, a: (a * 1).fmod_(L.tensor([0.3, -0.4]))),
    ("hypot_", lambda L, a: (a * 1).hypot_(L.tensor([1.0, 2.0]))),
    ("copysign_", lambda L, a: (a * 1).copysign_(L.tensor([-1.0, 2.0]))),
    ("copysign_scalar", lambda L, a: (a * 1).copysign_(-1)),
    ("atan2_", lambda L, a: (a * 1).atan2_(L.tensor([1.0, 2.0]))),
    ("xlogy_", lambda L, a: (a * 1).xlogy_(2.0)),
    ("view_hypot_", lambda L, a: (lambda x: (x[:1].hypot_(L.tensor([3.0])), x)[1])(a * 1)),
])
def test_inplace_composites_keep_their_gradient(name, fn):
    _same_grad(fn, [0.5, 1.0])


def test_inplace_still_fails_when_an_earlier_node_saved_the_tensor():
    # x.sin() saved x before hypot_ overwrote it: PyTorch's error, not a silently old value
    for lib in (ember, torch):
        a = lib.tensor([0.5, 1.0], requires_grad=True)
        x = a * 1
        x.hypot_(x.sin())
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            x.sum().backward()


@pytest.mark.parametrize("p", [3, 0.5, 1.5, 2, 1, -1, -0.5, INF, -INF])
def test_vector_norm_gradient_at_zeros(p):
    rows = [[0.0, 0.0], [1.0, -2.0]]
    _same_grad(lambda L, a: L.linalg.vector_norm(a, p, dim=1), rows)
    _same_grad(lambda L, a: L.linalg.vector_norm(a, p), [0.0, 1.0, -1.0])
    _same_grad(lambda L, a: a.norm(p=p, dim=1), rows)


def test_matrix_norms_of_zero_have_zero_gradient():
    z = [[0.0, 0.0], [0.0, 0.0]]
    _same_grad(lambda L, a: L.linalg.matrix_norm(a), z)
    _same_grad(lambda L, a: L.linalg.norm(a), z)
    _same_grad(lambda L, a: a.norm(), z)


@pytest.mark.parametrize("data", [[1.0, 1.0, 2.0], [1.0, 2.0, 1.0, 3.0], [[2.0, 1.0], [1.0, 0.0]], [INF, INF, 1.0],
                                  [-INF, -INF, -INF, 1.0], [NAN, 1.0, NAN], [3.0]])
def test_median_of_everything_shares_the_gradient_among_ties(data):
    _same_grad(lambda L, a: a.median(), data)
    _same_grad(lambda L, a: a.nanmedian(), data)


def test_median_along_a_dim_picks_one_element():
    _same_grad(lambda L, a: a.median(0).values, [1.0, 1.0, 2.0])


LAYOUTS = {
    "clone_t": lambda L: L.ones(2, 3).t().clone(),
    "clone_permuted": lambda L: L.ones(2, 3, 4).permute(2, 0, 1).clone(),
    "clone_size1_dim": lambda L: L.ones(3, 1, 2).permute(2, 1, 0).clone(),
    "clone_not_dense": lambda L: L.ones(4, 6).t()[::2].clone(),
    "clone_channels_last_sliced": lambda L: L.ones(2, 3, 4, 5).permute(0, 2, 3, 1).contiguous()
                                               .permute(0, 3, 1, 2)[:, :, ::2].clone(),
    "clone_contiguous_format": lambda L: L.ones(2, 3).t().clone(memory_format=L.contiguous_format),
    "clone_channels_last": lambda L: L.ones(2, 3, 4, 5).clone(memory_format=L.channels_last),
    "contiguous_channels_last": lambda L: L.ones(2, 3, 4, 5).contiguous(memory_format=L.channels_last),
    "contiguous": lambda L: L.ones(2, 3).t().contiguous(),
    "zeros_like": lambda L: L.zeros_like(L.ones(2, 3).t()),
    "ones_like": lambda L: L.ones_like(L.ones(2, 3, 4).permute(2, 0, 1)),
    "empty_like": lambda L: L.empty_like(L.ones(2, 3).t()),
    "full_like": lambda L: L.full_like(L.ones(2, 3).t(), 2.0),
    "rand_like": lambda L: L.rand_like(L.ones(2, 3).t()),
    "randn_like": lambda L: L.randn_like(L.ones(2, 3).t()),
    "randint_like": lambda L: L.randint_like(L.ones(2, 3).t(), 5),
    "zeros_like_contiguous_format": lambda L: L.zeros_like(L.ones(2, 3).t(), memory_format=L.contiguous_format),
    "zeros_like_expanded": lambda L: L.zeros_like(L.ones(3, 1).expand(3, 4)),
    "to_double": lambda L: L.ones(2, 3).t().double(),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_copies_keep_the_layout_as_torch(name):
    e, t = LAYOUTS[name](ember), LAYOUTS[name](torch)
    assert e.stride() == t.stride() and tuple(e.shape) == tuple(t.shape)
    assert e.is_contiguous() == t.is_contiguous()
    if e.ndim == 4:
        assert e.is_contiguous(memory_format=ember.channels_last) == \
            t.is_contiguous(memory_format=torch.channels_last)


def test_clone_keeps_values_and_the_gradient_of_writes_through_views():
    x = ember.arange(6.0).view(2, 3).t().clone()
    np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3).T)
    with pytest.raises(RuntimeError, match="rank 4"):
        ember.ones(2, 3).clone(memory_format=ember.channels_last)
    # an in-place write into a view of a transposed clone reaches the right elements' gradient
    _same_grad(lambda L, a: (lambda y: (y[0].mul_(3), y)[1])((a * 2).t().clone()), [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])


def test_writes_through_a_non_overlapping_unfold():
    _same_grad(lambda L, a: (lambda y: (y.unfold(1, 2, 2).mul_(L.tensor([2.0, 3.0])), y)[1])(a * 1),
               [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]])
    x = ember.zeros(2, 4)
    with pytest.raises((RuntimeError, ValueError)):     # overlapping windows stay read-only here
        x.unfold(1, 2, 1).add_(1)


def test_repeat_interleave_one_tensor_form_errors():
    with pytest.raises(RuntimeError, match="1D"):
        ember.repeat_interleave(ember.tensor([[1, 2]]))
    with pytest.raises(RuntimeError, match="output_size"):
        ember.repeat_interleave(ember.tensor([1.0, 2.0]), 2, output_size=3)
    with pytest.raises(RuntimeError, match="cannot be identical"):
        ember.diag_embed(ember.ones(2, 3), 1, 0, 0)


def test_softmax_and_flip_of_a_0d_tensor_differentiate():
    _same_grad(lambda L, a: a.softmax(0) * a, 3.0)
    _same_grad(lambda L, a: a.flip(0) * a, 3.0)


def test_int_base_power_compiles():
    f = ember.compile(lambda t: 2 ** t + ember.pow(-1, t))
    np.testing.assert_array_equal(f(ember.tensor([-1, 2, -3])).numpy(), [-1, 5, -1])
