"""ember.utils: helpers outside the tensor core (ember.utils.data: datasets, samplers, DataLoader;
ember.utils.checkpoint: activation checkpointing)."""
from . import checkpoint, data  # noqa: F401
