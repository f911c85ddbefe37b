from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import conveyor
from conveyor.errors import ConversionError, InvalidInput
from conveyor.formats import TensorSpec, import_model
from conveyor.formats.parity import run_onnx
from conveyor.settings import Settings

pytestmark = pytest.mark.torch


class TwoHeads(torch.nn.Module):
    """Two inputs, two outputs: names must follow the sample's keys and output_0..n."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 3)
        self.b = torch.nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.a(x) + self.b(z)
        return h, torch.softmax(h, dim=1)


class FixedBatch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(8, -1) * 2  # bakes the sample's batch size into the graph


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 3)
    )


def _sample(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4))  # float64, as a CSV would give


def test_module_exports_with_dynamic_batch_and_parity() -> None:
    model = _mlp().train()
    result = import_model(model, sample=_sample())
    assert result.framework == "pytorch"
    assert result.source == "pytorch Sequential"
    assert result.signature.inputs == (TensorSpec("input", "FP32", (-1, 4)),)
    assert result.signature.outputs == (TensorSpec("output", "FP32", (-1, 3)),)
    assert result.parity is not None and result.parity["max_abs_diff"] <= 1e-4
    assert result.parity["samples"] == 8
    assert model.training, "the caller's training mode is restored"
    out = run_onnx(result.onnx_bytes, _sample(3))["output"]
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(_sample(3)).float()).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_multiple_inputs_take_the_sample_keys_and_outputs_are_numbered() -> None:
    rng = np.random.default_rng(1)
    sample = {
        "x": rng.normal(size=(5, 4)).astype(np.float32),
        "z": rng.normal(size=(5, 2)).astype(np.float32),
    }
    result = import_model(TwoHeads(), sample=sample)
    assert [t.name for t in result.signature.inputs] == ["x", "z"]
    assert result.signature.outputs == (
        TensorSpec("output_0", "FP32", (-1, 3)),
        TensorSpec("output_1", "FP32", (-1, 3)),
    )
    assert result.parity is not None
    assert set(result.parity["per_output"]) == {"output_0", "output_1"}


def test_torchscript_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(_mlp()), str(path))
    np.save(tmp_path / "sample.npy", _sample())
    result = import_model(path, sample=tmp_path / "sample.npy")
    assert result.framework == "pytorch"
    assert result.source == "pytorch TorchScript Sequential from model.pt"
    assert result.signature.outputs == (TensorSpec("output", "FP32", (-1, 3)),)


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(_mlp(), path)
    with pytest.raises(ConversionError, match="unpickling runs arbitrary code; pass --trust-pickle"):
        import_model(path, sample=_sample())
    result = import_model(path, sample=_sample(), trust_pickle=True)
    assert result.source == "pytorch Sequential from model.pth"


def test_state_dict_file_is_explained_without_trust(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_mlp().state_dict(), path)
    for trust in (False, True):  # read with torch's restricted loader: no trust needed to say what it is
        with pytest.raises(ConversionError, match=r"holds a state_dict \(4 tensors: 0.weight") as e:
            import_model(path, sample=_sample(), trust_pickle=trust)
        assert "load_state_dict" in str(e.value) and "conveyor.register(" in str(e.value)


def test_checkpoint_dict_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": _mlp().state_dict()}, path)
    with pytest.raises(ConversionError, match=r"holds a dict \('epoch', 'model'\), not a module"):
        import_model(path, sample=_sample())


def _export(static: bool = False) -> torch.export.ExportedProgram:
    x = torch.from_numpy(_sample()).float()
    shapes = None if static else {"input": {0: torch.export.Dim("batch")}}
    return torch.export.export(_mlp().eval(), (x,), dynamic_shapes=shapes)


def test_exported_program_file_needs_no_sample_and_keeps_a_dynamic_batch(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    torch.export.save(_export(), path)
    result = import_model(path)  # the example inputs saved with the program are the sample
    assert result.source == "pytorch torch.export program (input; dynamic batch) from model.pt2"
    assert result.signature.inputs == (TensorSpec("input", "FP32", (-1, 4)),)
    assert result.parity is not None and result.parity["samples"] == 8
    x = _sample(3).astype(np.float32)
    with torch.no_grad():
        expected = _export().module()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(result.onnx_bytes, x)["output"], expected, atol=1e-5)


def test_exported_program_with_a_fixed_batch_is_served_at_that_batch() -> None:
    result = import_model(_export(static=True), sample=_sample(8))
    assert result.signature.inputs == (TensorSpec("input", "FP32", (8, 4)),)
    with pytest.raises(InvalidInput, match=r"exported for input 'input' of shape \[8, 4\].*Dim\(\"batch\"\)"):
        import_model(_export(static=True), sample=_sample(3))


def test_tensors_are_samples_in_the_python_api(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    x = torch.from_numpy(_sample(5)).float().requires_grad_()
    info = conveyor.register("mlp", _mlp(), sample=x, settings=settings)
    assert info.metadata["parity"]["samples"] == 5
    rng = np.random.default_rng(1)
    pair = (
        torch.from_numpy(rng.normal(size=(5, 4))).float(),
        torch.from_numpy(rng.normal(size=(5, 2))).float(),
    )
    two = conveyor.register("two", TwoHeads(), sample=pair, settings=settings)
    assert [t["name"] for t in two.signature["inputs"]] == ["input_0", "input_1"]


def test_sample_is_required() -> None:
    with pytest.raises(ConversionError, match="needs a sample"):
        import_model(_mlp())


def test_baked_in_batch_size_is_refused() -> None:
    with pytest.raises(ConversionError, match="no dynamic batch dimension on 'output'"):
        import_model(FixedBatch(), sample=_sample(8))


def test_plain_pickle_of_a_module_with_trust(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    with path.open("wb") as f:
        pickle.dump(_mlp(), f)
    for framework in ("auto", "pytorch"):
        result = import_model(path, framework=framework, sample=_sample(), trust_pickle=True)
        assert result.framework == "pytorch"
