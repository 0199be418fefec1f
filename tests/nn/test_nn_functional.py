"""nn.functional entries not covered through a layer: attention, resampling, padding, unfold/fold,
distances, one_hot, embedding, softmax family, dropout statistics."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from nn_helpers import rand, run_fn, torch

TF = torch.nn.functional


@pytest.mark.parametrize("kw", [{}, {"is_causal": True}, {"scale": 0.3}])
def test_sdpa(kw):
    run_fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw),
           lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, **kw),
           rand((2, 3, 4, 8)), rand((2, 3, 4, 8), 2), rand((2, 3, 4, 8), 3), grtol=1e-4, gatol=1e-5)


def test_sdpa_masks():
    bool_mask = np.random.default_rng(0).random((4, 6)) > 0.3
    bool_mask[:, 0] = True
    float_mask = rand((2, 1, 4, 6), 5)
    for m in (bool_mask, float_mask):
        run_fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=ember.tensor(m)),
               lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, attn_mask=torch.tensor(m)),
               rand((2, 3, 4, 8)), rand((2, 3, 6, 8), 2), rand((2, 3, 6, 5), 3))


def test_sdpa_dropout_is_random_but_unbiased():
    q = ember.ones(1, 1, 64, 8)
    out = F.scaled_dot_product_attention(q, q, ember.ones(1, 1, 64, 8), dropout_p=0.5)
    assert 0.8 < float(out.mean()) < 1.2


@pytest.mark.parametrize("kw", [
    {"scale_factor": 2, "mode": "nearest"}, {"size": (5, 3), "mode": "nearest"},
    {"size": (7, 9), "mode": "nearest-exact"}, {"scale_factor": 0.5, "mode": "nearest"},
    {"scale_factor": 2, "mode": "bilinear"}, {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
    {"size": (3, 11), "mode": "bilinear"}, {"size": (3, 4), "mode": "area"},
])
def test_interpolate_2d(kw):
    run_fn(lambda x: F.interpolate(x, **kw), lambda x: TF.interpolate(x, **kw), rand((2, 3, 6, 7)))


def test_interpolate_1d_3d():
    run_fn(lambda x: F.interpolate(x, scale_factor=3, mode="linear"),
           lambda x: TF.interpolate(x, scale_factor=3, mode="linear"), rand((2, 3, 5)))
    run_fn(lambda x: F.interpolate(x, size=(3, 4, 5), mode="trilinear", align_corners=False),
           lambda x: TF.interpolate(x, size=(3, 4, 5), mode="trilinear", align_corners=False), rand((1, 2, 2, 3, 4)))


@pytest.mark.parametrize("pad,mode,value", [((1, 2), "constant", 0.5), ((1, 2, 0, 3), "constant", None),
                                            ((2, 1, 1, 0), "reflect", None), ((2, 3), "replicate", None),
                                            ((1, 1, 2, 2), "circular", None), ((-1, 2), "constant", None),
                                            ((1, 1, 1, 1, 1, 1), "constant", 2.0)])
def test_pad(pad, mode, value):
    kw = {} if value is None else {"value": value}
    shape = (2, 3, 5, 6) if mode == "constant" or len(pad) == 4 else (3, 5, 6)
    run_fn(lambda x: F.pad(x, pad, mode, **kw), lambda x: TF.pad(x, pad, mode, **kw), rand(shape))


def test_unfold_fold():
    run_fn(lambda x: F.unfold(x, 3, padding=1, stride=2), lambda x: TF.unfold(x, 3, padding=1, stride=2),
           rand((2, 3, 7, 6)))
    run_fn(lambda x: F.fold(x, (6, 5), 3, padding=1, stride=2), lambda x: TF.fold(x, (6, 5), 3, padding=1,
                                                                                   stride=2), rand((2, 18, 9)))


def test_distances_and_normalize():
    a, b = rand((4, 5)), rand((4, 5), 2)
    run_fn(F.normalize, TF.normalize, a)
    run_fn(lambda x: F.normalize(x, p=1, dim=0), lambda x: TF.normalize(x, p=1, dim=0), a)
    run_fn(F.cosine_similarity, TF.cosine_similarity, a, b)
    run_fn(lambda x, y: F.cosine_similarity(x, y, dim=0), lambda x, y: TF.cosine_similarity(x, y, dim=0), a, b)
    run_fn(F.pairwise_distance, TF.pairwise_distance, a, b)
    run_fn(lambda x, y: F.pairwise_distance(x, y, p=1, keepdim=True),
           lambda x, y: TF.pairwise_distance(x, y, p=1, keepdim=True), a, b)
    run_fn(F.pdist, TF.pdist, a)


def test_one_hot():
    t = np.array([[0, 2], [1, 4]])
    np.testing.assert_array_equal(F.one_hot(ember.tensor(t)).numpy(), TF.one_hot(torch.tensor(t)).numpy())
    np.testing.assert_array_equal(F.one_hot(ember.tensor(t), 6).numpy(), TF.one_hot(torch.tensor(t), 6).numpy())
    assert F.one_hot(ember.tensor(t)).dtype is ember.int64
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(ember.tensor(t), 3)


def test_linear_and_embedding_functional():
    run_fn(F.linear, TF.linear, rand((2, 3, 4)), rand((5, 4), 2), rand((5,), 3))
    run_fn(F.bilinear, TF.bilinear, rand((2, 3)), rand((2, 4), 2), rand((5, 3, 4), 3), rand((5,), 4))
    run_fn(lambda i, w: F.embedding(i, w, padding_idx=2), lambda i, w: TF.embedding(i, w, padding_idx=2),
           np.array([[0, 2, 2], [1, 1, 3]]), rand((4, 3)))


def test_softmax_family_and_activations_functional():
    x = rand((3, 4, 5))
    for fn in ("softmax", "log_softmax", "softmin"):
        run_fn(lambda a: getattr(F, fn)(a, dim=1), lambda a: getattr(TF, fn)(a, dim=1), x)
    run_fn(lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"), x)
    run_fn(lambda a: F.leaky_relu(a, 0.3), lambda a: TF.leaky_relu(a, 0.3), x)
    run_fn(lambda a: F.glu(a, 1), lambda a: TF.glu(a, 1), rand((3, 4, 5)))
    run_fn(F.prelu, TF.prelu, rand((2, 3, 4)), rand((3,), 2))
    run_fn(lambda a: F.relu6(a), lambda a: TF.relu6(a), x * 4)
    run_fn(F.logsigmoid, TF.logsigmoid, x)


def test_pool_and_conv_functional_forms():
    run_fn(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), lambda x, w, b: TF.conv2d(x, w, b, stride=2,
                                                                                              padding=1),
           rand((2, 3, 7, 7)), rand((4, 3, 3, 3), 2), rand((4,), 3), grtol=2e-4, gatol=1e-4)
    run_fn(lambda x, w: F.conv_transpose2d(x, w, stride=2), lambda x, w: TF.conv_transpose2d(x, w, stride=2),
           rand((2, 3, 4, 4)), rand((3, 2, 3, 3), 2))
    run_fn(lambda x: F.adaptive_avg_pool2d(x, 1), lambda x: TF.adaptive_avg_pool2d(x, 1), rand((2, 3, 5, 5)))
    run_fn(lambda x: F.avg_pool2d(x, 2), lambda x: TF.avg_pool2d(x, 2), rand((2, 3, 5, 5)))
    run_fn(lambda x: F.max_pool2d(x, 2), lambda x: TF.max_pool2d(x, 2), rand((2, 3, 5, 5)))
    run_fn(lambda x: F.layer_norm(x, (5,)), lambda x: TF.layer_norm(x, (5,)), rand((2, 3, 5)))
    run_fn(lambda x: F.group_norm(x, 3), lambda x: TF.group_norm(x, 3), rand((2, 6, 5)))
    run_fn(lambda x: F.local_response_norm(x, 3), lambda x: TF.local_response_norm(x, 3), rand((2, 6, 5, 4)))


def test_batch_norm_functional_updates_buffers_in_place():
    rm, rv = ember.zeros(3), ember.ones(3)
    rm_ptr = rm.data_ptr()
    x = rand((8, 3))
    F.batch_norm(ember.tensor(x), rm, rv, training=True, momentum=0.2)
    trm, trv = torch.zeros(3), torch.ones(3)
    TF.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
    assert rm.data_ptr() == rm_ptr and rm._version > 0
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5)


def test_dropout_functional_training_flag():
    x = ember.ones(1000)
    assert F.dropout(x, 0.5, training=False) is x
    y = F.dropout(x, 0.25)
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.05
    assert float(F.dropout(x, 1.0).sum()) == 0.0
    ember.manual_seed(3)
    a = F.dropout(x, 0.5)
    ember.manual_seed(3)
    b = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_conv_errors():
    with pytest.raises(RuntimeError, match="expected input.*to have 3 channels, but got 2 channels"):
        F.conv2d(ember.randn(1, 2, 5, 5), ember.randn(4, 3, 3, 3))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        F.conv2d(ember.randn(1, 3, 2, 2), ember.randn(4, 3, 3, 3))
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        F.linear(ember.randn(2, 3), ember.randn(4, 5))
