"""Each layer against PyTorch's: same weights (copied through state_dict, so keys match), same input;
outputs, input gradients and parameter gradients must agree."""
from __future__ import annotations

import numpy as np
import pytest

import ember
import ember.nn as nn
from nn_helpers import rand, run_pair, torch

tnn = torch.nn


@pytest.mark.parametrize("args,kw,shape", [
    ((5, 3), {}, (4, 5)),
    ((5, 3), {"bias": False}, (4, 5)),
    ((6, 2), {}, (2, 3, 6)),
    ((6, 2), {}, (6,)),
])
def test_linear(args, kw, shape):
    run_pair(nn.Linear(*args, **kw), tnn.Linear(*args, **kw), [rand(shape)])


def test_bilinear():
    run_pair(nn.Bilinear(3, 4, 5), tnn.Bilinear(3, 4, 5), [rand((6, 3)), rand((6, 4), seed=2)])


CONV2D = [
    ((3, 4, 3), {}, (2, 3, 8, 8)),
    ((3, 4, 3), {"padding": 1, "bias": False}, (2, 3, 7, 9)),
    ((3, 4, (3, 2)), {"stride": (2, 1), "padding": (1, 0)}, (2, 3, 9, 8)),
    ((3, 4, 3), {"dilation": 2, "padding": 2}, (1, 3, 10, 10)),
    ((4, 6, 3), {"groups": 2, "padding": 1}, (2, 4, 6, 6)),
    ((4, 4, 3), {"groups": 4}, (2, 4, 6, 6)),              # depthwise
    ((3, 4, 3), {"padding": "same"}, (2, 3, 7, 7)),
    ((3, 4, 4), {"padding": "same", "dilation": 1}, (2, 3, 7, 7)),   # even kernel: extra pad on the right
    ((3, 4, 3), {"padding": "valid"}, (2, 3, 7, 7)),
    ((3, 4, 3), {"padding": 1, "padding_mode": "reflect"}, (2, 3, 6, 6)),
    ((3, 4, 3), {"padding": 1, "padding_mode": "replicate"}, (2, 3, 6, 6)),
    ((3, 4, 3), {"padding": 1, "padding_mode": "circular"}, (2, 3, 6, 6)),
    ((3, 4, 3), {}, (3, 8, 8)),                            # unbatched
    ((1, 10, 5), {}, (4, 1, 28, 28)),                      # MNIST conv1
]


@pytest.mark.parametrize("args,kw,shape", CONV2D)
def test_conv2d(args, kw, shape):
    run_pair(nn.Conv2d(*args, **kw), tnn.Conv2d(*args, **kw), [rand(shape)], grtol=2e-4, gatol=1e-4)


@pytest.mark.parametrize("args,kw,shape", [
    ((3, 4, 3), {}, (2, 3, 10)),
    ((4, 6, 3), {"stride": 2, "padding": 1, "groups": 2, "dilation": 2}, (2, 4, 11)),
    ((3, 4, 5), {"padding": "same"}, (2, 3, 9)),
])
def test_conv1d(args, kw, shape):
    run_pair(nn.Conv1d(*args, **kw), tnn.Conv1d(*args, **kw), [rand(shape)], grtol=2e-4, gatol=1e-4)


def test_conv3d():
    run_pair(nn.Conv3d(2, 3, 2, padding=1), tnn.Conv3d(2, 3, 2, padding=1), [rand((1, 2, 4, 4, 4))],
             grtol=2e-4, gatol=1e-4)


@pytest.mark.parametrize("args,kw,shape", [
    ((3, 4, 3), {}, (2, 3, 5, 5)),
    ((3, 4, 3), {"stride": 2, "padding": 1, "output_padding": 1}, (2, 3, 5, 6)),
    ((4, 6, 2), {"stride": 2, "groups": 2}, (2, 4, 4, 4)),
    ((3, 2, 3), {"dilation": 2, "padding": 2, "bias": False}, (1, 3, 5, 5)),
    ((3, 2, (3, 2)), {"stride": (2, 3)}, (3, 4, 4)),       # unbatched
])
def test_conv_transpose2d(args, kw, shape):
    run_pair(nn.ConvTranspose2d(*args, **kw), tnn.ConvTranspose2d(*args, **kw), [rand(shape)], grtol=2e-4,
             gatol=1e-4)


def test_conv_transpose2d_output_size():
    e, t = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), tnn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    x = rand((1, 3, 4, 4))
    from nn_helpers import copy_state, close
    copy_state(e, t)
    close(e(ember.tensor(x), output_size=[8, 8]), t(torch.tensor(x), output_size=[8, 8]))


def test_conv_transpose1d():
    run_pair(nn.ConvTranspose1d(3, 2, 3, stride=2), tnn.ConvTranspose1d(3, 2, 3, stride=2), [rand((2, 3, 6))])


@pytest.mark.parametrize("kw,shape", [
    ({"kernel_size": 2}, (2, 3, 8, 8)),
    ({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9, 9)),
    ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (2, 3, 8, 8)),
    ({"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1)}, (1, 2, 9, 9)),
    ({"kernel_size": 2}, (3, 6, 6)),
    ({"kernel_size": 2}, (2, 3, 9, 7)),                            # non-overlapping, remainder dropped
    ({"kernel_size": 3, "padding": 1}, (1, 2, 8, 8)),              # non-overlapping with padding
    ({"kernel_size": 2, "ceil_mode": True}, (1, 2, 9, 7)),         # non-overlapping, partial last window
])
def test_max_pool2d(kw, shape):
    run_pair(nn.MaxPool2d(**kw), tnn.MaxPool2d(**kw), [rand(shape)])


def test_max_pool2d_return_indices():
    x = rand((2, 3, 7, 7))
    e, ei = nn.MaxPool2d(3, 2, 1, return_indices=True)(ember.tensor(x))
    t, ti = tnn.MaxPool2d(3, 2, 1, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(e.numpy(), t.numpy())
    np.testing.assert_array_equal(ei.numpy(), ti.numpy())


def test_max_pool2d_traced_formulation_matches_eager():
    """The traced formulations (what the compiler sees: offset taps, and pad + windows + argmax for the
    indices) equal the eager kernels."""
    from ember.nn._functional import pooling
    x = ember.tensor(rand((2, 3, 9, 9)))
    ev, ei = pooling.max_pool2d(x, 3, 2, 1, return_indices=True)
    cv, ci = ember.compile(lambda t: pooling.max_pool2d(t, 3, 2, 1, return_indices=True))(x)
    tv = ember.compile(lambda t: pooling.max_pool2d(t, 3, 2, 1))(x)
    np.testing.assert_array_equal(ev.numpy(), cv.numpy())
    np.testing.assert_array_equal(ei.numpy(), ci.numpy())
    np.testing.assert_array_equal(ev.numpy(), tv.numpy())


def test_max_pool1d():
    run_pair(nn.MaxPool1d(3, 2, 1), tnn.MaxPool1d(3, 2, 1), [rand((2, 3, 10))])


@pytest.mark.parametrize("kw,shape", [
    ({"kernel_size": 2}, (2, 3, 8, 8)),
    ({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 9, 9)),
    ({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (2, 3, 9, 9)),
    ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (2, 3, 8, 8)),
    ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, (1, 2, 8, 8)),
    ({"kernel_size": 2, "divisor_override": 3}, (1, 2, 4, 4)),
])
def test_avg_pool2d(kw, shape):
    run_pair(nn.AvgPool2d(**kw), tnn.AvgPool2d(**kw), [rand(shape)])


def test_avg_pool1d():
    run_pair(nn.AvgPool1d(3, 2, 1), tnn.AvgPool1d(3, 2, 1), [rand((2, 3, 10))])


@pytest.mark.parametrize("out,shape", [(1, (2, 3, 7, 7)), ((2, 3), (2, 3, 8, 9)), (3, (2, 3, 7, 8)),
                                       ((None, 2), (1, 2, 5, 6)), (5, (1, 2, 3, 4))])
def test_adaptive_avg_pool2d(out, shape):
    run_pair(nn.AdaptiveAvgPool2d(out), tnn.AdaptiveAvgPool2d(out), [rand(shape)])


def test_adaptive_avg_pool1d():
    run_pair(nn.AdaptiveAvgPool1d(3), tnn.AdaptiveAvgPool1d(3), [rand((2, 3, 7))])


@pytest.mark.parametrize("out,shape", [(2, (2, 3, 8, 8)), (3, (2, 3, 7, 8))])
def test_adaptive_max_pool2d(out, shape):
    run_pair(nn.AdaptiveMaxPool2d(out), tnn.AdaptiveMaxPool2d(out), [rand(shape)])


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 4)), ("BatchNorm1d", (4, 4, 5)),
                                       ("BatchNorm2d", (4, 4, 3, 3)), ("BatchNorm3d", (2, 4, 2, 3, 2))])
def test_batchnorm_train_and_running_stats(cls, shape):
    e, t = getattr(nn, cls)(4), getattr(tnn, cls)(4)
    with ember.no_grad():
        e.weight.copy_(ember.tensor(rand((4,), 5)))
        e.bias.copy_(ember.tensor(rand((4,), 6)))
    for step in range(3):
        run_pair(e, t, [rand(shape, seed=step)], grtol=1e-3, gatol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(e, name).numpy(), getattr(t, name).numpy(), rtol=1e-5, atol=1e-6)
    e.eval(), t.eval()
    run_pair(e, t, [rand(shape, seed=9)])


def test_batchnorm_momentum_none_affine_false_and_no_stats():
    for kw in ({"momentum": None}, {"affine": False}, {"track_running_stats": False}):
        e, t = nn.BatchNorm2d(3, **kw), tnn.BatchNorm2d(3, **kw)
        for step in range(3):
            run_pair(e, t, [rand((4, 3, 2, 2), seed=step)], grtol=1e-3, gatol=1e-4)
        assert [k for k, _ in e.named_buffers()] == [k for k, _ in t.named_buffers()]
        if kw.get("track_running_stats", True):
            np.testing.assert_allclose(e.running_var.numpy(), t.running_var.numpy(), rtol=1e-5)
        e.eval(), t.eval()
        run_pair(e, t, [rand((4, 3, 2, 2), seed=7)], grtol=1e-3, gatol=1e-4)


def test_batchnorm_single_value_per_channel_raises():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(3)(ember.randn(1, 3))


@pytest.mark.parametrize("ns,kw,shape", [(5, {}, (2, 3, 5)), ((3, 5), {}, (2, 3, 5)),
                                         (5, {"elementwise_affine": False}, (4, 5)),
                                         (5, {"bias": False}, (4, 5)), (5, {"eps": 1e-3}, (4, 5))])
def test_layer_norm(ns, kw, shape):
    e, t = nn.LayerNorm(ns, **kw), tnn.LayerNorm(ns, **kw)
    if e.weight is not None:
        with ember.no_grad():
            e.weight.copy_(ember.tensor(rand(e.weight.shape, 3)))
    run_pair(e, t, [rand(shape)], grtol=1e-3, gatol=1e-4)


def test_group_norm():
    e, t = nn.GroupNorm(2, 6), tnn.GroupNorm(2, 6)
    with ember.no_grad():
        e.weight.copy_(ember.tensor(rand((6,), 3)))
        e.bias.copy_(ember.tensor(rand((6,), 4)))
    run_pair(e, t, [rand((3, 6, 4, 2))], grtol=1e-3, gatol=1e-4)


def test_instance_norm_and_rms_norm():
    run_pair(nn.InstanceNorm2d(3, affine=True), tnn.InstanceNorm2d(3, affine=True), [rand((2, 3, 4, 4))],
             grtol=1e-3, gatol=1e-4)
    run_pair(nn.RMSNorm(5), tnn.RMSNorm(5), [rand((2, 3, 5))], grtol=1e-3, gatol=1e-4)


def test_embedding():
    e, t = nn.Embedding(10, 4), tnn.Embedding(10, 4)
    idx = np.array([[1, 2, 1], [9, 0, 1]])
    run_pair(e, t, [idx])


def test_embedding_padding_idx():
    e, t = nn.Embedding(10, 4, padding_idx=0), tnn.Embedding(10, 4, padding_idx=0)
    assert not np.any(e.weight.detach().numpy()[0])
    idx = np.array([[0, 2, 0], [9, 0, 1]])
    run_pair(e, t, [idx])
    assert not np.any(e.weight.grad.numpy()[0])
    assert repr(e) == repr(t).replace("torch", "ember")


def test_embedding_out_of_range_raises():
    with pytest.raises(IndexError):
        nn.Embedding(5, 2)(ember.tensor([5]))


def test_embedding_from_pretrained_and_max_norm():
    w = rand((5, 3), low=-3, high=3)
    e = nn.Embedding.from_pretrained(ember.tensor(w))
    assert not e.weight.requires_grad
    t = tnn.Embedding(5, 3, max_norm=1.0)
    e = nn.Embedding(5, 3, max_norm=1.0)
    with ember.no_grad():
        e.weight.copy_(ember.tensor(w))
    run_pair(e, t, [np.array([0, 1, 1, 3])])
    np.testing.assert_allclose(e.weight.detach().numpy(), t.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


ACTIVATIONS = [
    ("ReLU", (), {}), ("ReLU6", (), {}), ("LeakyReLU", (0.2,), {}), ("GELU", (), {}),
    ("GELU", (), {"approximate": "tanh"}), ("SiLU", (), {}), ("Mish", (), {}), ("Tanh", (), {}),
    ("Sigmoid", (), {}), ("Softmax", (), {"dim": 1}), ("LogSoftmax", (), {"dim": -1}), ("ELU", (), {}),
    ("ELU", (0.5,), {}), ("Softplus", (), {}), ("Softplus", (2.0, 1.0), {}), ("Hardtanh", (), {}),
    ("Hardtanh", (-0.5, 0.7), {}), ("CELU", (), {}), ("SELU", (), {}), ("Hardswish", (), {}),
    ("Hardsigmoid", (), {}), ("LogSigmoid", (), {}), ("Softsign", (), {}), ("Tanhshrink", (), {}),
    ("Softshrink", (), {}), ("Hardshrink", (), {}), ("GLU", (), {}), ("Softmin", (), {"dim": 1}),
    ("PReLU", (), {}), ("Threshold", (0.1, 20.0), {}), ("Identity", (), {}),
]


@pytest.mark.parametrize("name,args,kw", ACTIVATIONS)
def test_activation(name, args, kw):
    x = rand((3, 4, 6), low=-4, high=4)
    run_pair(getattr(nn, name)(*args, **kw), getattr(tnn, name)(*args, **kw), [x])


def test_activation_extremes_have_finite_grads():
    x = np.array([-100.0, -30.0, -1.0, 0.5, 30.0, 100.0], dtype=np.float32)
    for name in ("Softplus", "ELU", "Mish", "SiLU", "LogSigmoid", "CELU", "SELU", "GELU"):
        run_pair(getattr(nn, name)(), getattr(tnn, name)(), [x])


def test_inplace_relu_matches():
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    t = tnn.Sequential(tnn.Linear(4, 4), tnn.ReLU(inplace=True), tnn.Linear(4, 2))
    run_pair(m, t, [rand((3, 4))])
    x = ember.tensor([-1.0, 2.0])
    nn.ReLU(inplace=True)(x)
    assert x.tolist() == [0.0, 2.0]


def test_flatten_unflatten():
    run_pair(nn.Flatten(), tnn.Flatten(), [rand((2, 3, 4))])
    run_pair(nn.Flatten(0, 1), tnn.Flatten(0, 1), [rand((2, 3, 4))])
    run_pair(nn.Unflatten(1, (2, 3)), tnn.Unflatten(1, (2, 3)), [rand((4, 6))])


@pytest.mark.parametrize("name,args", [("ZeroPad2d", (1,)), ("ZeroPad2d", ((1, 0, 2, 1),)),
                                       ("ConstantPad2d", (2, 3.5)), ("ReflectionPad2d", (2,)),
                                       ("ReplicationPad2d", ((1, 2, 0, 3),)), ("ReflectionPad1d", (2,)),
                                       ("CircularPad2d", (1,))])
def test_padding_modules(name, args):
    run_pair(getattr(nn, name)(*args), getattr(tnn, name)(*args), [rand((2, 3, 5, 6)) if "1d" not in name
                                                                    else rand((2, 3, 5))])


@pytest.mark.parametrize("kw", [{"scale_factor": 2}, {"size": (5, 7)}, {"scale_factor": 2, "mode": "bilinear"},
                                {"size": (5, 7), "mode": "bilinear", "align_corners": True},
                                {"size": (3, 5), "mode": "bilinear"}, {"scale_factor": 1.5, "mode": "nearest"}])
def test_upsample(kw):
    run_pair(nn.Upsample(**kw), tnn.Upsample(**kw), [rand((2, 3, 4, 6))])


def test_pixel_shuffle():
    run_pair(nn.PixelShuffle(2), tnn.PixelShuffle(2), [rand((2, 8, 3, 3))])
    run_pair(nn.PixelUnshuffle(2), tnn.PixelUnshuffle(2), [rand((2, 2, 4, 6))])


@pytest.mark.parametrize("kw,batch_first", [({}, False), ({"bias": False}, True), ({"kdim": 3, "vdim": 5}, True),
                                            ({"add_bias_kv": True}, False)])
def test_multihead_attention(kw, batch_first):
    e = nn.MultiheadAttention(8, 2, batch_first=batch_first, **kw)
    t = tnn.MultiheadAttention(8, 2, batch_first=batch_first, **kw)
    L, S, N = 4, 5, 3
    shape_q = (N, L, 8) if batch_first else (L, N, 8)
    shape_k = (N, S, kw.get("kdim", 8)) if batch_first else (S, N, kw.get("kdim", 8))
    shape_v = (N, S, kw.get("vdim", 8)) if batch_first else (S, N, kw.get("vdim", 8))
    q, k, v = rand(shape_q, 1), rand(shape_k, 2), rand(shape_v, 3)
    run_pair(e, t, [q, k, v], out_index=0, grtol=1e-3, gatol=1e-4)
    from nn_helpers import close
    ew = e(ember.tensor(q), ember.tensor(k), ember.tensor(v))[1]
    tw = t(torch.tensor(q), torch.tensor(k), torch.tensor(v))[1]
    close(ew, tw)


def test_multihead_attention_masks():
    e, t = nn.MultiheadAttention(8, 2, batch_first=True), tnn.MultiheadAttention(8, 2, batch_first=True)
    from nn_helpers import copy_state, close
    copy_state(e, t)
    x = rand((2, 4, 8))
    kpm = np.array([[False, False, True, False], [False, False, False, True]])
    causal = np.triu(np.ones((4, 4), dtype=bool), 1)
    for am, kp, avg in ((causal, None, True), (None, kpm, False), (causal, kpm, True),
                        (np.where(causal, -1e9, 0.0).astype(np.float32), None, True)):
        eo, ew = e(ember.tensor(x), ember.tensor(x), ember.tensor(x),
                   attn_mask=None if am is None else ember.tensor(am),
                   key_padding_mask=None if kp is None else ember.tensor(kp), average_attn_weights=avg)
        to, tw = t(torch.tensor(x), torch.tensor(x), torch.tensor(x),
                   attn_mask=None if am is None else torch.tensor(am),
                   key_padding_mask=None if kp is None else torch.tensor(kp), average_attn_weights=avg)
        close(eo, to)
        close(ew, tw)


@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_layer(norm_first, activation):
    kw = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True, norm_first=norm_first,
              activation=activation)
    e, t = nn.TransformerEncoderLayer(**kw), tnn.TransformerEncoderLayer(**kw)
    run_pair(e, t, [rand((2, 5, 8))], grtol=1e-3, gatol=1e-4)
    enc_e, enc_t = nn.TransformerEncoder(e, 2), tnn.TransformerEncoder(t, 2, enable_nested_tensor=False)
    assert list(enc_e.state_dict()) == list(enc_t.state_dict())
    run_pair(enc_e, enc_t, [rand((2, 5, 8))], grtol=1e-3, gatol=1e-4)


def test_transformer_decoder_layer():
    kw = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0)
    e, t = nn.TransformerDecoderLayer(**kw), tnn.TransformerDecoderLayer(**kw)
    run_pair(e, t, [rand((4, 2, 8)), rand((5, 2, 8), 2)], grtol=1e-3, gatol=1e-4)


def test_dropout_modes():
    x = ember.ones(200, 50)
    d = nn.Dropout(0.3)
    y = d(x)
    frac_zero = float((y == 0).float().mean())
    assert abs(frac_zero - 0.3) < 0.02
    kept = y.numpy()[y.numpy() != 0]
    np.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-6)
    d.eval()
    assert d(x) is x
    d2 = nn.Dropout2d(0.5)
    y2 = d2(ember.ones(8, 16, 3, 3)).numpy()
    per_channel = y2.reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))
    assert nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.5)


def test_dropout_gradient_uses_the_mask():
    x = ember.ones(100, requires_grad=True)
    y = nn.functional.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())
