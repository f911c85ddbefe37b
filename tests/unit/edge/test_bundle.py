"""Edge bundles built from real ONNX models: the runner, loaded from the bundle, answers what ONNX Runtime
answers on the registered model; a changed file is refused; --force replaces only a bundle."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from onnx import TensorProto, helper

from conveyor import errors
from conveyor.edge import Bundle, build
from conveyor.edge.bundle import RUNNER_TEMPLATE
from conveyor.registry import VersionInfo


def _version(name: str, data: bytes) -> VersionInfo:
    import hashlib

    return VersionInfo(
        name=name,
        version=3,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        framework="onnx",
        signature={},
        description=None,
        tags={},
        aliases=[],
        parent_version=None,
        created_at=datetime.now(UTC),
        created_by="test",
    )


def _runner(bundle: Bundle) -> ModuleType:
    """The bundle's run.py imported by path, as a user would import it."""
    name = f"edge_run_{abs(hash(bundle.path))}"
    spec = importlib.util.spec_from_file_location(name, bundle.path / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _mlp_onnx() -> bytes:
    """x [-1, 8] -> MatMul, Add, Relu, MatMul -> y [-1, 3]: weights dynamic quantization shrinks."""
    rng = np.random.default_rng(1)
    w1 = onnx.numpy_helper.from_array(rng.normal(size=(8, 64)).astype(np.float32), "w1")
    b1 = onnx.numpy_helper.from_array(rng.normal(size=(64,)).astype(np.float32), "b1")
    w2 = onnx.numpy_helper.from_array(rng.normal(size=(64, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "mlp",
        [vi("x", TensorProto.FLOAT, ["n", 8])],
        [vi("y", TensorProto.FLOAT, ["n", 3])],
        initializer=[w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _ort(data: bytes, feeds: dict[str, Any]) -> list[Any]:
    return list(ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds))


@pytest.fixture(scope="module")
def logreg_bundle(tmp_path_factory: pytest.TempPathFactory, logreg_onnx: Path) -> Bundle:
    data = logreg_onnx.read_bytes()
    return build(_version("logreg", data), data, tmp_path_factory.mktemp("edge") / "bundle")


def test_the_bundle_holds_the_ort_model_its_signature_and_a_manifest_of_every_file(
    logreg_bundle: Bundle, logreg_onnx: Path
) -> None:
    m = logreg_bundle.manifest
    assert sorted(p.name for p in logreg_bundle.path.iterdir()) == [
        "manifest.json",
        "model.ort",
        "required_operators.config",
        "run.py",
        "signature.json",
    ]
    assert json.loads((logreg_bundle.path / "manifest.json").read_text()) == m
    assert m["format"] == "conveyor.edge/v1" and m["model_file"] == "model.ort"
    assert m["model"]["ref"] == "logreg:3"
    assert m["model"]["sha256"] == _version("logreg", logreg_onnx.read_bytes()).sha256
    assert m["onnxruntime_version"] == ort.__version__ and m["quantization"] is None
    assert m["signature"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert json.loads((logreg_bundle.path / "signature.json").read_text()) == m["signature"]
    assert set(m["files"]) == {"model.ort", "signature.json", "required_operators.config", "run.py"}
    # ORT format: a flatbuffer with the "ORTM" file identifier at bytes 4..8
    assert (logreg_bundle.path / "model.ort").read_bytes()[4:8] == b"ORTM"
    config = (logreg_bundle.path / "required_operators.config").read_text()
    assert "ai.onnx.ml;1;LinearClassifier" in config and "/tmp" not in config
    assert (logreg_bundle.path / "run.py").read_bytes() == RUNNER_TEMPLATE.read_bytes()


def test_the_runner_answers_what_onnx_runtime_answers_on_the_registered_model(
    logreg_bundle: Bundle, logreg_onnx: Path
) -> None:
    run = _runner(logreg_bundle)
    model = run.load(logreg_bundle.path)
    x = np.random.default_rng(0).normal(size=(7, 4))  # float64: cast to FP32 as the server does
    got = model.predict(x)
    label, proba = _ort(logreg_onnx.read_bytes(), {"input": x.astype(np.float32)})
    assert list(got) == ["label", "probabilities"]
    np.testing.assert_array_equal(got["label"], label)
    np.testing.assert_array_equal(got["probabilities"], proba)
    body = run.response(model, got)
    assert body["model_name"] == "logreg" and body["model_version"] == "3"
    assert body["outputs"][1] == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [7, 3],
        # the numbers as the server writes them: the shortest decimal of each float32
        "data": orjson.loads(orjson.dumps(proba.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)),
    }


def test_the_runner_reads_npy_npz_and_v2_json_and_writes_npz(logreg_bundle: Bundle, tmp_path: Path) -> None:
    run = _runner(logreg_bundle)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x)
    request = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    (tmp_path / "x.json").write_text(json.dumps(request))
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    answers = []
    for name in ("x.npy", "x.npz", "x.json", "rows.json"):
        out = tmp_path / f"{name}.out.npz"
        assert (
            run.main(
                ["--bundle", str(logreg_bundle.path), "--input", str(tmp_path / name), "--output", str(out)]
            )
            == 0
        )
        with np.load(out) as z:
            answers.append(z["probabilities"])
    for a in answers[1:]:
        np.testing.assert_array_equal(a, answers[0])


def test_bad_inputs_exit_2_naming_what_is_wrong(
    logreg_bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _runner(logreg_bundle)
    (tmp_path / "wrong.json").write_text(json.dumps({"nope": [[1, 2, 3, 4]]}))
    np.save(tmp_path / "ints.npy", np.ones((2, 4), dtype=np.complex64))
    np.save(tmp_path / "shape.npy", np.ones((2, 5), dtype=np.float32))
    for name, message in [
        ("wrong.json", "error: inputs must be input; unknown: nope; missing: input"),
        ("ints.npy", "error: input 'input': expected FP32, got numpy complex64"),
        ("shape.npy", "error: inference failed: "),
    ]:
        assert run.main(["--bundle", str(logreg_bundle.path), "--input", str(tmp_path / name)]) == 2
        assert capsys.readouterr().err.startswith(message)


def test_a_changed_file_is_refused_before_the_model_loads(
    logreg_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = logreg_onnx.read_bytes()
    bundle = build(_version("logreg", data), data, tmp_path / "b")
    run = _runner(bundle)
    model_file = bundle.path / "model.ort"
    blob = bytearray(model_file.read_bytes())
    blob[-1] ^= 1
    model_file.write_bytes(bytes(blob))
    with pytest.raises(run.BundleError, match=r"model.ort does not match the manifest: expected sha256 "):
        run.load(bundle.path)
    assert run.main(["verify", "--bundle", str(bundle.path)]) == 5
    assert "does not match the manifest" in capsys.readouterr().err
    (bundle.path / "signature.json").unlink()
    model_file.write_bytes(bytes(blob[:-1]) + bytes([blob[-1] ^ 1]))  # the model is whole again
    with pytest.raises(run.BundleError, match=r"signature.json: cannot read"):
        run.load(bundle.path)


def test_multi_input_models_take_inputs_by_name(multi_input_onnx: Path, tmp_path: Path) -> None:
    data = multi_input_onnx.read_bytes()
    bundle = build(_version("multi", data), data, tmp_path / "b")
    model = _runner(bundle).load(bundle.path)
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    k = np.array([[2], [3]], dtype=np.int64)
    got = model.predict({"x": x, "k": k})
    np.testing.assert_array_equal(got["y"], x * k)
    with pytest.raises(ValueError, match=r"several inputs \(x, k\)"):
        model.predict(x)


def test_dynamic_quantization_reuses_optimize_and_the_runner_answers_as_the_quantized_model(
    tmp_path: Path,
) -> None:
    from conveyor.optimize.quantize import quantize

    data = _mlp_onnx()
    bundle = build(_version("mlp", data), data, tmp_path / "b", quantize="dynamic")
    assert bundle.manifest["quantization"] == {"method": "dynamic", "of_sha256": _version("mlp", data).sha256}
    config = (bundle.path / "required_operators.config").read_text()
    assert "com.microsoft;1;DynamicQuantizeMatMul" in config, config
    x = np.random.default_rng(2).normal(size=(5, 8)).astype(np.float32)
    got = _runner(bundle).load(bundle.path).predict(x)["y"]
    [want] = _ort(quantize(data, "dynamic"), {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(errors.InvalidInput, match=r"for static int8, run `conveyor optimize"):
        build(_version("mlp", data), data, tmp_path / "c", quantize="static")


def test_force_replaces_a_bundle_and_nothing_else(logreg_onnx: Path, tmp_path: Path) -> None:
    data = logreg_onnx.read_bytes()
    version = _version("logreg", data)
    first = build(version, data, tmp_path / "b")
    with pytest.raises(errors.Conflict, match=r"already holds an edge bundle: --force replaces it"):
        build(version, data, first.path)
    (first.path / "__pycache__").mkdir()  # left by `import run`
    again = build(version, data, first.path, force=True)
    assert again.path == first.path and (again.path / "model.ort").exists()
    (again.path / "inputs.npy").write_bytes(b"mine")
    with pytest.raises(errors.Conflict, match=r"and also inputs.npy: --force replaces only a bundle's own"):
        build(version, data, again.path, force=True)
    assert (again.path / "inputs.npy").read_bytes() == b"mine"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(errors.Conflict, match=r"not empty and not an edge bundle"):
        build(version, data, other, force=True)
    assert (other / "cat.jpg").read_bytes() == b"meow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "photos"]  # no staging folder left


def test_the_runner_imports_only_onnxruntime_numpy_and_the_standard_library() -> None:
    tree = ast.parse(RUNNER_TEMPLATE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy", "onnxruntime"}


def test_the_runner_knows_the_datatypes_the_server_knows(logreg_bundle: Bundle) -> None:
    from conveyor.protocol.datatypes import V2_TO_NUMPY

    assert _runner(logreg_bundle).V2_TO_NUMPY == V2_TO_NUMPY


def test_bytes_bool_and_fp16_travel_through_v2_json(typed_onnx: Path, tmp_path: Path) -> None:
    data = typed_onnx.read_bytes()
    bundle = build(_version("typed", data), data, tmp_path / "b")
    run = _runner(bundle)
    model = run.load(bundle.path)
    request = {
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "bé"]},
            {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            {"name": "half", "shape": [1, 2], "datatype": "FP16", "data": [1.5, 2.25]},
        ]
    }
    answer = run.response(model, model.predict(run.json_inputs(request, model)))
    assert [(o["name"], o["datatype"], o["shape"], o["data"]) for o in answer["outputs"]] == [
        ("text_out", "BYTES", [2], ["a", "bé"]),
        ("not_flag", "BOOL", [2], [False, True]),
        ("half_twice", "FP16", [1, 2], [3.0, 4.5]),
    ]
    wrong = {"inputs": [{**request["inputs"][2], "datatype": "FP32"}]}
    with pytest.raises(ValueError, match=r"input 'half': expected FP16, got FP32"):
        run.json_inputs(wrong, model)
