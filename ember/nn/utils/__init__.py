"""ember.nn.utils: gradient clipping, parameter <-> vector conversion, rnn (packed sequences), weight and
spectral normalisation (hook API), parametrize and parametrizations, skip_init."""
from .clip_grad import clip_grad_norm_, clip_grad_norm, clip_grad_value_, get_total_norm, clip_grads_with_norm_  # noqa: F401
from .convert_parameters import parameters_to_vector, vector_to_parameters  # noqa: F401
from .weight_norm import weight_norm, remove_weight_norm  # noqa: F401
from .spectral_norm import spectral_norm, remove_spectral_norm  # noqa: F401
from .init import skip_init  # noqa: F401
from . import rnn, parametrize, parametrizations, stateless  # noqa: F401
