"""CLI scenarios run the real ``conveyor`` executable against a throwaway CONVEYOR_HOME."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skops.io import dump

from tests.fixtures.processes import conveyor_exe

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> CliRunner:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [conveyor_exe(), *args], env=cli_env, capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"conveyor {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture(scope="session")
def iris_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained iris pipeline saved as skops and as a pickle, with a sample file."""
    import pickle

    d = tmp_path_factory.mktemp("iris")
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    dump(model, d / "iris.skops")
    (d / "iris.pkl").write_bytes(pickle.dumps(model))
    np.save(d / "sample.npy", x[::3].astype(np.float32))
    np.savetxt(d / "sample.csv", x[:10], delimiter=",", header="a,b,c,d", comments="")
    return {
        "skops": d / "iris.skops",
        "pickle": d / "iris.pkl",
        "sample": d / "sample.npy",
        "csv": d / "sample.csv",
        "x": d / "sample.npy",
    }
