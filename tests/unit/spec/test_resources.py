"""The resources as values: canonical form, fingerprint, YAML round trip, defaults from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.settings import Settings
from conveyor.spec import (
    Batching,
    Deployment,
    Resource,
    Resources,
    dump_yaml,
    load_documents,
    load_file,
    parse_duration,
)

EXAMPLES = Path(__file__).parents[3] / "examples"

BLOCK = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata:
  name: iris
  labels: {team: ml, tier: gold}
spec:
  model: iris@production
  autoscaling:
    maxReplicas: 4
    targetInFlight: 8
  batching:
    maxBatchSize: 64
"""

# The same resource: keys reordered, flow style, comments, integers written as floats.
SHUFFLED = """\
# a comment
spec: {batching: {maxBatchSize: 64}, autoscaling: {targetInFlight: 8.0, maxReplicas: 4, minReplicas: 1},
       model: "iris@production", target: local}
metadata: {labels: {tier: gold, team: ml}, name: iris}
kind: Deployment
apiVersion: conveyor.dev/v1
"""


def deployments(resources: list[Resource]) -> list[Deployment]:
    assert all(isinstance(r, Deployment) for r in resources)
    return [r for r in resources if isinstance(r, Deployment)]


def test_equal_specs_written_differently_are_equal_with_one_fingerprint() -> None:
    [a], [b] = deployments(load_documents(BLOCK)), deployments(load_documents(SHUFFLED))
    assert a == b
    assert a.to_dict() == b.to_dict()
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64


def test_any_change_changes_the_fingerprint() -> None:
    [a] = load_documents(BLOCK)
    [b] = deployments(load_documents(BLOCK.replace("maxBatchSize: 64", "maxBatchSize: 65")))
    assert a != b
    assert a.fingerprint() != b.fingerprint()


def test_fingerprint_is_stable_across_processes() -> None:
    [d] = load_documents(
        "apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: t}\nspec: {model: t:1}\n"
    )
    # Pinned: a change here means every stored revision's fingerprint changes too.
    assert d.to_dict() == {
        "apiVersion": "conveyor.dev/v1",
        "kind": "Deployment",
        "metadata": {"name": "t", "labels": {}},
        "spec": {
            "model": "t:1",
            "replicas": 1,
            "batching": {},
            "resources": {},
            "traffic": {"strategy": "replace", "interval": "30s"},
            "target": "local",
        },
    }
    assert d.fingerprint() == load_documents(dump_yaml([d]))[0].fingerprint()


@pytest.mark.parametrize("name", ["tiny.yaml", "autoscaling.yaml"])
def test_dump_then_load_gives_equal_resources(name: str) -> None:
    resources = load_file(EXAMPLES / name)
    text = dump_yaml(resources)
    assert load_documents(text) == resources
    assert dump_yaml(load_documents(text)) == text


def test_to_dict_uses_yaml_names_and_leaves_out_unset_options() -> None:
    [d] = deployments(load_documents(BLOCK))
    spec = d.to_dict()["spec"]
    assert "replicas" not in spec
    assert spec["autoscaling"]["scaleDownStabilizationSeconds"] == 60.0
    assert "holdTimeoutSeconds" not in spec["autoscaling"]
    assert spec["batching"] == {"maxBatchSize": 64}


def test_scale_to_zero_gets_a_hold_timeout() -> None:
    text = BLOCK.replace("maxReplicas: 4", "maxReplicas: 4\n    minReplicas: 0\n    scaleToZero: true")
    [d] = deployments(load_documents(text))
    assert d.spec.autoscaling is not None
    assert d.spec.autoscaling.hold_timeout_seconds == 30.0


def test_python_code_may_use_field_names() -> None:
    d = Deployment.model_validate(
        {"metadata": {"name": "t"}, "spec": {"model": "t:1", "autoscaling": {"max_replicas": 2}}}
    )
    assert d.spec.autoscaling is not None and d.spec.autoscaling.max_replicas == 2
    assert d.spec.replicas is None


def test_resources_are_immutable() -> None:
    [d] = deployments(load_documents(BLOCK))
    with pytest.raises(ValidationError):
        d.spec.target = "ray"


def test_batching_left_out_takes_settings_at_use_time() -> None:
    settings = Settings(max_batch_size=8, max_queue_delay_us=100, max_queue_size=10, request_timeout_ms=99)
    assert Batching(max_batch_size=64).resolve(settings) == Batching(
        max_batch_size=64,
        max_queue_delay_microseconds=100,
        max_queue_size=10,
        request_timeout_milliseconds=99,
    )
    assert Resources().resolve(Settings(intra_op_threads=3)).threads == 3
    assert Resources(threads=1).resolve(Settings(intra_op_threads=3)).threads == 1


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30.0), ("1.5m", 90.0), ("2h", 7200.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "s", "-1s", "1d", " 1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
