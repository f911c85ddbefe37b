"""Services and NetworkPolicies: who may reach whom. Replicas take traffic from the gateway only; the
control plane from the gateway, the replicas and pods labelled ``conveyor.dev/admin: "true"`` (the admin
ingress: an ingress controller, a CI runner); the gateway is the entry point, open on its port only."""

from __future__ import annotations

from typing import Any

from conveyor.k8s.names import (
    ADMIN_LABEL,
    API_PORT,
    HTTP_PORT,
    Options,
    Served,
    labels,
    metadata,
    replica_labels,
    replica_name,
    selector,
)


def _service(name: str, options: Options, component: str, port: int, **extra: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, options, labels(options, component, **extra)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(options, component, **extra),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def replica_service(served: Served, options: Options) -> dict[str, Any]:
    """V2 REST of one model version's replicas, balanced by Kubernetes."""
    return _service(replica_name(served), options, "replica", HTTP_PORT, **replica_labels(served))


def gateway_service(options: Options) -> dict[str, Any]:
    return _service(options.shared("gateway"), options, "gateway", HTTP_PORT)


def control_plane_service(options: Options) -> dict[str, Any]:
    return _service(options.shared("control-plane"), options, "control-plane", API_PORT)


def _from(options: Options, component: str) -> dict[str, Any]:
    """Pods of a component of this instance, in this namespace."""
    return {"podSelector": {"matchLabels": selector(options, component)}}


def _policy(
    name: str,
    options: Options,
    component: str,
    pods: dict[str, str],
    port: int,
    sources: list[dict[str, Any]],
) -> dict[str, Any]:
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port}]}
    if sources:  # no `from`: any source, on this port only
        rule["from"] = sources
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, options, labels(options, component)),
        "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"], "ingress": [rule]},
    }


def replica_policy(served: Served, options: Options) -> dict[str, Any]:
    """A model version's replicas accept the gateway only."""
    pods = selector(options, "replica", **replica_labels(served))
    return _policy(replica_name(served), options, "replica", pods, HTTP_PORT, [_from(options, "gateway")])


def control_plane_policy(options: Options) -> dict[str, Any]:
    admin = {"namespaceSelector": {}, "podSelector": {"matchLabels": {ADMIN_LABEL: "true"}}}
    sources = [_from(options, "gateway"), _from(options, "replica"), admin]
    name = options.shared("control-plane")
    return _policy(name, options, "control-plane", selector(options, "control-plane"), API_PORT, sources)


def gateway_policy(options: Options) -> dict[str, Any]:
    name = options.shared("gateway")
    return _policy(name, options, "gateway", selector(options, "gateway"), HTTP_PORT, [])
