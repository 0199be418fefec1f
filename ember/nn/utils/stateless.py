"""torch.nn.utils.stateless.functional_call: ember.func.functional_call under its older name."""
from ...func import functional_call

__all__ = ["functional_call"]
