"""Reading spec files: what loads, and every problem reported with its path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import errors
from conveyor.spec import Deployment, Resource, load_documents, load_file

EXAMPLES = Path(__file__).parents[3] / "examples"

TINY = """\
apiVersion: conveyor.dev/v1
kind: Deployment
metadata: {name: tiny}
spec: {model: tiny:1, replicas: 2}
"""


def deployments(resources: list[Resource]) -> list[Deployment]:
    assert all(isinstance(r, Deployment) for r in resources)
    return [r for r in resources if isinstance(r, Deployment)]


def problems(text: str, source: str = "f.yaml") -> list[str]:
    with pytest.raises(errors.InvalidInput) as info:
        load_documents(text, source=source)
    lines: list[str] = info.value.details["problems"]
    assert str(info.value) == "\n".join(lines)
    return lines


def deployment(spec: str, metadata: str = "{name: d}") -> str:
    """A document whose spec block starts on line 5 (its first field)."""
    return f"apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {metadata}\nspec:\n{spec}"


def test_the_smallest_spec_loads_with_defaults() -> None:
    [d] = deployments(load_documents(TINY))
    assert isinstance(d, Deployment)
    assert d.metadata.name == "tiny"
    assert d.spec.model == "tiny:1"
    assert d.spec.replicas == 2
    assert d.spec.autoscaling is None
    assert d.spec.target == "local"
    assert d.spec.traffic.strategy == "replace"
    assert d.spec.batching.max_batch_size is None


def test_replicas_default_to_one_without_autoscaling() -> None:
    [d] = deployments(load_documents(deployment("  model: m@production\n")))
    assert d.spec.replicas == 1


def test_several_documents_load_in_order_and_empty_ones_are_skipped() -> None:
    text = "---\n" + TINY + "---\n---\n" + TINY.replace("tiny}", "other}")
    assert [d.metadata.name for d in load_documents(text)] == ["tiny", "other"]


@pytest.mark.parametrize("name", ["tiny.yaml", "autoscaling.yaml"])
def test_the_examples_load(name: str) -> None:
    assert load_file(EXAMPLES / name)


def test_autoscaling_example_fields() -> None:
    iris, always_on = deployments(load_file(EXAMPLES / "autoscaling.yaml"))
    auto = iris.spec.autoscaling
    assert auto is not None and auto.scale_to_zero and auto.hold_timeout_seconds == 20.0
    assert iris.spec.replicas is None
    assert iris.spec.traffic.strategy == "replace"
    assert always_on.spec.autoscaling is not None
    assert always_on.spec.autoscaling.scale_down_stabilization_seconds == 60.0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("  model: m:1\n  replicas: '2'\n", "f.yaml:6: spec.replicas: must be an integer, got string '2'"),
        ("  model: m:1\n  replicas: -1\n", "f.yaml:6: spec.replicas: must be >= 0, got -1"),
        ("  model: m:1\n  replicas: true\n", "f.yaml:6: spec.replicas: must be an integer, got boolean True"),
        (
            "  model: m\n",
            "f.yaml:5: spec.model: 'm' names no version: use NAME:VERSION or NAME@ALIAS (e.g. m:1)",
        ),
        (
            "  model: m:0\n",
            "f.yaml:5: spec.model: invalid model reference 'm:0': "
            "the version after ':' must be a positive integer",
        ),
        (
            "  model: m@1\n",
            "f.yaml:5: spec.model: invalid alias '1': an alias cannot be all digits (it reads as a version)",
        ),
        ("  replicas: 1\n", "f.yaml:4: spec.model: required field missing"),
        (
            "  model: m:1\n  replica: 2\n",
            "f.yaml:6: spec.replica: unknown field; did you mean 'replicas'? allowed: model, replicas, "
            "autoscaling, batching, resources, traffic, target, placement, public, alerts, "
            "requireSignedModels, requireValidated, monitoring, cache, rollout, edges",
        ),
        (
            "  model: m:1\n  target: mars\n",
            "f.yaml:6: spec.target: 'mars' is not one of 'local', 'ray' or 'kubernetes'",
        ),
        (
            "  model: m:1\n  replicas: 1\n  autoscaling: {maxReplicas: 2}\n",
            "f.yaml:7: spec.autoscaling: give either replicas or autoscaling, not both",
        ),
        (
            "  model: m:1\n  autoscaling:\n    minReplicas: 2\n    maxReplicas: 1\n",
            "f.yaml:8: spec.autoscaling.maxReplicas: must be >= minReplicas (1 < 2)",
        ),
        (
            "  model: m:1\n  autoscaling:\n    minReplicas: 0\n    maxReplicas: 0\n",
            "f.yaml:8: spec.autoscaling.maxReplicas: must be >= 1, got 0",
        ),
        (
            "  model: m:1\n  autoscaling:\n    maxReplicas: 2\n    targetInFlight: 0\n",
            "f.yaml:8: spec.autoscaling.targetInFlight: must be > 0, got 0",
        ),
        (
            "  model: m:1\n  autoscaling:\n    maxReplicas: 2\n    targetInFlight: two\n",
            "f.yaml:8: spec.autoscaling.targetInFlight: must be a number, got string 'two'",
        ),
        (
            "  model: m:1\n  autoscaling:\n    maxReplicas: 2\n    scaleToZero: true\n",
            "f.yaml:8: spec.autoscaling.scaleToZero: needs minReplicas: 0 (minReplicas is 1)",
        ),
        (
            "  model: m:1\n  autoscaling:\n    maxReplicas: 2\n    holdTimeoutSeconds: 5\n",
            "f.yaml:8: spec.autoscaling.holdTimeoutSeconds: applies only with scaleToZero: true",
        ),
        (
            "  model: m:1\n  autoscaling:\n    minReplicas: 1\n",
            "f.yaml:6: spec.autoscaling.maxReplicas: required field missing",
        ),
        (
            "  model: m:1\n  batching:\n    maxBatchSize: 0\n",
            "f.yaml:7: spec.batching.maxBatchSize: must be >= 1, got 0",
        ),
        (
            "  model: m:1\n  batching: {maxQueueDelay: 5}\n",
            "f.yaml:6: spec.batching.maxQueueDelay: unknown field; did you mean 'maxQueueDelayMicroseconds'? "
            "allowed: maxBatchSize, maxQueueDelayMicroseconds, maxQueueSize, requestTimeoutMilliseconds",
        ),
        (
            "  model: m:1\n  resources: {threads: 1.5}\n",
            "f.yaml:6: spec.resources.threads: must be an integer, got number 1.5",
        ),
        (
            "  model: m:1\n  traffic:\n    strategy: canary\n",
            "f.yaml:7: spec.traffic.strategy: canary is a rollout strategy: write it as "
            "spec.rollout.strategy: canary (spec.traffic.strategy takes only replace)",
        ),
        (
            "  model: m:1\n  traffic:\n    steps: [50]\n",
            "f.yaml:7: spec.traffic.steps: canary steps are spec.rollout.steps (with spec.rollout.strategy: "
            "canary)",
        ),
        (
            "  model: m:1\n  traffic:\n    strategy: blue-green\n",
            "f.yaml:7: spec.traffic.strategy: 'blue-green' is not one of 'replace'",
        ),
        (
            "  model: m:1\n  traffic: {interval: 30}\n",
            "f.yaml:6: spec.traffic.interval: must be a string, got integer 30",
        ),
        (
            "  model: m:1\n  traffic: {interval: 3x}\n",
            "f.yaml:6: spec.traffic.interval: invalid duration '3x': use a number and a unit: ms, s, m or h "
            "(e.g. 30s)",
        ),
        ("  model: m:1\n  model: m:2\n", "f.yaml:6: spec.model: duplicate field (first at line 5)"),
        ("  - model\n", "f.yaml:4: spec: must be a mapping, got list ['model']"),
    ],
)
def test_each_problem_names_its_path_and_line(spec: str, expected: str) -> None:
    assert problems(deployment(spec)) == [expected]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (
            "{name: Tiny_1}",
            "f.yaml:3: metadata.name: invalid name 'Tiny_1': use at most 63 lowercase letters, "
            "digits and '-', starting and ending with a letter or digit",
        ),
        ("{name: " + "a" * 64 + "}", "f.yaml:3: metadata.name: invalid name"),
        ("{}", "f.yaml:3: metadata.name: required field missing"),
        ("{name: a, labels: {team: 3}}", "f.yaml:3: metadata.labels.team: must be a string, got integer 3"),
        ("{name: a, labels: {'bad key': x}}", "f.yaml:3: metadata.labels: invalid label key 'bad key'"),
    ],
)
def test_metadata_problems(metadata: str, expected: str) -> None:
    [line] = problems(deployment("  model: m:1\n", metadata=metadata))
    assert line.startswith(expected)


def test_every_problem_in_the_file_is_listed_in_line_order() -> None:
    text = (
        "apiVersion: conveyor.dev/v1\n"  # 1
        "kind: Deployment\n"  # 2
        "metadata:\n"  # 3
        "  name: a\n"  # 4
        "  labelz: {}\n"  # 5
        "spec:\n"  # 6
        "  model: a:1\n"  # 7
        "  replicas: two\n"  # 8
        "  target: mars\n"  # 9
        "---\n"  # 10
        "apiVersion: conveyor.dev/v2\n"  # 11
        "kind: Deployment\n"  # 12
        "---\n"  # 13
        "apiVersion: conveyor.dev/v1\n"  # 14
        "kind: Service\n"  # 15
        "---\n"  # 16
        "kind: Deployment\n"  # 17
        "apiVersion: conveyor.dev/v1\n"  # 18
        "metadata: {name: b}\n"  # 19
        "spec:\n"  # 20
        "  autoscaling: {minReplicas: 3, maxReplicas: 2}\n"  # 21
    )
    assert problems(text) == [
        "f.yaml:5: metadata.labelz: unknown field; did you mean 'labels'? allowed: name, labels",
        "f.yaml:8: spec.replicas: must be an integer, got string 'two'",
        "f.yaml:9: spec.target: 'mars' is not one of 'local', 'ray' or 'kubernetes'",
        "f.yaml:11: apiVersion: unsupported 'conveyor.dev/v2'; supported: conveyor.dev/v1",
        "f.yaml:15: kind: unsupported 'Service'; supported: AlertRule, Deployment",
        "f.yaml:20: spec.model: required field missing",
        "f.yaml:21: spec.autoscaling.maxReplicas: must be >= minReplicas (2 < 3)",
    ]


def test_missing_api_version_and_kind_point_at_the_document() -> None:
    assert problems("---\nmetadata: {name: a}\n") == [
        "f.yaml:2: apiVersion: missing; supported: conveyor.dev/v1",
        "f.yaml:2: kind: missing; supported: AlertRule, Deployment",
    ]


def test_duplicate_deployment_names_are_an_error() -> None:
    assert problems(TINY + "---\n" + TINY) == [
        "f.yaml:8: metadata.name: duplicate Deployment 'tiny' (first at line 3)"
    ]


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "---\n---\n"])
def test_an_empty_file_is_an_error(text: str) -> None:
    assert problems(text) == ["f.yaml:1: the file holds no document"]


def test_a_document_that_is_not_a_mapping_is_an_error() -> None:
    assert problems("- a\n- b\n") == ["f.yaml:1: a document must be a mapping, got list"]


def test_yaml_syntax_errors_give_line_and_column() -> None:
    [line] = problems("apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: name: a\n")
    assert line == "f.yaml:3:15: invalid YAML: mapping values are not allowed here"


def test_recursive_aliases_are_refused() -> None:
    assert (
        problems(deployment("  model: m:1\n  x: &a [*a]\n"))[0] == "f.yaml:6: spec.x[0]: recursive YAML alias"
    )


def test_anchors_and_merge_keys_work() -> None:
    text = TINY + "---\n" + deployment("  <<: {model: m:1}\n  replicas: 3\n", metadata="{name: b}")
    assert deployments(load_documents(text))[1].spec.model == "m:1"


def test_a_missing_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidInput, match="cannot read spec file"):
        load_file(tmp_path / "absent.yaml")


def test_load_file_names_the_file_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(TINY.replace("replicas: 2", "replicas: x"))
    with pytest.raises(errors.InvalidInput, match=rf"^{path}:4: spec.replicas: "):
        load_file(path)


def test_a_control_character_is_a_yaml_error_with_its_position() -> None:
    [line] = problems("apiVersion: conveyor.dev/v1\nkind: Deployment\nmetadata: {name: a\x08b}\n")
    assert line == "f.yaml:3:19: invalid YAML: unacceptable character #x0008"
