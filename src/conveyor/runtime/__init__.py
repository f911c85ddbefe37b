"""Executing models: ONNX Runtime sessions (and, later, the dynamic batcher and response cache)."""

from conveyor.runtime.onnx_model import OnnxModel

__all__ = ["OnnxModel"]
