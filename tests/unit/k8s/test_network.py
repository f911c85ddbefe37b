"""Services select the pods they name; NetworkPolicies let replicas hear the gateway only."""

from __future__ import annotations

from conveyor.k8s import Options, stack_objects
from conveyor.k8s.names import dns_label
from conveyor.k8s.network import control_plane_policy, gateway_policy, replica_policy, replica_service
from conveyor.k8s.workloads import replica_deployment
from tests.unit.k8s.specs import served, strict_k8s


def test_a_versions_service_selects_exactly_its_replica_pods() -> None:
    service = replica_service(served(), Options())
    pods = replica_deployment(served(), Options())["spec"]["template"]["metadata"]["labels"]
    assert service["metadata"]["name"] == "iris-v3"
    assert service["spec"]["selector"].items() <= pods.items()
    assert service["spec"]["selector"]["conveyor.dev/model-version"] == "3"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    other = served("other")
    assert replica_service(other, Options())["spec"]["selector"] != service["spec"]["selector"]


def test_replicas_accept_the_gateway_only() -> None:
    policy = replica_policy(served(), Options())
    strict_k8s(policy)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"]["conveyor.dev/deployment"] == "iris"
    (rule,) = spec["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": "conveyor",
                    "app.kubernetes.io/component": "gateway",
                }
            }
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_the_control_plane_accepts_the_gateway_the_replicas_and_the_admin_ingress() -> None:
    (rule,) = control_plane_policy(Options())["spec"]["ingress"]
    components = [s["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for s in rule["from"]]
    assert components == ["gateway", "replica", None]
    assert rule["from"][2] == {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"conveyor.dev/admin": "true"}},
    }
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    (open_rule,) = gateway_policy(Options())["spec"]["ingress"]
    assert "from" not in open_rule  # the entry point: anyone, on its port only


def test_every_object_of_a_stack_validates_strictly() -> None:
    objects = stack_objects([served(), served("b", autoscaling={"maxReplicas": 3})], Options())
    for obj in objects:
        strict_k8s(obj)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(set(names)) == len(names)


def test_names_are_dns_labels_even_for_long_or_digit_first_deployments() -> None:
    assert dns_label("iris-v3") == "iris-v3"
    assert dns_label("7up-v1") == "c-7up-v1"  # a Service name starts with a letter
    long = dns_label("a" * 63 + "-v12")
    assert len(long) <= 63
    assert long != dns_label("a" * 63 + "-v13")
