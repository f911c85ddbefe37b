"""What the control plane may do in its namespace: a ServiceAccount and a Role bound to it, so that a control
plane running in the cluster can apply ``target: kubernetes`` deployments (k8s/apply.py, with the pod's
service account) — the kinds those deployments are made of, nothing else."""

from __future__ import annotations

from typing import Any, Final

from conveyor.k8s.names import Options, labels, metadata

# (API group, resource) of every kind stack.deployment_objects renders.
APPLIED: Final = (
    ("apps", "deployments"),
    ("", "services"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"),
)
VERBS: Final = ["get", "list", "watch", "create", "patch"]
"""Server-side apply is a PATCH that creates what is missing; get/list/watch to read what runs."""


def service_account(options: Options) -> dict[str, Any]:
    name = options.shared("control-plane")
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(name, options, labels(options, "control-plane")),
        "automountServiceAccountToken": False,  # mounted by the control plane's pod only
    }


def role(options: Options) -> dict[str, Any]:
    groups = sorted({group for group, _ in APPLIED})
    rules = [
        {"apiGroups": [group], "resources": sorted(r for g, r in APPLIED if g == group), "verbs": VERBS}
        for group in groups
    ]
    name = options.shared("control-plane")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(name, options, labels(options, "control-plane")),
        "rules": rules,
    }


def role_binding(options: Options) -> dict[str, Any]:
    name = options.shared("control-plane")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(name, options, labels(options, "control-plane")),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": options.namespace}],
    }
