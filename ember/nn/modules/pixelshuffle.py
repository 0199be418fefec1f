"""torch.nn.modules.pixelshuffle's names; the classes live in flatten.py."""
from .flatten import PixelShuffle, PixelUnshuffle  # noqa: F401

__all__ = ["PixelShuffle", "PixelUnshuffle"]
