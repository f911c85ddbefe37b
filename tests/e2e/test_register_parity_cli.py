"""`conveyor models register` of a tree pipeline: parity checked or said not, --tolerance, one digest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.e2e.conftest import CliRunner
from tests.fixtures.homes import copy_home, home_env, run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """StandardScaler + RandomForestRegressor on integer features (float32 conversion off by 0.46), a
    sample, and a LinearRegression nothing can be derived from."""
    d = tmp_path_factory.mktemp("trees")
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3000, size=(500, 5)).astype(np.float64)
    y = rng.normal(size=500) + x[:, 0] / 100
    pipeline = make_pipeline(StandardScaler(), RandomForestRegressor(n_estimators=20, random_state=0))
    sio.dump(pipeline.fit(x, y), d / "reg.skops")
    sio.dump(LinearRegression().fit(x, y), d / "lin.skops")
    np.save(d / "sample.npy", x[:100])
    return {"reg": d / "reg.skops", "lin": d / "lin.skops", "sample": d / "sample.npy"}


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> tuple[Path, str]:
    """A home where `conveyor models register reg REG --json` (no sample) made reg:1, and what it printed;
    each test starting from it changes a copy (``copy_home``)."""
    home = tmp_path_factory.mktemp("registered") / "home"
    return home, run_cli(home_env(home), "models", "register", "reg", str(files["reg"]), "--json").stdout


def test_tree_pipeline_without_sample_registers_with_parity_on_derived_inputs(
    cli: CliRunner, cli_env: dict[str, str], registered: tuple[Path, str]
) -> None:
    home, stdout = registered
    copy_home(home, cli_env)
    v = json.loads(stdout)
    parity = v["metadata"]["parity"]
    assert parity["checked"] is True and parity["inputs"] == "derived"
    assert parity["max_abs_diff"] <= 1e-4 and parity["conversion"].startswith("exact")
    shown = cli("models", "show", "reg:1").stdout
    assert "inputs derived from the model" in shown and "max |diff|" in shown


def test_same_file_twice_is_one_digest_and_says_already_registered(
    cli: CliRunner, cli_env: dict[str, str], files: dict[str, Path], registered: tuple[Path, str]
) -> None:
    home, stdout = registered
    copy_home(home, cli_env)
    first = json.loads(stdout)
    again = cli("models", "register", "reg", str(files["reg"]))
    assert "already registered as reg:1" in again.stdout
    second = json.loads(cli("models", "show", "reg:2", "--json").stdout)
    assert second["sha256"] == first["sha256"]


def test_tolerance_option_refuses_and_names_itself(cli: CliRunner, files: dict[str, Path]) -> None:
    refused = cli(
        "models", "register", "reg", str(files["reg"]), "--sample", str(files["sample"]), "--tolerance", "0",
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "> tolerance 0 (--tolerance) on 100 samples" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    reg, sample = str(files["reg"]), str(files["sample"])
    ok = cli("models", "register", "reg", reg, "--sample", sample, "--tolerance", "1e-3", "--json")
    parity = json.loads(ok.stdout)["metadata"]["parity"]
    assert parity["tolerance"] == 1e-3 and parity["inputs"] == "sample" and parity["samples"] == 100
    assert "the given sample" in cli("models", "show", "reg:1").stdout


def test_nothing_to_derive_warns_and_records_not_checked(cli: CliRunner, files: dict[str, Path]) -> None:
    out = cli("models", "register", "lin", str(files["lin"]), "--json")
    assert "warning: parity not checked" in out.stderr
    assert json.loads(out.stdout)["metadata"]["parity"]["checked"] is False
    assert "parity     not checked: no sample was given" in cli("models", "show", "lin:1").stdout
