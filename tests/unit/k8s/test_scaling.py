"""HorizontalPodAutoscaler and PodDisruptionBudget from the spec's replicas and autoscaling."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.k8s import Options, deployment_objects
from conveyor.k8s.scaling import autoscaler, disruption_budget
from conveyor.k8s.workloads import replica_deployment
from tests.unit.k8s.specs import served, strict_k8s


def test_autoscaling_becomes_an_hpa_on_cpu_with_the_specs_bounds_and_windows() -> None:
    spec: dict[str, Any] = {
        "autoscaling": {
            "minReplicas": 2,
            "maxReplicas": 8,
            "targetInFlight": 4,
            "scaleUpStabilizationSeconds": 5,
            "scaleDownStabilizationSeconds": 7200,
        }
    }
    hpa = autoscaler(served(**spec), Options())
    assert hpa is not None
    strict_k8s(hpa)
    body = hpa["spec"]
    assert body["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-v3"}
    assert (body["minReplicas"], body["maxReplicas"]) == (2, 8)
    (metric,) = body["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert body["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 5
    assert body["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 3600  # the HPA's most
    assert hpa["metadata"]["annotations"]["conveyor.dev/target-in-flight"] == "4"
    assert "replicas" not in replica_deployment(served(**spec), Options())["spec"]  # the HPA's to set


def test_scale_to_zero_keeps_one_replica_since_the_hpa_cannot_go_lower() -> None:
    spec: dict[str, Any] = {"autoscaling": {"minReplicas": 0, "maxReplicas": 4, "scaleToZero": True}}
    hpa = autoscaler(served(**spec), Options())
    assert hpa is not None
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["metadata"]["annotations"]["conveyor.dev/scale-to-zero"] == "true"


def test_a_fixed_replica_count_has_no_hpa() -> None:
    assert autoscaler(served(replicas=2), Options()) is None
    kinds = [o["kind"] for o in deployment_objects(served(replicas=2), Options())]
    assert kinds == ["Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"]


@pytest.mark.parametrize(
    ("spec", "budget"),
    [
        ({"replicas": 3}, {"minAvailable": 2}),
        ({"replicas": 2}, {"minAvailable": 1}),
        ({"replicas": 1}, {"maxUnavailable": 1}),  # minAvailable 1 of 1 would block every node drain
        ({"replicas": 0}, {"maxUnavailable": 1}),
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 9}}, {"minAvailable": 3}),
        ({"autoscaling": {"minReplicas": 0, "maxReplicas": 9, "scaleToZero": True}}, {"maxUnavailable": 1}),
    ],
)
def test_the_disruption_budget_keeps_all_but_one_of_the_replicas_kept_at_least(
    spec: dict[str, Any], budget: dict[str, int]
) -> None:
    pdb = disruption_budget(served(**spec), Options())
    strict_k8s(pdb)
    assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == budget
    assert pdb["spec"]["selector"]["matchLabels"]["conveyor.dev/model-version"] == "3"
