"""Executing models: ONNX Runtime sessions, the dynamic batcher and the response cache (runtime/cache.py).

The names below load on first use, so a process that needs only a light module of this package (the
control plane's ``runtime.providers``, ``runtime.observer``) does not load ONNX Runtime with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.runtime.batcher import Batcher, BatcherStats
    from conveyor.runtime.batching import BatchingConfig
    from conveyor.runtime.onnx_model import OnnxModel

__all__ = ["Batcher", "BatcherStats", "BatchingConfig", "OnnxModel"]
_HOME = {
    "Batcher": "batcher",
    "BatcherStats": "batcher",
    "BatchingConfig": "batching",
    "OnnxModel": "onnx_model",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'conveyor.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"conveyor.runtime.{home}"), name)
