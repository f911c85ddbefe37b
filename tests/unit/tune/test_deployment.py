"""The Deployment file tune writes: a new one, or an existing one with only the tuned fields changed; both
read back by the spec loader that apply uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import InvalidInput
from conveyor.settings import Settings
from conveyor.spec.loader import load_file
from conveyor.spec.resources import AlertRule, Deployment
from conveyor.tune.deployment import baseline_of, placement_of, read_target, write
from conveyor.tune.search import Setting

SETTINGS = Settings()
WINNER = Setting(threads=1, replicas=2, max_batch_size=64, max_queue_delay_us=1000)

EXISTING = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: fraud
  labels: {team: risk}
spec:
  model: mlp@production
  autoscaling: {minReplicas: 1, maxReplicas: 4}
  batching: {maxBatchSize: 16, maxQueueSize: 64}
  public: true
  alerts:
  - {name: error-rate, threshold: 0.02}
---
apiVersion: conveyor.dev/v1
kind: AlertRule
metadata: {name: slow}
spec: {expr: p99_latency(5m), op: ">", threshold: 50}
"""


def _deployment(path: Path) -> Deployment:
    [d] = [r for r in load_file(path) if isinstance(r, Deployment)]
    return d


def test_a_new_file_is_a_deployment_the_spec_loader_accepts(tmp_path: Path) -> None:
    path = tmp_path / "mlp.yaml"
    target = read_target(path, "mlp", SETTINGS)
    assert baseline_of(target, SETTINGS) == Setting(0, 1, 32, 500)  # conveyor serve's defaults
    assert write(target, "mlp:1", WINNER, "auto") == []
    spec = _deployment(path).spec
    assert (spec.model, spec.replicas, spec.placement) == ("mlp:1", 2, "auto")
    assert (spec.batching.max_batch_size, spec.batching.max_queue_delay_microseconds) == (64, 1000)
    assert spec.resources.threads == 1
    assert _deployment(path).metadata.name == "mlp"


def test_one_replica_measured_in_the_gateway_is_written_inprocess(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    one = Setting(threads=2, replicas=1, max_batch_size=32, max_queue_delay_us=0)
    write(read_target(path, "Big_Model", SETTINGS), "Big_Model:3", one, "auto")
    d = _deployment(path)
    assert (d.metadata.name, d.spec.placement, d.spec.replicas) == ("big-model", "inprocess", 1)
    path.unlink()
    write(read_target(path, "m", SETTINGS), "m:1", one, "process")
    assert _deployment(path).spec.placement == "auto"  # process: what auto means for the local target


def test_an_existing_file_keeps_everything_but_the_tuned_fields(tmp_path: Path) -> None:
    path = tmp_path / "fraud.yaml"
    path.write_text(EXISTING)
    target = read_target(path, "mlp", SETTINGS)
    assert baseline_of(target, SETTINGS) == Setting(0, 1, 16, 500)  # the file's batch, min replicas
    notes = write(target, "mlp:1", WINNER, "auto")
    assert notes == ["autoscaling replaced by replicas: 2 (tune measures a fixed count)"]
    resources = load_file(path)
    d = _deployment(path)
    assert d.spec.model == "mlp@production"  # the file's model, not the version measured
    assert (d.spec.replicas, d.spec.autoscaling) == (2, None)
    assert d.spec.batching.max_batch_size == 64 and d.spec.batching.max_queue_delay_microseconds == 1000
    assert d.spec.batching.max_queue_size == 64  # not tuned: kept
    assert d.spec.resources.threads == 1
    assert d.spec.public and [a.name for a in d.spec.alerts] == ["error-rate"]
    assert d.metadata.labels == {"team": "risk"}
    assert [type(r) for r in resources] == [Deployment, AlertRule]


def test_a_file_without_a_deployment_of_the_model_is_refused_before_any_trial(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(EXISTING)
    with pytest.raises(InvalidInput, match="holds no Deployment of model 'cnn'"):
        read_target(path, "cnn", SETTINGS)
    path.write_text("apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {modle: a:1}")
    with pytest.raises(InvalidInput, match="did you mean 'model'"):
        read_target(path, "a", SETTINGS)


def test_trials_run_where_the_file_places_the_deployment(tmp_path: Path) -> None:
    assert placement_of(None, None) == "auto"
    path = tmp_path / "d.yaml"
    path.write_text(
        "apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {model: m:1, placement: process, cache: {maxEntries: 100}}\n"
    )
    target = read_target(path, "m", SETTINGS)
    assert placement_of(target, None) == "process"
    with pytest.raises(InvalidInput, match="response cache"):
        placement_of(target, "inprocess")
    with pytest.raises(InvalidInput, match="--placement must be"):
        placement_of(None, "gpu")
