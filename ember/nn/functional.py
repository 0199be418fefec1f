"""ember.nn.functional: PyTorch's torch.nn.functional, every function a composite of ember primitives.

The implementations live in ember/nn/_functional/, one file per family:
activation, dropout, linear, conv (and pad, unfold, fold), pooling, normalization, sparse
(embedding, one_hot), distance, attention, vision (interpolate, pixel_shuffle), loss.
"""
from __future__ import annotations

from ._functional.activation import (  # noqa: F401
    relu, relu_, relu6, leaky_relu, hardtanh, threshold, gelu, silu, sigmoid, tanh, hardsigmoid, hardswish,
    softplus, mish, elu, celu, selu, logsigmoid, softsign, tanhshrink, softshrink, hardshrink, prelu, rrelu,
    glu, softmax, softmin, log_softmax, gumbel_softmax, elu_, leaky_relu_, hardtanh_, threshold_, selu_, celu_,
    rrelu_)
from ._functional.dropout import (  # noqa: F401
    dropout, dropout1d, dropout2d, dropout3d, alpha_dropout, feature_alpha_dropout)
from ._functional.linear import linear, bilinear  # noqa: F401
from ._functional.conv import (  # noqa: F401
    conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, unfold, fold, pad)
from ._functional.pooling import (  # noqa: F401
    max_pool1d, max_pool2d, max_pool3d, max_pool1d_with_indices, max_pool2d_with_indices, avg_pool1d, avg_pool2d,
    avg_pool3d, lp_pool1d, lp_pool2d, lp_pool3d, adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
    adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d)
from ._functional.unpooling import max_unpool1d, max_unpool2d, max_unpool3d  # noqa: F401
from ._functional.normalization import (  # noqa: F401
    batch_norm, layer_norm, rms_norm, group_norm, instance_norm, local_response_norm)
from ._functional.sparse import embedding, embedding_bag, one_hot  # noqa: F401
from ._functional.distance import normalize, cosine_similarity, pairwise_distance, cdist, pdist  # noqa: F401
from ._functional.attention import scaled_dot_product_attention, multi_head_attention_forward  # noqa: F401
from ._functional.vision import (  # noqa: F401
    interpolate, upsample, upsample_nearest, upsample_bilinear, pixel_shuffle, pixel_unshuffle, channel_shuffle)
from ._functional.grid import grid_sample, affine_grid  # noqa: F401
from ._functional.loss import (  # noqa: F401
    nll_loss, cross_entropy, mse_loss, l1_loss, smooth_l1_loss, huber_loss, binary_cross_entropy,
    binary_cross_entropy_with_logits, kl_div, poisson_nll_loss, gaussian_nll_loss, soft_margin_loss,
    margin_ranking_loss, hinge_embedding_loss, multilabel_soft_margin_loss, cosine_embedding_loss,
    triplet_margin_loss, multi_margin_loss, multilabel_margin_loss, triplet_margin_with_distance_loss, ctc_loss)
