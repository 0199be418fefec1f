"""torch.nn.modules.upsampling's names; the classes live in flatten.py."""
from .flatten import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: F401

__all__ = ["Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d"]
