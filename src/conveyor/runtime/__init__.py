"""Executing models: ONNX Runtime sessions and the dynamic batcher (later, the response cache)."""

from conveyor.runtime.batcher import Batcher, BatcherStats
from conveyor.runtime.batching import BatchingConfig
from conveyor.runtime.onnx_model import OnnxModel

__all__ = ["Batcher", "BatcherStats", "BatchingConfig", "OnnxModel"]
