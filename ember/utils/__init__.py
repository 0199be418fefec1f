"""ember.utils: helpers outside the tensor core (ember.utils.data: datasets, samplers, DataLoader)."""
from . import data  # noqa: F401
