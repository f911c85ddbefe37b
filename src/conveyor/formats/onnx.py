"""ONNX models taken as they are: checked with onnx.checker, re-versioned on request, run on a sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from conveyor.errors import ConversionError
from conveyor.formats.parity import first_line, run_onnx
from conveyor.formats.result import ImportResult, signature_of
from conveyor.formats.samples import Sample, rows


def import_onnx(
    source: bytes | onnx.ModelProto | Path, *, sample: Sample | None = None, opset: int | None = None
) -> ImportResult:
    """Check an ONNX model and keep its bytes (unchanged unless it has external data or ``opset`` asks)."""
    where = ""
    if isinstance(source, Path):
        where = f" from {source.name}"
        data = source.read_bytes()
        model = parse(data, source.name)
        if _has_external_data(model):
            # the weights live next to the file: fold them in, an artifact must be one self-contained blob
            onnx.load_external_data_for_model(model, str(source.parent))
            data = b""
    elif isinstance(source, onnx.ModelProto):
        model, data = source, b""
    else:
        data = bytes(source)
        model = parse(data, "the given bytes")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # ValidationError, or a plain error for models over 2 GB
        raise ConversionError(f"not a valid ONNX model{where}: {first_line(e)}") from e
    if opset is not None and default_opset(model) != opset:
        try:
            model = onnx.version_converter.convert_version(model, opset)
        except Exception as e:
            raise ConversionError(
                f"cannot convert the ONNX model from opset {default_opset(model)} to {opset}: {first_line(e)}"
            ) from e
        data = b""
    if not data:
        data = model.SerializeToString()
    signature = signature_of(data)
    parity: dict[str, Any] | None = None
    if sample is not None:
        outputs = run_onnx(data, sample)
        parity = {
            "runs": True,
            "samples": rows(sample),
            "outputs": {name: list(value.shape) for name, value in outputs.items()},
        }
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or "unknown producer"
    return ImportResult(
        onnx_bytes=data,
        framework="onnx",
        signature=signature,
        parity=parity,
        source=f"onnx model ({producer}, opset {default_opset(model)}){where}",
    )


def parse(data: bytes, what: str) -> onnx.ModelProto:
    """Parse ONNX protobuf bytes; ConversionError when they are not an ONNX model."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError, and others for truncated data
        raise ConversionError(f"{what} is not an ONNX model: {first_line(e)}") from e
    # protobuf parses many byte strings as an empty message: a real model names its IR version and opsets
    if not model.ir_version or not model.opset_import or not model.HasField("graph"):
        raise ConversionError(f"{what} is not an ONNX model (no IR version, opset or graph)")
    return model


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
