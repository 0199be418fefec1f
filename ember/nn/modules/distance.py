"""torch.nn.modules.distance's names; the classes live in flatten.py."""
from .flatten import CosineSimilarity, PairwiseDistance  # noqa: F401

__all__ = ["CosineSimilarity", "PairwiseDistance"]
