"""ember.backends: the switches PyTorch scripts set (cudnn.benchmark, cuda.matmul.allow_tf32,
mps.is_available() ...), one real submodule each, so `import ember.backends.cudnn as cudnn` works.

ember has no cuDNN autotuner, TF32 mode, oneDNN or MPS device: the flags are accepted and kept so that
ordinary training scripts run unchanged, and the availability queries answer truthfully.
"""
from . import cpu, cuda, cudnn, mkldnn, mps, openmp  # noqa: F401

__all__ = ["cpu", "cuda", "cudnn", "mkldnn", "mps", "openmp"]
