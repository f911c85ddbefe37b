"""conveyor.optimize on a real scikit-learn MLP: each method, the gate, --fallback, and what is registered."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats.parity import run_onnx
from conveyor.optimize import OptimizeOptions, optimize
from conveyor.registry import Registry
from tests.unit.optimize.conftest import MlpData

FAST = OptimizeOptions(measure_seconds=0.01)
BOUND = 0.2  # the MLP's probabilities move by about 0.1 under int8 on the held-out rows


def test_dynamic_int8_registers_a_smaller_child_within_the_drift_bound(
    registered: Registry, mlp: MlpData
) -> None:
    opts = replace(FAST, quantize="dynamic", data=mlp.data, labels=mlp.labels, max_drift=BOUND)
    result = optimize(registered, "mlp:1", opts)

    assert result.refusal is None and result.version is not None
    v = result.version
    assert (v.ref, v.parent_version) == ("mlp:2", 1)
    assert v.size_bytes < 0.5 * result.parent.size_bytes
    assert v.signature == result.parent.signature  # clients send and get the same tensors
    report = v.metadata["optimization"]
    assert report["parent"] == "mlp:1" and report["method"] == "dynamic"
    assert 0 < report["after"]["drift"]["max_abs_diff"] <= BOUND
    assert report["after"]["drift"]["agreement"]["label"] > 0.95
    assert set(report["before"]["timing"]) == set(report["after"]["timing"]) == {"1", "32"}
    for numbers in report["after"]["timing"].values():
        assert 0 < numbers["p50_ms"] <= numbers["p99_ms"] and numbers["throughput"] > 0
    assert report["before"]["quality"]["task"] == "classification"
    assert report["after"]["accuracy_drop"] == pytest.approx(
        report["before"]["quality"]["accuracy"] - report["after"]["quality"]["accuracy"]
    )
    # drift monitoring of the child still compares against the parent's registration sample
    assert v.metadata["reference"] == result.parent.metadata["reference"]


def test_static_int8_calibrated_on_representative_rows_is_smaller_and_within_bound(
    registered: Registry, mlp: MlpData
) -> None:
    opts = replace(FAST, quantize="static", calibration=mlp.calibration, data=mlp.data, max_drift=BOUND)
    result = optimize(registered, "mlp:1", opts)

    assert result.version is not None, result.refusal
    assert result.version.size_bytes < 0.5 * result.parent.size_bytes
    ops = _op_types(registered.artifact_bytes(result.version))
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format


def test_static_without_a_calibration_file_calibrates_on_rows_drawn_from_the_reference(
    registered: Registry, mlp: MlpData
) -> None:
    result = optimize(registered, "mlp:1", replace(FAST, quantize="static", data=mlp.data, max_drift=BOUND))

    assert result.version is not None, result.refusal
    data = result.version.metadata["optimization"]["data"]
    assert data["calibration"] == "drawn from mlp:1's reference statistics"
    assert data["source"] == str(mlp.data)


def test_fp16_keeps_float32_inputs_and_outputs_and_halves_the_weights(
    registered: Registry, mlp: MlpData
) -> None:
    result = optimize(registered, "mlp:1", replace(FAST, quantize="fp16", data=mlp.data, max_drift=0.01))

    assert result.version is not None, result.refusal
    assert result.version.size_bytes < 0.6 * result.parent.size_bytes
    assert result.version.signature == result.parent.signature
    assert result.version.metadata["optimization"]["after"]["drift"]["max_abs_diff"] < 0.01


def test_a_tiny_unrepresentative_calibration_set_is_refused_with_its_numbers_and_registers_nothing(
    registered: Registry, mlp: MlpData
) -> None:
    opts = replace(FAST, quantize="static", calibration=mlp.tiny, data=mlp.data, max_drift=BOUND)
    result = optimize(registered, "mlp:1", opts)

    assert result.version is None
    [static] = result.candidates
    drift = static.drift["max_abs_diff"]
    assert drift > 0.5  # activations clipped to the range of two rows near zero
    assert (
        result.refusal
        == f"refused: static: max |drift| {drift:.3g} > {BOUND:g} (--max-drift); nothing registered"
    )
    assert [v.version for v in registered.list_versions("mlp")] == [1]


def test_an_accuracy_drop_over_the_bound_is_refused(registered: Registry, mlp: MlpData) -> None:
    opts = replace(
        FAST,
        quantize="static",
        calibration=mlp.tiny,
        data=mlp.data,
        labels=mlp.labels,
        max_accuracy_drop=0.01,
    )
    result = optimize(registered, "mlp:1", opts)

    [static] = result.candidates
    assert static.accuracy_drop is not None and static.accuracy_drop > 0.01
    assert static.problems == [f"accuracy drop {static.accuracy_drop:.3g} > 0.01 (--max-accuracy-drop)"]
    assert result.version is None


def test_fallback_keeps_the_smallest_that_passes(registered: Registry, mlp: MlpData) -> None:
    # static calibrated on two rows near zero breaks the bound; dynamic passes; none passes but is bigger
    opts = replace(FAST, fallback=True, calibration=mlp.tiny, data=mlp.data, max_drift=BOUND)
    result = optimize(registered, "mlp:1", opts)

    assert [(c.method, c.passed) for c in result.candidates] == [
        ("static", False),
        ("dynamic", True),
        ("none", True),
    ]
    assert result.chosen is result.candidates[1] and result.version is not None
    assert result.version.metadata["optimization"]["method"] == "dynamic"
    assert [t["method"] for t in result.version.metadata["optimization"]["tried"]] == [
        "static",
        "dynamic",
        "none",
    ]


def test_fallback_among_several_passing_keeps_the_smallest(registered: Registry, mlp: MlpData) -> None:
    opts = replace(FAST, fallback=True, calibration=mlp.calibration, data=mlp.data, max_drift=BOUND)
    result = optimize(registered, "mlp:1", opts)

    passing = [c for c in result.candidates if c.passed]
    assert len(passing) == 3
    assert result.chosen is min(passing, key=lambda c: c.size_bytes or 0)
    assert result.version is not None and result.version.size_bytes == result.chosen.size_bytes


def test_fallback_where_nothing_passes_keeps_the_parent_and_registers_nothing(
    registered: Registry, mlp: MlpData
) -> None:
    opts = replace(FAST, fallback=True, calibration=mlp.calibration, data=mlp.data, max_drift=1e-6)
    result = optimize(registered, "mlp:1", opts)

    assert result.version is None and result.chosen is not None and result.chosen.method == "none"
    assert result.refusal is not None
    assert result.refusal.startswith("no optimization passed (static: max |drift| ")
    assert result.refusal.endswith("mlp:1 stays as it is; nothing registered")
    assert [v.version for v in registered.list_versions("mlp")] == [1]


def test_graph_optimization_alone_registers_the_optimized_graph(registered: Registry, mlp: MlpData) -> None:
    result = optimize(registered, "mlp:1", replace(FAST, graph_opt="extended", data=mlp.data, max_drift=1e-5))

    assert result.version is not None, result.refusal
    assert result.version.description == "graph optimization of mlp:1"
    x = np.load(mlp.data)
    np.testing.assert_allclose(
        run_onnx(registered.artifact_bytes(result.version), x)["probabilities"],
        run_onnx(mlp.onnx, x)["probabilities"],
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (FAST, "nothing to do: give --quantize, --graph-opt or --fallback"),
        (replace(FAST, quantize="int4"), "--quantize must be dynamic, static, fp16, not 'int4'"),
        (replace(FAST, graph_opt="max"), "--graph-opt must be basic, extended, all, not 'max'"),
        (replace(FAST, quantize="dynamic", max_drift=-1), "--max-drift must be a number >= 0, not -1"),
        (
            replace(FAST, quantize="dynamic", max_accuracy_drop=0.1),
            "--max-accuracy-drop needs --labels (the true answer for each row of the data)",
        ),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options: OptimizeOptions, message: str) -> None:
    with pytest.raises(InvalidInput) as e:
        options.chain()
    assert e.value.message == message


def test_no_rows_to_measure_on_is_one_clear_error(registry: Registry, mlp: MlpData) -> None:
    from conveyor.formats.result import signature_of

    registry.register("bare", mlp.onnx, signature=signature_of(mlp.onnx).to_dict(), framework="onnx")
    with pytest.raises(InvalidInput, match=r"^no rows to measure bare:1 on: give --data or --calibration"):
        optimize(registry, "bare:1", replace(FAST, quantize="dynamic"))
    with pytest.raises(InvalidInput, match=r"^static quantization needs calibration data"):
        optimize(registry, "bare:1", replace(FAST, quantize="static", data=mlp.data))


def test_labels_that_do_not_match_the_rows_are_refused(registered: Registry, mlp: MlpData) -> None:
    opts = replace(FAST, quantize="dynamic", data=mlp.tiny, labels=mlp.labels)
    with pytest.raises(InvalidInput, match=r"^labels .*labels\.npy: 300 labels for 2 data rows$"):
        optimize(registered, "mlp:1", opts)


def _op_types(onnx_bytes: bytes) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load_model_from_string(onnx_bytes).graph.node}


def test_a_model_with_nothing_to_quantize_says_so_and_fallback_skips_it(
    registry: Registry, logreg_onnx: Path, mlp: MlpData, tmp_path: Path
) -> None:
    from conveyor.formats.result import signature_of

    data = logreg_onnx.read_bytes()  # a LinearClassifier: one ONNX-ML operator, no MatMul
    registry.register("logreg", data, signature=signature_of(data).to_dict(), framework="onnx")
    np.save(tmp_path / "four.npy", np.load(mlp.data)[:, :4])
    rows = replace(FAST, data=tmp_path / "four.npy")
    with pytest.raises(
        ConversionError, match=r"^nothing for dynamic int8 quantization to do: the model has none"
    ):
        optimize(registry, "logreg:1", replace(rows, quantize="dynamic"))
    result = optimize(registry, "logreg:1", replace(rows, fallback=True, calibration=rows.data))
    assert [(c.method, (c.skipped or "")[:27]) for c in result.candidates] == [
        ("static", "nothing for static int8 qua"),
        ("dynamic", "nothing for dynamic int8 qu"),
        ("none", ""),
    ]
    assert result.version is None and result.refusal is not None


def test_a_model_of_a_fixed_batch_size_is_judged_and_timed_in_whole_batches(
    registry: Registry, tmp_path: Path
) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from conveyor.formats.result import signature_of

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 64])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    registry.register("fixed", data, signature=signature_of(data).to_dict(), framework="onnx")
    np.save(tmp_path / "rows.npy", np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32))

    result = optimize(registry, "fixed:1", replace(FAST, quantize="dynamic", data=tmp_path / "rows.npy"))

    assert result.version is not None
    assert set(result.parent_numbers["timing"]) == {"2"}
    assert result.data["rows"] == 5 and result.candidates[0].drift["max_abs_diff"] < 0.1
    np.save(tmp_path / "one.npy", np.ones((1, 4), np.float32))
    with pytest.raises(InvalidInput, match=r"^the model takes batches of 2 rows; the data has 1$"):
        optimize(registry, "fixed:1", replace(FAST, quantize="dynamic", data=tmp_path / "one.npy"))
