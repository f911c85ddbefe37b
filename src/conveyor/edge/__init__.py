"""Edge bundles: a registered version as an ORT-format model with a runner that needs only onnxruntime and
numpy (``conveyor export edge``)."""

from conveyor.edge.bundle import FORMAT, Bundle, build, is_bundle

__all__ = ["FORMAT", "Bundle", "build", "is_bundle"]
