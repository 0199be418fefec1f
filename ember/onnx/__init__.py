"""ember.onnx: export a model's captured graph IR as an ONNX model (torch.onnx's interface).

    ember.onnx.export(model, (x,), "model.onnx", input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})

The graph written is the one ember.compile traces (the forward graph IR), each primitive mapped to
ONNX ops (ember/onnx/ops.py). Needs the optional `onnx` package (`pip install ember[onnx]`).
"""
from __future__ import annotations

try:
    import onnx as _onnx  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("ember.onnx needs the onnx package: pip install 'ember[onnx]' (onnx, onnxruntime)") from e

from .errors import OnnxExporterError, UnsupportedOperatorError
from .export import TrainingMode, export, is_in_onnx_export

__all__ = ["export", "TrainingMode", "is_in_onnx_export", "OnnxExporterError", "UnsupportedOperatorError"]
