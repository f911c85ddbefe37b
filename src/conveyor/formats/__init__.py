"""Source formats → ONNX: importers per framework, the signature they record, the parity check on a sample."""

from conveyor.formats.importer import import_model
from conveyor.formats.result import FRAMEWORKS, ImportResult
from conveyor.formats.samples import load_sample
from conveyor.formats.signature import Signature, TensorSpec

__all__ = ["FRAMEWORKS", "ImportResult", "Signature", "TensorSpec", "import_model", "load_sample"]
