"""What an import produces: the ONNX bytes to serve, their signature and the parity record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.signature import Signature

FRAMEWORKS = ("onnx", "sklearn", "pytorch", "xgboost", "lightgbm")


@dataclass(frozen=True)
class ImportResult:
    onnx_bytes: bytes
    framework: str  # one of FRAMEWORKS
    signature: Signature
    parity: dict[str, Any] | None  # None when no sample was given
    source: str  # what was imported, e.g. "sklearn Pipeline(StandardScaler, LogisticRegression)"


def signature_of(onnx_bytes: bytes, *, dynamic_batch: bool = False) -> Signature:
    """The served signature; with ``dynamic_batch`` every input and output must have a dynamic first dim."""
    try:
        signature = Signature.from_onnx_bytes(onnx_bytes)
    except InvalidInput as e:  # a type the Open Inference Protocol cannot carry (maps, sequences)
        raise ConversionError(f"the model cannot be served: {e}") from e
    except Exception as e:  # ORT's own exception types for a graph it cannot load
        from conveyor.formats.parity import first_line

        raise ConversionError(f"ONNX Runtime cannot load the model: {first_line(e)}") from e
    if dynamic_batch:
        fixed = [t.name for t in (*signature.inputs, *signature.outputs) if not t.shape or t.shape[0] != -1]
        if fixed:
            raise ConversionError(
                f"the converted model has no dynamic batch dimension on {', '.join(map(repr, fixed))}"
            )
    return signature
