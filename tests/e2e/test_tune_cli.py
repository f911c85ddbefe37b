"""`conveyor tune`: trials of the real `conveyor serve` on a registered model, the table and JSON of what was
measured, the winner written into a Deployment the spec loader accepts, and a clear refusal when no setting
meets the bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.spec.loader import load_file
from conveyor.spec.resources import Deployment
from tests.e2e.conftest import CliRunner

# Short trials: what is tested is the command, not the numbers (each trial starts a server: ~3-5 s).
QUICK = ("--duration", "300ms", "--warmup", "100ms", "--concurrency", "4")


@pytest.mark.slow  # three `conveyor serve` starts: about 25 s on 2 cores
def test_tune_measures_trials_writes_the_winner_and_refuses_an_unreachable_bound(
    cli: CliRunner, iris_files: dict[str, Path], tmp_path: Path
) -> None:
    cli("models", "register", "iris", str(iris_files["skops"]), "--sample", str(iris_files["sample"]))
    out_file = tmp_path / "iris.yaml"

    args = ("--p99-ms", "2000", "--max-trials", "2", *QUICK, "-o", str(out_file), "--json")
    done = cli("tune", "iris:1", *args)
    result = json.loads(done.stdout)
    rows = result["rows"]
    assert [r["phase"] for r in rows] == ["baseline", "threads×replicas"]
    defaults = {"threads": 0, "replicas": 1, "max_batch_size": 32, "max_queue_delay_us": 500}
    assert rows[0]["setting"] == defaults
    assert all(r["failure"] is None and r["requests"] > 0 and r["meets_bound"] for r in rows), rows
    assert result["winner"] in [r["setting"] for r in rows]
    assert result["refused"] is None and result["written"] == str(out_file)
    assert result["data"].startswith("64 rows drawn from the reference statistics of iris:1")

    [deployment] = load_file(out_file)  # what apply reads
    assert isinstance(deployment, Deployment)
    spec, won = deployment.spec, result["winner"]
    assert spec.model == "iris:1" and spec.replicas == won["replicas"]
    assert spec.batching.max_batch_size == won["max_batch_size"]
    assert spec.batching.max_queue_delay_microseconds == won["max_queue_delay_us"]
    assert spec.resources.threads == won["threads"]

    refused = cli("tune", "iris:1", "--p99-ms", "0.001", "--max-trials", "1", *QUICK, check=False)
    assert refused.returncode == 6
    assert "baseline" in refused.stdout and "no" in refused.stdout  # the table is still printed
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: no setting met p99 <= 0.001 ms with every request answered at concurrency")
