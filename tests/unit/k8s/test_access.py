"""The control plane's ServiceAccount and Role: apply rights on exactly the kinds a deployment is made of."""

from __future__ import annotations

from conveyor.k8s import Options, deployment_objects
from conveyor.k8s.access import role, role_binding, service_account
from conveyor.k8s.workloads import control_plane_deployment
from tests.unit.k8s.specs import served, strict_k8s

PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
}


def test_the_role_allows_applying_exactly_the_kinds_of_a_deployment_in_its_namespace() -> None:
    options = Options(namespace="ml")
    for obj in (service_account(options), role(options), role_binding(options)):
        strict_k8s(obj)
        assert obj["metadata"]["namespace"] == "ml"
    allowed = {
        (group, resource): rule["verbs"]
        for rule in role(options)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    objects = deployment_objects(served(autoscaling={"maxReplicas": 2}), options)
    needed = {(o["apiVersion"].rpartition("/")[0], PLURALS[o["kind"]]) for o in objects}
    assert set(allowed) == needed  # nothing more: no secrets, no pods/exec
    assert all({"create", "patch"} <= set(verbs) for verbs in allowed.values())


def test_the_control_plane_runs_as_its_service_account_bound_to_the_role() -> None:
    options = Options()
    pod = control_plane_deployment(options)["spec"]["template"]["spec"]
    binding = role_binding(options)
    assert (
        pod["serviceAccountName"] == service_account(options)["metadata"]["name"] == "conveyor-control-plane"
    )
    assert binding["roleRef"]["name"] == role(options)["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "conveyor-control-plane", "namespace": "conveyor"}
    ]
