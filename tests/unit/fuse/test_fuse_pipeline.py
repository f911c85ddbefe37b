"""Pipelines of real scikit-learn models: the fused graph equals the parts chained one after another, the
link rule (by name, else by position), and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.errors import InvalidInput
from conveyor.formats.parity import run_onnx
from conveyor.fuse import TOLERANCE, FuseOptions, fuse
from conveyor.registry import Registry
from tests.unit.fuse.conftest import Models, Register, _convert

PIPELINE = FuseOptions(pipeline=True)


def test_a_scaler_then_a_classifier_equals_the_parts_chained(
    registry: Registry, register: Register, models: Models
) -> None:
    refs = [register("scaler"), register("mlp")]
    result = fuse(registry, "chain", refs, PIPELINE)

    v = result.version
    assert v is not None and v.ref == "chain:1"
    assert v.metadata["source"] == "pipeline scaler:1 → mlp:1"
    # the scaler gives 'variable', the classifier takes 'input': linked by position
    assert v.metadata["fusion"]["links"] == [[["variable", "input"]]]
    assert [t["name"] for t in v.signature["inputs"]] == ["input"]
    assert [t["name"] for t in v.signature["outputs"]] == ["label", "probabilities"]

    got = run_onnx(registry.artifact_bytes(v), models.x)
    scaled = run_onnx(models.onnx["scaler"], models.x)["variable"]
    want = run_onnx(models.onnx["mlp"], scaled)
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= TOLERANCE
    np.testing.assert_array_equal(got["label"], want["label"])


def test_three_parts_chain(registry: Registry, register: Register, models: Models) -> None:
    head = _convert(_fit_head(models), 3)
    refs = [register("scaler"), register("pca"), register("head", data=head)]
    result = fuse(registry, "chain", refs, PIPELINE)

    assert result.version is not None and result.parity["problems"] == []
    got = run_onnx(registry.artifact_bytes(result.version), models.x)
    x = run_onnx(models.onnx["scaler"], models.x)["variable"]
    x = run_onnx(models.onnx["pca"], x)["variable"]
    want = run_onnx(head, x)
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= TOLERANCE


def test_outputs_that_cannot_feed_the_next_inputs_are_refused(registry: Registry, register: Register) -> None:
    refs = [register("pca"), register("mlp")]
    with pytest.raises(InvalidInput) as e:
        fuse(registry, "chain", refs, PIPELINE)
    assert e.value.message == (
        "pipeline: pca:1's output variable FP32 [-1, 3] cannot feed mlp:1's input input FP32 [-1, 6] "
        "(matched by position)"
    )
    refs = [register("logreg"), register("scaler")]
    with pytest.raises(InvalidInput, match=r"logreg:1's output label INT64 \[-1\] cannot feed scaler:1's"):
        fuse(registry, "chain", refs, PIPELINE)


def test_one_part_or_both_kinds_are_refused(registry: Registry, register: Register) -> None:
    ref = register("scaler")
    with pytest.raises(InvalidInput, match="a fusion needs at least two parts, got 1"):
        fuse(registry, "chain", [ref], PIPELINE)
    with pytest.raises(InvalidInput, match=r"give one of --ensemble mean\|weighted\|vote or --pipeline"):
        fuse(registry, "chain", [ref, ref], FuseOptions(pipeline=True, ensemble="mean"))
    with pytest.raises(InvalidInput, match="scaler:1 is named twice"):
        fuse(registry, "chain", [ref, ref], PIPELINE)
    with pytest.raises(InvalidInput, match="invalid model name 'a chain'"):
        fuse(registry, "a chain", [ref, ref], PIPELINE)


def _fit_head(models: Models) -> object:
    from sklearn.linear_model import LogisticRegression

    x = run_onnx(models.onnx["pca"], run_onnx(models.onnx["scaler"], models.sample)["variable"])
    return LogisticRegression().fit(x["variable"], np.arange(len(models.sample)) % 3)


def test_inputs_named_as_outputs_are_linked_by_name(registry: Registry, register: Register) -> None:
    from onnx import NodeProto, TensorProto, ValueInfoProto, helper

    vi = helper.make_tensor_value_info

    def model(nodes: list[NodeProto], inputs: list[ValueInfoProto], outputs: list[ValueInfoProto]) -> bytes:
        graph = helper.make_graph(nodes, "g", inputs, outputs)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return bytes(m.SerializeToString())

    first = model(
        [helper.make_node("Neg", ["input"], ["other"]), helper.make_node("Relu", ["input"], ["x"])],
        [vi("input", TensorProto.FLOAT, ["n", 6])],
        [vi("other", TensorProto.FLOAT, ["n", 6]), vi("x", TensorProto.FLOAT, ["n", 6])],
    )
    second = model(
        [helper.make_node("Exp", ["x"], ["y"])],
        [vi("x", TensorProto.FLOAT, ["n", 6])],
        [vi("y", TensorProto.FLOAT, ["n", 6])],
    )
    refs = [register("a", data=first), register("b", data=second)]
    result = fuse(registry, "chain", refs, PIPELINE)

    assert result.version is not None
    assert result.version.metadata["fusion"]["links"] == [[["x", "x"]]]  # not "other", the first output
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6)
    got = run_onnx(registry.artifact_bytes(result.version), x)["y"]
    np.testing.assert_allclose(got, np.exp(np.maximum(x, 0)), rtol=1e-6)
