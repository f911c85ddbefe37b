"""The benchmark's models, built deterministically as ONNX files with a dynamic batch dimension.

Each model comes with the request body the load runs send (batch 1) and distinct samples for correctness
checks, whose expected outputs come from a direct ONNX Runtime run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
CHECK_SAMPLES = 8


@dataclass
class BenchModel:
    """An ONNX file, its one input, and the inputs the bench sends to it."""

    name: str
    path: Path
    input_name: str
    input_shape: tuple[int, ...]  # without the batch dimension
    load_input: np.ndarray = field(repr=False)  # batch 1, the body every load request carries
    samples: list[np.ndarray] = field(repr=False)  # batch 1 each, distinct, for correctness checks
    expected: list[dict[str, np.ndarray]] = field(repr=False)  # direct ONNX Runtime outputs per sample

    @property
    def output_names(self) -> list[str]:
        return list(self.expected[0])


def _tiny() -> onnx.ModelProto:
    """scikit-learn LogisticRegression, 20 features, 3 classes, zipmap off: outputs label + probabilities."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_classes=3, random_state=0)
    clf = LogisticRegression(max_iter=1000).fit(x.astype(np.float32), y)
    return to_onnx(
        clf,
        initial_types=[("input", FloatTensorType([None, 20]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )


def _weights(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
    w = rng.standard_normal(shape).astype(np.float32) / np.float32(np.sqrt(fan_in))
    return numpy_helper.from_array(w, name)


def _mlp() -> onnx.ModelProto:
    """MLP 784-512-512-10 with ReLU, random weights (seed 0)."""
    rng = np.random.default_rng(0)
    sizes = [784, 512, 512, 10]
    inits, nodes, prev = [], [], "input"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        inits += [
            _weights(rng, f"w{i}", n_in, n_out),
            numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{i}"),
        ]
        last = i == len(sizes) - 2
        out = "logits" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out if last else f"g{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 784])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


def _cnn() -> onnx.ModelProto:
    """Small CNN on 3x64x64: three Conv3x3+ReLU+MaxPool2 blocks (16, 32, 64 channels), Flatten, Gemm to 10."""
    rng = np.random.default_rng(0)
    inits, nodes, prev, c_in = [], [], "input", 3
    for i, c_out in enumerate((16, 32, 64)):
        inits += [
            _weights(rng, f"k{i}", c_out, c_in, 3, 3),
            numpy_helper.from_array(np.zeros(c_out, np.float32), f"kb{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [prev, f"k{i}", f"kb{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=[1] * 4),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        prev, c_in = f"p{i}", c_out
    inits += [_weights(rng, "wf", 64 * 8 * 8, 10), numpy_helper.from_array(np.zeros(10, np.float32), "bf")]
    nodes += [
        helper.make_node("Flatten", [prev], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)


BUILDERS: dict[str, tuple[Callable[[], onnx.ModelProto], tuple[int, ...]]] = {
    "tiny": (_tiny, (20,)),
    "mlp": (_mlp, (784,)),
    "cnn": (_cnn, (3, 64, 64)),
}


def build(name: str, out_dir: Path) -> BenchModel:
    """Write ``out_dir/<name>.onnx`` (the file stem is the served model name) and compute expected outputs."""
    builder, shape = BUILDERS[name]
    proto = builder()
    onnx.checker.check_model(proto)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    path.write_bytes(proto.SerializeToString())

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(1)
    samples = [rng.standard_normal((1, *shape)).astype(np.float32) for _ in range(CHECK_SAMPLES)]
    expected = [dict(zip(output_names, session.run(None, {input_name: s}), strict=True)) for s in samples]
    load_input = np.random.default_rng(2).standard_normal((1, *shape)).astype(np.float32)
    return BenchModel(name, path, input_name, shape, load_input, samples, expected)
