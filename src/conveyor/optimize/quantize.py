"""Quantization with ONNX Runtime's own tools: dynamic int8, static int8 (QDQ, calibrated), float16."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import first_line
from conveyor.optimize.data import Inputs

Method = Literal["dynamic", "static", "fp16"]
METHODS: tuple[Method, ...] = ("dynamic", "static", "fp16")
CALIBRATION_BATCH = 32
WEIGHTED_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "Attention", "Gather"})
"""Operators whose weights int8 quantization shrinks: a graph without any (trees, linear models as ONNX-ML
operators) has nothing to quantize, and ONNX Runtime's tools fail on some of those with a cryptic message."""


def quantize(onnx_bytes: bytes, method: Method, calibration: Inputs | None = None) -> bytes:
    """The model quantized by ``method``; ``static`` needs ``calibration`` rows (one array per input).

    Inputs and outputs keep their types (float16 converts the inside only), so the signature and every
    client stay as they were. ConversionError when ONNX Runtime's tool cannot handle the graph."""
    if method not in METHODS:
        raise InvalidInput(f"unknown quantization {method!r}; use {', '.join(METHODS)}")
    if method == "static" and not calibration:
        raise InvalidInput("static quantization needs calibration data (--calibration)")
    if method in ("dynamic", "static"):
        _check_quantizable(onnx_bytes, method)
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-quantize-") as tmp, _quiet():
            source, target = Path(tmp) / "model.onnx", Path(tmp) / "quantized.onnx"
            source.write_bytes(onnx_bytes)
            if method == "dynamic":
                _dynamic(source, target)
            elif method == "static":
                assert calibration is not None
                _static(source, target, calibration)
            else:
                _fp16(source, target)
            return target.read_bytes()
    except (InvalidInput, ConversionError):
        raise
    except Exception as e:  # the tools raise whatever their graph walk meets
        raise ConversionError(f"{method} quantization failed: {first_line(e)}") from e


def _check_quantizable(onnx_bytes: bytes, method: str) -> None:
    import onnx

    ops = {n.op_type for n in onnx.load_model_from_string(onnx_bytes).graph.node}
    if not ops & WEIGHTED_OPS:
        raise ConversionError(
            f"nothing for {method} int8 quantization to do: the model has none of "
            f"{', '.join(sorted(WEIGHTED_OPS))} (its operators: {', '.join(sorted(ops))})"
        )


def _dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # int8 weights, activations quantized at run time: no calibration, the usual win for MatMul-heavy models
    quantize_dynamic(source, target, weight_type=QuantType.QInt8)


def _static(source: Path, target: Path, calibration: Inputs) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    # QDQ with signed int8 activations and weights: what ONNX Runtime recommends on x86 CPUs
    quantize_static(
        source,
        target,
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )


def _fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # keep_io_types: FP32 in and out, so requests and the signature do not change
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    # The converter writes float16 weights as int32_data (a varint per value: up to 3 bytes each, so the file
    # shrinks by a third, not half); the same values as raw_data take two bytes each.
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == onnx.TensorProto.FLOAT16 and tensor.int32_data:
            raw = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor), tensor.name)
            model.graph.initializer[i].CopyFrom(raw)
    onnx.save(model, str(target))


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over arrays: batches of CALIBRATION_BATCH rows."""

    def __init__(self, inputs: Inputs) -> None:
        rows = int(next(iter(inputs.values())).shape[0])
        self._batches = iter(
            [
                {k: v[i : i + CALIBRATION_BATCH] for k, v in inputs.items()}
                for i in range(0, rows, CALIBRATION_BATCH)
            ]
        )

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)


class _DropAdvice(logging.Filter):
    """The tools log advice on the root logger ("Please consider to run pre-processing"): not for users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    advice = _DropAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
