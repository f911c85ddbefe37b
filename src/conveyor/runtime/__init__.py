"""Executing models: ONNX Runtime sessions, the dynamic batcher and the response cache (runtime/cache.py)."""

from conveyor.runtime.batcher import Batcher, BatcherStats
from conveyor.runtime.batching import BatchingConfig
from conveyor.runtime.onnx_model import OnnxModel

__all__ = ["Batcher", "BatcherStats", "BatchingConfig", "OnnxModel"]
