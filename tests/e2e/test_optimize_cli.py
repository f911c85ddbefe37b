"""`conveyor optimize`: a registered MLP quantized into its next version, a bad quantization refused, and
`models show` with the lineage and the report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import CliRunner


@pytest.fixture(scope="module")
def mlp_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from skops.io import dump

    d = tmp_path_factory.mktemp("mlp")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(96, 96), max_iter=30, random_state=0).fit(x[:400], y[:400])
    dump(model, d / "mlp.skops")
    np.save(d / "sample.npy", x[:200])
    np.save(d / "data.npy", x[400:])
    np.save(d / "labels.npy", y[400:])
    np.save(d / "tiny.npy", x[:2] * 0.05)
    return {"skops": d / "mlp.skops", **{k: d / f"{k}.npy" for k in ("sample", "data", "labels", "tiny")}}


@pytest.mark.slow  # seven conveyor processes: about 25 s on 2 cores
def test_optimize_registers_the_child_refuses_a_bad_one_and_show_gives_the_lineage(
    cli: CliRunner, mlp_files: dict[str, Path]
) -> None:
    f = {k: str(v) for k, v in mlp_files.items()}
    cli("models", "register", "mlp", f["skops"], "--sample", f["sample"])
    common = ("--data", f["data"], "--measure-seconds", "0.05")

    out = cli(
        "optimize",
        "mlp:1",
        "--quantize",
        "dynamic",
        "--labels",
        f["labels"],
        "--max-drift",
        "0.5",
        *common,
        "--json",
    )
    result = json.loads(out.stdout)
    v = result["registered"]
    assert (v["version"], v["parent_version"], result["refused"]) == (2, 1, None)
    report = result["report"]
    assert report["method"] == "dynamic" and report["data"]["rows"] == 200
    assert v["size_bytes"] < report["before"]["size_bytes"] / 2
    assert report["after"]["drift"]["max_abs_diff"] <= 0.5
    assert set(report["after"]["timing"]) == {"1", "32"}
    assert 0 <= report["after"]["quality"]["accuracy"] <= 1

    refused = cli(
        "optimize",
        "mlp:1",
        "--quantize",
        "static",
        "--calibration",
        f["tiny"],
        "--max-drift",
        "0.05",
        *common,
        check=False,
    )
    assert refused.returncode == 6
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: refused: static: max |drift| ") and line.endswith(
        " > 0.05 (--max-drift); nothing registered"
    )
    assert "optimize mlp:1 on 200 rows" in refused.stdout and "refused: max |drift|" in refused.stdout
    assert [m["latest_version"] for m in json.loads(cli("models", "list", "--json").stdout)] == [2]

    shown = cli("models", "show", "mlp:2").stdout
    assert "lineage    mlp:2 ← mlp:1" in shown
    assert "optimized  dynamic of mlp:1; " in shown and "max |drift| " in shown and "accuracy " in shown
    as_json = json.loads(cli("models", "show", "mlp:2", "--json").stdout)
    assert as_json["lineage"] == [{"ref": "mlp:1", "source": as_json["lineage"][0]["source"]}]
    assert as_json["metadata"]["optimization"]["parent"] == "mlp:1"

    nothing = cli("optimize", "mlp:1", check=False)
    assert (nothing.returncode, nothing.stderr.strip()) == (
        2,
        "error: nothing to do: give --quantize, --graph-opt or --fallback",
    )
