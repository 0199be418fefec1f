"""ember.backends: the switches PyTorch scripts set (cudnn.benchmark, mps.is_available() ...).

ember has no cuDNN autotuner, TF32 mode or MPS device; the flags are accepted and kept so that
ordinary training scripts run unchanged, and the availability queries answer truthfully.
"""
from __future__ import annotations

from types import SimpleNamespace

cudnn = SimpleNamespace(enabled=True, benchmark=False, deterministic=False, allow_tf32=True,
                        is_available=lambda: False, version=lambda: None)
mps = SimpleNamespace(is_available=lambda: False, is_built=lambda: False)
mkldnn = SimpleNamespace(enabled=False, is_available=lambda: False)
openmp = SimpleNamespace(is_available=lambda: False)
cuda = SimpleNamespace(matmul=SimpleNamespace(allow_tf32=False, allow_fp16_reduced_precision_reduction=True),
                       is_built=lambda: True)
