"""A model version's HorizontalPodAutoscaler (from ``spec.autoscaling``) and PodDisruptionBudget (from the
replica count it keeps).

The HPA scales on CPU utilization, which every cluster with metrics-server can read. Conveyor's own signal,
requests in flight per replica (``targetInFlight``), would need a custom-metrics adapter (a Pods metric
``conveyor_in_flight`` through prometheus-adapter): it is kept as an annotation for whoever installs one.
Kubernetes' HPA cannot go below one replica without an alpha feature gate, so ``scaleToZero`` keeps one.
"""

from __future__ import annotations

from typing import Any, Final

from conveyor.k8s.names import Options, Served, labels, metadata, replica_labels, replica_name, selector

CPU_UTILIZATION: Final = 70
"""Average CPU utilization (percent of the request) the HPA aims at."""
MAX_WINDOW_S: Final = 3600
"""The longest stabilization window the HPA accepts."""


def _window(seconds: float) -> int:
    return min(max(round(seconds), 0), MAX_WINDOW_S)


def autoscaler(served: Served, options: Options) -> dict[str, Any] | None:
    """The HPA of an autoscaled deployment; None for a fixed replica count."""
    policy = served.deployment.spec.autoscaling
    if policy is None:
        return None
    name = replica_name(served)
    meta = metadata(name, options, labels(options, "replica", **replica_labels(served)))
    meta["annotations"] = {
        "conveyor.dev/target-in-flight": f"{policy.target_in_flight:g}",
        "conveyor.dev/scale-to-zero": str(policy.scale_to_zero).lower(),
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(policy.min_replicas, 1),
            "maxReplicas": policy.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": CPU_UTILIZATION},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": _window(policy.scale_up_stabilization_seconds)},
                "scaleDown": {"stabilizationWindowSeconds": _window(policy.scale_down_stabilization_seconds)},
            },
        },
    }


def disruption_budget(served: Served, options: Options) -> dict[str, Any]:
    """The budget of a model version's replicas, from the replica count the deployment keeps at least."""
    spec = served.deployment.spec
    least = spec.replicas or 0 if spec.autoscaling is None else max(spec.autoscaling.min_replicas, 1)
    return budget(replica_name(served), options, "replica", least, replica_labels(served))


def budget(
    name: str, options: Options, component: str, least: int, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """Voluntary disruptions (a node drain) keep all but one of ``least`` pods; with one pod, it may go (a
    budget of minAvailable 1 would block every drain)."""
    extra = extra or {}
    limit: dict[str, Any] = {"minAvailable": least - 1} if least >= 2 else {"maxUnavailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, options, labels(options, component, **extra)),
        "spec": {**limit, "selector": {"matchLabels": selector(options, component, **extra)}},
    }
