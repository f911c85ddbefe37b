"""Optimize a registered version: quantization (dynamic, static, float16) and offline graph optimization,
each result measured against its parent, gated, and registered as a new version with lineage."""

from conveyor.optimize.optimizer import Candidate, OptimizeOptions, OptimizeResult, Progress, optimize

__all__ = ["Candidate", "OptimizeOptions", "OptimizeResult", "Progress", "optimize"]
