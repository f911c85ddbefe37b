from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from skl2onnx import to_onnx

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats import TensorSpec, import_model


@pytest.fixture(scope="module")
def onnx_bytes(pipeline: Any, xy: Any) -> bytes:
    return import_model(pipeline).onnx_bytes


def test_onnx_file_is_taken_as_is(onnx_bytes: bytes, tmp_path: Path, xy: Any) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes)
    result = import_model(path, sample=xy[0][:10])
    assert result.framework == "onnx"
    assert result.onnx_bytes == onnx_bytes
    assert result.signature.inputs == (TensorSpec("input", "FP32", (-1, 6)),)
    assert [t.name for t in result.signature.outputs] == ["label", "probabilities"]
    assert result.parity == {
        "runs": True,
        "samples": 10,
        "outputs": {"label": [10], "probabilities": [10, 3]},
    }
    assert result.source.startswith("onnx model (skl2onnx") and result.source.endswith("from model.onnx")


def test_model_proto_and_bytes_objects(onnx_bytes: bytes) -> None:
    proto = onnx.load_model_from_string(onnx_bytes)
    assert import_model(proto).signature == import_model(onnx_bytes).signature
    assert import_model(proto).parity is None


def test_sample_must_fit_the_inputs(onnx_bytes: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"missing \['input'\]"):
        import_model(onnx_bytes, sample={"x": np.ones((2, 6))})
    with pytest.raises(ConversionError, match="ONNX Runtime cannot run the model on the sample"):
        import_model(onnx_bytes, sample=np.ones((2, 5)))


def test_zipmap_output_cannot_be_served(pipeline: Any, xy: Any) -> None:
    with_zipmap = to_onnx(
        pipeline, xy[0][:1].astype(np.float32)
    )  # skl2onnx's default: probabilities as dicts
    with pytest.raises(ConversionError, match="cannot be served"):
        import_model(with_zipmap.SerializeToString())


def test_invalid_graph_fails_the_checker(onnx_bytes: bytes) -> None:
    model = onnx.load_model_from_string(onnx_bytes)
    model.graph.node[0].input[0] = "no_such_tensor"
    with pytest.raises(ConversionError, match="not a valid ONNX model"):
        import_model(model)


def test_garbage_named_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ConversionError, match=r"model\.onnx is not an ONNX model"):
        import_model(path)


def test_opset_converts_the_graph(regressor: Any) -> None:
    model, x = regressor
    original = import_model(model, opset=17).onnx_bytes
    result = import_model(original, opset=18, sample=x[:3])
    assert result.source.startswith("onnx model (skl2onnx") and "opset 18" in result.source
    with pytest.raises(ConversionError, match="cannot convert the ONNX model from opset 17 to 999"):
        import_model(original, opset=999)
