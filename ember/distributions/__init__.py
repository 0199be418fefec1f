"""ember.distributions: torch.distributions' common distributions (Normal, Bernoulli, Categorical,
OneHotCategorical, Uniform, MultivariateNormal, Independent), constraints and kl_divergence.

Parameters are ember tensors; log_prob, entropy, cdf and rsample are ember ops, so they
differentiate (reparameterised sampling for Normal, Uniform, MultivariateNormal) and trace under
ember.compile (MultivariateNormal's factorisations excepted).
"""
from . import constraints  # noqa: F401
from .bernoulli import Bernoulli
from .categorical import Categorical, OneHotCategorical
from .distribution import Distribution
from .independent import Independent
from .kl import kl_divergence, register_kl
from .multivariate_normal import MultivariateNormal
from .normal import Normal
from .uniform import Uniform

__all__ = ["Distribution", "Normal", "Bernoulli", "Categorical", "OneHotCategorical", "Uniform",
           "MultivariateNormal", "Independent", "kl_divergence", "register_kl", "constraints"]
