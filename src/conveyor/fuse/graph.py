"""Putting several parts' graphs into one model: each part's names under its own prefix, and the model
that holds their nodes, weights and local functions with the opsets they share."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import compose, helper

from conveyor.errors import ConversionError
from conveyor.formats.parity import first_line


def prefix(model: onnx.ModelProto, index: int) -> onnx.ModelProto:
    """``model`` with every name (nodes, tensors, inputs, outputs, functions) prefixed ``p{index}_``: the
    parts' names cannot clash, and a fused graph says which part each node came from."""
    return compose.add_prefix(model, f"p{index}_")


def union_model(
    parts: Sequence[onnx.ModelProto],
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    name: str,
) -> onnx.ModelProto:
    """A model of ``nodes`` with the parts' weights, value infos and functions besides ``initializers``;
    the parts are harmonized already (one IR version, one opset per domain). Checked with ONNX's checker."""
    graph = helper.make_graph(
        nodes,
        name,
        inputs,
        outputs,
        initializer=[t for m in parts for t in m.graph.initializer] + initializers,
        value_info=[v for m in parts for v in m.graph.value_info],
        sparse_initializer=[t for m in parts for t in m.graph.sparse_initializer],
    )
    first = parts[0]
    model = helper.make_model(
        graph,
        opset_imports=list(first.opset_import),
        functions=[f for m in parts for f in m.functions],
        producer_name="conveyor fuse",
    )
    model.ir_version = first.ir_version
    return checked(model)


def checked(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` if ONNX's checker passes it, else ConversionError naming what it found."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"the fused graph is not valid ONNX: {first_line(e)}") from e
    return model


def identity(source: str, target: str) -> onnx.NodeProto:
    return helper.make_node("Identity", [source], [target], name=f"fuse_{target}")
