"""The exact scikit-learn conversion: what runs when the float32 one disagrees with the original.

scikit-learn's trees round their input to float32 and compare it with float64 thresholds; the float32
graph computes the steps before the trees (scalers) in float32 and rounds the thresholds to nearest, so an
input near a split can take the other branch and the answer moves by a whole leaf. Here everything before a
tree runs in float64 (skl2onnx's double conversion), the tree input is rounded to float32 as scikit-learn
does, and each threshold is the largest float32 not above the original: for a float32 ``x``, ``x <= t``
holds exactly when ``x <= round_down(t)``, so every branch agrees.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

# tree ensemble op → the outputs it computes in float whatever the graph's type (ai.onnx.ml opsets 1 and 3)
_FLOAT_OUTPUTS = {"TreeEnsembleRegressor": (0,), "TreeEnsembleClassifier": (1,)}


def has_trees(model: Any) -> bool:
    """Whether a fitted scikit-learn tree (``tree_``) is inside the model, where a float32 branch can flip;
    or an XGBoost / LightGBM estimator, whose trees also take float32 inputs (XGBoost's thresholds are
    float32 values of the training data, so a sample sits right on them)."""
    from conveyor.formats.boosting import libraries_in

    return any(True for _ in tree_structures(model)) or bool(libraries_in(model))


def rounded_thresholds(model: Any) -> Any:
    """A deep copy whose tree thresholds are rounded down to float32: the same answers on float32 tree inputs
    (which is all scikit-learn feeds its trees), and thresholds a float32 graph holds without rounding."""
    twin = copy.deepcopy(model)
    for tree in tree_structures(twin):
        split = tree.children_left != -1
        threshold = tree.threshold  # a view on the tree's node array: writing it changes the tree
        nearest = threshold.astype(np.float32)
        down = np.where(nearest > threshold, np.nextafter(nearest, np.float32(-np.inf)), nearest)
        threshold[split] = down[split].astype(np.float64)
    return twin


def convert_exact(model: Any, n_features: int, opset: int | None, options: Any, *, fp64_input: bool) -> bytes:
    """The float64 graph with float32 tree inputs and rounded-down thresholds; the input stays FP32 (cast to
    float64 inside) unless ``fp64_input``. Raises what skl2onnx raises."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    from conveyor.formats.sklearn import INPUT_NAME, graph_name

    twin = rounded_thresholds(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = convert_sklearn(
            twin,
            initial_types=[(INPUT_NAME, DoubleTensorType([None, n_features]))],
            options=_rekey(options, model, twin),
            target_opset=opset,
            name=graph_name(model),
        )
    graph = onx.graph
    nodes = []
    for node in graph.node:
        outputs = _FLOAT_OUTPUTS.get(node.op_type) if node.domain == "ai.onnx.ml" else None
        if outputs is None:
            nodes.append(node)
            continue
        f32 = f"{node.name}_input_f32"
        nodes.append(helper.make_node("Cast", [node.input[0]], [f32], to=TensorProto.FLOAT, name=f32))
        node.input[0] = f32
        casts = []
        for i in outputs:
            wanted = node.output[i]
            node.output[i] = f"{wanted}_f32"
            casts.append(helper.make_node("Cast", [node.output[i]], [wanted], to=TensorProto.DOUBLE))
        nodes += [node, *casts]
    if not fp64_input:
        wide = f"{INPUT_NAME}_f64"
        for node in nodes:
            node.input[:] = [wide if name == INPUT_NAME else name for name in node.input]
        nodes.insert(0, helper.make_node("Cast", [INPUT_NAME], [wide], to=TensorProto.DOUBLE, name=wide))
        graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    del graph.node[:]
    graph.node.extend(nodes)
    canonical_opsets(onx)
    onnx.checker.check_model(onx)
    return bytes(onx.SerializeToString())


def canonical_opsets(onx: Any) -> None:
    """Sort the opset imports: skl2onnx lists them in set order, which changes with the process's hash seed,
    and the same model would get another digest in another process."""
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)


def _rekey(options: Any, model: Any, twin: Any) -> Any:
    """skl2onnx keys options by ``id(estimator)``: the copy's estimator has another id."""
    if options is None:
        return None
    return {id(twin) if key == id(model) else key: value for key, value in options.items()}


def tree_structures(model: Any) -> Any:
    """Every fitted ``sklearn.tree`` structure inside a model: pipelines' steps, ensembles' estimators."""
    tree = getattr(model, "tree_", None)
    if tree is not None and hasattr(tree, "threshold"):
        yield tree
        return
    for _, step in getattr(model, "steps", None) or []:
        if step is not None and step != "passthrough":
            yield from tree_structures(step)
    estimators = getattr(model, "estimators_", None)
    if estimators is not None:
        for inner in np.asarray(estimators, dtype=object).ravel():
            yield from tree_structures(inner)
