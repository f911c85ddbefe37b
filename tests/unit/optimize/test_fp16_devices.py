"""``optimize --quantize fp16`` makes a version the runtime loads on its device: FP32 in and out
(keep_io_types), float16 inside, answers within float16's precision of the parent's. On the CPU here; on a
GPU in tests/integration/test_gpu.py."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conveyor.optimize.quantize import quantize
from conveyor.runtime import OnnxModel


def small_cnn() -> bytes:
    """Conv 3x3 (8 channels) + ReLU + global average pool + Gemm to 4, on 3x16x16 inputs; seed 0."""
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((8, 3, 3, 3)) / 5).astype(np.float32)
    w = (rng.standard_normal((8, 4)) / 3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "k", "kb"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(k, "k"),
        numpy_helper.from_array(np.zeros(8, np.float32), "kb"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def fp16_answers_like_its_parent(device: str) -> OnnxModel:
    """The fp16 version loaded on ``device``, checked against the FP32 parent on the CPU."""
    parent = small_cnn()
    half = quantize(parent, "fp16")
    weights = {t.data_type for t in onnx.load_model_from_string(half).graph.initializer}
    assert TensorProto.FLOAT16 in weights  # the inside is float16 ...
    model = OnnxModel(half, name="cnn16", device=device)
    assert [t.datatype for t in model.signature.inputs] == ["FP32"]  # ... its inputs and outputs are not
    assert [t.datatype for t in model.signature.outputs] == ["FP32"]
    x = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    want = OnnxModel(parent, name="cnn").predict({"input": x})["logits"]
    got = model.predict({"input": x})["logits"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-2, rtol=2e-2)
    return model


def test_an_fp16_version_loads_and_answers_on_the_cpu() -> None:
    model = fp16_answers_like_its_parent("cpu")
    assert model.metadata()["parameters"]["execution_provider"] == "CPUExecutionProvider"
