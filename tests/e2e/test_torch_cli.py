"""`conveyor models register` with PyTorch saved the ways people save it: it registers or says what works."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import CliRunner
from tests.fixtures.processes import ProcessGroup, conveyor_exe, free_port, wait_http_ok

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")

# The class the user's training script defines: saved from a real __main__, as `python train.py` would.
NET = """
import torch

class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(4, 8)
        self.l2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))
"""


def _script(folder: Path, body: str) -> None:
    """Run ``body`` as a user's script (its classes live in ``__main__``) in ``folder``."""
    script = folder / "train.py"
    script.write_text(textwrap.dedent(body))
    subprocess.run([sys.executable, str(script)], cwd=folder, check=True, timeout=120)


def _refusal(cli: CliRunner, *args: str) -> str:
    proc = cli("models", "register", "mlp", *args, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


def test_exported_program_registers_serves_and_answers_like_the_program(
    tmp_path: Path, cli: CliRunner, cli_env: dict[str, str], processes: ProcessGroup
) -> None:
    _script(
        tmp_path,
        NET
        + """
torch.manual_seed(0)
x = torch.randn(8, 4)
program = torch.export.export(MLP().eval(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
torch.export.save(program, "mlp_export.pt2")
""",
    )
    # no --sample: the example inputs saved in the program are the parity sample
    out = cli("models", "register", "mlp", str(tmp_path / "mlp_export.pt2"), "--json")
    version = json.loads(out.stdout)
    assert version["framework"] == "pytorch"
    assert version["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert version["signature"]["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    assert version["metadata"]["parity"]["max_abs_diff"] <= 1e-4
    assert version["metadata"]["parity"]["samples"] == 8

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = processes.start([conveyor_exe(), "serve", "mlp", "--port", str(port)], env=cli_env)
    wait_http_ok(f"{url}/v2/health/ready", proc)
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)  # a batch the export never saw
    body = {"inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    r = httpx.post(f"{url}/v2/models/mlp/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    [answer] = r.json()["outputs"]
    with torch.no_grad():
        expected = torch.export.load(str(tmp_path / "mlp_export.pt2")).module()(torch.from_numpy(x)).numpy()
    assert answer["shape"] == [5, 3]
    np.testing.assert_allclose(np.array(answer["data"]).reshape(5, 3), expected, atol=1e-5)


def test_module_saved_from_main_is_refused_naming_what_works(tmp_path: Path, cli: CliRunner) -> None:
    _script(tmp_path, NET + '\ntorch.save(MLP(), "mlp_whole.pt")\n')
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    for trust in ([], ["--trust-pickle"]):
        err = _refusal(cli, str(tmp_path / "mlp_whole.pt"), "--sample", str(tmp_path / "x.npy"), *trust)
        assert "__main__.MLP" in err and "Can't get attribute" not in err
        for way in ("torch.export.save", "torch.jit.script", "conveyor.register"):
            assert way in err, (way, err)
        assert "pass --trust-pickle" not in err  # trusting the file would not help


def test_module_whose_class_is_importable_registers_with_trust(
    tmp_path: Path, cli: CliRunner, cli_env: dict[str, str]
) -> None:
    (tmp_path / "mymodels.py").write_text(NET)
    _script(tmp_path, 'import torch, mymodels\ntorch.save(mymodels.MLP(), "mlp_whole.pt")\n')
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    args = (str(tmp_path / "mlp_whole.pt"), "--sample", str(tmp_path / "x.npy"))
    assert "--trust-pickle" in _refusal(cli, *args)
    assert "PYTHONPATH" in _refusal(cli, *args, "--trust-pickle")  # the class is not importable yet
    cli_env["PYTHONPATH"] = str(tmp_path)
    out = cli("models", "register", "mlp", *args, "--trust-pickle", "--json")
    version = json.loads(out.stdout)
    assert version["metadata"]["source"] == "pytorch MLP from mlp_whole.pt"
    assert version["metadata"]["parity"]["samples"] == 6


def test_state_dict_is_refused_at_once_with_what_to_do(tmp_path: Path, cli: CliRunner) -> None:
    _script(tmp_path, NET + '\ntorch.save(MLP().state_dict(), "weights.pt")\n')
    err = _refusal(cli, str(tmp_path / "weights.pt"))
    assert "state_dict" in err and "--trust-pickle" not in err  # no detour through trusting the file
    for way in ("load_state_dict", "conveyor.register", "torch.export.save"):
        assert way in err, (way, err)
