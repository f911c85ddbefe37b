"""Model fusion: several registered versions merged into one ONNX graph — an ensemble (mean, weighted,
vote) or a pipeline — checked against the parts and registered with them as its lineage (docs/optimize.md)."""

from conveyor.fuse.fuser import TOLERANCE, FuseOptions, FuseResult, fuse

__all__ = ["TOLERANCE", "FuseOptions", "FuseResult", "fuse"]
