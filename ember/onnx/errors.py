"""The errors ember.onnx.export raises (torch.onnx.errors' names)."""
from __future__ import annotations


class OnnxExporterError(RuntimeError):
    """The model cannot be exported (capture failed, a size cannot be made dynamic, a bad option)."""


class UnsupportedOperatorError(OnnxExporterError):
    """A graph-IR op has no ONNX form (the message names the op and where the model used it)."""
