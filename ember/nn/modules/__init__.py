"""The nn layer classes, re-exported as ember.nn.<Name>."""
from .module import Module, RemovableHandle, register_module_forward_hook, register_module_forward_pre_hook  # noqa: F401
from .container import Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict  # noqa: F401
from .linear import Identity, Linear, Bilinear, NonDynamicallyQuantizableLinear  # noqa: F401
from .conv import (  # noqa: F401
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, Unfold, Fold)
from .pooling import (  # noqa: F401
    MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d, AdaptiveAvgPool1d, AdaptiveAvgPool2d,
    AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d, LPPool1d, LPPool2d, LPPool3d,
    MaxUnpool1d, MaxUnpool2d, MaxUnpool3d)
from .normalization import (  # noqa: F401
    BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, LayerNorm, RMSNorm,
    GroupNorm, LocalResponseNorm)
from .activation import (  # noqa: F401
    ReLU, ReLU6, SiLU, Mish, Hardsigmoid, Hardswish, SELU, LeakyReLU, GELU, ELU, CELU, Softplus, Hardtanh,
    Threshold, Sigmoid, Tanh, LogSigmoid, Softsign, Tanhshrink, Softshrink, Hardshrink, GLU, Softmax, Softmin,
    LogSoftmax, Softmax2d, PReLU, RReLU)
from .dropout import Dropout, Dropout1d, Dropout2d, Dropout3d, AlphaDropout, FeatureAlphaDropout  # noqa: F401
from .sparse import Embedding, EmbeddingBag  # noqa: F401
from .loss import (  # noqa: F401
    L1Loss, MSELoss, NLLLoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss, SmoothL1Loss, HuberLoss, KLDivLoss,
    PoissonNLLLoss, GaussianNLLLoss, SoftMarginLoss, MarginRankingLoss, HingeEmbeddingLoss,
    MultiLabelSoftMarginLoss, CosineEmbeddingLoss, TripletMarginLoss, MultiMarginLoss, MultiLabelMarginLoss,
    TripletMarginWithDistanceLoss, CTCLoss)
from .flatten import (  # noqa: F401
    Flatten, Unflatten, ZeroPad1d, ZeroPad2d, ZeroPad3d, ConstantPad1d, ConstantPad2d, ConstantPad3d,
    ReflectionPad1d, ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d, ReplicationPad3d,
    CircularPad1d, CircularPad2d, CircularPad3d, Upsample, UpsamplingNearest2d, UpsamplingBilinear2d,
    PixelShuffle, PixelUnshuffle, ChannelShuffle, CosineSimilarity, PairwiseDistance)
from .attention import MultiheadAttention  # noqa: F401
from .transformer import (  # noqa: F401
    TransformerEncoderLayer, TransformerEncoder, TransformerDecoderLayer, TransformerDecoder, Transformer)
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: F401
from .lazy import (  # noqa: F401
    LazyLinear, LazyConv1d, LazyConv2d, LazyConv3d, LazyConvTranspose1d, LazyConvTranspose2d, LazyConvTranspose3d,
    LazyBatchNorm1d, LazyBatchNorm2d, LazyBatchNorm3d, LazyInstanceNorm1d, LazyInstanceNorm2d, LazyInstanceNorm3d,
    LazyModuleMixin, UninitializedParameter, UninitializedBuffer)
# the module paths PyTorch has (torch.nn.modules.batchnorm._BatchNorm ...) that re-export classes above
from . import batchnorm, distance, fold, instancenorm, padding, pixelshuffle, upsampling, utils  # noqa: F401,E402
from . import conv as _conv_mod, linear as _linear_mod, lazy as _lazy_mod  # noqa: E402
for _name in _lazy_mod.__all__:       # torch.nn.modules.conv.LazyConv2d, .linear.LazyLinear (lazy.py imports them)
    if _name.startswith(("LazyConv", "LazyLinear")):
        setattr(_conv_mod if "Conv" in _name else _linear_mod, _name, getattr(_lazy_mod, _name))

# `from .modules import *` (in ember.nn) exports the classes and functions, not the submodules: a
# submodule named like an ember.nn one (utils) must not replace it
import types as _types  # noqa: E402

__all__ = [_n for _n, _v in globals().items() if not _n.startswith("_") and not isinstance(_v, _types.ModuleType)]
